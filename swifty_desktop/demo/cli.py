"""``swifty-desktop demo seed``: load the sample data without opening the app.

Registered through ``swifty_desktop.cli.EXTENSION_MODULES``.  Importing this module
is cheap (argparse only): the database and the generator load when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``demo`` command to the main parser's sub-commands."""
    demo = subparsers.add_parser("demo", help="sample data for trying the app")
    dsub = demo.add_subparsers(dest="demo_command", metavar="ACTION", required=True)
    p = dsub.add_parser(
        "seed", help="load the sample data set (always the same rows)",
        description="Load deterministic sample data: products, customers and orders over "
                    "two years, with accented names, several currencies and some tricky "
                    "values. A database that already holds data is left alone unless "
                    "--replace is given.")
    p.add_argument("--size", choices=("small", "full"), default="full",
                   help="full: about 5,000 products, 3,000 customers and 40,000 orders "
                        "(default); small: a few hundred rows")
    p.add_argument("--replace", action="store_true",
                   help="delete the products, customers and orders already in the database "
                        "first")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``demo seed``: 0 on success, 2 (via CliError) when the database is not empty."""
    from swifty_desktop import bootstrap
    from swifty_desktop.cli import CliError
    from swifty_desktop.demo.seed import DatabaseNotEmpty, seed

    svc = bootstrap.start(args.data_dir, console_log=args.verbose, verbose=args.verbose)
    tty = sys.stderr.isatty() and not args.json
    last = {"shown": -1}

    def progress(fraction: float, message: str) -> None:
        pct = int(fraction * 100)
        if tty and pct != last["shown"]:
            last["shown"] = pct
            print(f"\r{pct:3d}% {message}"[:100].ljust(100), end="", file=sys.stderr,
                  flush=True)

    try:
        result = seed(svc.engine, args.size, replace=args.replace, progress=progress)
    except DatabaseNotEmpty as exc:
        raise CliError(
            f"the database {exc.database} already holds {_counts(exc.counts)}, so the "
            "sample data was not loaded (it would mix with that data); add --replace to "
            "delete that data first, or choose an empty data directory with --data-dir"
        ) from None
    finally:
        if tty:
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr)
        svc.dispose()
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        replaced = (f" (replacing {_counts(result.replaced)})"
                    if any(result.replaced.values()) else "")
        print(f"Loaded the {result.size} sample data into {svc.data_dir.db_path}{replaced} "
              f"in {result.seconds:.1f} s: {result.products:,} products, "
              f"{result.customers:,} customers, {result.orders:,} orders "
              f"({result.order_lines:,} order lines).")
    return 0


def _counts(counts: dict[str, int]) -> str:
    from swifty_desktop.demo.seed import describe_counts

    return describe_counts(counts)


COMMANDS = {"demo": cmd_demo}
