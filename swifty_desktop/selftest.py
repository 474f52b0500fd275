"""``swifty-desktop --self-test``: is this installation whole?

Opens the main window offscreen and runs one small job of each kind that works
without the internet through the real engine and its worker processes, in a new
data directory (a temporary one unless ``--data-dir`` names a new or empty one:
one whose database, if it has one, holds no rows at all):

* ``noop`` — ran in a worker process, not in this one;
* ``demo_seed`` (small) — the sample data is in the database;
* ``export`` to CSV and to XLSX — files exist, are what they say (BOM, ZIP
  magic), and hold one row per database row;
* ``report_pdf`` — a PDF (magic bytes, end marker), several pages, set in the
  bundled DejaVu fonts;
* ``backup`` — a copy of the database, made while jobs run: it passes SQLite's
  integrity check and holds as many products as the database;
* ``import_csv`` — a small CSV written here: the valid rows are in the database,
  the invalid one is in a rejects file;
* ``archive`` — the completed orders before the cut-off are archived;
* ``exchange_rates`` — from a small ECB-format feed this process serves on
  loopback (``http.server``), fetched by the worker with ``requests``;
* ``email_batch`` — no mail server is set, so the messages are ``.eml`` files in
  ``outbox/`` (the mail module loads ``smtplib`` and ``email``);
* ``catalog_sync`` — from the built-in demo supplier, which the job serves on
  loopback inside its worker process.

The last three load the modules a frozen bundle most easily lacks (http.server,
requests and urllib3, smtplib and email).  It prints one line per check (``ok
name  detail`` or ``FAIL name  what is broken``) and returns 0 when every check
passed, else 1.  It is what CI runs against the installed wheel and against the
frozen bundle, and what a person runs when the app misbehaves on their machine.
"""

from __future__ import annotations

import csv
import email
import email.policy
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from swifty_desktop.integrations.local_http import LocalHTTPServer

NAME_WIDTH = 14
JOB_TIMEOUT_S = 60.0
TRIGGER_LABEL = "self-test"

IMPORT_ROWS = [
    ["sku", "name", "category", "price", "currency", "stock"],
    ["SELFTEST-1", "Self-test widget", "Self-test", "12.50", "EUR", "3"],
    ["SELFTEST-2", "Self-test gadget, large", "Self-test", "1299.00", "EUR", "0"],
    ["SELFTEST-3", "Self-test Zubehör «é»", "Self-test", "0.99", "CHF", "120"],
    ["SELFTEST-4", "Self-test broken row", "Self-test", "-5", "EUR", "1"],  # negative price
]
IMPORT_VALID = 3

RATES_DAY = "2026-01-02"
RATES = {"USD": 1.0765, "JPY": 163.12, "CHF": 0.9412, "GBP": 0.8398}
RATES_PATH = "/stats/eurofxref/eurofxref-daily.xml"
RATES_FEED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
    'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
    "<gesmes:subject>Reference rates</gesmes:subject>\n"
    "<gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>\n"
    f'<Cube><Cube time="{RATES_DAY}">'
    + "".join(f'<Cube currency="{c}" rate="{r}"/>' for c, r in RATES.items())
    + "</Cube></Cube>\n</gesmes:Envelope>\n"
).encode()


class CheckFailed(Exception):
    """A check found something broken; the message says what."""


class _FeedHandler(BaseHTTPRequestHandler):
    server: _FeedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep quiet
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        found = self.path.split("?")[0] == RATES_PATH
        body = RATES_FEED if found else b"not found"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/xml" if found else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if found:
            self.server.served += 1


class _FeedServer(LocalHTTPServer):
    """The exchange-rates feed, served from a thread of this process on 127.0.0.1."""

    served = 0

    def __init__(self) -> None:
        super().__init__(_FeedHandler, name="self-test feed")
        self.start()

    @property
    def url(self) -> str:
        return self.base_url + RATES_PATH


class SelfTest:
    """Runs the checks in order; each prints one line."""

    def __init__(self, data_dir: Path, out: Any = None) -> None:
        self.data_dir = data_dir
        self.out = out or sys.stdout
        self.passed = 0
        self.failed = 0
        self.app: Any = None
        self.started = time.monotonic()

    # ---------------------------------------------------------------- output
    def line(self, ok: bool, name: str, detail: str) -> None:
        word = "ok  " if ok else "FAIL"
        detail = " ".join(detail.split())  # one line, whatever the message holds
        self.out.write(f"{word} {name.ljust(NAME_WIDTH)} {detail}\n")
        self.out.flush()
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def check(self, name: str, func: Callable[[], str]) -> bool:
        """Run ``func``; its return value is the ok line's detail, CheckFailed the FAIL's."""
        try:
            detail = func()
        except CheckFailed as exc:
            self.line(False, name, str(exc))
            return False
        except Exception as exc:  # a bug or a missing piece: say which, in one line
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.line(False, name, f"{type(exc).__name__}: {exc} "
                                   f"({Path(where.filename).name}:{where.lineno})")
            return False
        self.line(True, name, detail)
        return True

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        from swifty_desktop import APP_NAME, __version__

        self.out.write(f"{APP_NAME} {__version__} self-test in {self.data_dir}\n")
        self.out.flush()
        try:
            if self.check("data dir", self._check_data_dir) and \
                    self.check("start", self._start):
                self.check("window", self._check_window)
                try:
                    self._run_jobs()
                except Exception as exc:  # e.g. a kind missing from this installation
                    self.line(False, "jobs", f"{type(exc).__name__}: {exc}")
                self.check("log", self._check_log)
                self.check("crash reports", self._check_no_crash_reports)
        finally:
            self._stop()
        seconds = time.monotonic() - self.started
        if self.failed:
            where = f" The log is in {self.data_dir / 'logs'}." if self.app is not None else ""
            self.out.write(f"Self-test FAILED: {self.failed} of {self.passed + self.failed} "
                           f"checks failed ({seconds:.1f} s).{where}\n")
        else:
            self.out.write(f"Self-test passed: {self.passed} checks in {seconds:.1f} s.\n")
        self.out.flush()
        return 1 if self.failed else 0

    def _check_data_dir(self) -> str:
        db = self.data_dir / "swifty.db"
        if db.exists():
            try:
                used = _tables_with_rows(db)
            except sqlite3.Error as exc:
                raise CheckFailed(
                    f"cannot read {db} to make sure it holds no data ({exc}); the self-test "
                    "runs only in a new or empty data directory (leave out --data-dir to use "
                    "a temporary one)") from exc
            if used:
                what = ", ".join(f"{n:,} {table}" for table, n in used.items())
                raise CheckFailed(
                    f"{self.data_dir} already holds data ({what}); the self-test loads "
                    "sample data, syncs products, archives orders and writes e-mail, so it "
                    "runs only in a new or empty data directory, one whose database has no "
                    "rows (the app's own default schedules count: a data directory the app "
                    "has opened is not empty). Leave out --data-dir to use a temporary one, "
                    "or name a folder that does not exist yet")
        return str(self.data_dir)

    def _start(self) -> str:
        from PySide6.QtCore import qInstallMessageHandler

        from swifty_desktop.app import SwiftyApp

        qInstallMessageHandler(_qt_message)

        self.app = SwiftyApp(str(self.data_dir), show_welcome=False)
        t0 = time.perf_counter()
        self.app.start()
        import swifty_desktop

        where = Path(swifty_desktop.__file__).resolve().parent
        how = "frozen bundle" if getattr(sys, "frozen", False) else (
            "installed package" if "-packages" in where.parts[-2] else "source tree")
        return (f"app started in {(time.perf_counter() - t0) * 1000:.0f} ms from {where} "
                f"({how}); Python {sys.version.split()[0]}, {sys.executable}")

    def _check_window(self) -> str:
        from swifty_desktop import APP_NAME
        from swifty_desktop.resources import icon_path, resource_dir, ui_file

        window = self.app.window
        self._process_events(0.2)
        if not window.isVisible():
            raise CheckFailed("the main window is not shown")
        if window.windowTitle() != APP_NAME:
            raise CheckFailed(f"the main window's title is {window.windowTitle()!r}")
        form = ui_file("main_window.ui")
        if not form.is_file():
            raise CheckFailed(f"the main window's form is missing: {form}")
        icon = icon_path("swifty")
        if not icon.is_file() or icon.stat().st_size == 0:
            raise CheckFailed(f"the app icon is missing: {icon}")
        if not _draws(icon):
            raise CheckFailed(f"the SVG icon {icon.name} cannot be drawn: Qt's SVG image "
                              "plugin (imageformats/libqsvg) is missing")
        fonts = resource_dir() / "fonts"
        if not (fonts / "DejaVuSans.ttf").is_file():
            raise CheckFailed(f"the report fonts are missing in {fonts}")
        platform = self.app.qapp.platformName()
        return (f"main window shown ({platform}); ui from {form.parent}; "
                f"resources from {resource_dir()}")

    # ------------------------------------------------------------------ jobs
    def _submit(self, kind: str, params: dict[str, Any]) -> int:
        from swifty_desktop.jobs.model import Trigger

        return int(self.app.manager.submit(kind, params, Trigger.cli(TRIGGER_LABEL)))

    def _wait(self, ids: Iterable[int], timeout: float = JOB_TIMEOUT_S) -> dict[int, Any]:
        """Process Qt events until every job's last attempt ended; their records."""
        from swifty_desktop.jobs.model import FINAL_STATES

        store = self.app.manager.store
        ids = list(ids)
        deadline = time.monotonic() + timeout
        done: dict[int, Any] = {}
        while True:
            for job_id in ids:
                if job_id not in done:
                    job = store.latest_attempt(job_id)
                    if job.status in FINAL_STATES and job.superseded_by is None:
                        done[job_id] = job
            if len(done) == len(ids) or time.monotonic() > deadline:
                break
            self._process_events(0.05)
        for job_id in ids:
            done.setdefault(job_id, store.latest_attempt(job_id))
        return done

    def _process_events(self, seconds: float) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    @staticmethod
    def _completed(job: Any) -> Any:
        from swifty_desktop.jobs.model import JobStatus

        if job.status is JobStatus.COMPLETED:
            return job.result or {}
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            raise CheckFailed(f"job #{job.id} ({job.kind}) did not finish within "
                              f"{JOB_TIMEOUT_S:.0f} s (still {job.status.value}"
                              f"{', ' + job.message if job.message else ''})")
        error = f": {job.error.type}: {job.error.message}" if job.error else ""
        raise CheckFailed(f"job #{job.id} ({job.kind}) {job.status.value}{error}")

    @staticmethod
    def _output(job: Any) -> Path:
        if not job.output_path:
            raise CheckFailed(f"job #{job.id} ({job.kind}) names no output file")
        path = Path(job.output_path)
        if not path.is_file():
            raise CheckFailed(f"job #{job.id}'s output {path} does not exist")
        if path.stat().st_size == 0:
            raise CheckFailed(f"job #{job.id}'s output {path} is empty")
        return path

    def _count(self, table: str, where: str = "", args: tuple[Any, ...] = ()) -> int:
        db = self.data_dir / "swifty.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
            return int(conn.execute(sql, args).fetchone()[0])

    def _run_jobs(self) -> None:
        # 1. the sample data everything else reads (and noop beside it)
        seed = self._submit("demo_seed", {"size": "small"})
        noop = self._submit("noop", {"mark": True})
        jobs = self._wait([seed, noop])
        worker_ok = self.check("worker", lambda: self._check_noop(jobs[noop]))
        if not self.check("demo_seed", lambda: self._check_seed(jobs[seed])):
            # without sample data (or workers) the rest would only wait and fail alike
            why = "there is no sample data to work on" if worker_ok else \
                "jobs do not run in worker processes (see 'worker' above)"
            for name in ("export csv", "export xlsx", "report_pdf", "backup", "import_csv",
                         "archive",
                         "exchange_rates", "email_batch", "catalog_sync"):
                self.line(False, name, f"not run: {why}")
            return

        # 2. readers, side by side
        export_csv = self._submit("export", {"table": "products", "format": "csv",
                                             "path": "selftest-products.csv"})
        export_xlsx = self._submit("export", {"table": "customers", "format": "xlsx",
                                              "path": "selftest-customers.xlsx"})
        report = self._submit("report_pdf", {"path": "selftest-report.pdf"})
        backup = self._submit("backup", {"path": "selftest-backup.db"})
        jobs = self._wait([export_csv, export_xlsx, report, backup])
        self.check("export csv", lambda: self._check_csv(jobs[export_csv]))
        self.check("export xlsx", lambda: self._check_xlsx(jobs[export_xlsx]))
        self.check("report_pdf", lambda: self._check_pdf(jobs[report]))
        self.check("backup", lambda: self._check_backup(jobs[backup]))

        # 3. writers, once the readers are done (their row counts stay true)
        source = self.data_dir / "selftest-import.csv"
        with open(source, "w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows(IMPORT_ROWS)
        before_products = self._count("products")
        cutoff = time.strftime("%Y-%m-%d")
        due = self._count("orders", "status = 'completed' AND order_date < ? AND "
                                    "archived_at IS NULL", (cutoff,))
        feed = _FeedServer()
        try:
            imp = self._submit("import_csv", {"path": str(source), "table": "products"})
            arc = self._submit("archive", {"older_than_days": 0})
            rates = self._submit("exchange_rates", {"url": feed.url, "timeout": 10})
            mail = self._submit("email_batch", {"audience": "opted_in"})
            jobs = self._wait([imp, arc, rates, mail])
        finally:
            feed.stop()
        self.check("import_csv", lambda: self._check_import(jobs[imp], before_products))
        self.check("archive", lambda: self._check_archive(jobs[arc], due, cutoff))
        self.check("exchange_rates", lambda: self._check_rates(jobs[rates], feed))
        self.check("email_batch", lambda: self._check_mail(jobs[mail]))

        # 4. the supplier's catalog, once the import's product count is checked
        before_products = self._count("products")
        sync = self._submit("catalog_sync", {})
        jobs = self._wait([sync])
        self.check("catalog_sync", lambda: self._check_sync(jobs[sync], before_products))

    # ---------------------------------------------------------------- checks
    def _check_noop(self, job: Any) -> str:
        result = self._completed(job)
        pid = result.get("pid")
        if not isinstance(pid, int):
            raise CheckFailed(f"noop returned no process id: {result!r}")
        if pid == os.getpid():
            raise CheckFailed(f"noop ran in this process ({pid}), not in a worker process")
        return f"noop ran in worker process {pid} (this process is {os.getpid()})"

    def _check_seed(self, job: Any) -> str:
        result = self._completed(job)
        counts = {t: self._count(t) for t in ("products", "customers", "orders", "order_lines")}
        empty = [t for t, n in counts.items() if n == 0]
        if empty:
            raise CheckFailed(f"sample data loaded, but these tables are empty: {empty}")
        for key in ("products", "customers", "orders"):
            if key in result and int(result[key]) != counts[key]:
                raise CheckFailed(f"the job reports {result[key]} {key}, the database holds "
                                  f"{counts[key]}")
        return (f"small sample data: {counts['products']:,} products, "
                f"{counts['customers']:,} customers, {counts['orders']:,} orders "
                f"in {job.duration or 0:.1f} s")

    def _check_csv(self, job: Any) -> str:
        from swifty_desktop.tasks.export import COLUMNS

        result = self._completed(job)
        path = self._output(job)
        raw = path.read_bytes()
        if not raw.startswith(b"\xef\xbb\xbf"):
            raise CheckFailed(f"{path.name} does not start with a UTF-8 byte-order mark")
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        expected_header = [c.name for c in COLUMNS["products"]]
        if not rows or rows[0] != expected_header:
            raise CheckFailed(f"{path.name}'s header is {rows[:1]}, not {expected_header}")
        n = len(rows) - 1
        in_db = self._count("products")
        if n != in_db or int(result.get("rows", -1)) != in_db:
            raise CheckFailed(f"{path.name} holds {n} rows (the job says "
                              f"{result.get('rows')}); the database has {in_db} products")
        return f"products: {n:,} rows + header, {_size(path)} at {path}"

    def _check_xlsx(self, job: Any) -> str:
        result = self._completed(job)
        path = self._output(job)
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != b"PK\x03\x04":
            raise CheckFailed(f"{path.name} is not an XLSX (ZIP) file: starts with {magic!r}")
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True)
        try:
            ws = wb.worksheets[0]
            rows = sum(1 for _ in ws.iter_rows(values_only=True))
            header = next(ws.iter_rows(min_row=1, max_row=1, values_only=True), ())
        finally:
            wb.close()
        in_db = self._count("customers")
        if rows - 1 != in_db or int(result.get("rows", -1)) != in_db:
            raise CheckFailed(f"{path.name} holds {rows - 1} data rows (the job says "
                              f"{result.get('rows')}); the database has {in_db} customers")
        if "E-mail" not in header:
            raise CheckFailed(f"{path.name}'s header row is {header}")
        return f"customers: {rows - 1:,} rows + header, {_size(path)} at {path}"

    def _check_backup(self, job: Any) -> str:
        from swifty_desktop.db.backup import BackupError, inspect_copy

        result = self._completed(job)
        path = self._output(job)
        try:  # the same check a restore makes: a whole database of this app
            products = inspect_copy(path).counts.get("products", -1)
        except BackupError as exc:
            raise CheckFailed(str(exc)) from None
        in_db = self._count("products")
        if products != in_db or result.get("counts", {}).get("products") != in_db:
            raise CheckFailed(f"{path.name} holds {products} products (the job says "
                              f"{result.get('counts')}); the database has {in_db}")
        if path.with_name(path.name + "-wal").exists():
            raise CheckFailed(f"{path.name} is not one self-contained file (a -wal beside it)")
        return f"{products:,} products, integrity ok, {_size(path)} at {path}"

    def _check_pdf(self, job: Any) -> str:
        result = self._completed(job)
        path = self._output(job)
        with open(path, "rb") as fh:
            head = fh.read(5)
            fh.seek(max(0, path.stat().st_size - 1024))
            tail = fh.read()
        if head != b"%PDF-":
            raise CheckFailed(f"{path.name} is not a PDF: starts with {head!r}")
        if b"%%EOF" not in tail:
            raise CheckFailed(f"{path.name} is cut short: no %%EOF at its end")
        pages = int(result.get("pages") or 0)
        if pages < 3:
            raise CheckFailed(f"the report has {pages} pages; a cover, contents and summary "
                              "at least were expected")
        font = str(result.get("font", ""))
        if not font.startswith("DejaVu"):
            raise CheckFailed(f"the report fell back to another font ({font}): the bundled "
                              "fonts (resources/fonts) are missing")
        return f"{pages:,} pages in {font}, {_size(path)} at {path}"

    def _check_import(self, job: Any, before: int) -> str:
        result = self._completed(job)
        inserted, rejected = int(result.get("inserted", -1)), int(result.get("rejected", -1))
        if inserted != IMPORT_VALID or rejected != len(IMPORT_ROWS) - 1 - IMPORT_VALID:
            raise CheckFailed(f"expected {IMPORT_VALID} rows inserted and 1 rejected; the job "
                              f"says {inserted} inserted, {rejected} rejected")
        now = self._count("products")
        mine = self._count("products", "sku LIKE 'SELFTEST-%'")
        if now != before + IMPORT_VALID or mine != IMPORT_VALID:
            raise CheckFailed(f"the database holds {now} products ({mine} from the file); "
                              f"expected {before + IMPORT_VALID} ({IMPORT_VALID} from the file)")
        rejects = sorted(self.data_dir.glob("outputs/*.rejects.csv"))
        if not rejects or "SELFTEST-4" not in rejects[-1].read_text(encoding="utf-8-sig"):
            raise CheckFailed("the invalid row is not in a rejects file in outputs/")
        return (f"{inserted} products inserted, {rejected} rejected "
                f"(listed in {rejects[-1].name})")

    def _check_archive(self, job: Any, due: int, cutoff: str) -> str:
        result = self._completed(job)
        archived = int(result.get("archived", -1))
        left = self._count("orders", "status = 'completed' AND order_date < ?", (cutoff,))
        total = self._count("orders", "status = 'archived' AND archived_at IS NOT NULL")
        if archived != due or left != 0 or total != due:
            raise CheckFailed(f"{due} completed orders were due; the job archived {archived}, "
                              f"{total} are archived and {left} completed ones are left")
        if due == 0:
            raise CheckFailed("the sample data has no completed orders before today")
        return f"{archived:,} completed orders dated before {cutoff} archived"

    def _check_rates(self, job: Any, feed: _FeedServer) -> str:
        result = self._completed(job)
        if not feed.served:
            raise CheckFailed(f"the job completed, but never fetched the feed at {feed.url}")
        if result.get("date") != RATES_DAY or int(result.get("currencies", -1)) != len(RATES):
            raise CheckFailed(f"the feed holds {len(RATES)} rates for {RATES_DAY}; the job "
                              f"says {result.get('currencies')} for {result.get('date')}")
        stored = {}
        db = self.data_dir / "swifty.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            for currency, rate in conn.execute(
                    "SELECT currency, rate FROM exchange_rates WHERE rate_date = ?",
                    (RATES_DAY,)):
                stored[currency] = rate
        wrong = {c: stored.get(c) for c, r in RATES.items()
                 if stored.get(c) is None or abs(stored[c] - r) > 1e-9}
        if wrong:
            raise CheckFailed(f"the database's rates for {RATES_DAY} differ from the feed's: "
                              f"{wrong} (expected {RATES})")
        return (f"{len(RATES)} rates for {RATES_DAY} from a feed served on loopback "
                f"(USD {stored['USD']})")

    def _check_mail(self, job: Any) -> str:
        result = self._completed(job)
        if result.get("transport") != "outbox":
            raise CheckFailed(f"the batch went to {result.get('transport')}, not to the outbox "
                              "(no mail server is set in a new data directory)")
        recipients, sent = int(result.get("recipients", -1)), int(result.get("sent", -1))
        opted_in = self._count("customers", "opted_in = 1 AND email LIKE '%@%'")
        if recipients != opted_in or sent != recipients or result.get("failed"):
            raise CheckFailed(f"{opted_in} customers opted in; the job planned {recipients}, "
                              f"sent {sent}, failed {result.get('failed')!r}")
        files = sorted((self.data_dir / "outbox").glob("*.eml"))
        if len(files) != sent:
            raise CheckFailed(f"the job sent {sent} messages, the outbox holds {len(files)} "
                              ".eml files")
        if sent == 0:
            raise CheckFailed("the sample data has no customers who opted in")
        msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
        to = str(msg.get("To", ""))
        if not msg.get("Message-ID") or not msg.get("Subject") or "@" not in to:
            raise CheckFailed(f"{files[0].name} is not a complete message (To {to!r}, "
                              f"Subject {msg.get('Subject')!r}, "
                              f"Message-ID {msg.get('Message-ID')!r})")
        return f"{sent:,} messages to opted-in customers as .eml files in {files[0].parent}"

    def _check_sync(self, job: Any, before: int) -> str:
        from swifty_desktop.integrations.demo_supplier import (
            DEMO_PRODUCT_COUNT,
            DEMO_SUPPLIER_NAME,
        )

        result = self._completed(job)
        fetched, inserted = int(result.get("fetched", -1)), int(result.get("inserted", -1))
        skipped = int(result.get("skipped", 0))
        if fetched != DEMO_PRODUCT_COUNT:
            raise CheckFailed(f"the demo supplier offers {DEMO_PRODUCT_COUNT} products; the "
                              f"job fetched {fetched}")
        mine = self._count("products", "supplier = ?", (DEMO_SUPPLIER_NAME,))
        now = self._count("products")
        if mine != fetched - skipped or now != before + inserted or inserted <= 0:
            raise CheckFailed(f"the job fetched {fetched} products ({skipped} skipped) and "
                              f"inserted {inserted}; the database holds {mine} of "
                              f"{DEMO_SUPPLIER_NAME!r} and {now - before} more products")
        return (f"{fetched} products from the built-in demo supplier in {result.get('pages')} "
                f"pages: {inserted} new, {result.get('updated')} changed")

    def _check_log(self) -> str:
        log = self.data_dir / "logs" / "swifty.log"
        if not log.is_file() or log.stat().st_size == 0:
            raise CheckFailed(f"nothing was logged to {log}")
        text = log.read_text(encoding="utf-8", errors="replace")
        if "started with data directory" not in text:
            raise CheckFailed(f"{log} does not record the start")
        return f"{log} ({_size(log)})"

    def _check_no_crash_reports(self) -> str:
        reports = sorted((self.data_dir / "logs").glob("crash-*.txt"))
        if reports:
            last = reports[-1].read_text(encoding="utf-8", errors="replace").strip()
            raise CheckFailed(f"the app hit an unexpected error ({last.splitlines()[-1]}); "
                              f"report: {reports[-1]}")
        return "no unexpected errors"

    # ------------------------------------------------------------------- end
    def _stop(self) -> None:
        app = self.app
        if app is None:
            return
        try:
            if app.window is not None:
                app.window.really_quit = True  # no "jobs are running" question
                app.window.close()
        except Exception:
            pass
        app.shutdown()


def _draws(svg: Path) -> bool:
    """Whether Qt draws ``svg`` (through the SVG icon engine) with visible pixels."""
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QIcon

    image = QIcon(str(svg)).pixmap(QSize(32, 32)).toImage()
    if image.isNull():
        return False
    return any(image.pixelColor(x, y).alpha() > 0 for x in range(0, 32, 4)
               for y in range(0, 32, 4))


def _qt_message(mode: Any, context: Any, message: str) -> None:
    """Qt's own messages to stderr, less the offscreen platform's notices."""
    if message.startswith("This plugin does not support"):
        return
    sys.stderr.write(message + "\n")


def _tables_with_rows(db: Path) -> dict[str, int]:
    """Every table of an existing database that holds rows -> its row count, except the
    schema version Alembic keeps (a database migrated and never used is empty)."""
    used: dict[str, int] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'alembic_version' ORDER BY name")]
        for table in tables:
            quoted = table.replace('"', '""')
            count = int(conn.execute(f'SELECT count(*) FROM "{quoted}"').fetchone()[0])
            if count:
                used[table] = count
    return used


def _close_logs(root: Path) -> None:
    """Detach the log handlers that write into ``root`` (about to be deleted)."""
    from swifty_desktop.bootstrap import close_logs

    close_logs(root)


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1024:.0f} kB" if size >= 1024 else f"{size} bytes"


def run_self_test(data_dir: str | None) -> int:
    """Run the self-test; 0 when all is well, 1 when something is broken."""
    # Always offscreen: the self-test must not flash a window, and it runs on
    # machines (CI, servers, SSH sessions) without a display.
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    temporary = not data_dir
    root = Path(tempfile.mkdtemp(prefix="swifty-selftest-")) if temporary else \
        Path(data_dir).expanduser().resolve()  # type: ignore[arg-type]
    code = SelfTest(root).run()
    _close_logs(root)
    if temporary:
        if code == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"The self-test's data directory is kept for a look: {root}")
    return code


__all__ = ["run_self_test", "SelfTest"]
