"""The layers of ARCHITECTURE.md, checked on the source: who may import whom.

- tasks, db, integrations and demo are plain Python: no Qt, no GUI;
- the engine (jobs) and the scheduler never import the GUI;
- the GUI reads kind *declarations* through the ``swifty_desktop.tasks`` package (titles,
  parameter forms, menus) but never imports a kind's module, where its job body lives:
  bodies run in worker processes only.

Listing kinds must stay cheap for the GUI and the CLI: importing the package loads none
of the heavy libraries the bodies use.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "swifty_desktop"
QT = ("PySide6", "shiboken6", "PyQt5", "PyQt6")


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if package is None:
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def files_of(layer: str) -> list[Path]:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no files in swifty_desktop/{layer}"
    return files


def violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in files_of(layer):
        for name in sorted(imported_modules(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return found


@pytest.mark.parametrize("layer", ["tasks", "db", "integrations", "demo"])
def test_plain_python_layers_import_no_qt_and_no_gui(layer: str) -> None:
    assert violations(layer, (*QT, "swifty_desktop.gui", "swifty_desktop.app")) == []


@pytest.mark.parametrize("layer", ["jobs", "scheduling"])
def test_the_engine_and_the_scheduler_never_import_the_gui(layer: str) -> None:
    assert violations(layer, ("swifty_desktop.gui", "swifty_desktop.app")) == []


def test_the_gui_never_imports_a_kind_module() -> None:
    from swifty_desktop.tasks import KIND_MODULES

    bodies = tuple(KIND_MODULES)
    assert "swifty_desktop.tasks.export" in bodies
    assert violations("gui", bodies) == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The AST walk resolves the forms the code uses (so the tests above can fail)."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ..tasks import export\nimport PySide6.QtCore\n", encoding="utf-8")
    names = imported_modules(probe, "swifty_desktop.gui")
    assert {"swifty_desktop.tasks.export", "PySide6.QtCore"} <= names


def test_listing_kinds_loads_none_of_the_libraries_job_bodies_use() -> None:
    code = ("import sys, swifty_desktop.tasks as t; t.all_kinds(); "
            "print(sorted({n.split('.')[0] for n in sys.modules} & "
            "{'openpyxl', 'reportlab', 'requests', 'urllib3', 'PySide6'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "QT_QPA_PLATFORM": ""})
    assert out.stdout.strip() == "[]", out.stdout
