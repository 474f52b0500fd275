"""``export``: a business table to an Excel workbook or a CSV file.

XLSX goes through openpyxl's write-only (streaming) mode, so a million rows take
constant memory: a bold, frozen header row with an autofilter, column widths,
and real number, money and date cells (money carries its currency in the number
format).  CSV is UTF-8 with a byte-order mark, so Excel shows accents correctly,
with the column names :mod:`swifty_desktop.tasks.import_csv` expects, so that an
export imports back unchanged.

Text that a spreadsheet would run as a formula is never written as one.  The
triggers are ``=``, ``+``, ``-``, ``@``, a tab and a carriage return as the first
character (OWASP's list).  In XLSX such text is a text cell with Excel's quote
prefix, so it stays text even after the cell is edited.  In CSV, where every value
is re-parsed on opening, it gets a leading apostrophe (OWASP's advice); so do text
with leading or trailing white space (which the import would otherwise trim) and
text whose apostrophes are followed by either, so that the import's
:func:`~swifty_desktop.tasks.import_csv.unguard` gives back exactly what was
exported (``'=x`` is written ``''=x``; ``It's`` as it is).

The column lists here are the contract between export and import.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from swifty_desktop.tasks.base import Action, Context, Param, RetryPolicy, TaskError, task

TABLES = ("products", "customers", "orders")
FORMATS = ("xlsx", "csv")
# first characters that make a spreadsheet treat text as a formula (OWASP CSV injection)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
TRIGGER_CHARS = "".join(FORMULA_TRIGGERS)  # for a fast ``ch in TRIGGER_CHARS``
ROWS_PER_STEP = 2000  # rows fetched per round trip; progress and cancellation in between


@dataclasses.dataclass(frozen=True)
class Column:
    """One exported column: its CSV name (what the import reads), XLSX label and type.

    ``kind`` is text, money (integer cents; the row's ``currency`` column names the
    currency), int, date, datetime or bool.
    """

    name: str
    label: str
    kind: str = "text"
    width: float = 14


COLUMNS: dict[str, tuple[Column, ...]] = {
    "products": (
        Column("sku", "SKU", width=13),
        Column("name", "Name", width=42),
        Column("category", "Category", width=16),
        Column("price", "Price", "money", 15),
        Column("currency", "Currency", width=9),
        Column("stock", "Stock", "int", 9),
        Column("supplier", "Supplier", width=26),
        Column("status", "Status", width=12),
        Column("updated_at", "Updated at", "datetime", 18),
    ),
    "customers": (
        Column("email", "E-mail", width=36),
        Column("name", "Name", width=32),
        Column("country", "Country", width=8),
        Column("opted_in", "Opted in", "bool", 9),
        Column("created_at", "Created at", "datetime", 18),
    ),
    "orders": (
        Column("number", "Number", width=16),
        Column("order_date", "Order date", "date", 12),
        Column("customer_email", "Customer e-mail", width=36),
        Column("customer_name", "Customer name", width=32),
        Column("status", "Status", width=11),
        Column("currency", "Currency", width=9),
        Column("total", "Total", "money", 15),
        Column("archived_at", "Archived at", "datetime", 18),
    ),
}


def _query(table: str) -> Any:
    from sqlalchemy import select

    from swifty_desktop.db.models import Customer, Order, Product

    if table == "products":
        p = Product
        return select(p.sku, p.name, p.category, p.price_cents, p.currency, p.stock,
                      p.supplier, p.status, p.updated_at).order_by(p.id)
    if table == "customers":
        c = Customer
        return select(c.email, c.name, c.country, c.opted_in, c.created_at).order_by(c.id)
    o, c = Order, Customer
    return (select(o.number, o.order_date, c.email, c.name, o.status, o.currency,
                   o.total_cents, o.archived_at)
            .join(c, c.id == o.customer_id).order_by(o.id))


def _count(table: str) -> Any:
    from sqlalchemy import func, select

    from swifty_desktop.db.models import Customer, Order, Product

    model = {"products": Product, "customers": Customer, "orders": Order}[table]
    return select(func.count()).select_from(model)


# ----------------------------------------------------------------- value helpers
def money_text(cents: int | None) -> str:
    """Integer cents as a plain decimal the import reads back exactly: 123456 -> '1234.56'."""
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(int(cents)), 100)
    return f"{sign}{units}.{rest:02d}"


def needs_guard(text: str) -> bool:
    """Whether :func:`csv_safe` prefixes ``text`` with an apostrophe: it starts (after
    any apostrophes) with a formula trigger or white space, or it ends with white space."""
    if not text:
        return False
    if text[-1].isspace():
        return True
    rest = text.lstrip("'")
    return bool(rest) and (rest[0] in FORMULA_TRIGGERS or rest[0].isspace())


def csv_safe(text: str | None) -> str:
    """Text a spreadsheet shows as written and the import reads back unchanged: a
    formula-like value (or one the import would trim) gets a leading apostrophe."""
    if not text:
        return ""
    return "'" + text if needs_guard(text) else text


def money_format(currency: str) -> str:
    """An Excel number format showing the amount with its ISO currency code."""
    code = "".join(ch for ch in (currency or "") if ch.isalnum())[:3].upper()
    return f'#,##0.00 "{code}"' if code else "#,##0.00"


def default_name(table: str, fmt: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d_%H%M%S", time.localtime(now))
    return f"{table}_{stamp}.{fmt}"


def destination(params: Mapping[str, Any], table: str, fmt: str) -> str:
    """The name or absolute path to hand to ``ctx.output_path``."""
    raw = str(params.get("path") or "").strip()
    if not raw:
        return default_name(table, fmt)
    path = Path(raw).expanduser()
    suffix = path.suffix.lower()
    if suffix != f".{fmt}":
        if suffix in (".xlsx", ".xls", ".xlsm", ".csv", ".txt", ".tsv"):
            raise TaskError(
                f"The export was not written: the file name '{path.name}' ends in {suffix} "
                f"but the format chosen is {fmt}; choose a name ending in .{fmt}, or the "
                f"{'csv' if fmt == 'xlsx' else 'xlsx'} format.")
        path = path.with_name(f"{path.name}.{fmt}")
    return str(path)


# ------------------------------------------------------------------------- task
def _title(params: Mapping[str, Any]) -> str:
    table = str(params.get("table", "products"))
    fmt = "Excel" if params.get("format", "xlsx") == "xlsx" else "CSV"
    return f"Export {table} to {fmt}"


def _outcome(result: Mapping[str, Any]) -> str:
    """"4,767 products exported"."""
    from swifty_desktop.tasks.base import counted, result_count

    if "rows" not in result:
        return ""
    noun = {"products": "product", "customers": "customer", "orders": "order"}.get(
        str(result.get("table")), "row")
    return f"{counted(result_count(result, 'rows'), noun)} exported"


@task(
    "export",
    title="Export",
    outcome=_outcome,
    description="Writes products, customers or orders to an Excel workbook or a CSV file.",
    params=(
        Param("table", "choice", default="products", choices=TABLES, label="Table",
              help="what to export: products, customers or orders"),
        Param("format", "choice", default="xlsx", choices=FORMATS, label="Format",
              help="xlsx: an Excel workbook; csv: UTF-8 text that Excel and the import read"),
        Param("path", "path", label="Save as", path_mode="save",
              file_filter="Excel workbook (*.xlsx);;CSV file (*.csv)",
              help="where to save the file: a full path, or a relative one (such as "
                   "monthly/products.xlsx) inside the outputs folder (default: the outputs "
                   "folder, named after the table and the time)"),
    ),
    retry=RetryPolicy(max_attempts=3, backoff_base=5.0,
                      transient=("swifty_desktop.tasks.export:DatabaseBusy",)),
    timeout=3600,
    rerun_safe=True,  # it only reads; a re-run writes a fresh file
    title_fn=_title,
    icon="export",
    actions=(
        Action("Export products to Excel", {"table": "products", "format": "xlsx"},
               shortcut="Ctrl+E", icon="spreadsheet", menu="Data", toolbar=True,
               tooltip="Write every product to an Excel workbook in the outputs folder",
               ack="{title}: working in the background; you will be told when the file "
                   "is ready"),
        Action("Export customers to Excel", {"table": "customers", "format": "xlsx"},
               icon="spreadsheet", menu="Data"),
        Action("Export orders to Excel", {"table": "orders", "format": "xlsx"},
               icon="spreadsheet", menu="Data"),
        Action("Export products to CSV", {"table": "products", "format": "csv"},
               icon="export", menu="Data",
               tooltip="A UTF-8 CSV file that Excel opens and the import reads back"),
        Action("Export customers to CSV", {"table": "customers", "format": "csv"},
               icon="export", menu="Data"),
        Action("Export…", ask=("table", "format", "path"), icon="export", menu="Data",
               tooltip="Choose the table, the format and where to save"),
    ),
)
def export(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Export one table; returns the row count and the file's path."""
    table = str(params.get("table", "products"))
    fmt = str(params.get("format", "xlsx"))
    if table not in COLUMNS:
        raise TaskError(f"Cannot export '{table}': choose one of {', '.join(TABLES)}.")
    target = destination(params, table, fmt)
    path = ctx.output_path(target)
    engine = ctx.engine()  # type: ignore[attr-defined]
    started = time.perf_counter()
    try:
        rows = export_rows(engine, table, fmt, path, ctx)
    except OSError as exc:
        raise TaskError(
            f"Could not write the {table} export to {target}: {exc.strerror or exc}. "
            "Choose a folder you can write to, with enough free space.") from exc
    except Exception as exc:
        raise_if_busy(exc)
        raise
    seconds = time.perf_counter() - started
    ctx.log(f"Wrote {rows:,} {table} rows in {seconds:.1f} s")
    return {"table": table, "format": fmt, "rows": rows, "path": str(path),
            "seconds": round(seconds, 3)}


class DatabaseBusy(Exception):
    """The database stayed locked by another writer for longer than the busy timeout."""


def raise_if_busy(exc: BaseException) -> None:
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower():
        raise DatabaseBusy(
            "The database was busy (another program kept it locked for 30 s); the job "
            "will be retried automatically.") from exc


def export_rows(engine: Any, table: str, fmt: str, path: Path, ctx: Context) -> int:
    """Stream ``table`` into ``path``; return the number of data rows written."""
    with engine.connect() as conn:
        total = int(conn.execute(_count(table)).scalar_one())
        ctx.progress(0.0, f"Exporting {total:,} {table}…")
        result = conn.execution_options(yield_per=ROWS_PER_STEP).execute(_query(table))
        batches = result.partitions(ROWS_PER_STEP)
        writer = write_xlsx if fmt == "xlsx" else write_csv
        return writer(path, table, batches, _reporter(ctx, table, total))


def _reporter(ctx: Context, table: str, total: int) -> Callable[[int], None]:
    def step(done: int) -> None:
        ctx.check_cancelled()
        ctx.progress(done / total if total else 1.0,
                     f"Exporting {table}: {done:,} of {total:,} rows")

    return step


# -------------------------------------------------------------------------- CSV
def csv_converters(table: str) -> list[Callable[[Any], str]]:
    out: list[Callable[[Any], str]] = []
    for col in COLUMNS[table]:
        if col.kind == "text":
            out.append(csv_safe)
        elif col.kind == "money":
            out.append(money_text)
        elif col.kind == "int":
            out.append(lambda v: "" if v is None else str(int(v)))
        elif col.kind == "date":
            out.append(lambda v: "" if v is None else v.isoformat())
        elif col.kind == "datetime":
            out.append(lambda v: "" if v is None else v.isoformat(sep=" ", timespec="seconds"))
        elif col.kind == "bool":
            out.append(lambda v: "" if v is None else ("yes" if v else "no"))
        else:  # pragma: no cover - a programming error in COLUMNS
            raise ValueError(col.kind)
    return out


def write_csv(path: Path, table: str, batches: Any, step: Callable[[int], None]) -> int:
    """UTF-8 with BOM, comma-separated, CRLF line ends, one header row."""
    import csv

    convs = csv_converters(table)
    n = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([c.name for c in COLUMNS[table]])
        for batch in batches:
            writer.writerows([[f(v) for f, v in zip(convs, row, strict=False)] for row in batch])
            n += len(batch)
            step(n)
    return n


# ------------------------------------------------------------------------- XLSX
class _XlsxCells:
    """Pre-styled write-only cells, reused for every row (the writer streams each row
    out as soon as it is appended, so one cell object per column and style is enough).
    """

    def __init__(self, ws: Any) -> None:
        from openpyxl.cell import WriteOnlyCell

        self._ws = ws
        self._make = WriteOnlyCell
        self._money: dict[tuple[int, str], Any] = {}
        self._plain: dict[tuple[int, str], Any] = {}

    def styled(self, col: int, number_format: str) -> Any:
        key = (col, number_format)
        cell = self._plain.get(key)
        if cell is None:
            cell = self._make(self._ws)
            cell.number_format = number_format
            self._plain[key] = cell
        return cell

    def money(self, col: int, currency: str) -> Any:
        key = (col, currency)
        cell = self._money.get(key)
        if cell is None:
            cell = self._make(self._ws)
            cell.number_format = money_format(currency)
            self._money[key] = cell
        return cell

    def text(self, col: int, value: str) -> Any:
        """A cell that holds ``value`` as text although it starts like a formula."""
        cell = self._plain.get((col, "@text"))
        if cell is None:
            cell = self._make(self._ws)
            cell.quotePrefix = True  # Excel keeps it text even after the cell is edited
            cell.number_format = "@"
            self._plain[(col, "@text")] = cell
        cell._value = value
        cell.data_type = "s"
        return cell


def _xlsx_text(value: Any) -> Any:
    """Strip characters XML cannot hold (control characters) from a text value."""
    if value is None or value.isprintable():
        return value
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)


def write_xlsx(path: Path, table: str, batches: Any, step: Callable[[int], None]) -> int:
    """A write-only workbook: one sheet, header row bold and frozen, autofilter, formats."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    columns = COLUMNS[table]
    wb = Workbook(write_only=True)
    wb.properties.creator = "Swifty Desktop"
    wb.properties.title = f"{table.capitalize()} export"
    ws = wb.create_sheet(title=table.capitalize())
    for idx, col in enumerate(columns, 1):
        ws.column_dimensions[get_column_letter(idx)].width = col.width
    ws.freeze_panes = "A2"
    ws.print_title_rows = "1:1"
    header_font = Font(bold=True)
    header_fill = PatternFill("solid", fgColor="DDE4EE")
    header = []
    for col in columns:
        cell = WriteOnlyCell(ws, value=col.label)
        cell.font = header_font
        cell.fill = header_fill
        cell.alignment = Alignment(horizontal="right" if col.kind in ("money", "int")
                                   else "left")
        header.append(cell)
    ws.append(header)

    cells = _XlsxCells(ws)
    n = 0
    try:
        n = _append_rows(ws, batches, columns, cells, step)
        ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{n + 1}"
        wb.save(path)
    except BaseException:
        _discard_sheet(ws)
        raise
    return n


def _discard_sheet(ws: Any) -> None:
    """Delete the temporary file a write-only sheet streams its rows to.

    openpyxl removes it only when the workbook is saved or the process exits; a
    worker process lives on after a cancelled or failed export, and the file holds
    every row written so far.
    """
    writer = getattr(ws, "_writer", None)  # openpyxl internals (3.1): guarded
    if writer is None:
        return
    try:
        writer.close()
        writer.cleanup()
    except (OSError, ValueError, AttributeError):
        pass  # already gone: nothing left to clean


def _append_rows(ws: Any, batches: Any, columns: Sequence[Column], cells: _XlsxCells,
                 step: Callable[[int], None]) -> int:
    names = [c.name for c in columns]
    currency_idx = names.index("currency") if "currency" in names else -1
    plan: list[tuple[int, str]] = [(i, c.kind) for i, c in enumerate(columns)]
    text_cols = [i for i, kind in plan if kind == "text"]
    money_cols = [i for i, kind in plan if kind == "money"]
    formatted = [(i, cells.styled(i, fmt)) for i, kind in plan
                 for fmt in [{"int": "#,##0", "date": "yyyy-mm-dd",
                              "datetime": "yyyy-mm-dd hh:mm"}.get(kind, "")] if fmt]
    n = 0
    for batch in batches:
        for row in batch:
            values = list(row)
            for i in text_cols:
                v = values[i]
                if v:
                    if v[0] in TRIGGER_CHARS:
                        values[i] = cells.text(i, _xlsx_text(v))
                    elif not v.isprintable():
                        values[i] = _xlsx_text(v)
            for i in money_cols:
                cents = values[i]
                if cents is not None:
                    cell = cells.money(i, values[currency_idx] or "")
                    cell.value = cents / 100
                    values[i] = cell
            for i, cell in formatted:
                v = values[i]
                if v is not None:
                    cell.value = v
                    values[i] = cell
            ws.append(values)
        n += len(batch)
        step(n)
    return n


def read_columns(table: str) -> Sequence[str]:
    """The CSV column names of ``table`` (what an export writes, what the import reads)."""
    return [c.name for c in COLUMNS[table]]

