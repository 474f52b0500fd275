"""``python -m swifty_desktop`` is the same as ``swifty-desktop``."""

if __name__ == "__main__":
    import sys

    from swifty_desktop.cli import main

    sys.exit(main())
