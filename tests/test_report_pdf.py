"""The sales report: checked with pypdf (pages, text on pages, metadata, outline)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pypdf
import pytest
from conftest import wait_final, wait_until
from sqlalchemy import insert, select
from task_context import FakeContext

from swifty_desktop.db.engine import write_transaction
from swifty_desktop.db.models import Customer, Order
from swifty_desktop.demo.seed import TRICKY_CUSTOMERS, TRICKY_PRODUCT, seed
from swifty_desktop.jobs.model import JobStatus
from swifty_desktop.tasks.base import JobCancelled, TaskError
from swifty_desktop.tasks.report_pdf import font_files, report_pdf


@pytest.fixture
def demo(db: Any) -> Any:
    seed(db, "small")
    return db


def build(engine: Any, data_dir: Any, **kwargs: Any) -> tuple[dict[str, Any], FakeContext]:
    ctx = FakeContext(engine, data_dir, **kwargs)
    return report_pdf({}, ctx), ctx


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: Any) -> Any:
    """The small demo data's report, built once for the tests that only read it."""
    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.paths import DataDir

    data_dir = DataDir(tmp_path_factory.mktemp("report") / "data").ensure()
    engine = open_database(data_dir)
    seed(engine, "small")
    result, ctx = build(engine, data_dir)
    reader = pypdf.PdfReader(result["path"])
    pages = [p.extract_text() for p in reader.pages]
    yield engine, result, ctx, reader, pages
    engine.dispose()


def test_report_pages_text_metadata_and_outline(small_report: Any) -> None:
    _engine, result, ctx, reader, pages = small_report
    assert len(pages) == result["pages"] > 20
    assert "Sales report" in pages[0] and "Customers with orders" in pages[0]
    assert "Contents" in pages[1] and "Summary" in pages[1] and "Sales by category" in pages[1]
    # every page after the cover says which page it is, of how many
    for number, page_text in enumerate(pages[1:], 2):
        assert re.search(rf"Page {number} of\s*{len(pages)}\b", page_text), number
    everything = "\n".join(pages)
    assert TRICKY_PRODUCT in everything  # escaped: printed as written, not as bold markup
    assert "Food & Drink" in everything
    assert TRICKY_CUSTOMERS[0] in everything
    accented = [w for w in ("ü", "ø", "é", "ñ", "Ł", "ř") if w in everything]
    assert len(accented) >= 4, accented
    meta = reader.metadata
    assert meta.title == "Sales report" and meta.author == "Swifty Desktop"
    assert meta.subject == "Sales from 2024-12-01 to 2026-11-30"
    assert "customers" in meta["/Keywords"]
    outline = reader.outline
    titles = [item.title for item in outline if not isinstance(item, list)]
    assert titles[:3] == ["Summary", "Sales by category", "Customers"]
    # sections report progress, one message per section, in order
    sections = [m for f, m in ctx.progress_calls if m.startswith("Section ")]
    assert len(sections) == result["sections"] == 2 + 12 + 1 + result["customers"]
    assert sections[0].startswith(f"Section 1 of {result['sections']}: Summary")


def test_contents_lines_point_at_the_right_pages(small_report: Any) -> None:
    engine, _result, _ctx, reader, pages = small_report
    with engine.connect() as conn:
        name = conn.execute(select(Customer.name).join(Order, Order.customer_id == Customer.id)
                            .where(Customer.name.like("Łukasz%")).limit(1)).scalar_one()
    contents = "\n".join(pages[1:4])
    match = re.search(re.escape(name) + r"\s*\n?\s*(\d+)", contents)
    assert match, f"{name} not in the contents"
    page = int(match.group(1))
    assert name in pages[page - 1]  # the section really starts on that page
    links = [a.get_object() for a in reader.pages[1].get("/Annots", [])]
    assert len(links) >= 40 and all(a["/Subtype"] == "/Link" for a in links)


def test_the_page_count_grows_with_the_data(demo: Any, data_dir: Any) -> None:
    first, _ = build(demo, data_dir)
    with demo.connect() as conn:
        customers = list(conn.execute(select(Customer.id)).scalars())
    rows = [{"number": f"X-{i:05d}", "customer_id": customers[i % len(customers)],
             "order_date": dt.date(2026, 1, 1) + dt.timedelta(days=i % 300),
             "status": "completed", "currency": "EUR", "total_cents": 1000 + i}
            for i in range(800)]
    with write_transaction(demo) as conn:
        conn.execute(insert(Order), rows)
    second, _ = build(demo, data_dir)
    assert second["pages"] > first["pages"] + 10
    assert len(pypdf.PdfReader(second["path"]).pages) == second["pages"]


def test_report_stops_between_sections_when_cancelled(demo: Any, data_dir: Any) -> None:
    ctx = FakeContext(demo, data_dir, cancel_after=5)
    with pytest.raises(JobCancelled):
        report_pdf({}, ctx)
    done = [m for _, m in ctx.progress_calls if m.startswith("Section ")]
    assert len(done) == 6  # checked once after each section; the sixth stopped it


def test_no_orders_is_a_clear_error(db: Any, data_dir: Any) -> None:
    with pytest.raises(TaskError, match="the database has no orders yet.*load the sample data"):
        build(db, data_dir)


def test_the_report_embeds_a_font_that_covers_accents(small_report: Any) -> None:
    files = font_files()
    assert files is not None and files[0].name == "DejaVuSans.ttf"
    _engine, result, _ctx, reader, _pages = small_report
    assert result["font"] == "DejaVu Sans"
    fonts = {str(f.get_object()["/BaseFont"])
             for page in reader.pages[:3]
             for f in page["/Resources"]["/Font"].values()}
    assert any("DejaVuSans" in f for f in fonts), fonts
    assert not any(f in ("/Helvetica", "/Times-Roman") for f in fonts)


def test_report_runs_in_the_engine(make_manager: Any, qtbot: Any, demo: Any,
                                   data_dir: Any, tmp_path: Path) -> None:
    manager = make_manager()
    target = tmp_path / "reports" / "sales"
    job = wait_final(qtbot, manager, manager.submit("report_pdf", {"path": str(target)}),
                     timeout=90)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.output_path == str(target) + ".pdf" == job.result["path"]
    assert len(pypdf.PdfReader(job.output_path).pages) == job.result["pages"]
    assert not list(target.parent.glob(".*part-*"))


BAR_FILL = b".270588 .482353 .615686 rg"  # the bars' colour, #457b9d, as a fill operator


def test_table_headers_repeat_on_continuation_pages(demo: Any, data_dir: Any) -> None:
    with demo.connect() as conn:
        cid, email = conn.execute(select(Customer.id, Customer.email)
                                  .order_by(Customer.id).limit(1)).one()
    rows = [{"number": f"LONG-{i:04d}", "customer_id": cid,
             "order_date": dt.date(2026, 1, 1) + dt.timedelta(days=i % 300),
             "status": "completed", "currency": "EUR", "total_cents": 1000 + i}
            for i in range(150)]
    with write_transaction(demo) as conn:
        conn.execute(insert(Order), rows)
    result, _ = build(demo, data_dir)
    pages = [p.extract_text() for p in pypdf.PdfReader(result["path"]).pages]
    spanned = [t for t in pages if "LONG-" in t]
    assert len(spanned) >= 3  # one customer's orders over several pages
    assert email in spanned[0]
    for text in spanned[1:]:
        assert email not in text  # a continuation, not the section's first page
        before = text[:text.index("LONG-")].split()
        assert before[-5:] == ["Order", "Date", "Status", "Items", "Total"], before


def test_monthly_charts_are_drawn(small_report: Any) -> None:
    _engine, _result, _ctx, reader, pages = small_report
    starts = {item.title: reader.get_destination_page_number(item)
              for item in reader.outline if not isinstance(item, list)}
    summary = starts["Summary"]
    text = pages[summary]
    assert "Orders per month (all currencies)" in text and "Monthly sales in EUR" in text
    assert "Dec 24" in text and "Sep 26" in text  # month labels on the axis
    ops = reader.pages[summary].get_contents().get_data()
    assert ops.count(BAR_FILL) >= 2 * 20  # two charts of some 24 monthly bars each
    category = next(i for i, t in enumerate(pages) if "Units sold per month" in t)
    assert reader.pages[category].get_contents().get_data().count(BAR_FILL) >= 20
    for page in reader.pages[starts["Customers"]:starts["Customers"] + 5]:
        assert BAR_FILL not in page.get_contents().get_data()  # tables only


@pytest.mark.slow
def test_the_full_demo_data_makes_a_report_of_more_than_500_pages(db: Any,
                                                                  data_dir: Any) -> None:
    seed(db, "full")
    result, ctx = build(db, data_dir)
    reader = pypdf.PdfReader(result["path"])
    assert len(reader.pages) == result["pages"] > 500
    last = reader.pages[-1].extract_text()
    assert f"Page {result['pages']} of" in last and str(result["pages"]) in last
    assert len([m for _, m in ctx.progress_calls if m.startswith("Section ")]) == \
        result["sections"] > 3000


def test_a_cancelled_report_leaves_no_file(make_manager: Any, qtbot: Any, db: Any,
                                           data_dir: Any, tmp_path: Path) -> None:
    seed(db, "full")
    manager = make_manager(workers=1)
    chosen = tmp_path / "mine" / "sales.pdf"
    ids = [manager.submit("report_pdf", {}), manager.submit("report_pdf", {"path": str(chosen)})]
    for job_id in ids:
        wait_until(qtbot, lambda j=job_id: (manager.store.get(j).message or "").startswith(
            "Section "), timeout=120, message="the report to be under way")
        manager.cancel(job_id)
        job = wait_final(qtbot, manager, job_id)
        assert job.status is JobStatus.CANCELLED and job.output_path is None
        assert 0 < job.progress < 0.9
    assert list(data_dir.outputs.iterdir()) == []  # no final file, no .part- file
    assert list(chosen.parent.iterdir()) == []
