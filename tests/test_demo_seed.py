"""The sample data: deterministic, realistic, tricky, quick, and never mixed with real data."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final
from helpers import cli_env, run_cli
from sqlalchemy import event, func, insert, select, text
from task_context import FakeContext

from swifty_desktop.db.engine import write_transaction
from swifty_desktop.db.models import Customer, Order, Product
from swifty_desktop.demo.seed import (
    END_DATE,
    SIZES,
    TRICKY_CUSTOMERS,
    TRICKY_PRODUCT,
    DatabaseNotEmpty,
    business_counts,
    seed,
)
from swifty_desktop.jobs.model import JobStatus
from swifty_desktop.tasks.base import JobCancelled, TaskError


def digest(engine: Any) -> str:
    """A hash of every business row, for comparing two databases."""
    h = hashlib.sha256()
    with engine.connect() as conn:
        for table in ("products", "customers", "orders", "order_lines"):
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id")):
                h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def test_small_sample_is_deterministic_and_realistic(db: Any, tmp_path: Path) -> None:
    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.paths import DataDir

    result = seed(db, "small")
    size = SIZES["small"]
    assert (result.products, result.customers, result.orders) == \
        (size.products, size.customers, size.orders)
    assert business_counts(db) == {"products": 200, "customers": 120, "orders": 600,
                                   "order_lines": result.order_lines}
    other = open_database(DataDir(tmp_path / "again").ensure())
    try:
        seed(other, "small")
        assert digest(other) == digest(db)  # the same rows, every time
    finally:
        other.dispose()
    with db.connect() as conn:
        names = list(conn.execute(select(Customer.name)).scalars())
        products = list(conn.execute(select(Product.name)).scalars())
        statuses = dict(conn.execute(select(Order.status, func.count()).group_by(Order.status))
                        .all())
        currencies = set(conn.execute(select(Order.currency).distinct()).scalars())
        opted = conn.execute(select(func.avg(Customer.opted_in))).scalar_one()
        first, last = conn.execute(select(func.min(Order.order_date),
                                          func.max(Order.order_date))).one()
        bad_totals = conn.execute(text(
            "SELECT count(*) FROM orders o WHERE total_cents != (SELECT sum(line_total_cents) "
            "FROM order_lines l WHERE l.order_id = o.id)")).scalar_one()
    assert TRICKY_PRODUCT in products
    assert set(TRICKY_CUSTOMERS) <= set(names) and any(n.startswith("=") for n in names)
    accents = {ch for n in names + products for ch in n if ord(ch) > 127}
    assert {"é", "ü", "ñ", "ø"} <= accents
    assert set(statuses) == {"open", "completed", "cancelled"}
    assert statuses["completed"] > statuses["cancelled"] > 0
    assert len(currencies) >= 5
    assert 0.45 < opted < 0.75
    assert (last - first).days > 600 and last <= END_DATE
    assert bad_totals == 0  # an order's total is the sum of its lines


def test_a_database_with_data_is_refused_unless_replace(db: Any) -> None:
    with write_transaction(db) as conn:
        conn.execute(insert(Product), [{"sku": "MINE-1", "name": "My own product",
                                        "updated_at": dt.datetime(2026, 1, 1)}])
    with pytest.raises(DatabaseNotEmpty, match=r"already holds 1 products.*not loaded"):
        seed(db, "small")
    assert business_counts(db)["products"] == 1
    result = seed(db, "small", replace=True)
    assert result.replaced["products"] == 1
    with db.connect() as conn:
        skus = set(conn.execute(select(Product.sku)).scalars())
    assert "MINE-1" not in skus and len(skus) == 200


def test_loading_commits_in_short_batches(db: Any) -> None:
    import time

    held: list[float] = []
    began: list[float] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            began.append(time.perf_counter())
        elif statement.startswith("COMMIT") and began:
            held.append(time.perf_counter() - began.pop())

    event.listen(db, "before_cursor_execute", watch)
    try:
        seed(db, "small")
    finally:
        event.remove(db, "before_cursor_execute", watch)
    assert len(held) >= 5  # products, customers and three batches of orders at least
    assert max(held) < 0.5  # about 20 ms each here; generous for a loaded test machine


def test_a_stopped_load_removes_what_it_added(db: Any) -> None:
    calls = {"n": 0}

    def check() -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        seed(db, "small", check=check)
    assert business_counts(db) == {"products": 0, "customers": 0, "orders": 0,
                                   "order_lines": 0}


def test_demo_seed_kind_through_the_engine(make_manager: Any, qtbot: Any, db: Any) -> None:
    manager = make_manager()
    job = wait_final(qtbot, manager, manager.submit("demo_seed", {"size": "small"}))
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.title == "Load sample data (small)"
    assert (job.result["products"], job.result["customers"], job.result["orders"]) == \
        (200, 120, 600)
    again = wait_final(qtbot, manager, manager.submit("demo_seed", {"size": "small"}))
    assert again.status is JobStatus.FAILED and again.error.type == "TaskError"
    assert "already holds 200 products" in again.error.message
    assert "'Replace existing data' ticked" in again.error.message
    assert business_counts(db)["products"] == 200


def test_resumed_seed_replaces_what_a_crashed_attempt_left(db: Any, data_dir: Any) -> None:
    from swifty_desktop.tasks.demo_seed import demo_seed

    seed(db, "small")  # what a killed attempt might have left (here: all of it)
    ctx = FakeContext(db, data_dir, resume_state={"seeding": True})
    result = demo_seed({"size": "small", "replace": False}, ctx)
    assert result["replaced"]["products"] == 200 and result["products"] == 200
    assert ctx.checkpoints[-1] == {"seeding": False}
    refused = FakeContext(db, data_dir, resume_state={"seeding": False})
    with pytest.raises(TaskError, match="Sample data not loaded"):
        demo_seed({"size": "small", "replace": False}, refused)


def test_demo_seed_command_line(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "demo", "seed", "--size", "small")
    assert proc.returncode == 0, proc.stderr
    assert "Loaded the small sample data" in proc.stdout and "200 products" in proc.stdout
    proc = run_cli(tmp_path, "demo", "seed", "--size", "small")
    assert proc.returncode == 2
    assert proc.stderr.startswith("swifty-desktop: error: the database ")
    assert "add --replace" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli(tmp_path, "demo", "seed", "--size", "small", "--replace", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["orders"] == 600 and data["replaced"]["orders"] == 600


def test_the_demo_command_is_cheap_to_import() -> None:
    code = ("import sys, swifty_desktop.demo.cli as m; "
            "heavy = [n for n in sys.modules if n.split('.')[0] in "
            "('PySide6', 'sqlalchemy', 'openpyxl', 'reportlab')]; "
            "print(heavy, sorted(m.COMMANDS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(), check=True).stdout
    assert out.strip() == "[] ['demo']"
