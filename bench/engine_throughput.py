"""End-to-end no-op jobs per second: Swifty's engine against Huey, in one run.

Both queue N no-op jobs one call at a time into SQLite and run them on the same
number of workers (our engine: warm worker *processes* supervised from a
QThreadPool; Huey: SqliteHuey with a thread consumer, its fastest set-up), and
the clock stops when the last job's completion is recorded.  Rounds alternate
between the two so that load on this shared machine hits both alike; the
median round counts.

    python bench/engine_throughput.py [--jobs 3000] [--rounds 3] [--workers 2]

Last line: {"jobs_per_s", "huey_jobs_per_s", "ratio", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_swifty(n: int, workers: int) -> float:
    from PySide6.QtCore import QCoreApplication

    from swifty_desktop.db import make_engine, upgrade
    from swifty_desktop.jobs.manager import JobManager
    from swifty_desktop.jobs.model import Trigger
    from swifty_desktop.paths import DataDir

    app = QCoreApplication.instance() or QCoreApplication([])
    data = DataDir(Path(tempfile.mkdtemp(prefix="bench-swifty-"))).ensure()
    engine = make_engine(data.db_path)
    upgrade(engine)
    manager = JobManager(engine, data, workers=workers, watch_external=False)
    manager.start()
    manager.pool.wait_ready()  # warm workers, as in a running app
    done = 0

    def finished(_job_id: int, status: str) -> None:
        nonlocal done
        if status != "completed":
            raise SystemExit(f"a no-op job ended {status}")
        done += 1
        if done == n:
            app.quit()

    manager.jobFinished.connect(finished)
    trigger = Trigger.cli("bench")
    start = time.perf_counter()
    for i in range(n):
        manager.submit("noop", {}, trigger)
        if i % 50 == 49:
            app.processEvents()  # an app's event loop keeps turning while it submits
    app.exec()
    elapsed = time.perf_counter() - start
    manager.stop()
    engine.dispose()
    return n / elapsed


def run_huey(n: int, workers: int) -> float:
    from huey import SqliteHuey
    from huey.consumer import Consumer
    from huey.signals import SIGNAL_COMPLETE

    path = os.path.join(tempfile.mkdtemp(prefix="bench-huey-"), "huey.db")
    huey = SqliteHuey(filename=path, results=False)

    @huey.task()
    def noop() -> bool:
        return True

    done = 0
    lock = threading.Lock()
    all_done = threading.Event()

    @huey.signal(SIGNAL_COMPLETE)
    def completed(signal, task, *args):  # type: ignore[no-untyped-def]
        nonlocal done
        with lock:
            done += 1
            if done == n:
                all_done.set()

    consumer = Consumer(huey, workers=workers, worker_type="thread", periodic=False,
                        initial_delay=0.001, backoff=1.0, max_delay=0.001)
    consumer.start()
    start = time.perf_counter()
    for _ in range(n):
        noop()
    all_done.wait(600)
    elapsed = time.perf_counter() - start
    consumer.stop(graceful=True)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(args.rounds):
        ours.append(run_swifty(args.jobs, args.workers))
        theirs.append(run_huey(args.jobs, args.workers))
        print(f"round {r + 1}: swifty {ours[-1]:.0f} jobs/s, huey {theirs[-1]:.0f} jobs/s",
              file=sys.stderr)
    o, h = statistics.median(ours), statistics.median(theirs)
    print(json.dumps({
        "jobs_per_s": round(o, 1), "huey_jobs_per_s": round(h, 1), "ratio": round(o / h, 2),
        "jobs": args.jobs, "rounds": args.rounds, "workers": args.workers,
        "machine": (f"{platform.machine()} {os.cpu_count()} cores, "
                    f"Python {platform.python_version()}"),
    }))


if __name__ == "__main__":
    main()
