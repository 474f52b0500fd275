"""Export: XLSX and CSV read back with independent readers (openpyxl, the csv module)."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from conftest import wait_final
from sqlalchemy import insert, select
from task_context import FakeContext

from swifty_desktop.db.engine import write_transaction
from swifty_desktop.db.models import Customer, Order, Product
from swifty_desktop.demo.seed import TRICKY_CUSTOMERS, TRICKY_PRODUCT, seed
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.tasks.base import JobCancelled, TaskError
from swifty_desktop.tasks.export import COLUMNS, export
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
