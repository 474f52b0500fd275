"""``demo_seed``: load the deterministic sample data set (see :mod:`swifty_desktop.demo.seed`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swifty_desktop.tasks.base import Action, Context, Param, TaskError, task


def _outcome(result: Mapping[str, Any]) -> str:
    """"5,000 products, 3,000 customers and 40,000 orders loaded"."""
    from swifty_desktop.tasks.base import counted, result_count

    if not result.keys() & {"products", "customers", "orders"}:
        return ""
    return (f"{counted(result_count(result, 'products'), 'product')}, "
            f"{counted(result_count(result, 'customers'), 'customer')} and "
            f"{counted(result_count(result, 'orders'), 'order')} loaded")


@task(
    "demo_seed",
    title="Load sample data",
    changes=("products", "customers", "orders"),
    outcome=_outcome,
    description="Fills the database with thousands of sample products, customers and "
                "orders (always the same ones), to try the app or measure it.",
    params=(
        Param("size", "choice", default="full", choices=("small", "full"), label="Size",
              help="full: about 5,000 products, 3,000 customers and 40,000 orders; "
                   "small: a few hundred rows"),
        Param("replace", "bool", default=False, label="Replace existing data",
              help="delete the products, customers and orders already in the database "
                   "first (otherwise a database with data is left alone)"),
    ),
    concurrency=1,
    timeout=900,
    rerun_safe=True,  # a re-run after a crash replaces what the crashed run left (checkpoint)
    title_fn=lambda p: "Load sample data" + (" (small)" if p.get("size") == "small" else ""),
    icon="sample-data",
    actions=(
        Action("Load sample data…", ask=("size", "replace"), icon="sample-data", menu="File",
               tooltip="Fill the database with sample products, customers and orders",
               ack="Loading sample data in the background; the tabs fill in when it is done"),
    ),
)
def demo_seed(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    from swifty_desktop.demo.seed import DatabaseNotEmpty, describe_counts, seed

    replace = bool(params.get("replace"))
    state = ctx.resume_state
    if isinstance(state, dict) and state.get("seeding"):
        # an earlier attempt of this job was killed half-way: what is there is ours
        ctx.log("An earlier attempt stopped half-way; replacing the rows it left")
        replace = True
    engine = ctx.engine()  # type: ignore[attr-defined]
    try:
        result = seed(engine, str(params.get("size", "full")), replace=replace,
                      progress=ctx.progress, check=ctx.check_cancelled, log=ctx.log,
                      on_start=lambda: ctx.checkpoint({"seeding": True}))
    except DatabaseNotEmpty as exc:
        raise TaskError(
            "Sample data not loaded: the database already holds "
            f"{describe_counts(exc.counts)}, and the sample data would mix with it. Run "
            "'Load sample data' again with 'Replace existing data' ticked to delete that "
            "data first, or start the app with an empty data directory.") from None
    except BaseException:
        # seed() removed what it had added: a retry must not delete anything else
        ctx.checkpoint({"seeding": False})
        raise
    ctx.checkpoint({"seeding": False})
    ctx.log(f"Loaded {result.products:,} products, {result.customers:,} customers, "
            f"{result.orders:,} orders and {result.order_lines:,} order lines "
            f"in {result.seconds:.1f} s")
    return result.to_dict()

