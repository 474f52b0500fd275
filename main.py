"""Start Swifty Desktop from a source checkout: ``python main.py [--data-dir DIR] [COMMAND]``.

Everything stays under the ``__main__`` guard: worker processes re-import this
module when they start, and must not open a window.
"""

if __name__ == "__main__":
    import sys

    from swifty_desktop.cli import main

    sys.exit(main())
