"""What a finished job did, in words: each kind declares it (``@task(outcome=...)``), and
the tray notification and the job registry's Result column both say it that way."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final, wait_until
from helpers import job_record
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSystemTrayIcon, QVBoxLayout, QWidget

from swifty_desktop.gui import notifier as notifier_module
from swifty_desktop.gui.notifier import (
    BannerStrategy,
    Notifier,
    TrayStrategy,
    clip,
    describe,
    outcome_text,
)
from swifty_desktop.gui.registry_model import COL_RESULT, JobTableModel, result_summary
from swifty_desktop.jobs.model import JobError, JobRecord, JobStatus
from swifty_desktop.tasks import KindSpec, get_kind, registry

BASE = job_record()


def job(kind: str, result: Any = None, **changes: Any) -> JobRecord:
    return dataclasses.replace(BASE, kind=kind, title=get_kind(kind).title, result=result,
                               **changes)


# Results shaped as the kinds return them today (see each task's return statement).
CURRENT = [
    ("export", {"table": "products", "format": "xlsx", "rows": 4767,
                "path": "/o/products.xlsx", "seconds": 1.2},
     "4,767 products exported"),
    ("export", {"table": "orders", "format": "csv", "rows": 1, "path": "/o/o.csv"},
     "1 order exported"),
    ("report_pdf", {"pages": 1261, "sections": 3014, "customers": 3000, "categories": 12,
                    "font": "DejaVu Sans", "seconds": 9.1, "pages_per_s": 138.6,
                    "path": "/o/sales.pdf"},
     "1,261 pages (12 categories, 3,000 customers)"),
    ("archive", {"archived": 1204, "cutoff": "2025-06-30", "older_than_days": 365,
                 "previously_archived": 0},
     "1,204 orders archived (dated before 2025-06-30)"),
    ("demo_seed", {"size": "full", "products": 5000, "customers": 3000, "orders": 40000,
                   "order_lines": 120000, "replaced": {}, "seconds": 12.0},
     "5,000 products, 3,000 customers and 40,000 orders loaded"),
    ("exchange_rates", {"date": "2026-03-02", "days": 1, "currencies": 30, "inserted": 29,
                        "updated": 1, "unchanged": 0, "source": "https://x", "sample": {}},
     "30 rates for 2026-03-02: 29 new, 1 corrected"),
    ("email_batch", {"recipients": 12, "sent": 9, "failed": [{"recipient": "a@x"}],
                     "skipped_already_sent": 2, "uncertain": [], "transport": "smtp h:25"},
     "9 e-mails sent, 2 sent earlier, 1 failed"),
    ("email_batch", {"sent": 1, "failed": [], "uncertain": [], "transport": "outbox"},
     "1 e-mail written to the outbox"),
    ("catalog_sync", {"fetched": 40, "inserted": 12, "updated": 340, "discontinued": 3,
                      "pages": 1, "retries": 0, "skipped": 0, "supplier": "S",
                      "conflict_count": 0, "conflicts": []},
     "12 new and 340 updated products; 3 discontinued"),
    ("import_csv", {"table": "customers", "path": "/in/c.csv", "mode": "skip_invalid",
                    "rows": 1237, "inserted": 1200, "updated": 34, "rejected": 3,
                    "rejects_path": "/o/c.rejects.csv", "warnings": []},
     "1,200 new and 34 updated customers; 3 rows rejected"),
    ("import_csv", {"table": "products", "inserted": 2, "updated": 0, "rejected": 1},
     "2 new and 0 updated products; 1 row rejected"),
]


@pytest.mark.parametrize("kind,result,text", CURRENT)
def test_each_kind_says_what_its_job_did(kind: str, result: dict[str, Any], text: str
                                         ) -> None:
    assert get_kind(kind).outcome_text(result) == text
    assert outcome_text(job(kind, result)) == text  # what the notification says
    assert result_summary(job(kind, result)) == text  # the registry's Result column


# Rows stored by older versions: keys missing (counts read 0) or none of them (nothing
# is said, so the registry falls back to the file name or the generic summary).
OLD = [
    ("export", {"rows": 12}, "12 rows exported"),
    ("export", {"table": "products", "path": "/o/p.xlsx"}, ""),
    ("report_pdf", {"pages": 3}, "3 pages"),
    ("report_pdf", {"sections": 9}, ""),
    ("archive", {"archived": 0}, "0 orders archived"),
    ("archive", {"cutoff": "2025-01-01"}, ""),
    ("demo_seed", {"products": 200}, "200 products, 0 customers and 0 orders loaded"),
    ("demo_seed", {"size": "small"}, ""),
    ("exchange_rates", {"currencies": 2}, "2 rates: 0 new, 0 corrected"),
    ("exchange_rates", {"date": "2026-01-01"}, ""),
    ("email_batch", {"sent": 3}, "3 e-mails sent"),
    ("email_batch", {"recipients": 3}, ""),
    ("catalog_sync", {"updated": 5}, "0 new and 5 updated products"),
    ("catalog_sync", {"fetched": 5}, ""),
    ("import_csv", {"inserted": 7}, "7 new and 0 updated products"),
    ("import_csv", {"table": "products", "rows": 7}, ""),
]


@pytest.mark.parametrize("kind,result,text", OLD)
def test_an_old_result_without_some_keys_reads_zero_or_nothing(kind: str,
                                                               result: dict[str, Any],
                                                               text: str) -> None:
    assert get_kind(kind).outcome_text(result) == text


MALFORMED: list[Any] = [
    None, {}, [], "done", 42,
    {"rows": "many", "table": ["x"]}, {"pages": None, "customers": "x", "categories": True},
    {"archived": 2.5, "cutoff": 7}, {"products": {"a": 1}, "orders": -0.0},
    {"currencies": [1, 2], "date": None, "inserted": "1"},
    {"sent": True, "failed": "x", "uncertain": {"a": 1}, "transport": None},
    {"inserted": None, "updated": [], "discontinued": "3", "conflict_count": object()},
]


@pytest.mark.parametrize("kind", sorted(registry()))
def test_no_result_ever_makes_a_kind_raise(kind: str) -> None:
    spec = get_kind(kind)
    for result in MALFORMED:
        text = spec.outcome_text(result)
        assert isinstance(text, str) and "\n" not in text, (kind, result)
    assert spec.outcome_text(None) == "" and spec.outcome_text({}) == ""


def test_malformed_values_read_as_zero() -> None:
    assert get_kind("export").outcome_text({"rows": "many", "table": ["x"]}) == \
        "0 rows exported"
    assert get_kind("email_batch").outcome_text(
        {"sent": True, "failed": "x", "uncertain": {"a": 1}}) == "0 e-mails sent"
    assert get_kind("demo_seed").outcome_text({"products": {"a": 1}, "orders": -0.0}) == \
        "0 products, 0 customers and 0 orders loaded"


def test_an_outcome_function_that_raises_says_nothing_and_is_logged(caplog) -> None:
    def broken(result: Any) -> str:
        return str(1 / result["zero"])

    spec = KindSpec("k", "K", "x:y", outcome=broken)
    with caplog.at_level(logging.WARNING, logger="swifty_desktop.tasks.base"):
        assert spec.outcome_text({"zero": 0}) == ""
    assert "job kind 'k' could not describe a result with keys zero" in caplog.text

    def not_text(result: Any) -> Any:
        return 3

    assert KindSpec("k", "K", "x:y", outcome=not_text).outcome_text({"a": 1}) == ""
    assert KindSpec("k", "K", "x:y").outcome_text({"a": 1}) == ""


def test_the_registry_falls_back_to_the_file_then_to_the_result_values() -> None:
    # a kind with no outcome (diagnostic "write") shows the file it wrote
    wrote = job("write", {"bytes": 100, "path": "/o/sales.xlsx"}, output_path="/o/sales.xlsx")
    assert result_summary(wrote) == "sales.xlsx"
    assert result_summary(job("sleep", {"slept": 1.0, "resumed_from_step": 0})) == \
        "slept 1.0, resumed from step 0"
    # an old export row without a row count: its file, not "table products, format xlsx"
    old = job("export", {"table": "products", "format": "xlsx"},
              output_path="/o/products_2026.xlsx")
    assert result_summary(old) == "products_2026.xlsx"
    # the generic fallback stays for an old row of a kind that has an outcome now
    assert result_summary(job("demo_seed", {"size": "full"})) == "size full"


def test_failed_queued_and_cancelled_jobs_read_as_before() -> None:
    error = JobError("TaskError", "Nothing was imported: row 3 is invalid", "", False)
    result = {"inserted": 5, "updated": 0}
    failed = job("import_csv", result, status=JobStatus.FAILED, error=error,
                 output_path="/o/x.rejects.csv")
    assert result_summary(failed) == "Nothing was imported: row 3 is invalid"
    cancelled = job("import_csv", result, status=JobStatus.CANCELLED, message="Stopped")
    assert result_summary(cancelled) == "Stopped"
    assert result_summary(job("import_csv", result, status=JobStatus.QUEUED)) == \
        "Waiting for a free worker"
    assert outcome_text(failed) == ""  # an outcome describes completed jobs only


def test_a_long_failure_reason_is_cut_at_a_word_with_an_ellipsis() -> None:
    reason = ("row 17: the price '12.345' has more than 2 decimal places; " * 6).strip()
    assert len(reason) > 180
    failed = job("import_csv", status=JobStatus.FAILED,
                 error=JobError("TaskError", reason + "\nTraceback line", "", False))
    note = describe(failed)
    head, sep, tail = note.text.partition(" — ")
    assert sep and tail == "Click for details." and note.target is None
    assert head.endswith("…") and len(head) <= 180
    assert reason.startswith(head[:-1])
    assert not reason[len(head) - 1].isalnum()  # the cut is where a word ended
    assert "Traceback" not in note.text
    assert clip("short enough") == "short enough"
    assert clip("x" * 300) == "x" * 179 + "…"  # one endless word is cut inside it
    assert clip("one two, three", 10) == "one two…"


def test_a_failed_job_that_kept_a_file_opens_it(tmp_path) -> None:
    kept = tmp_path / "products.rejects.csv"
    kept.write_text("row,error\n3,bad price\n", encoding="utf-8")
    error = JobError("TaskError", "Nothing was imported: 1 of 3 rows is invalid (strict "
                     "mode)", "", False)
    failed = job("import_csv", status=JobStatus.FAILED, error=error, output_path=str(kept))
    note = describe(failed)
    assert note.title == "Import CSV failed" and note.target == str(kept)
    assert note.text == ("Nothing was imported: 1 of 3 rows is invalid (strict mode) — "
                         "Click to open the rejected rows (products.rejects.csv).")
    # a kind that does not name its file: the bare name
    other = dataclasses.replace(failed, kind="export", title="Export products to Excel")
    assert describe(other).text.endswith(" — Click to open products.rejects.csv.")
    # without a kept file the click still shows the details
    assert describe(dataclasses.replace(failed, output_path=None)).target is None


def test_completed_notifications_say_the_outcome_and_name_the_file() -> None:
    export = job("export", {"table": "products", "rows": 4767},
                 output_path="/o/products_2026.xlsx")
    assert describe(export).text == ("4,767 products exported. products_2026.xlsx is ready. "
                                     "Click to open it.")
    report = job("report_pdf", {"pages": 1261}, output_path="/o/sales_report_x.pdf")
    assert describe(report).text == "1,261 pages. sales_report_x.pdf is ready. Click to open it."
    imported = job("import_csv", {"table": "products", "inserted": 2, "updated": 0,
                                  "rejected": 1}, output_path="/o/p.rejects.csv")
    assert describe(imported).text == ("2 new and 0 updated products; 1 row rejected. Click "
                                       "to open the rejected rows (p.rejects.csv).")
    seeded = job("demo_seed", {"products": 5000, "customers": 3000, "orders": 40000})
    note = describe(seeded)
    assert note.text == ("5,000 products, 3,000 customers and 40,000 orders loaded. Click to "
                         "show the Products tab.") and note.tab == "products"
    assert describe(job("noop", {"ok": True})).text == "Finished. Click for details."


def test_the_notifier_names_no_kind() -> None:
    """What a kind did is the kind's to say: no kind name is spelled out in notifier.py."""
    source = Path(notifier_module.__file__).read_text(encoding="utf-8")
    named = [k for k in registry() if f'"{k}"' in source or f"'{k}'" in source]
    assert named == []


def test_clicking_a_failed_jobs_kept_file_opens_it(qtbot, make_manager, url_catcher,
                                                   tmp_path) -> None:
    kept = tmp_path / "c.rejects.csv"
    kept.write_text("row,error\n", encoding="utf-8")
    failed = job("import_csv", status=JobStatus.FAILED, output_path=str(kept),
                 error=JobError("TaskError", "Nothing was imported", "", False))
    area = QWidget()
    QVBoxLayout(area)
    qtbot.addWidget(area)
    banners = BannerStrategy(area)
    notifier = Notifier(make_manager(), banners)
    details: list[int] = []
    notifier.detailsRequested.connect(details.append)
    banners.show(describe(failed))
    banner = banners.banners[0]
    assert not banner.openButton.isHidden() and not banner.detailsButton.isHidden()
    banner.openButton.click()
    assert [u.toLocalFile() for u in url_catcher.urls] == [str(kept)] and details == []
    banners.show(describe(dataclasses.replace(failed, output_path=None)))
    assert banners.banners[0].openButton.isHidden()
    banners.banners[0].detailsButton.click()
    assert details == [failed.id] and len(url_catcher.urls) == 1


def test_real_jobs_read_the_same_in_the_registry_and_the_notification(qtbot, make_manager
                                                                      ) -> None:
    manager = make_manager()
    strategy = TrayStrategy(QSystemTrayIcon())
    notifier = Notifier(manager, strategy)
    model = JobTableModel(manager)
    seed = manager.submit("demo_seed", {"size": "small"})
    seeded = wait_final(qtbot, manager, seed, timeout=120)
    assert seeded.status is JobStatus.COMPLETED, seeded.error
    counts = seeded.result
    said = (f"{counts['products']:,} products, {counts['customers']:,} customers and "
            f"{counts['orders']:,} orders loaded")
    wait_until(qtbot, lambda: strategy.last is not None, timeout=30, message="a tray message")
    assert strategy.last.text.startswith(said + ". ")
    export = manager.submit("export", {"table": "customers", "format": "csv"})
    exported = wait_final(qtbot, manager, export, timeout=120)
    assert exported.status is JobStatus.COMPLETED, exported.error
    wait_until(qtbot, lambda: strategy.last.job_id == export, timeout=30)
    name = Path(exported.output_path).name
    assert strategy.last.text == (f"{counts['customers']:,} customers exported. {name} is "
                                  "ready. Click to open it.")

    def cell(job_id: int, role: Qt.ItemDataRole) -> Any:
        row = model.row_of(job_id)
        return model.data(model.index(row, COL_RESULT), role) if row >= 0 else None

    wait_until(qtbot, lambda: cell(export, Qt.ItemDataRole.DisplayRole) ==
               f"{counts['customers']:,} customers exported", message="the Result cell")
    tip = cell(export, Qt.ItemDataRole.ToolTipRole)
    assert tip == f"{counts['customers']:,} customers exported\n{exported.output_path}"
    assert cell(seed, Qt.ItemDataRole.DisplayRole) == said
    del notifier
