"""Render the app icon set for Linux desktops from ``resources/icons/swifty.svg``.

    python packaging/make_icons.py [--check]

Writes ``packaging/linux/icons/hicolor/<N>x<N>/apps/com.swifty.Desktop.png`` for
every size in :data:`SIZES` and the scalable SVG beside them, the layout of the
freedesktop icon theme spec (install the tree under ``~/.local/share/icons`` or
``/usr/share/icons``).  Rendering uses Qt's own SVG renderer, so it needs nothing
beyond PySide6.  ``--check`` writes nothing and exits 1 if a file is missing or
differs from a fresh rendering.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resources" / "icons" / "swifty.svg"
THEME = ROOT / "packaging" / "linux" / "icons" / "hicolor"
APP_ID = "com.swifty.Desktop"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def targets() -> dict[Path, int | None]:
    """Every icon file of the set: path -> pixel size (None: the scalable SVG)."""
    out: dict[Path, int | None] = {
        THEME / f"{n}x{n}" / "apps" / f"{APP_ID}.png": n for n in SIZES}
    out[THEME / "scalable" / "apps" / f"{APP_ID}.svg"] = None
    return out


def render(size: int) -> bytes:
    """``SOURCE`` as a PNG of ``size`` x ``size`` pixels with a transparent background."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {SOURCE} as SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise SystemExit(f"cannot encode the {size}px icon as PNG")
    buffer.close()
    return bytes(data.data())


def main(argv: list[str]) -> int:
    check = "--check" in argv
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841
    stale = []
    for path, size in targets().items():
        wanted = SOURCE.read_bytes() if size is None else render(size)
        if path.is_file() and path.read_bytes() == wanted:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wanted)
            print(f"wrote {path.relative_to(ROOT)}")
    if check and stale:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        print("run: python packaging/make_icons.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
