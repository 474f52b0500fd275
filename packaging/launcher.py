"""The frozen bundle's entry point: ``swifty-desktop`` exactly as the pip-installed one.

PyInstaller runs this file as ``__main__`` in the app and again in every spawned
worker process; ``cli.main`` calls ``multiprocessing.freeze_support()`` first,
which turns a worker's start into the worker (PyInstaller's runtime hook makes
that work on Linux and macOS too) before anything else is imported.
"""

import sys

from swifty_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
