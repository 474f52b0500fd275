#!/bin/sh
# Install (or remove) Swifty Desktop's menu entry, and the bundle, for one user or
# system-wide.
#
#   ./install.sh                    install the bundle into ~/.local (no root needed)
#   sudo ./install.sh --prefix /usr/local
#   ./install.sh --exec PATH        only the menu entry, icons and AppStream data, starting
#                                   PATH (e.g. ~/.venvs/swifty/bin/swifty-desktop after pip)
#   ./install.sh --uninstall [--prefix DIR]
#
# From the unpacked bundle folder it copies the folder to PREFIX/lib/swifty-desktop,
# links PREFIX/bin/swifty-desktop to it, and adds the menu entry, the icons and the
# AppStream metadata under PREFIX/share.  With --exec (from the bundle, or as
# packaging/linux/install.sh in a source checkout) it adds only those, and the menu
# starts PATH by its full name: a virtual environment's bin/ is not on the desktop's
# PATH.  Your data (jobs, outputs, logs) is never touched: see "Where your data lives"
# in the README.
set -eu

APP_ID=com.swifty.Desktop
PREFIX="${HOME}/.local"
ACTION=install
EXEC=

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
        --exec) EXEC="$2"; shift 2 ;;
        --exec=*) EXEC="${1#--exec=}"; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
LIB="$PREFIX/lib/swifty-desktop"
BIN="$PREFIX/bin/swifty-desktop"
SHARE="$PREFIX/share"

# the menu files: share/ beside the bundle's executable, or this folder in a checkout
if [ -f "$HERE/share/applications/$APP_ID.desktop" ]; then
    SRC_DESKTOP="$HERE/share/applications/$APP_ID.desktop"
    SRC_METAINFO="$HERE/share/metainfo/$APP_ID.metainfo.xml"
    SRC_ICONS="$HERE/share/icons/hicolor"
else
    SRC_DESKTOP="$HERE/$APP_ID.desktop"
    SRC_METAINFO="$HERE/$APP_ID.metainfo.xml"
    SRC_ICONS="$HERE/icons/hicolor"
fi

refresh() {
    # menus and icon caches pick the change up at once where these tools exist
    command -v update-desktop-database >/dev/null 2>&1 &&
        update-desktop-database -q "$SHARE/applications" 2>/dev/null || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 &&
        gtk-update-icon-cache -q -t "$SHARE/icons/hicolor" 2>/dev/null || true
}

if [ "$ACTION" = uninstall ]; then
    # the command only if it is this installer's link into the bundle: a swifty-desktop
    # that pip put in PREFIX/bin is pip's to remove
    if [ -L "$BIN" ] && [ "$(readlink "$BIN")" = "$LIB/swifty-desktop" ]; then
        rm -f "$BIN"
    fi
    rm -rf "$LIB"
    rm -f "$SHARE/applications/$APP_ID.desktop" "$SHARE/metainfo/$APP_ID.metainfo.xml"
    find "$SHARE/icons/hicolor" -name "$APP_ID.*" -path "*/apps/*" -exec rm -f {} + 2>/dev/null || true
    refresh
    echo "Swifty Desktop removed from $PREFIX (your data directory is left as it was)."
    exit 0
fi

if [ -n "$EXEC" ]; then
    case "$EXEC" in
        */*) ;;
        *) found="$(command -v "$EXEC" 2>/dev/null || true)"; EXEC="${found:-$EXEC}" ;;
    esac
    if [ ! -f "$EXEC" ] || [ ! -x "$EXEC" ]; then
        echo "install.sh: --exec $EXEC is not an executable file; give the full path of the" \
             "swifty-desktop command, e.g. ~/.venvs/swifty/bin/swifty-desktop" >&2
        exit 2
    fi
    COMMAND="$(cd "$(dirname "$EXEC")" && pwd)/$(basename "$EXEC")"
else
    if [ ! -x "$HERE/swifty-desktop" ] || [ ! -d "$HERE/_internal" ]; then
        echo "install.sh: run me from the unpacked bundle folder (swifty-desktop and" \
             "_internal/ beside me), or give --exec PATH to add only the menu entry" >&2
        exit 2
    fi
    COMMAND="$BIN"
fi
case "$COMMAND" in
    *[\"\`\$\\%]*)
        echo "install.sh: the path $COMMAND holds a character a menu entry cannot start" \
             "(\" \` \$ \\ %); install into a folder without it" >&2
        exit 2 ;;
esac
if [ ! -f "$SRC_DESKTOP" ]; then
    echo "install.sh: $SRC_DESKTOP is missing; run me from the unpacked bundle or from" \
         "packaging/linux in a source checkout" >&2
    exit 2
fi

mkdir -p "$SHARE/applications" "$SHARE/metainfo" "$SHARE/icons"
if [ -z "$EXEC" ]; then
    mkdir -p "$PREFIX/lib" "$PREFIX/bin"
    if [ "$HERE" != "$LIB" ]; then
        rm -rf "$LIB.new"
        cp -R "$HERE" "$LIB.new"
        rm -rf "$LIB"
        mv "$LIB.new" "$LIB"
    fi
    ln -sf "$LIB/swifty-desktop" "$BIN"
fi
# the menu entry starts the command by its full path (PREFIX/bin or a virtual
# environment may not be on the desktop session's PATH); Exec= needs quotes around a
# path with spaces, TryExec= takes it as it is
case "$COMMAND" in
    *[[:space:]\'\>\<~\|\&\;\*\?\#\(\)]*) EXEC_LINE="\"$COMMAND\"" ;;
    *) EXEC_LINE="$COMMAND" ;;
esac
for_sed() { printf '%s' "$1" | sed -e 's/[&|]/\\&/g'; }
sed -e "s|^Exec=swifty-desktop|Exec=$(for_sed "$EXEC_LINE")|" \
    -e "s|^TryExec=swifty-desktop|TryExec=$(for_sed "$COMMAND")|" \
    "$SRC_DESKTOP" > "$SHARE/applications/$APP_ID.desktop"
cp "$SRC_METAINFO" "$SHARE/metainfo/"
cp -R "$SRC_ICONS" "$SHARE/icons/"
refresh
if [ -n "$EXEC" ]; then
    echo "Swifty Desktop's menu entry added under $SHARE (Office > Swifty Desktop); it starts $COMMAND."
    exit 0
fi
echo "Swifty Desktop installed: $BIN (menu entry: Office > Swifty Desktop)."
case ":$PATH:" in
    *":$PREFIX/bin:"*) ;;
    *) echo "Note: $PREFIX/bin is not on your PATH; start it from the menu or as $BIN." ;;
esac
