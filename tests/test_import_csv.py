"""CSV import: the corpus of odd files, validation, upserts, strict mode, resuming.

Task bodies run directly with a small fake ``ctx`` (tests/task_context.py) on a
real SQLite database; the crash-and-resume test runs the real engine and kills
its worker process.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
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
    BatchValidator,
    ImportFileError,
    Invalid,
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
        with pytest.raises(TaskError) as info:
            run(db, data_dir, CORPUS / name, table, mode)
        message = str(info.value)
        assert case["error"] in message
        assert message.startswith("Nothing was imported")
        assert rows_of(db, table) == {}  # failed before anything was written
        assert list(data_dir.outputs.iterdir()) == []
        return
    result, ctx = run(db, data_dir, CORPUS / name, table, mode)
    assert result["inserted"] == case["inserted"]
    assert result["updated"] == 0
    assert result["rejected"] == case["rejected"]
    for key in ("encoding", "delimiter"):
        if key in case:
            assert result[key] == case[key]
    for warning in case.get("warnings", []):
        assert any(warning in w for w in result["warnings"]), result["warnings"]
    reasons = rejects_reasons(result["rejects_path"], result["delimiter"])
    assert len(reasons) == case["rejected"]
    assert (result["rejects_path"] is None) == (case["rejected"] == 0)
    for expected_reason, reason in zip(case.get("reasons", []), reasons):
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
@pytest.mark.parametrize("raw,cents", [
    ("12", 1200), ("12.5", 1250), ("0.29", 29), ("12,50", 1250), ("1.234,56", 123456),
    ("1,234.56", 123456), ("1 234,5", 123450), ("€ 12,50", 1250), ("12.50 €", 1250),
    ("1,234", 123400), ("-0", 0), ("+3", 300), ("99999999999.99", 9999999999999),
])
def test_money_is_read_exactly(raw: str, cents: int) -> None:
    assert parse_money(raw) == cents


@pytest.mark.parametrize("raw,problem", [
    ("-1", "is negative"), ("1.005", "more than 2 decimal places"), ("abc", "not an amount"),
    ("1e3", "not an amount"), ("12.34.56", "not an amount"), ("١٢", "not an amount"),
    ("123456789012", "too large"),
])
def test_bad_money_says_why(raw: str, problem: str) -> None:
    with pytest.raises(Invalid, match=problem):
        parse_money(raw)


def test_counts_and_emails() -> None:
    assert [parse_count(v) for v in ("7", "1,000", "1.000", "12.0", "-0")] == [7, 1000, 1000,
                                                                                12, 0]
    for raw, problem in (("2.5", "not a whole number"), ("-3", "is negative"),
                         ("²", "not a whole number"), ("99999999999", "too large")):
        with pytest.raises(Invalid, match=problem):
            parse_count(raw)
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
                     "de", "DEU", "=SUM(A1)"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(table=st.sampled_from(["products", "customers"]),
       records=st.lists(st.lists(VALUES, min_size=8, max_size=8), min_size=1, max_size=20))
def test_column_fast_paths_agree_with_the_one_by_one_parsers(table: str,
                                                             records: list[list[str]]) -> None:
    spec = SPECS[table]
    fmt = _format_for(spec)
    rows = list(range(2, 2 + len(records)))
    fast_cols, fast_problems = BatchValidator(spec, fmt)(rows, [list(r) for r in records])
    slow_cols, slow_problems = BatchValidator(spec, fmt, fast=False)(rows,
                                                                     [list(r) for r in records])
    assert fast_problems == slow_problems
    for i, record in enumerate(records):
        values, problems = validate_row(spec, fmt, rows[i], record)
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
