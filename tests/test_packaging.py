"""What reaches people: the wheel, and the Linux desktop files and icons.

The wheel test builds the wheel from a copy of the sources, installs it into a
fresh virtual environment and runs ``swifty-desktop --self-test`` from there,
outside the repository: the app must find its forms, icons, fonts and
migrations inside the installed package.  The virtual environment sees the
base interpreter's packages (``--system-site-packages``), so nothing is
downloaded but setuptools for the isolated build (from pip's cache once seen).
That venv cannot notice a missing dependency, so a separate check compares the
package's third-party imports with the dependencies it declares.

The desktop entry and AppStream metadata are checked by the freedesktop tools
(Debian packages ``desktop-file-utils`` and ``appstream``, installed by .ci/run).
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
import shutil
import sqlite3
import struct
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from swifty_desktop import APP_ID, __version__

ROOT = Path(__file__).resolve().parent.parent
LINUX = ROOT / "packaging" / "linux"
DESKTOP = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _source_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SWIFTY_DATA_DIR", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONNOUSERSITE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _run(args: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}")
    return result


# ----------------------------------------------------------------------- wheel
def test_every_package_of_the_source_tree_is_listed_for_the_wheel() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "swifty_desktop").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    missing = sorted(found - listed)
    assert not missing, (f"packages missing from [tool.setuptools] packages in pyproject.toml "
                         f"(the wheel would leave them out): {missing}")
    assert setuptools["package-dir"] == {"swifty_desktop._ui": "ui",
                                         "swifty_desktop._resources": "resources"}


def _imported_top_level(folder: Path) -> dict[str, set[str]]:
    """Top-level modules that code under ``folder`` imports at run time -> the files.

    Absolute imports anywhere in a module (also inside functions: job kinds import
    lazily), except under ``if TYPE_CHECKING:``, which never runs."""
    found: dict[str, set[str]] = {}

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, where)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            found.setdefault(name.partition(".")[0], set()).add(where)
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    for path in sorted(folder.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)))
    return found


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """The wheel test installs with --no-deps into a venv that sees this interpreter's
    packages, so it cannot notice an undeclared dependency; this does, without a network:
    every third-party module the package imports must come from a distribution listed in
    [project] dependencies (what pip installs for a user), and the installed versions
    the tests run against must satisfy them."""
    from importlib import metadata

    from packaging.requirements import Requirement

    declared = {_dist_name(Requirement(d).name): Requirement(d)
                for d in _pyproject()["project"]["dependencies"]}
    providers = metadata.packages_distributions()
    undeclared = []
    for module, files in sorted(_imported_top_level(ROOT / "swifty_desktop").items()):
        if module in sys.stdlib_module_names or module == "swifty_desktop":
            continue
        dists = {_dist_name(d) for d in providers.get(module, [])}
        if not dists & declared.keys():
            undeclared.append(f"{module} (from {sorted(dists) or 'no installed distribution'};"
                              f" imported in {', '.join(sorted(files)[:3])})")
    assert not undeclared, ("imported at run time but not in pyproject.toml's [project] "
                            f"dependencies, so pip would not install it: {undeclared}")
    unmet = [f"{req} (installed: {metadata.version(req.name)})"
             for req in declared.values() if metadata.version(req.name) not in req.specifier]
    assert not unmet, f"the tests run against versions the package does not accept: {unmet}"


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_passes_its_self_test(tmp_path: Path) -> None:
    # build from a copy: no build/ or egg-info left in the work tree, no stale build/lib
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("swifty_desktop", "ui", "resources"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
         timeout=240, env=_clean_env())
    (wheel,) = wheels.glob("swifty_desktop-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"swifty_desktop/_ui/{p.as_posix()}" for p in _source_files(ROOT / "ui")}
    expected |= {f"swifty_desktop/_resources/{p.as_posix()}"
                 for p in _source_files(ROOT / "resources")}
    expected |= {f"swifty_desktop/{p.as_posix()}" for p in _source_files(ROOT / "swifty_desktop")}
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {len(missing)} files, e.g. {missing[:10]}"
    assert "swifty_desktop/db/migrations/versions/0001_engine.py" in names
    assert "swifty_desktop/_resources/fonts/DejaVuSans.ttf" in names
    strays = sorted(n for n in names if not n.startswith(("swifty_desktop/",
                                                          "swifty_desktop-")))
    assert not strays, f"the wheel installs files outside its package: {strays[:10]}"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
         timeout=120)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], timeout=180, env=_clean_env())
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], timeout=60).stdout.strip())
    installed = site / "swifty_desktop"
    assert (installed / "_ui" / "main_window.ui").is_file()

    elsewhere = tmp_path / "elsewhere"  # the cwd must not put the repository on sys.path
    elsewhere.mkdir()
    # what the installed package declares is what the import check above compared with
    requires = json.loads(_run([str(python), "-c", "import importlib.metadata as m, json; "
                                "print(json.dumps(m.requires('swifty-desktop')))"],
                               timeout=60, env=_clean_env(), cwd=elsewhere).stdout)
    from packaging.requirements import Requirement

    runtime = sorted(str(Requirement(r)) for r in requires if "extra ==" not in r)
    assert runtime == sorted(str(Requirement(d)) for d in _pyproject()["project"]["dependencies"])
    data = tmp_path / "data"
    result = subprocess.run([str(venv / "bin" / "swifty-desktop"), "--data-dir", str(data),
                             "--self-test"], cwd=elsewhere, env=_clean_env(),
                            capture_output=True, text=True, timeout=180)
    out = result.stdout
    assert result.returncode == 0, f"self-test failed:\n{out}\nstderr:\n{result.stderr[-4000:]}"
    assert "Self-test passed" in out and "FAIL" not in out
    start = next(line for line in out.splitlines() if line.startswith("ok   start"))
    assert f"from {installed} (installed package)" in start, start
    window = next(line for line in out.splitlines() if line.startswith("ok   window"))
    assert f"ui from {installed / '_ui'};" in window, window
    assert f"resources from {installed / '_resources'}" in window, window
    assert list((data / "outputs").glob("*.pdf")), "the self-test left no report in its data dir"

    # README's menu entry for a pip install starts this venv's command from the menu
    command = venv / "bin" / "swifty-desktop"
    entry = _menu_entry_for(command, tmp_path / "prefix")
    assert entry["TryExec"] == str(command)
    started = _run([*shlex.split(entry["Exec"]), "--version"], timeout=60,
                   env=_clean_env(PATH="/usr/bin:/bin"), cwd=elsewhere)
    assert started.stdout.split() == ["swifty-desktop", __version__]


def _db_rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def _migrated_empty(data: Path) -> None:
    """A data directory whose database is created and migrated, with no rows (what the
    app's start-up does before it seeds anything), made by another process."""
    _run([sys.executable, "-c", "import sys; from swifty_desktop.bootstrap import "
          "open_data_dir, open_database; open_database(open_data_dir(sys.argv[1])).dispose()",
          str(data)], timeout=120, env=_clean_env())


def _put_setting(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO settings (key, value) VALUES ('mail.smtp_host', "
                     "'\"smtp.example.com\"')")


@pytest.mark.parametrize("setup", [
    pytest.param(["schedules", "add", "nightly", "noop", "--every", "3600"], id="a schedule"),
    pytest.param(["jobs", "submit", "noop"], id="a queued job"),
    pytest.param(_put_setting, id="a setting"),
])
def test_the_self_test_refuses_a_data_directory_with_any_rows(tmp_path: Path, setup) -> None:
    """Not only products, customers and orders: jobs, schedules and settings are someone's
    data too, and the self-test would load sample data and archive orders beside them."""
    data = tmp_path / "shop"
    cli = [sys.executable, "-m", "swifty_desktop", "--data-dir", str(data)]
    _migrated_empty(data)
    if callable(setup):
        setup(data / "swifty.db")
    else:
        _run([*cli, *setup], timeout=120, env=_clean_env())
    before = _db_rows(data / "swifty.db")
    result = subprocess.run([*cli, "--self-test"], capture_output=True, text=True, timeout=120,
                            env=_clean_env(), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL data dir" in result.stdout and "already holds data" in result.stdout
    assert "ok   start" not in result.stdout
    assert _db_rows(data / "swifty.db") == before


def test_the_self_test_accepts_a_migrated_database_without_rows(tmp_path: Path) -> None:
    from swifty_desktop.selftest import SelfTest

    data = tmp_path / "fresh"
    _migrated_empty(data)
    assert _db_rows(data / "swifty.db")["alembic_version"] == 1
    assert SelfTest(data, out=io.StringIO())._check_data_dir() == str(data)


def test_the_self_test_leaves_a_data_directory_with_data_alone(tmp_path: Path) -> None:
    """It loads sample data and archives orders: never in someone's real data directory."""
    data = tmp_path / "shop"
    cli = [sys.executable, "-m", "swifty_desktop", "--data-dir", str(data)]
    _run([*cli, "demo", "seed", "--size", "small"], timeout=120, env=_clean_env())
    db = data / "swifty.db"
    before = db.read_bytes()
    result = subprocess.run([*cli, "--self-test"], capture_output=True, text=True, timeout=120,
                            env=_clean_env(), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL data dir" in result.stdout and "already holds data" in result.stdout
    assert "ok   start" not in result.stdout  # the app never opened it
    assert db.read_bytes() == before


# ------------------------------------------------------------ desktop and icons
def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install {package} (.ci/run installs it)"
    return path


def test_desktop_entry_validates_and_starts_the_installed_command() -> None:
    result = subprocess.run([_tool("desktop-file-validate", "desktop-file-utils"), str(DESKTOP)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "error" not in result.stdout.lower(), result.stdout
    entry = dict(line.split("=", 1) for line in DESKTOP.read_text(encoding="utf-8").splitlines()
                 if "=" in line)
    scripts = _pyproject()["project"]["scripts"]
    assert entry["Exec"].split()[0] in scripts, f"Exec={entry['Exec']} is not {list(scripts)}"
    assert entry["Icon"] == APP_ID
    assert entry["Name"] == "Swifty Desktop"


def _desktop_entry(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
                if "=" in line)


def _menu_entry_for(command: Path, prefix: Path) -> dict[str, str]:
    """What README tells a pip user to run: install.sh --exec, from the source checkout."""
    env = _clean_env(PATH="/usr/bin:/bin")  # the venv's bin/ is not on the desktop's PATH
    _run(["sh", str(LINUX / "install.sh"), "--exec", str(command), "--prefix", str(prefix)],
         timeout=60, env=env)
    installed = prefix / "share" / "applications" / DESKTOP.name
    result = subprocess.run([_tool("desktop-file-validate", "desktop-file-utils"),
                             str(installed)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "error" not in result.stdout.lower(), result.stdout
    assert (prefix / "share" / "icons" / "hicolor" / "48x48" / "apps" / f"{APP_ID}.png").is_file()
    assert (prefix / "share" / "metainfo" / METAINFO.name).is_file()
    return _desktop_entry(installed)


def test_install_sh_adds_a_menu_entry_for_a_command_outside_path(tmp_path: Path) -> None:
    """A pip install in a virtual environment: the menu must start that venv's command
    by its full path (TryExec too, or the menu hides the entry), even with a space in it."""
    command = tmp_path / "my venvs" / "swifty" / "bin" / "swifty-desktop"
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\necho swifty-desktop 0.1.0\n", encoding="utf-8")
    command.chmod(0o755)
    prefix = tmp_path / "home" / ".local"
    entry = _menu_entry_for(command, prefix)
    assert entry["TryExec"] == str(command)
    assert shlex.split(entry["Exec"]) == [str(command)]
    assert not (prefix / "lib").exists() and not (prefix / "bin").exists(), \
        "--exec copied a bundle"

    # a swifty-desktop that pip put in PREFIX/bin (pip install --user) is pip's to remove
    (prefix / "bin").mkdir()
    pip_script = prefix / "bin" / "swifty-desktop"
    pip_script.write_text("#!/bin/sh\n", encoding="utf-8")
    _run(["sh", str(LINUX / "install.sh"), "--uninstall", "--prefix", str(prefix)], timeout=60)
    assert not (prefix / "share" / "applications" / DESKTOP.name).exists()
    assert not list((prefix / "share" / "icons").rglob(f"{APP_ID}.*"))
    assert pip_script.is_file(), "uninstall removed a command it did not install"


def test_appstream_metainfo_validates_and_matches_the_app() -> None:
    # With the network checks on: every URL in the file must answer, so none may point
    # at a repository or screenshot that is not published (offline, any URL fails).
    result = subprocess.run([_tool("appstreamcli", "appstream"), "validate", str(METAINFO)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    root = ET.parse(METAINFO).getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("name") == "Swifty Desktop"
    assert root.findtext("summary")
    assert len(root.find("description")) >= 2
    assert root.find("launchable").text == DESKTOP.name
    assert root.find("content_rating") is not None
    assert root.find("provides/binary").text in _pyproject()["project"]["scripts"]
    releases = [r.get("version") for r in root.iter("release")]
    assert releases and releases[0] == __version__, f"newest release {releases[:1]} is not " \
                                                    f"the app's version {__version__}"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is no PNG"
    return struct.unpack(">II", head[16:24])


def test_the_icon_set_has_every_size_rendered_from_the_app_icon(qapp) -> None:
    from PySide6.QtGui import QImage

    theme = LINUX / "icons" / "hicolor"
    for size in ICON_SIZES:
        png = theme / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert png.is_file(), f"missing {png.relative_to(ROOT)}: run packaging/make_icons.py"
        assert _png_size(png) == (size, size), png
        image = QImage(str(png))
        centre = image.pixelColor(size // 2, size // 2)
        corner = image.pixelColor(0, 0)
        assert centre.alpha() == 255 and corner.alpha() < 64, f"{png.name} {size}px is blank"
    scalable = theme / "scalable" / "apps" / f"{APP_ID}.svg"
    assert scalable.read_bytes() == (ROOT / "resources" / "icons" / "swifty.svg").read_bytes(), \
        "the scalable icon differs from resources/icons/swifty.svg: run packaging/make_icons.py"
