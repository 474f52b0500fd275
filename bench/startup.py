"""Process start to main window shown, with 100,000 jobs of history.

Launches the app as a new process (``python main.py --data-dir D``) on a data
directory holding a long job history and the demo data (if the demo generator is
installed); the app prints the time of its first event-loop turn after show()
(``SWIFTY_STARTUP_PROBE``) and quits.  Median of several cold starts.

    python bench/startup.py [--runs 5] [--jobs 100000]

Last line: {"window_shown_ms", ...}   Goal: <= 800 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, fill_history, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    fill_history(data / "swifty.db", args.jobs)
    seeded = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data),
                             "demo", "seed"], capture_output=True, text=True, cwd=ROOT)
    env = dict(os.environ, SWIFTY_STARTUP_PROBE="1", QT_QPA_PLATFORM="offscreen")
    # an installed app has its bytecode compiled (pip does it at install time); a
    # shell that forbids writing .pyc files would time the compiler instead
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times: list[float] = []
    for _ in range(args.runs + 2):  # two warm-up runs: OS file cache, bytecode cache
        launched = time.time()
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data)],
                              capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("WINDOW_SHOWN")), None)
        if line is None:
            raise SystemExit(f"the app did not report its window: {proc.stderr[-2000:]}")
        times.append((float(line.split()[1]) - launched) * 1000)
        time.sleep(3)  # let the previous run's worker processes finish exiting
    times = times[2:]
    print(json.dumps({
        "window_shown_ms": round(statistics.median(times), 1),
        "runs_ms": [round(t, 1) for t in times],
        "jobs": args.jobs, "demo_data": seeded.returncode == 0,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
