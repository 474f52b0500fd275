"""Export: XLSX and CSV read back with independent readers (openpyxl, the csv module)."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import os
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from conftest import wait_final, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select
from task_context import FakeContext

from swifty_desktop.db.engine import write_transaction
from swifty_desktop.db.models import Customer, Order, Product
from swifty_desktop.demo.seed import TRICKY_CUSTOMERS, TRICKY_PRODUCT, seed
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.tasks.base import JobCancelled, TaskError
from swifty_desktop.tasks.export import COLUMNS, FORMULA_TRIGGERS, csv_safe, export
from swifty_desktop.tasks.import_csv import import_csv


@pytest.fixture
def demo(db: Any) -> Any:
    seed(db, "small")
    return db


def do_export(engine: Any, data_dir: Any, table: str, fmt: str, **params: Any
              ) -> tuple[dict[str, Any], FakeContext]:
    ctx = FakeContext(engine, data_dir)
    return export({"table": table, "format": fmt, **params}, ctx), ctx


def test_xlsx_has_a_bold_frozen_filtered_header_and_real_formats(demo: Any,
                                                                  data_dir: Any) -> None:
    result, ctx = do_export(demo, data_dir, "products", "xlsx")
    assert result["rows"] == 200
    path = Path(result["path"])
    assert path.parent == data_dir.outputs and path.name.startswith("products_")
    wb = openpyxl.load_workbook(path)
    ws = wb["Products"]
    assert [c.value for c in ws[1]] == [c.label for c in COLUMNS["products"]]
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:I201"
    assert ws.column_dimensions["B"].width == 42
    assert ws.max_row == 201
    with demo.connect() as conn:
        first = conn.execute(select(Product.__table__).order_by(Product.id).limit(1)) \
            .mappings().one()
    row = [c for c in ws[2]]
    assert row[0].value == first["sku"]
    price = row[3]
    assert isinstance(price.value, float) and round(price.value * 100) == first["price_cents"]
    assert price.number_format == f'#,##0.00 "{first["currency"]}"'
    assert row[5].value == first["stock"] and row[5].number_format == "#,##0"
    assert isinstance(row[8].value, dt.datetime) and row[8].is_date
    assert row[8].value == first["updated_at"].replace(microsecond=0)
    names = [ws.cell(r, 2).value for r in range(2, 202)]
    assert TRICKY_PRODUCT in names
    assert ctx.progress_calls[-1][0] == 1.0 and "200 of 200" in ctx.progress_calls[-1][1]


def test_xlsx_never_writes_a_formula(demo: Any, data_dir: Any) -> None:
    result, _ = do_export(demo, data_dir, "customers", "xlsx")
    wb = openpyxl.load_workbook(result["path"])
    ws = wb.active
    cells = {ws.cell(r, 2).value: ws.cell(r, 2) for r in range(2, ws.max_row + 1)}
    for name in TRICKY_CUSTOMERS:
        cell = cells[name]
        assert cell.data_type == "s", name  # stored as text, shown as written
    assert cells[TRICKY_CUSTOMERS[0]].quotePrefix
    # nothing in the sheet's XML is a formula element
    import zipfile

    with zipfile.ZipFile(result["path"]) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml").decode("utf-8")
    assert "<f>" not in sheet and "<f " not in sheet
    assert "HYPERLINK" in sheet


def test_xlsx_orders_have_date_and_money_cells(demo: Any, data_dir: Any) -> None:
    result, _ = do_export(demo, data_dir, "orders", "xlsx")
    assert result["rows"] == 600
    ws = openpyxl.load_workbook(result["path"]).active
    header = [c.value for c in ws[1]]
    assert header[:3] == ["Number", "Order date", "Customer e-mail"]
    date_cell, total = ws.cell(2, 2), ws.cell(2, 7)
    assert type(date_cell.value) in (dt.date, dt.datetime) and date_cell.is_date
    assert date_cell.number_format == "yyyy-mm-dd"
    assert isinstance(total.value, (int, float)) and total.number_format.startswith("#,##0.00")
    with demo.connect() as conn:
        totals = sorted(conn.execute(select(Order.total_cents)).scalars())
    assert sorted(round(ws.cell(r, 7).value * 100) for r in range(2, 602)) == totals


def test_csv_is_utf8_with_bom_and_the_columns_the_import_reads(demo: Any,
                                                               data_dir: Any) -> None:
    result, _ = do_export(demo, data_dir, "customers", "csv")
    raw = Path(result["path"]).read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    assert b"\r\n" in raw
    records = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert records[0] == ["email", "name", "country", "opted_in", "created_at"]
    assert len(records) == 121
    by_email = {r[0]: r for r in records[1:]}
    with demo.connect() as conn:
        people = conn.execute(select(Customer.__table__)).mappings().all()
    for person in people:
        row = by_email[person["email"]]
        assert row[3] == ("yes" if person["opted_in"] else "no")
        name = person["name"]
        expected = name if name[0] not in "=+-@" else "'" + name
        assert row[1] == expected  # formula-like text is made inert
    assert any("ü" in r[1] or "ø" in r[1] or "é" in r[1] for r in records[1:])


@pytest.mark.parametrize("table", ["products", "customers"])
def test_export_then_import_round_trips(table: str, demo: Any, data_dir: Any,
                                        tmp_path: Path) -> None:
    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.paths import DataDir

    result, _ = do_export(demo, data_dir, table, "csv")
    other_dir = DataDir(tmp_path / "other").ensure()
    other = open_database(other_dir)
    try:
        imported = import_csv({"path": result["path"], "table": table},
                              FakeContext(other, other_dir))
        assert (imported["inserted"], imported["rejected"]) == (result["rows"], 0)
        model = Product if table == "products" else Customer
        skip = {"id", "updated_at", "created_at"}

        def dump(engine: Any) -> list[dict[str, Any]]:
            with engine.connect() as conn:
                return sorted(({k: v for k, v in r.items() if k not in skip}
                               for r in conn.execute(select(model.__table__)).mappings()),
                              key=lambda r: str(sorted(r.items())))

        assert dump(other) == dump(demo)
    finally:
        other.dispose()


def test_control_characters_do_not_break_the_workbook(db: Any, data_dir: Any) -> None:
    with write_transaction(db) as conn:
        conn.execute(insert(Product), [{"sku": "C-1", "name": "Bell\x07 and\x00 null",
                                        "updated_at": dt.datetime(2026, 1, 1)}])
    result, _ = do_export(db, data_dir, "products", "xlsx")
    ws = openpyxl.load_workbook(result["path"]).active
    assert ws.cell(2, 2).value == "Bell\ufffd and\ufffd null"


def test_a_chosen_path_and_a_wrong_extension(demo: Any, data_dir: Any, tmp_path: Path) -> None:
    target = tmp_path / "mine" / "catalog"
    result, _ = do_export(demo, data_dir, "products", "csv", path=str(target))
    assert result["path"] == str(target) + ".csv" and Path(result["path"]).is_file()
    with pytest.raises(TaskError, match=r"the file name 'x\.csv' ends in \.csv but the format "
                                        r"chosen is xlsx; choose a name ending in \.xlsx"):
        do_export(demo, data_dir, "products", "xlsx", path=str(tmp_path / "x.csv"))


def test_export_honours_cancel(demo: Any, data_dir: Any) -> None:
    ctx = FakeContext(demo, data_dir, cancel_after=0)
    with pytest.raises(JobCancelled):
        export({"table": "orders", "format": "csv"}, ctx)


def test_export_runs_in_the_engine_and_its_file_lands_in_outputs(make_manager: Any, qtbot: Any,
                                                                 demo: Any, data_dir: Any) -> None:
    manager = make_manager()
    job_id = manager.submit("export", {"table": "orders", "format": "xlsx"},
                            Trigger.user("Export orders to Excel"))
    job = wait_final(qtbot, manager, job_id, timeout=60)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.title == "Export orders to Excel"
    assert job.output_path == job.result["path"]
    assert Path(job.output_path).parent == data_dir.outputs
    assert not [p for p in data_dir.outputs.iterdir() if ".part-" in p.name]
    wb = openpyxl.load_workbook(job.output_path, read_only=True)
    try:
        assert sum(1 for _ in wb.active.iter_rows(min_row=2)) == job.result["rows"] == 600
    finally:
        wb.close()


# ------------------------------------------------------------- formula guard
TRIGGER_NAMES = [f"{t}1+1 cell {i}" for i, t in enumerate(FORMULA_TRIGGERS)]


def test_every_formula_trigger_is_text_in_xlsx_and_csv(db: Any, data_dir: Any) -> None:
    rows = [{"sku": f"T-{i}", "name": name, "supplier": f"@supplier {i}",
             "updated_at": dt.datetime(2026, 1, 1)} for i, name in enumerate(TRIGGER_NAMES)]
    rows.append({"sku": "PLAIN", "name": "Plain name", "supplier": "Acme",
                 "updated_at": dt.datetime(2026, 1, 1)})
    with write_transaction(db) as conn:
        conn.execute(insert(Product), rows)
    result, _ = do_export(db, data_dir, "products", "xlsx")
    ws = openpyxl.load_workbook(result["path"]).active
    by_sku = {ws.cell(r, 1).value: ws[r] for r in range(2, ws.max_row + 1)}
    for i, name in enumerate(TRIGGER_NAMES):
        row = by_sku[f"T-{i}"]
        for cell, written in ((row[1], name), (row[6], f"@supplier {i}")):
            assert cell.data_type == "s", repr(written)
            assert cell.quotePrefix, repr(written)  # stays text when edited in Excel
            assert cell.value == written.replace("\r", "\n")  # XML reads CR as LF
    assert not by_sku["PLAIN"][1].quotePrefix
    import zipfile

    with zipfile.ZipFile(result["path"]) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml").decode("utf-8")
    assert "<f>" not in sheet and "<f " not in sheet

    result, _ = do_export(db, data_dir, "products", "csv")
    with open(result["path"], encoding="utf-8-sig", newline="") as fh:
        records = {r[0]: r for r in csv.DictReader(fh) for r in [list(r.values())]}
    for i, name in enumerate(TRIGGER_NAMES):
        assert records[f"T-{i}"][1] == "'" + name
        assert records[f"T-{i}"][6] == f"'@supplier {i}"
    assert records["PLAIN"][1] == "Plain name"


@pytest.mark.parametrize("text,written", [
    ("'=x", "''=x"), (" =1+1", "' =1+1"), ("x ", "'x "), ("''+1", "'''+1"),
    ("It's", "It's"), ("'abc", "'abc"), ("'", "'"), ("", ""), ("-", "'-"), ("\tx", "'\tx"),
])
def test_the_csv_guard_and_the_import_undo_each_other(text: str, written: str) -> None:
    from swifty_desktop.tasks.import_csv import unguard

    assert csv_safe(text) == written
    assert unguard(written) == text
    assert unguard(f"  {written}") == text or written == ""  # a user's spaces before it


_CONTROL_CHARS = "".join(map(chr, [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]))
NAMES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=_CONTROL_CHARS),
            min_size=1, max_size=30),
    st.sampled_from(["'=x", " =1+1", "''=x", "'", "' ", " ", "It's", "'abc", "=", "-", "\t",
                     "\r\n", "x ", "@", "'\t", " ' ", "\u00a0=1", "=\u2028", "'\u3000"]),
)


@pytest.fixture(scope="module")
def two_databases(tmp_path_factory: Any) -> Any:
    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.paths import DataDir

    made = []
    for name in ("from", "to"):
        data_dir = DataDir(tmp_path_factory.mktemp(name) / "data").ensure()
        made.append((open_database(data_dir), data_dir))
    yield made
    for engine, _ in made:
        engine.dispose()


@settings(max_examples=80, deadline=None)
@given(names=st.lists(NAMES, min_size=1, max_size=12))
def test_any_name_comes_back_from_an_export_then_import(two_databases: Any,
                                                        names: list[str]) -> None:
    (source, source_dir), (target, target_dir) = two_databases
    for engine in (source, target):
        with write_transaction(engine) as conn:
            conn.execute(delete(Product))
    with write_transaction(source) as conn:
        conn.execute(insert(Product), [{"sku": f"H-{i}", "name": name, "supplier": name,
                                        "updated_at": dt.datetime(2026, 1, 1)}
                                       for i, name in enumerate(names)])
    exported = export({"table": "products", "format": "csv"}, FakeContext(source, source_dir))
    result = import_csv({"path": exported["path"], "table": "products"},
                        FakeContext(target, target_dir))
    assert (result["inserted"], result["rejected"]) == (len(names), 0), result
    with target.connect() as conn:
        back = {sku: (name, supplier) for sku, name, supplier in conn.execute(
            select(Product.sku, Product.name, Product.supplier))}
    assert back == {f"H-{i}": (name, name) for i, name in enumerate(names)}


# -------------------------------------------------------------- in the engine
def many_products(engine: Any, n: int) -> None:
    stamp = dt.datetime(2026, 1, 1)
    with write_transaction(engine) as conn:
        conn.execute(insert(Product), [
            {"sku": f"M-{i:07d}", "name": f"=Product {i}", "category": "Bulk",
             "price_cents": i % 10_000, "stock": i % 50, "supplier": "Acme",
             "updated_at": stamp} for i in range(n)])


def test_a_cancelled_export_leaves_no_file(make_manager: Any, qtbot: Any, db: Any,
                                           data_dir: Any, tmp_path: Path,
                                           monkeypatch: Any) -> None:
    many_products(db, 60_000)
    scratch = tmp_path / "worker-tmp"  # where openpyxl streams the sheet's rows
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    manager = make_manager(workers=1)
    job_id = manager.submit("export", {"table": "products", "format": "xlsx"})
    wait_until(qtbot, lambda: (manager.store.get(job_id).progress or 0) > 0, timeout=60,
               message="the export to be under way")
    assert list(scratch.iterdir())  # rows are being written
    manager.cancel(job_id)
    job = wait_final(qtbot, manager, job_id)
    assert job.status is JobStatus.CANCELLED and job.output_path is None
    assert 0 < job.progress < 1
    assert list(data_dir.outputs.iterdir()) == []  # no final file, no .part- file
    assert list(scratch.iterdir()) == []  # and no leftover of openpyxl's either


def test_a_relative_path_keeps_its_folders_inside_outputs(make_manager: Any, qtbot: Any,
                                                         demo: Any, data_dir: Any) -> None:
    manager = make_manager()
    job = wait_final(qtbot, manager, manager.submit(
        "export", {"table": "customers", "format": "csv", "path": "monthly/customers"}))
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.output_path == str(data_dir.outputs / "monthly" / "customers.csv")
    assert Path(job.output_path).is_file()


def test_no_task_module_imports_qt() -> None:
    """Job bodies run in worker processes that know nothing of the GUI."""
    import subprocess
    import sys

    from swifty_desktop.tasks import KIND_MODULES

    modules = ["swifty_desktop.tasks", "swifty_desktop.tasks.base", *KIND_MODULES]
    assert "swifty_desktop.tasks.export" in modules and len(modules) >= 10
    probe = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('PySide6', 'PyQt5', 'PyQt6', 'shiboken6')))")
    for module in modules:
        out = subprocess.run([sys.executable, "-c", probe, module], capture_output=True,
                             text=True, check=True, env={**os.environ, "QT_QPA_PLATFORM": ""})
        assert out.stdout.strip() == "[]", (module, out.stdout)
