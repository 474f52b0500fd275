"""CSV import: the corpus of odd files, validation, upserts, strict mode, resuming.

Task bodies run directly with a small fake ``ctx`` (tests/task_context.py) on a
real SQLite database; the crash-and-resume test runs the real engine and kills
its worker process.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final, wait_until
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from task_context import FakeContext

from swifty_desktop.db.models import Customer, Product
from swifty_desktop.jobs.model import JobStatus
from swifty_desktop.tasks.base import JobCancelled, TaskError
from swifty_desktop.tasks.import_csv import (
    SPECS,
    UNDECIDED,
    BatchValidator,
    ImportFileError,
    Invalid,
    NumberStyle,
    import_csv,
    inspect_file,
    parse_count,
    parse_email,
    parse_money,
    validate_row,
)

CORPUS = Path(__file__).parent / "csv_corpus"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))


def rows_of(engine: Any, table: str) -> dict[str, dict[str, Any]]:
    """Every row of products (by sku) or customers (by e-mail), as plain dicts."""
    model, key = (Product, "sku") if table == "products" else (Customer, "email")
    with engine.connect() as conn:
        result = conn.execute(select(model.__table__))
        return {row[key]: dict(row) for row in result.mappings()}


def rejects_reasons(path: str | None, delimiter: str) -> list[str]:
    if path is None:
        return []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.reader(fh, delimiter=delimiter))
    header = records[0]
    at = header.index("reason")
    return [r[at] for r in records[1:]]


def run(engine: Any, data_dir: Any, path: Path | str, table: str = "products",
        mode: str = "skip_invalid", **ctx_kwargs: Any) -> tuple[dict[str, Any], FakeContext]:
    ctx = FakeContext(engine, data_dir, **ctx_kwargs)
    result = import_csv({"path": str(path), "table": table, "mode": mode}, ctx)
    return result, ctx


# ------------------------------------------------------------------- the corpus
def test_every_corpus_file_has_an_expected_outcome() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name not in ("expected.json", "README.md")}
    assert files == set(EXPECTED)
    assert len(files) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name: str, db: Any, data_dir: Any) -> None:
    case = EXPECTED[name]
    table = case.get("table", "products")
    mode = case.get("mode", "skip_invalid")
    if "error" in case:
        ctx = FakeContext(db, data_dir)
        with pytest.raises(TaskError) as info:
            import_csv({"path": str(CORPUS / name), "table": table, "mode": mode}, ctx)
        message = str(info.value)
        assert case["error"] in message
        assert message.startswith("Nothing was imported")
        assert rows_of(db, table) == {}  # failed before anything was written
        # nothing written but a strict import's complete list of its invalid rows
        assert sorted(data_dir.outputs.iterdir()) == ctx.completed
        assert bool(ctx.completed) == ("the mode is strict" in message)
        for path in ctx.completed:
            reasons = rejects_reasons(str(path), ",")
            assert reasons and message.count(reasons[0]) == 1
            assert message.endswith(f"every invalid row with its reason is in {path.name}; "
                                    "fix those rows, or import with mode skip_invalid to "
                                    "import the valid rows.")
        return
    result, ctx = run(db, data_dir, CORPUS / name, table, mode)
    assert result["inserted"] == case["inserted"]
    assert result["updated"] == 0
    assert result["rejected"] == case["rejected"]
    for key in ("encoding", "delimiter", "decimal"):
        if key in case:
            assert result[key] == case[key]
    for warning in case.get("warnings", []):
        assert any(warning in w for w in result["warnings"]), result["warnings"]
    reasons = rejects_reasons(result["rejects_path"], result["delimiter"])
    assert len(reasons) == case["rejected"]
    assert (result["rejects_path"] is None) == (case["rejected"] == 0)
    for expected_reason, reason in zip(case.get("reasons", []), reasons, strict=False):
        assert expected_reason in reason
    stored = rows_of(db, table)
    assert len(stored) == case["inserted"]
    for key, values in case.get("stored", {}).items():
        for column, value in values.items():
            assert stored[key][column] == value, (key, column)


def test_a_missing_file_fails_with_one_sentence(db: Any, data_dir: Any, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"the file .*nope\.csv does not exist; check its "
                                              r"name and folder"):
        run(db, data_dir, tmp_path / "nope.csv")
    with pytest.raises(ImportFileError, match="is a folder, not a file"):
        run(db, data_dir, tmp_path)


def test_rejects_keep_the_original_values_and_are_formula_safe(db: Any, data_dir: Any,
                                                                tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("sku;name;price\n  P-1 ;=cmd|' /C calc'!A0;abc\nP-2;Fine;1,00\n",
                   encoding="utf-8")
    result, _ = run(db, data_dir, src)
    assert (result["inserted"], result["rejected"]) == (1, 1)
    assert Path(result["rejects_path"]).name == "in.rejects.csv"
    raw = Path(result["rejects_path"]).read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    records = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert records[0] == ["sku", "name", "price", "reason"]
    assert records[1][:3] == ["  P-1 ", "'=cmd|' /C calc'!A0", "abc"]  # as read, made inert
    assert records[1][3] == "row 2, column price: 'abc' is not an amount (write digits, " \
                            "e.g. 12.50)"
    # the rejects file, fixed, imports back: the guard apostrophe is removed again
    fixed = raw.decode("utf-8-sig").replace("abc", "2,50")
    src.write_text(fixed, encoding="utf-8")
    again, _ = run(db, data_dir, src)
    assert (again["inserted"], again["rejected"]) == (1, 0)
    assert rows_of(db, "products")["P-1"]["name"] == "=cmd|' /C calc'!A0"


# ---------------------------------------------------------------------- values
COMMA = NumberStyle(",", "the file writes decimal commas elsewhere")
POINT = NumberStyle(".", "the file writes decimal points elsewhere")


@pytest.mark.parametrize("raw,cents", [
    ("12", 1200), ("12.5", 1250), ("0.29", 29), ("12,50", 1250), ("1.234,56", 123456),
    ("1,234.56", 123456), ("1 234,5", 123450), ("€ 12,50", 1250), ("12.50 €", 1250),
    ("1.234.567", 123456700), ("1,234,567.8", 123456780), ("1'234.50", 123450),
    ("0,12", 12), ("1234,5", 123450),
    ("-0", 0), ("+3", 300), ("99999999999.99", 9999999999999),
])
def test_money_that_shows_its_decimal_separator_is_read_exactly(raw: str, cents: int) -> None:
    # whatever the file's decimal separator: these values show it by themselves
    for numbers in (UNDECIDED, COMMA, POINT):
        assert parse_money(raw, numbers) == cents


@pytest.mark.parametrize("raw,numbers,expected", [
    ("1,234", POINT, 123400), ("1.234", COMMA, 123400),
    ("1,234", COMMA, "more than 2 decimal places: the comma is read as the decimal separator"),
    ("1.234", POINT, "more than 2 decimal places: the point is read as the decimal separator"),
    ("1,234", UNDECIDED, "'1,234': the comma could be a thousands separator or the decimal "
                         "comma, and nothing else in the file shows"),
    ("€ 999.000", UNDECIDED, "the point could be a thousands separator"),
])
def test_a_lone_separator_before_three_digits_follows_the_file(raw: str, numbers: NumberStyle,
                                                               expected: Any) -> None:
    if isinstance(expected, int):
        assert parse_money(raw, numbers) == expected
    else:
        with pytest.raises(Invalid, match=re.escape(expected)):
            parse_money(raw, numbers)


@pytest.mark.parametrize("raw,problem", [
    ("-1", "is negative"), ("1.005", "more than 2 decimal places"), ("abc", "not an amount"),
    ("1e3", "not an amount"), ("12.34.56", "not an amount"), ("١٢", "not an amount"),
    ("123456789012", "too large"), ("12.34,5", "not an amount"), (",5", "not an amount"),
])
def test_bad_money_says_why(raw: str, problem: str) -> None:
    with pytest.raises(Invalid, match=problem):
        parse_money(raw, POINT)


def test_counts_and_emails() -> None:
    assert [parse_count(v) for v in ("7", "1 000", "12.0", "12,00", "1.000,0", "-0")] == \
        [7, 1000, 12, 12, 1000, 0]
    assert parse_count("1,000", POINT) == parse_count("1.000", COMMA) == 1000
    for raw, numbers, problem in (
            ("2.5", POINT, "not a whole number"), ("-3", POINT, "is negative"),
            ("²", POINT, "not a whole number"), ("99999999999", POINT, "too large"),
            ("€5", POINT, "not a whole number"),
            # '1,000' as 1 would be a thousand times off: never read a count that way
            ("1,000", COMMA, "is not a whole number: the comma is read as the decimal "
                             "separator, as the file writes decimal commas elsewhere; write "
                             "whole numbers without separators (such as 1000)"),
            ("1.000", UNDECIDED, "the point could be a thousands separator or the decimal "
                                 "point")):
        with pytest.raises(Invalid, match=re.escape(problem)):
            parse_count(raw, numbers)
    assert parse_email("Anna.Muller+shop@Example.COM") == "anna.muller+shop@example.com"
    for bad in ("a@b", "a@@b.com", "a b@c.de", ".a@b.de", "a..b@c.de", "a@b.c", "x" * 65 + "@a.de"):
        with pytest.raises(Invalid, match="not a valid e-mail address"):
            parse_email(bad)


# ----------------------------------------------------------- upserts and modes
def test_second_import_updates_by_key_and_keeps_what_the_file_leaves_empty(
        db: Any, data_dir: Any, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text("sku,name,price,category,stock\nA-1,Alpha,1.00,Tools,5\n"
                     "A-2,Beta,2.00,Tools,6\n", encoding="utf-8")
    run(db, data_dir, first)
    before = rows_of(db, "products")
    second = tmp_path / "second.csv"
    second.write_text("SKU,Name,Price,Category\nA-1,Alpha v2,1.50,\nA-3,Gamma,3.00,\n",
                      encoding="utf-8")
    result, _ = run(db, data_dir, second)
    assert (result["inserted"], result["updated"]) == (1, 1)
    after = rows_of(db, "products")
    assert after["A-1"]["name"] == "Alpha v2" and after["A-1"]["price_cents"] == 150
    assert after["A-1"]["category"] == "Tools"  # empty cell: unchanged
    assert after["A-1"]["stock"] == 5  # column absent: unchanged
    assert after["A-1"]["updated_at"] > before["A-1"]["updated_at"]
    assert after["A-2"] == before["A-2"]  # not in the file: untouched
    assert after["A-3"]["stock"] == 0 and after["A-3"]["currency"] == "EUR"  # defaults


def test_strict_mode_writes_nothing_when_one_row_is_bad(db: Any, data_dir: Any,
                                                        tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    src.write_text("sku,name,price\nA-1,Alpha,1.00\n", encoding="utf-8")
    run(db, data_dir, src)
    before = rows_of(db, "products")
    lines = "".join(f"B-{i},Name {i},{i}.00\n" for i in range(1, 6000))
    src.write_text("sku,name,price\nA-1,Changed,9.00\n" + lines + "B-77,Dup,1.00\n",
                   encoding="utf-8")
    with pytest.raises(TaskError, match=r"1 of 6,001 rows of s\.csv is invalid and the mode "
                                        r"is strict \(row 6002, column sku: 'B-77' appears "
                                        r"again \(first on row 79\)\);"):
        run(db, data_dir, src, mode="strict")
    assert rows_of(db, "products") == before
    # the same file without the bad row goes in whole
    src.write_text("sku,name,price\nA-1,Changed,9.00\n" + lines, encoding="utf-8")
    result, _ = run(db, data_dir, src, mode="strict")
    assert (result["inserted"], result["updated"], result["rejected"]) == (5999, 1, 0)


def test_an_existing_demo_catalog_is_updated_from_its_own_export(db: Any, data_dir: Any) -> None:
    from swifty_desktop.demo.seed import seed
    from swifty_desktop.tasks.export import export

    seed(db, "small")
    before = rows_of(db, "products")
    exported = export({"table": "products", "format": "csv"}, FakeContext(db, data_dir))
    result, _ = run(db, data_dir, exported["path"])
    assert (result["inserted"], result["updated"], result["rejected"]) == (0, 200, 0)
    after = rows_of(db, "products")
    for sku, row in before.items():
        assert {k: v for k, v in after[sku].items() if k != "updated_at"} == \
            {k: v for k, v in row.items() if k != "updated_at"}


# --------------------------------------------------------------------- resuming
class StopAfter(FakeContext):
    """Cancels at the first check after ``n`` checkpoints (a stop between chunks)."""

    def __init__(self, *args: Any, n: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n = n

    def check_cancelled(self) -> None:
        if len(self.checkpoints) >= self.n:
            raise JobCancelled("cancelled")


def big_file(path: Path, n: int, bad_every: int = 0) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sku", "name", "price", "stock"])
        for i in range(1, n + 1):
            price = "oops" if bad_every and i % bad_every == 0 else f"{i % 500}.{i % 100:02d}"
            w.writerow([f"R-{i:07d}", f"Product número {i}", price, i % 50])


def test_an_interrupted_import_resumes_after_its_last_chunk(db: Any, data_dir: Any,
                                                            tmp_path: Path) -> None:
    src = tmp_path / "big.csv"
    big_file(src, 20000, bad_every=997)
    stopped = StopAfter(db, data_dir, n=2)
    with pytest.raises(JobCancelled):
        import_csv({"path": str(src), "table": "products"}, stopped)
    saved = stopped.checkpoints[-1]
    count = len(rows_of(db, "products"))
    assert 0 < saved["inserted"] == count < 20000  # whole chunks only
    assert any("Stopped after row" in line for line in stopped.lines)
    result, ctx = run(db, data_dir, src, resume_state=json.loads(json.dumps(saved)))
    assert result["resumed_after_row"] == saved["records"]
    bad = 20000 // 997
    assert result["inserted"] == 20000 - bad and result["updated"] == 0
    assert result["rejected"] == bad  # rejects from before the stop are in the file too
    assert len(rejects_reasons(result["rejects_path"], ",")) == bad
    assert len(rows_of(db, "products")) == 20000 - bad


def test_a_changed_file_is_imported_from_the_start(db: Any, data_dir: Any,
                                                   tmp_path: Path) -> None:
    src = tmp_path / "f.csv"
    big_file(src, 8000)
    stopped = StopAfter(db, data_dir, n=1)
    with pytest.raises(JobCancelled):
        import_csv({"path": str(src), "table": "products"}, stopped)
    big_file(src, 8001)
    result, ctx = run(db, data_dir, src, resume_state=stopped.checkpoints[-1])
    assert result["resumed_after_row"] == 0
    assert any("changed since the interrupted attempt" in line for line in ctx.lines)
    assert result["inserted"] + result["updated"] == 8001
    assert len(rows_of(db, "products")) == 8001


def test_killed_worker_leaves_whole_chunks_and_the_retry_resumes(
        make_manager: Any, qtbot: Any, db: Any, tmp_path: Path) -> None:
    n = 100_000
    src = tmp_path / "many.csv"
    big_file(src, n)
    manager = make_manager(workers=1)
    job_id = manager.submit("import_csv", {"path": str(src), "table": "products"})
    saved = wait_until(qtbot, lambda: manager.store.get(job_id).checkpoint, timeout=60,
                       message="the first committed chunk")
    (pid,) = manager.pool.pids()
    os.kill(pid, signal.SIGKILL)  # the hard way, possibly in the middle of a transaction
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.FAILED and job.error.type == "WorkerCrashed"
    with db.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Product)).scalar_one()
    saved = manager.store.get(job_id).checkpoint
    assert saved["records"] > 1 and count == saved["inserted"] < n  # never half a chunk
    retry = wait_final(qtbot, manager, manager.retry(job_id), timeout=120)
    assert retry.status is JobStatus.COMPLETED, retry.error
    assert retry.result["resumed_after_row"] == saved["records"]
    assert retry.result["inserted"] == n and retry.result["rejected"] == 0
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Product)).scalar_one() == n
        assert conn.execute(text("SELECT count(DISTINCT sku) FROM products")).scalar_one() == n


class CancelWhileWriting(FakeContext):
    """Cancels at the first check after the write pass reported a batch written."""

    def check_cancelled(self) -> None:
        if any(m.startswith("Importing") for _, m in self.progress_calls):
            raise JobCancelled("cancelled")


def test_a_strict_import_cancelled_while_writing_leaves_the_database_as_it_was(
        db: Any, data_dir: Any, tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    src.write_text("sku,name,price\nR-0000001,Before,1.00\n", encoding="utf-8")
    run(db, data_dir, src)
    before = rows_of(db, "products")
    big_file(src, 12000)  # R-0000001 again (an update), and 11,999 new rows
    ctx = CancelWhileWriting(db, data_dir)
    with pytest.raises(JobCancelled) as info:
        import_csv({"path": str(src), "table": "products", "mode": "strict"}, ctx)
    assert any(m.startswith("Importing") for _, m in ctx.progress_calls)  # it was writing
    assert rows_of(db, "products") == before
    assert ctx.checkpoints == []  # nothing to resume: nothing was kept
    assert str(info.value) == ("Cancelled: nothing was imported, as a strict import writes "
                               "every row or none; retry the job to import the file.")


def test_a_cancelled_import_says_how_many_rows_stay(db: Any, data_dir: Any,
                                                    tmp_path: Path) -> None:
    src = tmp_path / "big.csv"
    big_file(src, 20000)
    stopped = StopAfter(db, data_dir, n=2)
    with pytest.raises(JobCancelled) as info:
        import_csv({"path": str(src), "table": "products"}, stopped)
    saved = stopped.checkpoints[-1]
    assert len(rows_of(db, "products")) == saved["inserted"] > 0
    assert str(info.value) == (
        f"Cancelled after row {saved['records']:,}: {saved['inserted']:,} new and 0 updated "
        f"products are imported and stay; retry the job to import the rest (it goes on "
        f"after row {saved['records']:,}).")
    early = StopAfter(db, data_dir, n=0)
    with pytest.raises(JobCancelled, match=r"^Cancelled before any row was imported: the "
                                           r"database is unchanged"):
        import_csv({"path": str(src), "table": "products"}, early)


def test_customers_are_matched_by_e_mail_in_any_case(db: Any, data_dir: Any,
                                                     tmp_path: Path) -> None:
    from sqlalchemy import insert

    from swifty_desktop.db.engine import write_transaction

    with write_transaction(db) as conn:  # as another program (a shop sync) may store it
        conn.execute(insert(Customer), [{"email": "Anna@X.com", "name": "Anna",
                                         "country": "DE", "created_at": dt.datetime(2025, 1, 1)}])
    src = tmp_path / "c.csv"
    src.write_text("email,name\nanna@x.com,Anna Schmidt\nBEN@y.org,Ben\n", encoding="utf-8")
    result, _ = run(db, data_dir, src, "customers")
    assert (result["inserted"], result["updated"], result["rejected"]) == (1, 1, 0)
    stored = rows_of(db, "customers")
    assert set(stored) == {"Anna@X.com", "ben@y.org"}  # updated, not duplicated
    assert stored["Anna@X.com"]["name"] == "Anna Schmidt"
    assert stored["Anna@X.com"]["country"] == "DE"  # not in the file: kept
    strict, _ = run(db, data_dir, src, "customers", mode="strict")
    assert (strict["inserted"], strict["updated"]) == (0, 2)
    assert len(rows_of(db, "customers")) == 2


def test_blank_lines_before_the_header_beyond_the_first_64_kb(db: Any, data_dir: Any,
                                                               tmp_path: Path) -> None:
    blank = "   \r\n" * 20000  # 100 KB of nothing
    src = tmp_path / "late.csv"
    src.write_text(blank + "sku,name,price\nL-1,Late,1.50\n", encoding="utf-8", newline="")
    result, _ = run(db, data_dir, src)
    assert (result["inserted"], result["rejected"]) == (1, 0)
    assert rows_of(db, "products")["L-1"]["price_cents"] == 150
    bad = tmp_path / "late_bad.csv"  # row numbers in reasons count the blank lines
    bad.write_text(blank + "sku,name,price\nL-2,Late,abc\n", encoding="utf-8", newline="")
    result, _ = run(db, data_dir, bad)
    assert rejects_reasons(result["rejects_path"], ",")[0].startswith("row 20002, column price")
    empty = tmp_path / "blank.csv"
    empty.write_text(blank * 2, encoding="utf-8", newline="")
    with pytest.raises(ImportFileError, match="blank.csv is empty"):
        run(db, data_dir, empty)


def test_a_file_of_other_columns_fails_with_one_sentence(db: Any, data_dir: Any) -> None:
    with pytest.raises(ImportFileError) as info:
        run(db, data_dir, CORPUS / "not_a_products_file.csv")
    message = str(info.value)
    assert message.startswith("Nothing was imported: not_a_products_file.csv does not look "
                              "like a products file, as its first row (")
    assert message.endswith("; choose the right file, or add a header row naming at least "
                            "sku and name and price.")
    assert not re.search(r"[.!?]\s+[A-Z]", message), message  # one sentence


def test_a_strict_import_is_all_or_nothing_in_the_engine(make_manager: Any, qtbot: Any,
                                                         db: Any, tmp_path: Path) -> None:
    n = 200_000
    src = tmp_path / "strict.csv"
    src.write_text("sku,name,price\nR-0000001,Before,1.00\n", encoding="utf-8")
    manager = make_manager(workers=1)
    assert wait_final(qtbot, manager, manager.submit(
        "import_csv", {"path": str(src), "table": "products"})).status is JobStatus.COMPLETED
    before = rows_of(db, "products")
    big_file(src, n)
    params = {"path": str(src), "table": "products", "mode": "strict"}
    # cancelled while it checks the file: nothing written
    job_id = manager.submit("import_csv", params)
    wait_until(qtbot, lambda: (manager.store.get(job_id).message or "").startswith(
        "Validating"), timeout=60, message="the checking pass")
    manager.cancel(job_id)
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.message.startswith((  # the cancel may reach it as its write pass begins
        "Cancelled before any row was imported: the database is unchanged",
        "Cancelled: nothing was imported, as a strict import writes every row or none"))
    assert rows_of(db, "products") == before
    # killed in the middle of its write pass (rows written, not committed): nothing stays.
    # The runner cannot save progress while the import holds the write lock, so the
    # kill follows the progress signal, which comes first.
    retry_id = manager.retry(job_id)
    killed: list[str] = []

    def kill_when_writing(jid: int, _fraction: Any, message: str) -> None:
        if jid == retry_id and message.startswith("Importing") and not killed:
            killed.append(message)
            os.kill(manager.pool.pids()[0], signal.SIGKILL)

    manager.jobProgress.connect(kill_when_writing)
    job = wait_final(qtbot, manager, retry_id, timeout=60)
    manager.jobProgress.disconnect(kill_when_writing)
    assert killed, "no progress from the write pass"
    written = re.match(r"Importing products: row ([\d,]+) of ([\d,]+), in one transaction",
                       killed[0])
    assert written and int(written[1].replace(",", "")) < n + 1 == int(written[2].replace(",", ""))
    assert job.status is JobStatus.FAILED and job.error.type == "WorkerCrashed"
    assert rows_of(db, "products") == before
    # and a retry imports the whole file
    done = wait_final(qtbot, manager, manager.retry(retry_id), timeout=120)
    assert done.status is JobStatus.COMPLETED, done.error
    assert (done.result["inserted"], done.result["updated"]) == (n - 1, 1)
    assert done.result["resumed_after_row"] == 0
    assert len(rows_of(db, "products")) == n


def test_a_cancelled_import_keeps_its_rows_and_the_retry_goes_on(make_manager: Any,
                                                                 qtbot: Any, db: Any,
                                                                 tmp_path: Path) -> None:
    n = 100_000
    src = tmp_path / "many.csv"
    big_file(src, n)
    manager = make_manager(workers=1)
    job_id = manager.submit("import_csv", {"path": str(src), "table": "products"})
    wait_until(qtbot, lambda: manager.store.get(job_id).checkpoint, timeout=60,
               message="the first committed chunk")
    manager.cancel(job_id)
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.CANCELLED
    saved = job.checkpoint
    kept = len(rows_of(db, "products"))
    assert kept == saved["inserted"] < n
    assert job.message == (
        f"Cancelled after row {saved['records']:,}: {kept:,} new and 0 updated products are "
        f"imported and stay; retry the job to import the rest (it goes on after row "
        f"{saved['records']:,}).")
    retry = wait_final(qtbot, manager, manager.retry(job_id), timeout=120)
    assert retry.status is JobStatus.COMPLETED, retry.error
    assert retry.result["resumed_after_row"] == saved["records"]
    assert retry.result["inserted"] == n
    assert len(rows_of(db, "products")) == n


# ------------------------------------------------------------------ hypothesis
CELLS = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["", " ", "12.50", "12,50", "-1", "1.005", "EUR", "eur", "XYZ", "=1+2",
                     "'=x", '"', '""', "\n", "\r\n", ";", ",", "\t", "1e9", "active",
                     "x" * 70, "²", "١٢", "a@b.de", "Anna@Example.com", "yes", "0", "\x00",
                     "\ufeff", "de", "DE"]),
)
EXTRA_COLUMNS = ["stock", "currency", "status", "category", "supplier", "country",
                 "opted_in", "notes", "", "id", "price", "sku", "email"]
SPELLINGS = {"sku": ["sku", "SKU ", " Item code"], "name": ["name", "Product Name", "NAME"],
             "price": ["price", "Unit Price"], "email": ["email", "E-mail"]}


@st.composite
def headers(draw: Any, table: str) -> list[str]:
    """Usually the table's required columns (spelt in various ways) plus extras;
    sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.lists(st.sampled_from(EXTRA_COLUMNS), min_size=1, max_size=6))
    required = ["sku", "name", "price"] if table == "products" else ["email", "name"]
    cols = [draw(st.sampled_from(SPELLINGS[c])) for c in required]
    cols += draw(st.lists(st.sampled_from(EXTRA_COLUMNS), max_size=4))
    return draw(st.permutations(cols))


@st.composite
def generated_files(draw: Any) -> tuple[str, list[str], list[list[str]]]:
    table = draw(st.sampled_from(["products", "customers"]))
    header = draw(headers(table))
    rows = draw(st.lists(st.lists(CELLS, max_size=len(header) + 1), max_size=12))
    return table, header, rows


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=generated_files(), delimiter=st.sampled_from([",", ";", "\t", "|"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]),
       quoted=st.booleans(),
       mode=st.sampled_from(["skip_invalid", "skip_invalid", "skip_invalid", "strict"]))
def test_generated_files_never_crash_the_importer(db: Any, data_dir: Any, tmp_path: Path,
                                                  case: tuple[str, list[str], list[list[str]]],
                                                  delimiter: str, encoding: str, quoted: bool,
                                                  mode: str) -> None:
    table, header, rows = case
    buf = io.StringIO(newline="")
    if quoted:
        csv.writer(buf, delimiter=delimiter).writerows([header, *rows])
    else:  # written naively: stray quotes, delimiters inside values...
        buf.write("".join(delimiter.join(r) + "\n" for r in [header, *rows]))
    try:
        data = buf.getvalue().encode(encoding)
    except UnicodeEncodeError:
        data = buf.getvalue().encode("utf-8")
    path = tmp_path / "generated.csv"
    path.write_bytes(data)
    try:
        result, _ = run(db, data_dir, path, table, mode)
    except TaskError as exc:  # the file cannot be an import, or strict found a bad row
        assert str(exc).startswith("Nothing was imported")
        event("refused")
        return
    event("imported")
    assert result["inserted"] + result["updated"] + result["rejected"] == result["rows"]
    if result["rejected"]:
        assert len(rejects_reasons(result["rejects_path"], result["delimiter"])) == \
            result["rejected"]


VALUES = st.one_of(
    st.sampled_from(["", " ", "12", "12.5", "12,50", "1.234,56", "-1", "-0", "1.005", "abc",
                     "EUR", "eur", "usd", "XXX", "active", "Discontinued", "sold", "7",
                     "1,000", "2.5", "²", "'=1", "'x", "O'Brien", "a\x07b", "line\nbreak",
                     "x" * 65, "x" * 201, "ok@example.com", "Bad@", "yes", "No", "maybe",
                     "de", "DEU", "=SUM(A1)", "1,234", "1.000", "12,000", "''=x", "' y ",
                     "-bob@example.com", "'-bob@example.com"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(table=st.sampled_from(["products", "customers"]),
       records=st.lists(st.lists(VALUES, min_size=8, max_size=8), min_size=1, max_size=20),
       numbers=st.sampled_from([UNDECIDED, COMMA, POINT]))
def test_column_fast_paths_agree_with_the_one_by_one_parsers(table: str,
                                                             records: list[list[str]],
                                                             numbers: NumberStyle) -> None:
    spec = SPECS[table]
    fmt = _format_for(spec)
    rows = list(range(2, 2 + len(records)))
    fast_cols, fast_problems = BatchValidator(spec, fmt, numbers=numbers)(
        rows, [list(r) for r in records])
    slow_cols, slow_problems = BatchValidator(spec, fmt, fast=False, numbers=numbers)(
        rows, [list(r) for r in records])
    assert fast_problems == slow_problems
    for i, record in enumerate(records):
        values, problems = validate_row(spec, fmt, rows[i], record, numbers)
        assert problems == slow_problems.get(i, [])
        if values is not None:
            assert tuple(col[i] for col in fast_cols) == values


def _format_for(spec: Any) -> Any:
    """A FileFormat whose header is exactly the table's fields, in order."""
    from swifty_desktop.tasks.import_csv import FileFormat

    names = [f.name for f in spec.fields]
    return FileFormat(path=Path("x.csv"), size=0, encoding="utf-8", encoding_label="UTF-8",
                      delimiter=",", sep_line=False, header=names, header_row=1,
                      mapping={n: i for i, n in enumerate(names)}, ignored=[], read_only=[],
                      fingerprint={})


def test_inspect_picks_the_delimiter_that_names_the_most_columns(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    src.write_text("name;price;sku;note, with a comma\nA;1,5;S;x, y\n", encoding="utf-8")
    fmt = inspect_file(src, SPECS["products"])
    assert fmt.delimiter == ";" and fmt.mapping == {"name": 0, "price": 1, "sku": 2}
    assert fmt.ignored == ["note, with a comma"]
