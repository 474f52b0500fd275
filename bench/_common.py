"""Shared pieces of the GUI benchmarks."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def fill_history(db_path: Path, n: int) -> None:
    """``n`` finished jobs of every kind and status, as months of use would leave."""
    import json
    import random
    import sqlite3

    from swifty_desktop.db import make_engine, upgrade

    engine = make_engine(db_path)
    upgrade(engine)
    engine.dispose()
    rnd = random.Random(7)
    kinds = [("export", "Export products to Excel", {"table": "products", "format": "xlsx"}),
             ("import_csv", "Import products from CSV", {"path": "/home/ana/products.csv"}),
             ("report_pdf", "Sales report", {}),
             ("catalog_sync", "Sync supplier catalog", {}),
             ("email_batch", "Send order notifications", {"audience": "open_orders"})]
    now = time.time()
    rows = []
    for i in range(n):
        kind, title, params = kinds[i % len(kinds)]
        created = now - (n - i) * 60
        status = rnd.choices(["completed", "failed", "cancelled"], [90, 8, 2])[0]
        error = ("TransientError", "supplier returned 503") if status == "failed" else (None, None)
        rows.append((kind, title, json.dumps(params), json.dumps({"type": "user", "label": title}),
                     "user", status, 1, created, created + 1, created + 4, created + 4,
                     1.0 if status == "completed" else 0.4, "Done" if status == "completed"
                     else "Stopped", error[0], error[1], 0, 0))
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO jobs (kind, title, params, \"trigger\", trigger_type, status, attempt, "
            "created_at, started_at, finished_at, updated_at, progress, message, error_type, "
            "error_message, error_transient, cancel_requested) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)


class StallMeter:
    """Ticks every 5 ms on the GUI thread and records each gap between ticks (ms).

    The gap is how long the event loop went without running the timer: 5 ms when
    nothing blocks it, more when something does.  (Earlier figures subtracted the
    5 ms period; the raw gap is what "frames dropped" means, so that is recorded.)
    """

    PERIOD_MS = 5

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.stalls: list[float] = []
        self._last = 0.0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(self.PERIOD_MS)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.stalls.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.stalls.append((now - self._last) * 1000)
        self._last = now
