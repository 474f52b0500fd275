"""``report_pdf``: the sales report, a PDF of several hundred pages.

Layout (reportlab platypus, A4): a cover page; a table of contents; a summary
with monthly sales charts; a section per product category (monthly units chart,
every product with units sold); then a section per customer with their orders.
Tables repeat their header row across pages; every page but the cover has a
running header and a "Page X of Y" footer; the PDF carries title, author, subject,
keywords and an outline (bookmarks) of every section.

It is built in one pass, with constant memory:

* the story is generated section by section while the document is laid out
  (:class:`_StreamingDoc` refills platypus's flowable list as it drains), so the
  database is read one customer at a time;
* the total page count and the contents pages are PDF form XObjects that the
  pages reference by name and that are drawn once the last page is known (the
  contents needs a fixed number of pages, which is known up front: one line per
  section).  reportlab's usual ``multiBuild`` would lay the whole document out
  twice.

Every piece of user data that goes into a Paragraph is escaped (a product called
``<b>Nuts & Bolts</b>`` prints as written); table cells that are plain strings are
drawn as text, never parsed.  Text uses DejaVu Sans (``resources/fonts``), which
covers accented Latin, Greek and Cyrillic; if those files are missing the report
falls back to the Vera fonts bundled with reportlab (Latin-1 only).

Progress is reported per section, and a cancel request is honoured between
sections.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from swifty_desktop.tasks.base import Action, Context, Param, TaskError, task

FONT, FONT_BOLD = "SwiftySans", "SwiftySans-Bold"
NOT_SOLD = ("cancelled",)  # statuses that do not count as sales
TOC_LINE = 12.0  # points per contents line
ROW_HEIGHT = 11.5  # points per one-line table row (8 pt text and its padding)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ------------------------------------------------------------------------ fonts
def font_files() -> tuple[Path, Path] | None:
    """DejaVu Sans regular and bold from the app's resources, if they are there."""
    folders: list[Path] = []
    try:
        from swifty_desktop.resources import resource_dir

        folders.append(resource_dir() / "fonts")
    except Exception:  # resources module or folder missing: try the source tree
        pass
    folders.append(Path(__file__).resolve().parents[2] / "resources" / "fonts")
    for folder in folders:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def register_fonts() -> str:
    """Register the report's fonts once per process; return a note on which were used."""
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT in pdfmetrics.getRegisteredFontNames():
        return getattr(register_fonts, "note", "")
    files = font_files()
    if files is not None:
        regular, bold = files
        note = "DejaVu Sans"
    else:
        import reportlab

        base = Path(reportlab.__file__).parent / "fonts"
        regular, bold = base / "Vera.ttf", base / "VeraBd.ttf"
        note = ("Vera (DejaVu Sans not found in resources/fonts; letters outside Latin-1 "
                "may print as boxes)")
    pdfmetrics.registerFont(TTFont(FONT, str(regular)))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(bold)))
    for italic in (0, 1):
        addMapping(FONT, 0, italic, FONT)
        addMapping(FONT, 1, italic, FONT_BOLD)
    register_fonts.note = note  # type: ignore[attr-defined]
    return note


# ------------------------------------------------------------------ formatting
def money(cents: int | None, currency: str) -> str:
    if cents is None:
        return "–"
    return f"{cents / 100:,.2f} {currency}"


def fold(text: str) -> str:
    """A sort key that puts 'Émilie' next to 'Emil', not after 'Zoë'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def one_line(text: str | None) -> str:
    return " ".join(str(text or "").split())


def para_text(text: str | None) -> str:
    """User data made safe for a Paragraph: markup characters escaped, one line."""
    return escape(one_line(text))


def fit(text: str, width: float, font: str, size: float) -> str:
    """``text`` cut with an ellipsis so that it fits ``width`` points."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    text = one_line(text)
    if (text.isascii() and len(text) * size * 1.2 <= width) or \
            stringWidth(text, font, size) <= width:
        return text  # (no ASCII glyph is wider than 1.2 em: short text needs no measuring)
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if stringWidth(text[:mid] + "…", font, size) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def month_key(year: int, month: int) -> int:
    return year * 12 + (month - 1)


def month_label(key: int, with_year: bool = True) -> str:
    year, month = divmod(key, 12)
    return f"{MONTHS[month]} {year % 100:02d}" if with_year else MONTHS[month]


# ------------------------------------------------------------------------- data
@dataclasses.dataclass
class Section:
    key: str  # bookmark name
    title: str
    level: int  # 0: part, 1: section
    page: int = 0


@dataclasses.dataclass
class ReportData:
    """Everything but the per-customer orders, which are read while the PDF is built."""

    first_date: dt.date
    last_date: dt.date
    months: list[int]
    orders_by_status: dict[str, int]
    sales_by_currency: dict[str, tuple[int, int]]  # currency -> (orders, cents)
    monthly: dict[str, dict[int, int]]  # currency -> month -> cents
    monthly_orders: dict[int, int]
    categories: list[str]
    category_units: dict[str, dict[int, int]]  # category -> month -> units
    category_revenue: dict[str, dict[str, int]]  # category -> currency -> cents
    product_sales: dict[int, tuple[int, int]]  # product id -> (units, orders)
    customers: list[tuple[Any, ...]]  # id, name, email, country, opted_in, orders, first, last
    n_customers: int
    n_products: int


def load_data(conn: Any) -> ReportData:
    from sqlalchemy import extract, func, select

    from swifty_desktop.db.models import Customer, Order, OrderLine, Product

    o, ol, p, c = Order, OrderLine, Product, Customer
    sold = o.status.not_in(NOT_SOLD)
    first, last = conn.execute(select(func.min(o.order_date), func.max(o.order_date))).one()
    n_products = conn.execute(select(func.count()).select_from(p)).scalar_one()
    n_customers = conn.execute(select(func.count()).select_from(c)).scalar_one()
    if first is None:
        raise TaskError(
            "The sales report was not made: the database has no orders yet. Import or "
            "enter orders, or load the sample data (File › Load sample data…), then run the "
            "report again.")
    year, month = extract("year", o.order_date), extract("month", o.order_date)
    monthly: dict[str, dict[int, int]] = defaultdict(dict)
    monthly_orders: dict[int, int] = defaultdict(int)
    for y, m, cur, cents, n in conn.execute(
            select(year, month, o.currency, func.sum(o.total_cents), func.count())
            .where(sold).group_by(year, month, o.currency)):
        monthly[cur][month_key(int(y), int(m))] = int(cents or 0)
        monthly_orders[month_key(int(y), int(m))] += int(n)
    by_status = {s: int(n) for s, n in conn.execute(
        select(o.status, func.count()).group_by(o.status))}
    by_currency = {cur: (int(n), int(cents or 0)) for cur, n, cents in conn.execute(
        select(o.currency, func.count(), func.sum(o.total_cents)).where(sold)
        .group_by(o.currency))}
    cat_units: dict[str, dict[int, int]] = defaultdict(dict)
    for cat, y, m, units in conn.execute(
            select(p.category, year, month, func.sum(ol.quantity))
            .join(ol, ol.product_id == p.id).join(o, o.id == ol.order_id).where(sold)
            .group_by(p.category, year, month)):
        cat_units[cat or ""][month_key(int(y), int(m))] = int(units or 0)
    cat_revenue: dict[str, dict[str, int]] = defaultdict(dict)
    for cat, cur, cents in conn.execute(
            select(p.category, o.currency, func.sum(ol.line_total_cents))
            .join(ol, ol.product_id == p.id).join(o, o.id == ol.order_id).where(sold)
            .group_by(p.category, o.currency)):
        cat_revenue[cat or ""][cur] = int(cents or 0)
    product_sales = {pid: (int(units or 0), int(n or 0)) for pid, units, n in conn.execute(
        select(ol.product_id, func.sum(ol.quantity), func.count(func.distinct(ol.order_id)))
        .join(o, o.id == ol.order_id).where(sold, ol.product_id.is_not(None))
        .group_by(ol.product_id))}
    categories = sorted({cat or "" for (cat,) in conn.execute(
        select(p.category).distinct())}, key=lambda s: (s == "", fold(s)))
    customers = sorted(conn.execute(
        select(c.id, c.name, c.email, c.country, c.opted_in, func.count(o.id),
               func.min(o.order_date), func.max(o.order_date))
        .join(o, o.customer_id == c.id).group_by(c.id, c.name, c.email, c.country,
                                                  c.opted_in)).all(),
        key=lambda r: (fold(r[1]), r[0]))
    months = list(range(month_key(first.year, first.month), month_key(last.year, last.month)
                        + 1))
    return ReportData(first, last, months, by_status, by_currency, dict(monthly),
                      dict(monthly_orders), categories, dict(cat_units), dict(cat_revenue),
                      product_sales, [tuple(r) for r in customers], int(n_customers),
                      int(n_products))


# --------------------------------------------------------------- the document
class _Styles:
    def __init__(self) -> None:
        from reportlab.lib import colors
        from reportlab.lib.enums import TA_CENTER
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.platypus import TableStyle

        self.title = ParagraphStyle("title", fontName=FONT_BOLD, fontSize=30, leading=36,
                                    alignment=TA_CENTER, spaceAfter=12)
        self.subtitle = ParagraphStyle("subtitle", fontName=FONT, fontSize=13, leading=18,
                                       alignment=TA_CENTER, textColor=colors.HexColor("#444"))
        self.part = ParagraphStyle("part", fontName=FONT_BOLD, fontSize=20, leading=26,
                                   spaceAfter=10, textColor=colors.HexColor("#1d3557"))
        self.h1 = ParagraphStyle("h1", fontName=FONT_BOLD, fontSize=14, leading=18,
                                 spaceBefore=10, spaceAfter=2, keepWithNext=1,
                                 textColor=colors.HexColor("#1d3557"))
        self.body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12)
        self.meta = ParagraphStyle("meta", fontName=FONT, fontSize=8.5, leading=11,
                                   spaceAfter=4, textColor=colors.HexColor("#555"),
                                   keepWithNext=1)
        self.cell = ParagraphStyle("cell", fontName=FONT, fontSize=8, leading=9.5)
        grid = colors.HexColor("#c9d3df")
        self.table = TableStyle([
            ("FONT", (0, 0), (-1, -1), FONT, 8),
            ("FONT", (0, 0), (-1, 0), FONT_BOLD, 8),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde4ee")),
            ("LINEBELOW", (0, 0), (-1, 0), 0.6, grid),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f5f7fa")]),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ])
        self.total_row = [("FONT", (0, -1), (-1, -1), FONT_BOLD, 8),
                          ("LINEABOVE", (0, -1), (-1, -1), 0.6, grid)]


def _mark_section(flowable: Any, section: Section, index: int) -> Any:
    """Make ``flowable`` the start of ``section``: once it is on a page, the document
    sets the bookmark, the outline entry and the page its contents line shows."""
    flowable._swifty_section = section
    flowable._swifty_index = index
    return flowable


def _streaming_doc_class() -> Any:
    from reportlab.platypus import BaseDocTemplate

    class StreamingDoc(BaseDocTemplate):  # type: ignore[misc]
        """Lays out a story produced on demand, and finishes the forward references."""

        def __init__(self, path: str, story: Iterator[Any], report: _Report,
                     **kwargs: Any) -> None:
            super().__init__(path, **kwargs)
            self._story = story
            self._buffer: list[Any] = []
            self._report = report

        def run(self) -> None:
            self._buffer.append(next(self._story))
            self.build(self._buffer, canvasmaker=self._report.canvas_class())

        def filterFlowables(self, flowables: list[Any]) -> None:
            if flowables is self._buffer:
                while len(flowables) < 40:
                    try:
                        flowables.append(next(self._story))
                    except StopIteration:
                        break

        def afterFlowable(self, flowable: Any) -> None:
            section = getattr(flowable, "_swifty_section", None)
            if section is not None:
                self._report.section_started(self.canv, section, self.page,
                                             flowable._swifty_index)

    return StreamingDoc


class _Report:
    """Builds one report: the story, the page decorations and the forward references."""

    def __init__(self, ctx: Context, conn: Any, data: ReportData, generated: dt.datetime,
                 font_note: str) -> None:
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.units import cm

        self.ctx, self.conn, self.data = ctx, conn, data
        self.generated = generated
        self.font_note = font_note
        self.styles = _Styles()
        self.page_w, self.page_h = A4
        self.margin = 1.8 * cm
        self.frame_w = self.page_w - 2 * self.margin
        self.frame_h = self.page_h - 2 * self.margin - 0.6 * cm
        self.sections: list[Section] = [Section("summary", "Summary", 0)]
        self.sections.append(Section("categories", "Sales by category", 0))
        self.sections += [Section(f"cat-{i}", cat or "(no category)", 1)
                          for i, cat in enumerate(data.categories)]
        self.sections.append(Section("customers", "Customers", 0))
        self.sections += [Section(f"cust-{row[0]}", one_line(row[1]) or "(no name)", 1)
                          for row in data.customers]
        self.toc_first_page_lines = int((self.frame_h - 40) // TOC_LINE)
        self.toc_lines = int(self.frame_h // TOC_LINE)
        rest = max(0, len(self.sections) - self.toc_first_page_lines)
        self.toc_pages = 1 + math.ceil(rest / self.toc_lines)
        self.current = ""
        self.toc_seen = 0
        self.done = 0
        self.last_page = 0

    # -------------------------------------------------------------- decorations
    def canvas_class(self) -> Any:
        from reportlab.pdfgen.canvas import Canvas

        report = self

        class ReportCanvas(Canvas):  # type: ignore[misc]
            def save(self) -> None:
                report.define_forms(self)
                super().save()

        return ReportCanvas

    def on_cover(self, canv: Any, doc: Any) -> None:
        self.last_page = max(self.last_page, doc.page)

    def on_toc_page(self, canv: Any, doc: Any) -> None:
        self.last_page = max(self.last_page, doc.page)
        index = self.toc_seen
        self.toc_seen += 1
        canv.doForm(f"swifty-toc-{index}")
        for section, y in self._toc_slots(index):
            canv.linkRect("", section.key, (self.margin, y - 2, self.page_w - self.margin,
                                            y + TOC_LINE - 3), relative=0, thickness=0)
        self._footer(canv, doc)

    def on_body_page(self, canv: Any, doc: Any) -> None:
        self.last_page = max(self.last_page, doc.page)
        self._footer(canv, doc)

    def on_body_page_end(self, canv: Any, doc: Any) -> None:
        from reportlab.lib import colors

        canv.saveState()
        canv.setFont(FONT, 7.5)
        canv.setFillColor(colors.HexColor("#666"))
        top = self.page_h - self.margin + 0.35 * 28.35
        canv.drawString(self.margin, top, "Sales report")
        canv.drawRightString(self.page_w - self.margin, top,
                             fit(self.current, self.frame_w * 0.7, FONT, 7.5))
        canv.setStrokeColor(colors.HexColor("#c9d3df"))
        canv.line(self.margin, top - 4, self.page_w - self.margin, top - 4)
        canv.restoreState()

    def _footer(self, canv: Any, doc: Any) -> None:
        from reportlab.lib import colors
        from reportlab.pdfbase.pdfmetrics import stringWidth

        canv.saveState()
        canv.setFont(FONT, 7.5)
        canv.setFillColor(colors.HexColor("#666"))
        y = self.margin - 0.8 * 28.35
        label = f"Page {doc.page} of "
        canv.drawString(self.margin, y, label)
        canv.translate(self.margin + stringWidth(label, FONT, 7.5), y)
        canv.doForm("swifty-page-total")
        canv.restoreState()
        canv.saveState()
        canv.setFont(FONT, 7.5)
        canv.setFillColor(colors.HexColor("#666"))
        canv.drawRightString(self.page_w - self.margin, y,
                             f"Swifty Desktop · generated {self.generated:%Y-%m-%d %H:%M}")
        canv.restoreState()

    def _toc_slots(self, index: int) -> list[tuple[Section, float]]:
        top = self.page_h - self.margin - 0.6 * 28.35
        if index == 0:
            start, count, y0 = 0, self.toc_first_page_lines, top - 40
        else:
            start = self.toc_first_page_lines + (index - 1) * self.toc_lines
            count, y0 = self.toc_lines, top
        chosen = self.sections[start:start + count]
        return [(s, y0 - (k + 1) * TOC_LINE) for k, s in enumerate(chosen)]

    def define_forms(self, canv: Any) -> None:
        """Draw the forms the pages refer to, now that every page number is known."""
        from reportlab.lib import colors
        from reportlab.pdfbase.pdfmetrics import stringWidth

        canv.beginForm("swifty-page-total")
        canv.setFont(FONT, 7.5)
        canv.setFillColor(colors.HexColor("#666"))
        canv.drawString(0, 0, str(self.last_page))
        canv.endForm()
        right = self.page_w - self.margin
        for index in range(self.toc_pages):
            canv.beginForm(f"swifty-toc-{index}")
            if index == 0:
                canv.setFont(FONT_BOLD, 20)
                canv.setFillColor(colors.HexColor("#1d3557"))
                canv.drawString(self.margin, self.page_h - self.margin - 0.6 * 28.35 - 24,
                                "Contents")
            for section, y in self._toc_slots(index):
                size = 9 if section.level else 10
                font = FONT if section.level else FONT_BOLD
                indent = 14 if section.level else 0
                page = str(section.page) if section.page else "–"
                canv.setFillColor(colors.black)
                canv.setFont(font, size)
                width = stringWidth(page, font, size)
                title = fit(section.title, self.frame_w - indent - width - 40, font, size)
                canv.drawString(self.margin + indent, y, title)
                canv.drawRightString(right, y, page)
                start = self.margin + indent + stringWidth(title, font, size) + 4
                end = right - width - 4
                if end > start:
                    canv.setFillColor(colors.HexColor("#999"))
                    dots = "." * int((end - start) / stringWidth(".", font, size))
                    canv.drawRightString(end, y, dots)
            canv.endForm()

    # ----------------------------------------------------------------- sections
    def section_started(self, canv: Any, section: Section, page: int, index: int) -> None:
        section.page = page
        self.current = section.title
        canv.bookmarkPage(section.key)
        canv.addOutlineEntry(section.title, section.key, level=section.level, closed=True)
        self.done += 1
        self.ctx.progress(min(0.99, 0.05 + 0.95 * self.done / len(self.sections)),
                          f"Section {self.done:,} of {len(self.sections):,}: "
                          f"{section.title[:60]} (page {page:,})")
        self.ctx.check_cancelled()  # between sections: stops the build cleanly

    def story(self) -> Iterator[Any]:
        from reportlab.platypus import NextPageTemplate, PageBreak, Spacer

        yield from self._cover()
        yield NextPageTemplate("toc")
        yield PageBreak()
        for index in range(self.toc_pages):
            yield Spacer(1, 1)
            if index == self.toc_pages - 1:
                yield NextPageTemplate("body")
            yield PageBreak()
        sections = iter(enumerate(self.sections))
        yield from self._summary(next(sections))
        yield PageBreak()
        yield self._part(next(sections))
        for _ in self.data.categories:
            yield from self._category(next(sections))
        yield PageBreak()
        yield self._part(next(sections))
        for row in self.data.customers:
            yield from self._customer(next(sections), row)

    def _part(self, item: tuple[int, Section]) -> Any:
        from reportlab.platypus import Paragraph

        index, section = item
        return _mark_section(Paragraph(para_text(section.title), self.styles.part), section,
                             index)

    def _heading(self, item: tuple[int, Section]) -> Any:
        from reportlab.platypus import Paragraph

        index, section = item
        return _mark_section(Paragraph(para_text(section.title), self.styles.h1), section,
                             index)

    def _cover(self) -> Iterator[Any]:
        from reportlab.platypus import Paragraph, Spacer, Table

        d, st = self.data, self.styles
        yield Spacer(1, 6 * 28.35)
        yield Paragraph("Sales report", st.title)
        yield Paragraph(f"{d.first_date:%d %B %Y} – {d.last_date:%d %B %Y}", st.subtitle)
        yield Spacer(1, 1.2 * 28.35)
        sold = sum(n for n, _ in d.sales_by_currency.values())
        rows = [["", ""],
                ["Customers with orders", f"{len(d.customers):,} of {d.n_customers:,}"],
                ["Orders (not cancelled)", f"{sold:,}"],
                ["Products", f"{d.n_products:,} in {len(d.categories):,} categories"]]
        rows += [[f"Sales in {cur}", money(cents, cur)]
                 for cur, (_n, cents) in sorted(d.sales_by_currency.items(),
                                                key=lambda kv: -kv[1][0])]
        table = Table(rows[1:], colWidths=[6.5 * 28.35, 6.5 * 28.35])
        table.setStyle([("FONT", (0, 0), (-1, -1), FONT, 10),
                        ("FONT", (0, 0), (0, -1), FONT_BOLD, 10),
                        ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                        ("LINEBELOW", (0, 0), (-1, -2), 0.4, "#c9d3df")])
        yield table
        yield Spacer(1, 2 * 28.35)
        yield Paragraph(f"Generated {self.generated:%d %B %Y at %H:%M} by Swifty Desktop",
                        st.subtitle)

    def _bar_chart(self, title: str, series: dict[int, int], scale: float = 1.0,
                   height: float = 4.2 * 28.35) -> Any:
        from reportlab.graphics.charts.barcharts import VerticalBarChart
        from reportlab.graphics.shapes import Drawing, String
        from reportlab.lib import colors

        months = self.data.months[-36:]
        values = [series.get(m, 0) / scale for m in months]
        drawing = Drawing(self.frame_w, height)
        drawing.initialFontName, drawing.initialFontSize = FONT, 8  # not Helvetica
        drawing.add(String(0, height - 10, title, fontName=FONT_BOLD, fontSize=8.5))
        chart = VerticalBarChart()
        chart.x, chart.y = 38, 22
        chart.width, chart.height = self.frame_w - 48, height - 40
        chart.data = [values]
        chart.bars[0].fillColor = colors.HexColor("#457b9d")
        chart.bars[0].strokeColor = None
        chart.valueAxis.valueMin = 0
        chart.valueAxis.labels.fontName = FONT
        chart.valueAxis.labels.fontSize = 6.5
        chart.valueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
        step = 1 if len(months) <= 12 else 3
        chart.categoryAxis.categoryNames = [
            month_label(m) if i % step == 0 else "" for i, m in enumerate(months)]
        chart.categoryAxis.labels.fontName = FONT
        chart.categoryAxis.labels.fontSize = 6.5
        chart.categoryAxis.labels.dy = -2
        drawing.add(chart)
        return drawing

    def _summary(self, item: tuple[int, Section]) -> Iterator[Any]:
        from reportlab.platypus import Paragraph, Spacer, Table

        d, st = self.data, self.styles
        yield self._heading(item)
        yield Paragraph(
            f"Orders from {d.first_date:%d %b %Y} to {d.last_date:%d %b %Y}. Sales count "
            "every order that was not cancelled (open, completed and archived), in the "
            "order's own currency.", st.body)
        yield Spacer(1, 6)
        rows = [["Currency", "Orders", "Sales", "Average order"]]
        for cur, (n, cents) in sorted(d.sales_by_currency.items(), key=lambda kv: -kv[1][0]):
            rows.append([cur, f"{n:,}", money(cents, cur), money(cents // max(1, n), cur)])
        table = Table(rows, colWidths=[3 * 28.35, 3 * 28.35, 5 * 28.35, 4 * 28.35],
                      repeatRows=1, hAlign="LEFT")
        table.setStyle(st.table)
        table.setStyle([("ALIGN", (1, 0), (-1, -1), "RIGHT")])
        yield table
        yield Spacer(1, 6)
        status_rows = [["Status", "Orders"]] + [
            [s, f"{n:,}"] for s, n in sorted(d.orders_by_status.items())]
        status = Table(status_rows, colWidths=[4 * 28.35, 3 * 28.35], hAlign="LEFT")
        status.setStyle(st.table)
        status.setStyle([("ALIGN", (1, 0), (-1, -1), "RIGHT")])
        yield status
        yield Spacer(1, 10)
        yield self._bar_chart("Orders per month (all currencies)", d.monthly_orders)
        top = sorted(d.sales_by_currency, key=lambda cur: -d.sales_by_currency[cur][0])[:4]
        for cur in top:
            yield Spacer(1, 6)
            yield self._bar_chart(f"Monthly sales in {cur}", d.monthly.get(cur, {}),
                                  scale=100.0)

    def _category(self, item: tuple[int, Section]) -> Iterator[Any]:
        from reportlab.platypus import CondPageBreak, Paragraph, Spacer, Table
        from sqlalchemy import select

        from swifty_desktop.db.models import Product

        d, st = self.data, self.styles
        _, section = item
        category = d.categories[int(section.key.split("-")[1])]
        p = Product
        products = self.conn.execute(
            select(p.id, p.sku, p.name, p.price_cents, p.currency, p.stock, p.status)
            .where(p.category == category)).all()
        sales = d.product_sales
        products.sort(key=lambda r: (-sales.get(r[0], (0, 0))[0], r[1]))
        units = sum(sales.get(r[0], (0, 0))[0] for r in products)
        revenue = ", ".join(money(cents, cur) for cur, cents in sorted(
            d.category_revenue.get(category, {}).items(), key=lambda kv: -kv[1]))
        yield CondPageBreak(9 * 28.35)
        yield self._heading(item)
        yield Paragraph(f"{len(products):,} products · {units:,} units sold · sales: "
                        f"{escape(revenue) or 'none'}", st.meta)
        yield self._bar_chart("Units sold per month", d.category_units.get(category, {}),
                              height=3.6 * 28.35)
        yield Spacer(1, 4)
        widths = [2.3, 7.0, 2.7, 1.5, 2.0, 1.6]
        widths = [w * self.frame_w / sum(widths) for w in widths]
        rows: list[list[Any]] = [["SKU", "Product", "Price", "Stock", "Units sold", "Orders"]]
        for pid, sku, name, price, cur, stock, status in products:
            u, n = sales.get(pid, (0, 0))
            label = para_text(name) + (" <i>(discontinued)</i>" if status == "discontinued"
                                       else "")
            rows.append([fit(sku, widths[0] - 6, FONT, 8), Paragraph(label, st.cell),
                         money(price, cur), f"{stock:,}", f"{u:,}", f"{n:,}"])
        for start in range(1, len(rows), 400):  # long tables split faster in parts
            table = Table([rows[0]] + rows[start:start + 400], colWidths=widths,
                          repeatRows=1)
            table.setStyle(st.table)
            table.setStyle([("ALIGN", (2, 0), (-1, -1), "RIGHT")])
            yield table

    def _customer(self, item: tuple[int, Section], row: tuple[Any, ...]) -> Iterator[Any]:
        from reportlab.platypus import CondPageBreak, Paragraph, Spacer, Table
        from sqlalchemy import func, select

        from swifty_desktop.db.models import Order, OrderLine

        st = self.styles
        cid, _name, email, country, opted_in, n_orders, first, last = row
        o, ol = Order, OrderLine
        items = select(func.count()).where(ol.order_id == o.id).scalar_subquery()
        orders = self.conn.execute(
            select(o.number, o.order_date, o.status, o.currency, o.total_cents, items)
            .where(o.customer_id == cid).order_by(o.order_date, o.id)).all()
        yield CondPageBreak(4.2 * 28.35)
        yield self._heading(item)
        yield Paragraph(
            f"{para_text(email)} · {para_text(country) or 'no country'} · "
            f"{'opted in to e-mail' if opted_in else 'not opted in'} · "
            + (f"1 order on {first:%d %b %Y}" if n_orders == 1 else
               f"{n_orders:,} orders from {first:%d %b %Y} to {last:%d %b %Y}"), st.meta)
        widths = [3.2, 2.4, 2.4, 1.4, 3.6]
        widths = [w * self.frame_w / sum(widths) for w in widths]
        rows: list[list[str]] = [["Order", "Date", "Status", "Items", "Total"]]
        totals: dict[str, int] = defaultdict(int)
        for number, date, status, cur, cents, n_items in orders:
            rows.append([fit(number, widths[0] - 6, FONT, 8), f"{date:%Y-%m-%d}",
                         fit(status, widths[2] - 6, FONT, 8), f"{n_items:,}",
                         money(cents, cur)])
            if status not in NOT_SOLD:
                totals[cur] += cents
        for cur, cents in sorted(totals.items()):
            rows.append(["Sales", "", "", "", money(cents, cur)])
        # every cell is one line of text: fixed row heights spare the table from
        # measuring each cell (a tenth of the report's time)
        table = Table(rows, colWidths=widths, rowHeights=[ROW_HEIGHT] * len(rows),
                      repeatRows=1, hAlign="LEFT")
        table.setStyle(st.table)
        table.setStyle([("ALIGN", (3, 0), (-1, -1), "RIGHT")] + (
            [("FONT", (0, -len(totals)), (-1, -1), FONT_BOLD, 8)] if totals else []))
        yield table
        yield Spacer(1, 6)


def build_report(conn: Any, path: Path, ctx: Context) -> dict[str, Any]:
    """Write the report to ``path``; returns pages, sections and timing."""
    from reportlab import rl_config
    from reportlab.lib.pagesizes import A4
    from reportlab.platypus import Frame, PageTemplate

    from swifty_desktop import __version__

    started = time.perf_counter()
    # compressed streams stay binary: ASCII85 would only make them 25 % bigger and,
    # without reportlab's optional C accelerator, cost a tenth of the build time
    rl_config.useA85 = 0
    note = register_fonts()
    ctx.progress(0.01, "Reading sales figures…")
    data = load_data(conn)
    generated = dt.datetime.now()
    report = _Report(ctx, conn, data, generated, note)
    doc_class = _streaming_doc_class()
    doc = doc_class(
        str(path), report.story(), report, pagesize=A4,
        leftMargin=report.margin, rightMargin=report.margin, topMargin=report.margin,
        bottomMargin=report.margin,
        title="Sales report",
        author="Swifty Desktop",
        subject=f"Sales from {data.first_date:%Y-%m-%d} to {data.last_date:%Y-%m-%d}",
        creator=f"Swifty Desktop {__version__}",
        producer="Swifty Desktop (reportlab)",
        keywords=["sales", "report", "customers", "categories", "orders"],
        lang="en",
        initialFontName=FONT,  # otherwise every page also references Helvetica
        initialFontSize=9,
    )
    frame = Frame(report.margin, report.margin, report.frame_w, report.frame_h, id="body",
                  leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
    doc.addPageTemplates([
        PageTemplate("cover", [frame], onPage=report.on_cover),
        PageTemplate("toc", [frame], onPage=report.on_toc_page),
        PageTemplate("body", [frame], onPage=report.on_body_page,
                     onPageEnd=report.on_body_page_end),
    ])
    doc.run()
    seconds = time.perf_counter() - started
    return {"pages": report.last_page, "sections": len(report.sections),
            "customers": len(data.customers), "categories": len(data.categories),
            "font": note, "seconds": round(seconds, 3),
            "pages_per_s": round(report.last_page / seconds, 1) if seconds else None}


def _outcome(result: Mapping[str, Any]) -> str:
    """"1,261 pages (12 categories, 3,000 customers)"."""
    from swifty_desktop.tasks.base import counted, result_count

    if "pages" not in result:
        return ""
    covers = [counted(n, noun, plural) for n, noun, plural in (
        (result_count(result, "categories"), "category", "categories"),
        (result_count(result, "customers"), "customer", "")) if n]
    return counted(result_count(result, "pages"), "page") + (
        f" ({', '.join(covers)})" if covers else "")


@task(
    "report_pdf",
    title="Sales report (PDF)",
    outcome=_outcome,
    description="A PDF sales report: summary and charts, a section per product category "
                "and per customer, with a table of contents.",
    params=(
        Param("path", "path", label="Save as", path_mode="save", file_filter="PDF (*.pdf)",
              help="where to save the PDF: a full path, or a relative one (such as "
                   "reports/sales.pdf) inside the outputs folder (default: the outputs "
                   "folder, named with the date and time)"),
    ),
    timeout=1800,
    rerun_safe=True,  # it only reads; a re-run writes a fresh file
    icon="report",
    actions=(
        Action("Sales report (PDF)", shortcut="Ctrl+Shift+R", icon="report", menu="Reports",
               toolbar=True,
               tooltip="A PDF with sales by month, category and customer",
               ack="{title}: building in the background; it opens from the notification "
                   "when it is ready"),
    ),
)
def report_pdf(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Build the sales report; returns its path and page count."""
    from swifty_desktop.tasks.export import raise_if_busy

    raw = str(params.get("path") or "").strip()
    if raw:
        target = Path(raw).expanduser()
        if target.suffix.lower() != ".pdf":
            target = target.with_name(target.name + ".pdf")
        name = str(target)
    else:
        name = f"sales_report_{time.strftime('%Y-%m-%d_%H%M%S')}.pdf"
    path = ctx.output_path(name)
    engine = ctx.engine()  # type: ignore[attr-defined]
    try:
        with engine.connect() as conn:
            with conn.begin():  # one snapshot: the figures agree with each other
                result = build_report(conn, path, ctx)
    except OSError as exc:
        raise TaskError(
            f"Could not write the sales report to {name}: {exc.strerror or exc}. Choose a "
            "folder you can write to, with enough free space.") from exc
    except (TaskError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise_if_busy(exc)
        raise
    if not result["font"].startswith("DejaVu"):
        ctx.log(f"Font: {result['font']}")
    ctx.log(f"Wrote {result['pages']:,} pages ({result['sections']:,} sections) in "
            f"{result['seconds']:.1f} s")
    result["path"] = str(path)
    return result
