"""Click to visible queued row: how fast a click is acknowledged in the job registry.

The real main window (offscreen) with the real engine; each round triggers a job
action (as a click does), then repaints the registry view synchronously — the
row is on screen when this returns.  Meanwhile the jobs run in worker processes.

    python bench/ack_latency.py [--clicks 300]

Last line: {"p50_ms", "p99_ms", ...}   Goal: p99 <= 16 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fill_history, machine, percentile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--history", type=int, default=10_000,
                        help="finished jobs already in the registry")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.gui.main_window import MainWindow
    from swifty_desktop.jobs.manager import JobManager
    from swifty_desktop.paths import DataDir
    from swifty_desktop.tasks import Action, get_kind

    app = QApplication.instance() or QApplication(sys.argv[:1])
    data = DataDir(Path(tempfile.mkdtemp(prefix="bench-ack-"))).ensure()
    fill_history(data.db_path, args.history)
    engine = open_database(data)
    manager = JobManager(engine, data)
    window = MainWindow(manager, data)
    window.show()
    manager.start()
    manager.pool.wait_ready()
    # a real toolbar action if the export kind is installed, else a diagnostic one
    action = window.kind_actions.get("Export products to Excel")
    spec, decl = get_kind("sleep"), Action("Nap", params={"seconds": 0.01})
    view = window.registry.jobsView
    model = window.registry.model
    latencies: list[float] = []
    for i in range(args.clicks):
        app.processEvents()  # let the engine's signals in between clicks
        before = model.rowCount()
        start = time.perf_counter()
        if action is not None and i % 2 == 0:
            action.trigger()
        else:
            window.run_action(spec, decl)
        view.viewport().repaint()  # the new row is painted when this returns
        latencies.append((time.perf_counter() - start) * 1000)
        if model.rowCount() != before + 1:
            raise SystemExit("the click did not add exactly one row")
        time.sleep(0.01)
    window.really_quit = True
    manager.stop(timeout=30)
    print(json.dumps({
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "clicks": args.clicks, "history": args.history,
        "action": "Export products to Excel / Nap" if action else "Nap",
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
