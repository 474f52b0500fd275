#!/usr/bin/env bash
# Build the one-folder bundle dist/swifty-desktop/ and check it with its own self-test;
# then pack it as dist/swifty-desktop-VERSION-linux-ARCH.tar.gz.
#
#   packaging/build.sh            (PYTHON=... to choose the interpreter)
#
# Build on the oldest Linux you support: the bundle carries the Python and Qt
# libraries it was built with, but uses the system's C library.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"

if ! "$PYTHON" -m PyInstaller --version >/dev/null 2>&1; then
    echo "Installing PyInstaller…"
    "$PYTHON" -m pip install --quiet "pyinstaller>=6.10"
fi
if ! "$PYTHON" -c "import swifty_desktop, PySide6" >/dev/null 2>&1; then
    echo "Installing Swifty Desktop and its dependencies…"
    "$PYTHON" -m pip install --quiet -e .
fi

# the icon set must match resources/icons/swifty.svg
"$PYTHON" packaging/make_icons.py --check >/dev/null || "$PYTHON" packaging/make_icons.py

started=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/swifty-desktop.spec
echo "Built dist/swifty-desktop in $(( $(date +%s) - started )) s ($(du -sh dist/swifty-desktop | cut -f1))."

echo "Self-test of the bundle:"
dist/swifty-desktop/swifty-desktop --self-test
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
dist/swifty-desktop/swifty-desktop --data-dir "$scratch/data" jobs submit noop -p mark=true --wait

version="$(dist/swifty-desktop/swifty-desktop --version | awk '{print $2}')"
archive="dist/swifty-desktop-${version}-linux-$(uname -m).tar.gz"
tar -C dist -czf "$archive" swifty-desktop
echo "Packed $archive ($(du -h "$archive" | cut -f1)). Install: unpack it, then run swifty-desktop/install.sh"
