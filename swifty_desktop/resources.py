"""Where the app's own files are: Designer forms (``ui/``), icons and fonts (``resources/``).

They live at the top of the source tree; the wheel carries them as the
``swifty_desktop._ui`` / ``swifty_desktop._resources`` packages and a frozen
bundle next to the executable.  One function finds them in all three cases.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path


@cache
def _find(top_level: str, package: str) -> Path:
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen and (Path(frozen) / top_level).is_dir():
        return Path(frozen) / top_level
    # the installed package's own copy first: in site-packages, the "source" path
    # would be site-packages/resources, which another distribution may own
    installed = Path(__file__).resolve().parent / package
    if installed.is_dir():
        return installed
    source = Path(__file__).resolve().parent.parent / top_level
    if source.is_dir():
        return source
    raise FileNotFoundError(
        f"the app's '{top_level}' folder is missing (looked in {source} and {installed}); "
        "reinstall Swifty Desktop")


def ui_file(name: str) -> Path:
    """A Designer form, e.g. ``ui_file("main_window.ui")``."""
    return _find("ui", "_ui") / name


def resource_dir() -> Path:
    return _find("resources", "_resources")


def icon_path(name: str) -> Path:
    """An SVG icon by name (without extension)."""
    return resource_dir() / "icons" / f"{name}.svg"
