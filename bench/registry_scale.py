"""The job registry with 100,000 jobs of history: open, filter, and live updates.

* open_ms:   build the registry model and paint the first screen of the view;
* filter_ms: the slowest of three database-side filters (status, kind, text
  search), each until the view is repainted;
* filter_nomatch_ms: a text search that matches nothing — the worst case, since
  the database scans the whole history for it (the search box runs it once typing
  pauses for 250 ms, not on every key);
* max_stall_ms: the largest stall of a 5 ms GUI-thread timer while 1,000 progress
  updates a second arrive for 50 running jobs through the engine's cross-thread
  signal path (a thread emits them, as runners do).

    python bench/registry_scale.py [--jobs 100000]

Last line: {"open_ms", "filter_ms", "filter_nomatch_ms", "max_stall_ms", ...}
Goals: open <= 300 ms, filter <= 150 ms (no-match search too), max stall <= 33 ms.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import StallMeter, fill_history, machine, percentile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="live-update phase length")
    parser.add_argument("--rate", type=int, default=1000, help="progress updates per second")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.gui.registry_dock import RegistryPanel
    from swifty_desktop.jobs.manager import JobManager
    from swifty_desktop.jobs.store import JobQuery
    from swifty_desktop.paths import DataDir

    app = QApplication.instance() or QApplication(sys.argv[:1])
    data = DataDir(Path(tempfile.mkdtemp(prefix="bench-registry-"))).ensure()
    fill_history(data.db_path, args.jobs)
    with sqlite3.connect(data.db_path) as conn:  # 50 jobs shown as running
        conn.execute("UPDATE jobs SET status='running', finished_at=NULL, progress=0 "
                     "WHERE id > ?", (args.jobs - 50,))
    engine = open_database(data)
    manager = JobManager(engine, data, watch_external=False)

    start = time.perf_counter()
    panel = RegistryPanel(manager)
    panel.resize(1400, 700)
    panel.show()
    panel.jobsView.viewport().repaint()
    open_ms = (time.perf_counter() - start) * 1000
    assert panel.model.rowCount() == 200

    filters = {
        "status": JobQuery(statuses=("failed",), latest_only=True),
        "kind": JobQuery(kinds=("catalog_sync",), latest_only=True),
        "text": JobQuery(text="products.csv", latest_only=True),
    }
    filter_times: dict[str, float] = {}
    for name, query in filters.items():
        start = time.perf_counter()
        panel.model.set_query(query)
        panel.jobsView.viewport().repaint()
        filter_times[name] = (time.perf_counter() - start) * 1000
        assert panel.model.rowCount() > 0, name
    nomatch: list[float] = []
    for _ in range(3):  # the median of three: one keystroke pause each
        start = time.perf_counter()
        panel.model.set_query(JobQuery(text="no job is called this", latest_only=True))
        panel.jobsView.viewport().repaint()
        nomatch.append((time.perf_counter() - start) * 1000)
        assert panel.model.rowCount() == 0
        panel.model.set_query(JobQuery(latest_only=True))
    panel.model.set_query(JobQuery(latest_only=True))
    app.processEvents()

    running = list(range(args.jobs - 49, args.jobs + 1))
    stop = threading.Event()

    def emit_progress() -> None:  # what runner threads do: queued cross-thread signals
        interval = 1.0 / args.rate
        i = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            job_id = running[i % len(running)]
            manager._signals.progress.emit(job_id, (i % 1000) / 1000, f"row {i:,}")
            i += 1
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        emitted.append(i)

    emitted: list[int] = []
    meter = StallMeter()
    meter.start()
    thread = threading.Thread(target=emit_progress, daemon=True)
    thread.start()
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)
    stop.set()
    thread.join()
    meter.stop()
    app.processEvents()
    panel.model.flush()
    print(json.dumps({
        "open_ms": round(open_ms, 1),
        "filter_ms": round(max(filter_times.values()), 1),
        "filters_ms": {k: round(v, 1) for k, v in filter_times.items()},
        "filter_nomatch_ms": round(sorted(nomatch)[1], 1),
        "max_stall_ms": round(max(meter.stalls), 1),
        "p99_stall_ms": round(percentile(meter.stalls, 99), 1),
        "updates_per_s": round(emitted[0] / args.seconds),
        "row_refreshes_per_s": round(panel.model.flushes / args.seconds, 1),
        "jobs": args.jobs, "machine": machine(),
    }))


if __name__ == "__main__":
    main()
