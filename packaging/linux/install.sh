#!/bin/sh
# Install (or remove) the Swifty Desktop bundle for one user or system-wide.
#
#   ./install.sh                    install into ~/.local (no root needed)
#   sudo ./install.sh --prefix /usr/local
#   ./install.sh --uninstall [--prefix DIR]
#
# Run it from the unpacked bundle folder (the one holding the swifty-desktop
# executable).  It copies the folder to PREFIX/lib/swifty-desktop, links
# PREFIX/bin/swifty-desktop to it, and adds the menu entry, the icons and the
# AppStream metadata under PREFIX/share.  Your data (jobs, outputs, logs) is not
# in the bundle and is never touched: see "Where your data lives" in the README.
set -eu

APP_ID=com.swifty.Desktop
PREFIX="${HOME}/.local"
ACTION=install

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
LIB="$PREFIX/lib/swifty-desktop"
BIN="$PREFIX/bin/swifty-desktop"
SHARE="$PREFIX/share"

refresh() {
    # menus and icon caches pick the change up at once where these tools exist
    command -v update-desktop-database >/dev/null 2>&1 &&
        update-desktop-database -q "$SHARE/applications" 2>/dev/null || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 &&
        gtk-update-icon-cache -q -t "$SHARE/icons/hicolor" 2>/dev/null || true
}

if [ "$ACTION" = uninstall ]; then
    rm -rf "$LIB"
    rm -f "$BIN" "$SHARE/applications/$APP_ID.desktop" "$SHARE/metainfo/$APP_ID.metainfo.xml"
    find "$SHARE/icons/hicolor" -name "$APP_ID.*" -path "*/apps/*" -exec rm -f {} + 2>/dev/null || true
    refresh
    echo "Swifty Desktop removed from $PREFIX (your data directory is left as it was)."
    exit 0
fi

if [ ! -x "$HERE/swifty-desktop" ] || [ ! -d "$HERE/_internal" ]; then
    echo "install.sh: run me from the unpacked bundle folder (swifty-desktop and _internal/ beside me)" >&2
    exit 2
fi

mkdir -p "$PREFIX/lib" "$PREFIX/bin" "$SHARE/applications" "$SHARE/metainfo" "$SHARE/icons"
if [ "$HERE" != "$LIB" ]; then
    rm -rf "$LIB.new"
    cp -R "$HERE" "$LIB.new"
    rm -rf "$LIB"
    mv "$LIB.new" "$LIB"
fi
ln -sf "$LIB/swifty-desktop" "$BIN"
# the menu entry starts the installed executable by its full path: PREFIX/bin may
# not be on the desktop session's PATH
sed -e "s|^Exec=swifty-desktop|Exec=$BIN|" -e "s|^TryExec=swifty-desktop|TryExec=$BIN|" \
    "$HERE/share/applications/$APP_ID.desktop" > "$SHARE/applications/$APP_ID.desktop"
cp "$HERE/share/metainfo/$APP_ID.metainfo.xml" "$SHARE/metainfo/"
cp -R "$HERE/share/icons/hicolor" "$SHARE/icons/"
refresh
echo "Swifty Desktop installed: $BIN (menu entry: Office > Swifty Desktop)."
case ":$PATH:" in
    *":$PREFIX/bin:"*) ;;
    *) echo "Note: $PREFIX/bin is not on your PATH; start it from the menu or as $BIN." ;;
esac
