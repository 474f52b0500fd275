"""How long the GUI thread's event loop stalls while four CPU-heavy jobs run.

A 5 ms QTimer on the GUI thread records the gap between its ticks (the stall: how
long the event loop went without turning; 5 ms when nothing blocks it).  Two runs
in one process, same job body (``burn_work``, allocation-heavy pure Python, shared with the ``burn``
kind):

* isolated: four ``burn`` jobs through the real engine (worker processes,
  QThreadPool runners relaying progress, the registry model listening);
* thread:   the same body on four plain QThreadPool threads (the baseline the
  architecture rejects: the threads hold the GIL).

    python bench/ui_stall.py [--units 40000] [--jobs 4]

Last line: {"isolated_p99_ms", "isolated_max_ms", "thread_p99_ms", "thread_max_ms"}
Goal: isolated p99 <= 16 ms and max <= 33 ms.
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

from _common import StallMeter, machine, percentile  # noqa: E402


def run_isolated(app, units: int, jobs: int) -> list[float]:  # type: ignore[no-untyped-def]
    from swifty_desktop.db import make_engine, upgrade
    from swifty_desktop.gui.registry_model import JobTableModel
    from swifty_desktop.jobs.manager import JobManager
    from swifty_desktop.paths import DataDir

    data = DataDir(Path(tempfile.mkdtemp(prefix="bench-stall-"))).ensure()
    engine = make_engine(data.db_path)
    upgrade(engine)
    manager = JobManager(engine, data, workers=jobs)
    manager.start()
    manager.pool.wait_ready()  # warm, as in a running app
    model = JobTableModel(manager)  # the registry listens, as in the app
    meter = StallMeter()
    done: list[int] = []
    manager.jobFinished.connect(lambda job_id, status: done.append(job_id))
    meter.start()
    for _ in range(jobs):
        manager.submit("burn", {"units": units})
    while len(done) < jobs:
        app.processEvents()
        time.sleep(0.001)
    meter.stop()
    statuses = {manager.store.get(i).status.value for i in done}
    manager.stop()
    manager.store.close()
    engine.dispose()
    if statuses != {"completed"}:
        raise SystemExit(f"burn jobs ended {statuses}")
    assert model.rowCount() == jobs
    return meter.stalls


def run_threads(app, units: int, jobs: int) -> list[float]:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QRunnable, QThreadPool

    from swifty_desktop.tasks.diagnostic import burn_work

    class Burn(QRunnable):
        def __init__(self) -> None:
            super().__init__()
            self.done = False

        def run(self) -> None:
            burn_work(units)
            self.done = True

    pool = QThreadPool()
    pool.setMaxThreadCount(jobs)
    runnables = [Burn() for _ in range(jobs)]
    for r in runnables:
        r.setAutoDelete(False)
    meter = StallMeter()
    meter.start()
    for r in runnables:
        pool.start(r)
    while not all(r.done for r in runnables):
        app.processEvents()
        time.sleep(0.001)
    meter.stop()
    pool.waitForDone()
    return meter.stalls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=40000, help="work per job (~60 µs each)")
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    isolated = run_isolated(app, args.units, args.jobs)
    thread = run_threads(app, args.units, args.jobs)
    result = {
        "isolated_p99_ms": round(percentile(isolated, 99), 1),
        "isolated_max_ms": round(max(isolated), 1),
        "thread_p99_ms": round(percentile(thread, 99), 1),
        "thread_max_ms": round(max(thread), 1),
        "isolated_median_ms": round(statistics.median(isolated), 2),
        "thread_median_ms": round(statistics.median(thread), 2),
        "ticks": [len(isolated), len(thread)],
        "jobs": args.jobs, "units": args.units,
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
