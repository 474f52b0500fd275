"""Business data tabs: Products, Customers, Orders over the database.

A paged table model: the first 200 rows load at once, more as the view scrolls
(``fetchMore``), sorting and searching happen in the database (indexed columns),
so tens of thousands of rows open and scroll smoothly without a big query on the
GUI thread.  When a job changed a table, :meth:`SqlTableModel.refresh` re-reads
the rows already loaded in place, so the view keeps its scroll position and
selection (rows are matched by their primary key).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtCore import Signal as QtSignal
from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.sql import ColumnElement, Select

from swifty_desktop.db.models import Customer, Order, Product
from swifty_desktop.tasks import registry

_ROOT = QModelIndex()
# how many loaded rows a refresh re-reads in place (on the GUI thread: 2,000 rows take
# about 10 ms, 5,000 about 22 ms, measured here); beyond it, back to the first page
MAX_REFRESH_ROWS = 2000


def tables_changed_by(kind: str, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The data tabs (products, customers, orders) a completed job of ``kind`` changed,
    as the kind declares (``changes``); none for a kind this version does not know."""
    spec = registry().get(kind)
    return spec.tables_changed(params) if spec is not None else ()


@dataclasses.dataclass(frozen=True)
class Column:
    title: str
    expr: Any  # a SQLAlchemy column expression
    fmt: Callable[[Any], str] = str
    align_right: bool = False
    width: int = 120


def _money(cents: Any) -> str:
    return "" if cents is None else f"{cents / 100:,.2f}"


def _date(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat() if isinstance(value, dt.date) else str(value)


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """What one tab shows: columns, the base query, searchable columns."""

    name: str
    columns: tuple[Column, ...]
    base: Callable[[], Select[Any]]
    search: tuple[Any, ...]
    key: Any  # a unique column for a stable order
    extra_filter: Callable[[bool], ColumnElement[bool] | None] = lambda _flag: None
    flag_label: str = ""  # a checkbox that toggles extra_filter (e.g. "Show archived")


PRODUCTS = TableSpec(
    name="products",
    columns=(
        Column("SKU", Product.sku, width=110), Column("Name", Product.name, width=280),
        Column("Category", Product.category, width=140),
        Column("Price", Product.price_cents, _money, True, 90),
        Column("Currency", Product.currency, width=70),
        Column("Stock", Product.stock, lambda v: f"{v:,}", True, 70),
        Column("Supplier", Product.supplier, width=160),
        Column("Status", Product.status, width=100),
        Column("Updated", Product.updated_at, _date, width=130),
    ),
    base=lambda: select(Product.sku, Product.name, Product.category, Product.price_cents,
                        Product.currency, Product.stock, Product.supplier, Product.status,
                        Product.updated_at),
    search=(Product.sku, Product.name, Product.category, Product.supplier),
    key=Product.id,
    extra_filter=lambda show: None if show else Product.status != "discontinued",
    flag_label="Show discontinued",
)

CUSTOMERS = TableSpec(
    name="customers",
    columns=(
        Column("Name", Customer.name, width=240), Column("E-mail", Customer.email, width=280),
        Column("Country", Customer.country, width=70),
        Column("Notifications", Customer.opted_in, lambda v: "Yes" if v else "No", width=100),
        Column("Customer since", Customer.created_at, _date, width=140),
    ),
    base=lambda: select(Customer.name, Customer.email, Customer.country, Customer.opted_in,
                        Customer.created_at),
    search=(Customer.name, Customer.email, Customer.country),
    key=Customer.id,
)

ORDERS = TableSpec(
    name="orders",
    columns=(
        Column("Order", Order.number, width=120),
        Column("Date", Order.order_date, _date, width=100),
        Column("Customer", Customer.name, width=260), Column("Status", Order.status, width=100),
        Column("Total", Order.total_cents, _money, True, 110),
        Column("Currency", Order.currency, width=70),
    ),
    base=lambda: select(Order.number, Order.order_date, Customer.name, Order.status,
                        Order.total_cents, Order.currency).join(
                            Customer, Customer.id == Order.customer_id),
    search=(Order.number, Customer.name, Order.status),
    key=Order.id,
    extra_filter=lambda show: None if show else Order.status != "archived",
    flag_label="Show archived",
)


class SqlTableModel(QAbstractTableModel):
    """Rows of one business table, paged in on demand; see the module docstring."""

    countChanged = QtSignal()

    def __init__(self, engine: Engine, spec: TableSpec, *, page_size: int = 200,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.spec = spec
        self.page = page_size
        self.search_text = ""
        self.flag = False
        self.sort_column = 0
        self.sort_order = Qt.SortOrder.AscendingOrder
        self._rows: list[Sequence[Any]] = []
        self._exhausted = False
        self._total: int | None = None
        self._load(first=True)

    # ---------------------------------------------------------------- queries
    def _where(self) -> ColumnElement[bool] | None:
        clauses: list[ColumnElement[bool]] = []
        text = self.search_text.strip()
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") \
                + "%"
            clauses.append(or_(*(c.ilike(pattern, escape="\\") for c in self.spec.search)))
        extra = self.spec.extra_filter(self.flag)
        if extra is not None:
            clauses.append(extra)
        return and_(*clauses) if clauses else None

    def _query(self, offset: int, limit: int) -> Select[Any]:
        # the key rides along after the shown columns: it matches rows across refreshes
        stmt = self.spec.base().add_columns(self.spec.key)
        where = self._where()
        if where is not None:
            stmt = stmt.where(where)
        col = self.spec.columns[self.sort_column].expr
        direction = col.asc() if self.sort_order == Qt.SortOrder.AscendingOrder else col.desc()
        return stmt.order_by(direction, self.spec.key).limit(limit).offset(offset)

    def _fetch(self, offset: int, limit: int) -> list[Sequence[Any]]:
        with self.engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(self._query(offset, limit))]
        self._exhausted = len(rows) < limit
        return rows

    def _load(self, first: bool = False) -> list[Sequence[Any]]:
        rows = self._fetch(0 if first else len(self._rows), self.page)
        if first:
            self._rows = rows
            self._total = None
        return rows

    def total(self) -> int:
        """Rows matching the current search (counted once per search, in the database)."""
        if self._total is None:
            base = self.spec.base()
            where = self._where()
            if where is not None:
                base = base.where(where)
            stmt = select(func.count()).select_from(base.subquery())
            with self.engine.connect() as conn:
                self._total = int(conn.execute(stmt).scalar_one())
        return self._total

    def reset(self) -> None:
        """Start again from the first page (a new search, filter or sort order)."""
        self.beginResetModel()
        self._load(first=True)
        self.endResetModel()
        self.countChanged.emit()

    def refresh(self) -> None:
        """Re-read the rows loaded so far after the data changed (an import, a sync).

        Rows keep their place where they still exist, so the view keeps its scroll
        position and selection; rows that are gone leave the selection.
        """
        loaded = len(self._rows)
        if loaded > MAX_REFRESH_ROWS:
            self.reset()  # re-reading that much would stall the window
            return
        rows = self._fetch(0, max(self.page, loaded))
        self._total = None
        if len(rows) < loaded:  # fewer rows now: the tail goes
            self.beginRemoveRows(_ROOT, len(rows), loaded - 1)
            del self._rows[len(rows):]
            self.endRemoveRows()
        kept = len(self._rows)
        self.layoutAboutToBeChanged.emit()
        where = {row[-1]: i for i, row in enumerate(rows[:kept])}
        old = self.persistentIndexList()
        new = []
        for index in old:
            row = where.get(self._rows[index.row()][-1]) if index.row() < kept else None
            new.append(_ROOT if row is None else self.index(row, index.column()))
        self._rows[:kept] = rows[:kept]
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()
        if len(rows) > kept:  # more rows now (e.g. the table was empty)
            self.beginInsertRows(_ROOT, kept, len(rows) - 1)
            self._rows.extend(rows[kept:])
            self.endInsertRows()
        self.countChanged.emit()

    def set_search(self, text: str) -> None:
        if text != self.search_text:
            self.search_text = text
            self.reset()

    def set_flag(self, flag: bool) -> None:
        if flag != self.flag:
            self.flag = flag
            self.reset()

    # ------------------------------------------------------------- Qt model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.spec.columns)

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> bool:
        return not parent.isValid() and not self._exhausted

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> None:
        if parent.isValid() or self._exhausted:
            return
        rows = self._load()
        if rows:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(rows) - 1)
            self._rows.extend(rows)
            self.endInsertRows()
            self.countChanged.emit()

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        column = self.spec.columns[index.column()]
        value = self._rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return "" if value is None else column.fmt(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.align_right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return value
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.spec.columns[section].title
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort in the database (a new order is a reset: rows come from a new query)."""
        if (column, order) == (self.sort_column, self.sort_order):
            return
        self.sort_column, self.sort_order = column, order
        self.reset()
