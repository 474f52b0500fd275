"""``archive``: completed orders older than a cut-off become archived.

Archived orders are kept (reports and exports still see them) but leave the
default views: the order gets ``archived_at`` (when) and the status ``archived``
(what the Orders tab filters on).  Only ``completed`` orders are archived; open
and cancelled ones are left alone whatever their age.

The work goes in batches of a few thousand orders, one short transaction each
(the app writes to the same SQLite file), so a cancelled or interrupted run
keeps what it did and a re-run simply goes on: the job is idempotent, and the
weekly schedule runs it as is.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from swifty_desktop.tasks.base import Action, Context, Param, RetryPolicy, task

BATCH = 2000
ARCHIVED = "archived"


def cutoff_date(older_than_days: int, today: dt.date | None = None) -> dt.date:
    """Orders dated before this day are old enough to archive."""
    return (today or dt.date.today()) - dt.timedelta(days=older_than_days)


def archive_orders(engine: Any, older_than_days: int, ctx: Context | None = None,
                   now: dt.datetime | None = None, today: dt.date | None = None
                   ) -> dict[str, Any]:
    """Archive completed orders dated before the cut-off; return the counts."""
    from sqlalchemy import func, select, update

    from swifty_desktop.db.engine import write_transaction
    from swifty_desktop.db.models import Order

    cutoff = cutoff_date(older_than_days, today)
    stamp = (now or dt.datetime.now()).replace(microsecond=0)
    due = (Order.status == "completed") & (Order.order_date < cutoff) & \
        Order.archived_at.is_(None)
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(Order).where(due))
                    .scalar_one())
        already = int(conn.execute(select(func.count()).select_from(Order)
                                   .where(Order.status == ARCHIVED)).scalar_one())
    if ctx is not None:
        ctx.progress(0.0 if total else 1.0,
                     f"{total:,} completed orders dated before {cutoff:%Y-%m-%d} to archive")
    archived = 0
    last_id = 0
    while True:
        if ctx is not None:
            ctx.check_cancelled()
        with write_transaction(engine) as conn:
            ids = list(conn.execute(select(Order.id).where(due, Order.id > last_id)
                                    .order_by(Order.id).limit(BATCH)).scalars())
            if not ids:
                break
            conn.execute(update(Order).where(Order.id.in_(ids))
                         .values(status=ARCHIVED, archived_at=stamp))
        archived += len(ids)
        last_id = ids[-1]
        if ctx is not None:
            ctx.progress(archived / max(total, archived),
                         f"Archived {archived:,} of {total:,} orders")
    return {"archived": archived, "cutoff": cutoff.isoformat(),
            "older_than_days": older_than_days, "previously_archived": already}


def _outcome(result: Mapping[str, Any]) -> str:
    """"1,204 orders archived (dated before 2025-06-30)"."""
    from swifty_desktop.tasks.base import counted, result_count

    if "archived" not in result:
        return ""
    cutoff = result.get("cutoff")
    return f"{counted(result_count(result, 'archived'), 'order')} archived" + (
        f" (dated before {cutoff})" if isinstance(cutoff, str) and cutoff else "")


@task(
    "archive",
    title="Archive old orders",
    changes=("orders",),
    outcome=_outcome,
    description="Marks completed orders older than a number of days as archived: kept, "
                "but out of the default views.",
    params=(
        Param("older_than_days", "int", default=365, minimum=0, maximum=36500,
              label="Older than (days)",
              help="completed orders dated more than this many days ago are archived"),
    ),
    retry=RetryPolicy(max_attempts=3, backoff_base=10.0,
                      transient=("swifty_desktop.tasks.export:DatabaseBusy",)),
    concurrency=1,
    timeout=1800,
    rerun_safe=True,  # idempotent: a re-run archives what is left
    title_fn=lambda p: f"Archive orders older than {p.get('older_than_days', 365)} days",
    icon="archive",
    actions=(
        Action("Archive old orders…", ask=("older_than_days",), icon="archive", menu="Data",
               tooltip="Move completed orders older than a year (or as you choose) out of "
                       "the default views",
               ack="{title}: working in the background"),
    ),
)
def archive(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Archive old completed orders; returns how many."""
    from swifty_desktop.tasks.export import raise_if_busy

    days = int(params.get("older_than_days", 365))
    started = time.perf_counter()
    try:
        result = archive_orders(ctx.engine(), days, ctx)  # type: ignore[attr-defined]
    except Exception as exc:
        raise_if_busy(exc)
        raise
    ctx.log(f"Archived {result['archived']:,} completed orders dated before "
            f"{result['cutoff']} in {time.perf_counter() - started:.1f} s")
    return result
