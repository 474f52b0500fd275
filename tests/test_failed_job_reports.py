"""A failed job keeps the report it completed (a strict import's invalid rows), and
nothing else: no half-written report, nothing after a cancel or a kill.

The strict import runs through the real engine (JobManager, runner, warm worker
processes) on a real SQLite file, and through the real command line.  The rule
itself ("kept only once the task marked it complete") is checked with a test kind
in a real worker process (tests/report_worker.py), as the app's kinds never fail
half-way through a report on purpose.
"""

from __future__ import annotations

import csv
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final
from helpers import run_cli
from report_worker import ProbeWorker
from sqlalchemy import select

from swifty_desktop.db.models import Product
from swifty_desktop.jobs.model import JobStatus
from swifty_desktop.tasks.import_csv import STRICT_EXAMPLES

ROWS, BAD_EVERY = 10_000, 33  # 303 invalid rows, far more than STRICT_EXAMPLES


def products(engine: Any) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["sku"]: dict(r) for r in conn.execute(select(Product.__table__)).mappings()}


def write_products(path: Path, n: int, bad_every: int) -> dict[str, str]:
    """A products CSV of ``n`` rows; every ``bad_every``-th row is invalid, in turn by
    its price and by its empty name.  Returns {sku: the start of its reason}."""
    bad: dict[str, str] = {}
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sku", "name", "price", "stock"])
        for i in range(1, n + 1):
            sku, name, price = f"R-{i:07d}", f"Product {i}", f"{i % 500}.{i % 100:02d}"
            if i % bad_every == 0:
                row = i + 1  # the header is row 1
                if (i // bad_every) % 2:
                    price = "oops"
                    bad[sku] = f"row {row}, column price: 'oops' is not an amount"
                else:
                    name = ""
                    bad[sku] = f"row {row}, column name: is empty but required"
            w.writerow([sku, name, price, i % 50])
    return bad


def read_rejects(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def seeded(make_manager: Any, qtbot: Any, db: Any, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """A one-worker engine and a products table with one row the big file would update."""
    manager = make_manager(workers=1)
    first = tmp_path / "first.csv"
    first.write_text("sku,name,price\nR-0000001,Before,1.00\n", encoding="utf-8")
    job = wait_final(qtbot, manager, manager.submit("import_csv", {"path": str(first)}))
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.output_path is None  # nothing rejected: no rejects file
    return manager, products(db)


# ------------------------------------------------------------ strict import, engine
def test_a_failed_strict_import_keeps_every_invalid_row_with_its_reason(
        seeded: tuple[Any, dict[str, Any]], qtbot: Any, db: Any, data_dir: Any,
        tmp_path: Path) -> None:
    manager, before = seeded
    src = tmp_path / "bad.csv"
    bad = write_products(src, ROWS, BAD_EVERY)
    assert len(bad) == 303 > STRICT_EXAMPLES
    strict = {"path": str(src), "table": "products", "mode": "strict"}
    job = wait_final(qtbot, manager, manager.submit("import_csv", strict), timeout=60)

    assert job.status is JobStatus.FAILED and job.error.type == "TaskError"
    assert products(db) == before  # the strict guarantee: nothing written
    report = Path(job.output_path)
    assert report == data_dir.outputs / "bad.rejects.csv"
    assert files_in(data_dir.outputs) == ["bad.rejects.csv"]  # no temporary file beside it
    records = read_rejects(report)
    assert records[0] == ["sku", "name", "price", "stock", "reason"]
    assert [r[0] for r in records[1:]] == list(bad)  # every invalid row, in file order
    for record in records[1:]:
        assert record[4].startswith(bad[record[0]]), record
    message = job.error.message
    assert message.startswith(f"Nothing was imported: 303 of {ROWS:,} rows of bad.csv are "
                              f"invalid and the mode is strict ({bad['R-0000033']}")
    assert message.endswith(f"; and {303 - STRICT_EXAMPLES} more rows); every invalid row "
                            "with its reason is in bad.rejects.csv; fix those rows, or "
                            "import with mode skip_invalid to import the valid rows.")
    assert ".part-" not in message + job.error.traceback

    # the same failure again: the first list stays, the new one is named by its own name
    again = wait_final(qtbot, manager, manager.retry(job.id), timeout=60)
    assert again.status is JobStatus.FAILED
    assert again.output_path == str(data_dir.outputs / "bad (2).rejects.csv")
    assert "every invalid row with its reason is in bad (2).rejects.csv;" in \
        again.error.message
    assert read_rejects(Path(again.output_path)) == records
    assert products(db) == before

    # skip_invalid is as before: it imports the rest and writes the very same list
    skip = wait_final(qtbot, manager, manager.submit("import_csv", {**strict,
                                                                    "mode": "skip_invalid"}),
                      timeout=60)
    assert skip.status is JobStatus.COMPLETED, skip.error
    assert (skip.result["inserted"], skip.result["updated"], skip.result["rejected"]) == \
        (ROWS - 303 - 1, 1, 303)
    assert skip.output_path == skip.result["rejects_path"] == \
        str(data_dir.outputs / "bad (3).rejects.csv")
    assert Path(skip.output_path).read_bytes() == report.read_bytes()
    log = "\n".join(manager.store.log_tail(skip.id, 50))  # the log names where it went
    assert "303 rows rejected; see " + skip.output_path in log and ".part-" not in log

    # the list, fixed, imports again (its reason column is ignored)
    fixed = tmp_path / "fixed.csv"
    with open(fixed, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(records[0])
        for sku, name, price, stock, reason in records[1:]:
            w.writerow([sku, name or "Named now", "2.50" if price == "oops" else price, stock,
                        reason])
    done = wait_final(qtbot, manager, manager.submit("import_csv", {**strict,
                                                                    "path": str(fixed)}))
    assert done.status is JobStatus.COMPLETED, done.error
    assert (done.result["inserted"], done.result["updated"], done.result["rejected"]) == \
        (303, 0, 0)
    assert len(products(db)) == ROWS
    assert ".part-" not in " ".join(files_in(data_dir.outputs))


def _stop_while_validating(manager: Any, qtbot: Any, data_dir: Any, src: Path,
                           stop: str) -> tuple[Any, list[str]]:
    """Run a strict import of ``src`` and cancel it (or kill its worker) as soon as it
    reports checking the file; return the job and the partial files seen then."""
    job_id = manager.submit("import_csv", {"path": str(src), "mode": "strict"})
    seen: list[str] = []

    def on_progress(jid: int, _fraction: Any, message: str) -> None:
        if jid != job_id or not message.startswith("Validating") or seen:
            return
        seen.extend(p.name for p in data_dir.outputs.iterdir())
        if stop == "cancel":
            manager.cancel(job_id)
        else:
            os.kill(manager.pool.pids()[0], signal.SIGKILL)

    manager.jobProgress.connect(on_progress)
    try:
        job = wait_final(qtbot, manager, job_id, timeout=60)
    finally:
        manager.jobProgress.disconnect(on_progress)
    return job, seen


@pytest.mark.parametrize("stop", ["cancel", "kill"])
def test_a_strict_import_stopped_while_checking_keeps_no_rejects_file(
        stop: str, seeded: tuple[Any, dict[str, Any]], qtbot: Any, db: Any, data_dir: Any,
        tmp_path: Path) -> None:
    manager, before = seeded
    src = tmp_path / "big.csv"
    write_products(src, 200_000, bad_every=7)
    job, seen = _stop_while_validating(manager, qtbot, data_dir, src, stop)
    assert seen and all(n.startswith(".big.rejects.csv.part-") for n in seen), seen
    if stop == "cancel":
        assert job.status is JobStatus.CANCELLED
    else:
        assert job.status is JobStatus.FAILED and job.error.type == "WorkerCrashed"
    assert job.output_path is None
    assert files_in(data_dir.outputs) == []
    assert products(db) == before


# -------------------------------------------------------------- the command line
def test_jobs_show_names_the_report_of_a_failed_strict_import(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    bad = write_products(src, 100, bad_every=12)  # 8 invalid rows
    data = tmp_path / "data"
    proc = run_cli(data, "jobs", "submit", "import_csv", "-p", f"path={src}",
                   "-p", "mode=strict", "--wait")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = data / "outputs" / "bad.rejects.csv"
    assert f"  kept: {report}" in proc.stdout.splitlines()  # --wait names it too
    job = json.loads(run_cli(data, "jobs", "show", "1", "--json").stdout)
    assert job["status"] == "failed" and job["output_path"] == str(report)
    assert "every invalid row with its reason is in bad.rejects.csv;" in \
        job["error"]["message"]
    assert [r[0] for r in read_rejects(report)[1:]] == list(bad)
    text = run_cli(data, "jobs", "show", "1").stdout
    assert (f"  output      {report} (kept although the job failed; the error says what it "
            "holds)") in text.splitlines()


# ------------------------------------------------------------------ the rule itself
@pytest.fixture(scope="module")
def probe() -> Iterator[ProbeWorker]:
    worker = ProbeWorker(Path("/nonexistent"))
    yield worker
    worker.close()


@pytest.fixture
def outputs(probe: ProbeWorker, tmp_path: Path) -> Path:
    probe.data_dir = tmp_path
    return tmp_path / "outputs"


def test_a_completed_report_is_kept_when_the_job_fails(probe: ProbeWorker,
                                                       outputs: Path) -> None:
    outcome, _ = probe.run("complete-then-fail")
    assert outcome["status"] == "failed"
    assert outcome["output_path"] == str(outputs / "report.txt")
    assert files_in(outputs) == ["report.txt"]  # the other output is gone
    assert (outputs / "report.txt").read_text("utf-8") == "line 1\nline 2\n"
    # the task named the file by the temporary path it wrote: the error names the final one
    assert outcome["error"]["message"] == \
        f"failed; the details are in report.txt ({outputs / 'report.txt'})"
    assert ".part-" not in outcome["error"]["traceback"]


def test_a_kept_report_never_replaces_a_file_and_is_named_by_where_it_went(
        probe: ProbeWorker, outputs: Path) -> None:
    outputs.mkdir(parents=True)
    (outputs / "report.txt").write_text("someone else's", encoding="utf-8")
    outcome, _ = probe.run("complete-then-error")  # any error, not only a TaskError
    assert outcome["status"] == "failed" and outcome["error"]["type"] == "ValueError"
    assert outcome["output_path"] == str(outputs / "report (2).txt")
    assert outcome["error"]["message"] == "a bug; see report (2).txt"
    assert (outputs / "report.txt").read_text("utf-8") == "someone else's"
    assert files_in(outputs) == ["report (2).txt", "report.txt"]


@pytest.mark.parametrize("how", ["fail-while-writing", "write-after-complete"])
def test_a_report_not_completed_is_deleted_with_the_rest(probe: ProbeWorker, outputs: Path,
                                                         how: str) -> None:
    outcome, messages = probe.run(how)
    assert outcome["status"] == "failed"
    assert "output_path" not in outcome
    assert files_in(outputs) == []
    if how == "write-after-complete":
        assert ("log", "report.txt changed after the job said it was complete; not kept") \
            in messages


def test_a_cancelled_job_keeps_even_a_completed_report(probe: ProbeWorker,
                                                       outputs: Path) -> None:
    outcome, messages = probe.run("complete-then-cancel", cancel_on_log="report complete")
    assert ("log", "report complete") in messages
    assert outcome["status"] == "cancelled" and "output_path" not in outcome
    assert files_in(outputs) == []


def test_a_job_that_succeeds_puts_every_output_in_place(probe: ProbeWorker,
                                                        outputs: Path) -> None:
    outcome, _ = probe.run("complete-then-succeed")
    assert outcome["status"] == "completed"
    assert outcome["output_path"] == str(outputs / "data.bin")  # the report is not primary
    assert outcome["result"] == {"report": str(outputs / "report.txt"),
                                 "data": str(outputs / "data.bin")}
    assert files_in(outputs) == ["data.bin", "report.txt"]
