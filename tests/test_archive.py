"""Archiving old orders: only completed ones, only before the cut-off, idempotent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import wait_final
from sqlalchemy import func, select
from task_context import FakeContext

from swifty_desktop.db.models import Order
from swifty_desktop.demo.seed import END_DATE, seed
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.tasks.archive import archive_orders, cutoff_date
from swifty_desktop.tasks.base import JobCancelled


@pytest.fixture
def demo(db: Any) -> Any:
    seed(db, "small")
    return db


def snapshot(engine: Any) -> dict[int, tuple[str, Any, dt.date]]:
    with engine.connect() as conn:
        return {i: (s, a, d) for i, s, a, d in conn.execute(
            select(Order.id, Order.status, Order.archived_at, Order.order_date))}


def test_completed_orders_before_the_cutoff_are_archived(demo: Any, data_dir: Any) -> None:
    before = snapshot(demo)
    today = END_DATE + dt.timedelta(days=1)
    cutoff = cutoff_date(365, today)
    due = {i for i, (s, _a, d) in before.items() if s == "completed" and d < cutoff}
    assert 50 < len(due) < len(before)
    now = dt.datetime(2026, 12, 3, 8, 30)
    ctx = FakeContext(demo, data_dir)
    result = archive_orders(demo, 365, ctx, now=now, today=today)
    assert result == {"archived": len(due), "cutoff": cutoff.isoformat(), "older_than_days": 365,
                      "previously_archived": 0}
    after = snapshot(demo)
    for order_id, (status, archived_at, _date) in after.items():
        if order_id in due:
            assert (status, archived_at) == ("archived", now)
        else:
            assert after[order_id] == before[order_id]  # open, cancelled, recent: untouched
    assert ctx.progress_calls[-1] == (1.0, f"Archived {len(due):,} of {len(due):,} orders")
    again = archive_orders(demo, 365, FakeContext(demo, data_dir), today=today)
    assert again["archived"] == 0 and again["previously_archived"] == len(due)
    assert snapshot(demo) == after


def test_a_stopped_run_keeps_whole_batches(demo: Any, data_dir: Any, monkeypatch: Any) -> None:
    import swifty_desktop.tasks.archive as archive_module

    monkeypatch.setattr(archive_module, "BATCH", 50)  # many batches from the small data
    ctx = FakeContext(demo, data_dir, cancel_after=3)
    with pytest.raises(JobCancelled):
        archive_orders(demo, 0, ctx, today=END_DATE + dt.timedelta(days=1))
    with demo.connect() as conn:
        archived = conn.execute(select(func.count()).select_from(Order)
                                .where(Order.status == "archived")).scalar_one()
    assert archived == 150  # three whole batches, then it stopped


def test_archive_runs_in_the_engine(make_manager: Any, qtbot: Any, demo: Any) -> None:
    manager = make_manager()
    job_id = manager.submit("archive", {"older_than_days": "30"}, Trigger.schedule("Weekly"))
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.title == "Archive orders older than 30 days"
    cutoff = dt.date.today() - dt.timedelta(days=30)
    assert job.result["cutoff"] == cutoff.isoformat()
    with demo.connect() as conn:
        archived = conn.execute(select(func.count()).select_from(Order)
                                .where(Order.status == "archived",
                                       Order.archived_at.is_not(None))).scalar_one()
        left = conn.execute(select(func.count()).select_from(Order).where(
            Order.status == "completed", Order.order_date < cutoff)).scalar_one()
    assert job.result["archived"] == archived > 0 and left == 0
