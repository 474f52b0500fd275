"""The heavy local jobs against their raw baselines, in one run.

* import: ``import_csv`` (sniffing, full validation, duplicate detection, upserts in
  short transactions, checkpoints, rejects file) against ``csv.reader`` + one
  ``executemany`` in one transaction, on the same CSV file, each into a fresh
  database;
* export: ``export`` to XLSX (formats, frozen header, autofilter, formula guard)
  against bare openpyxl write-only ``ws.append`` of the same query's rows;
* report: ``report_pdf`` on the full demo data (pages per second, pages).

Job bodies run in this process with the engine's real ``ctx`` (WorkerContext, its
checkpoints written to a real job row), without the engine around them.  Rounds
alternate ours and raw so that load on this shared machine hits both alike; the
median counts.

    python bench/tasks.py [--rows 500000] [--export-rows 50000] [--rounds 3]
    python bench/tasks.py --memory [--memory-rows 1000000]   # + peak memory, in subprocesses
    python bench/tasks.py --memory-only                       # peak memory alone

Last line: {"import_rows_per_s", "import_vs_raw", "export_rows_per_s",
"export_vs_raw", "report_pages_per_s", "report_pages", ...}
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("Crème", "Müsli", "Smørrebrød", "Piñata", "Łódź", "Tea", "Oak", "Steel", "Linen",
         "Board", "Mug", "Lamp", "Kite", "Vase")


def write_csv(path: Path, rows: int) -> None:
    """A realistic products file: accents, quotes, several currencies and categories."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sku", "name", "category", "price", "currency", "stock", "supplier",
                    "status"])
        for i in range(rows):
            name = f'{WORDS[i % 14]} {WORDS[(i * 7) % 14]} "No. {i}"'
            w.writerow([f"B-{i:08d}", name, WORDS[i % 5], f"{(i * 37) % 2500}.{i % 100:02d}",
                        ("EUR", "USD", "GBP", "CHF")[i % 4], i % 400, f"Supplier {i % 97}",
                        "active" if i % 20 else "discontinued"])


class BenchContext:
    """The engine's WorkerContext on a real job row, with its pipe drained by a thread."""

    def __init__(self, data_dir: Any, engine: Any, kind: str) -> None:
        import multiprocessing

        from swifty_desktop.jobs.model import Trigger
        from swifty_desktop.jobs.store import JobStore
        from swifty_desktop.jobs.worker import WorkerContext

        store = JobStore(engine)
        job_id = store.insert(kind, "bench", {}, Trigger.cli("bench"))
        store.claim([job_id], "bench", lease_s=3600)  # running, as checkpoints require
        self._parent, child = multiprocessing.Pipe()
        self.ctx = WorkerContext(child, multiprocessing.RawValue("q", 0), {
            "id": job_id, "kind": kind, "data_dir": str(data_dir.root),
            "db_url": data_dir.database_url})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            if self._parent.poll(0.05):
                self._parent.recv()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        from swifty_desktop.jobs.worker import _ENGINES

        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def fresh_db(root: Path, name: str) -> tuple[Any, Any]:
    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.paths import DataDir

    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    data_dir = DataDir(folder).ensure()
    return data_dir, open_database(data_dir)


def lock_hold_watch(engine: Any) -> list[float]:
    """Record how long each BEGIN IMMEDIATE ... COMMIT held the write lock."""
    from sqlalchemy import event

    held: list[float] = []
    began: list[float] = []

    def watch(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            began.append(time.perf_counter())
        elif statement.startswith("COMMIT") and began:
            held.append(time.perf_counter() - began.pop())

    event.listen(engine, "before_cursor_execute", watch)
    return held


# ------------------------------------------------------------------- import
def import_ours(root: Path, src: Path) -> tuple[float, dict[str, Any], float]:
    from swifty_desktop.tasks.import_csv import import_csv

    data_dir, engine = fresh_db(root, "imp-ours")
    bench = BenchContext(data_dir, engine, "import_csv")
    held = lock_hold_watch(bench.ctx.engine())
    start = time.perf_counter()
    result = import_csv({"path": str(src), "table": "products", "mode": "skip_invalid"},
                        bench.ctx)
    elapsed = time.perf_counter() - start
    bench.close()
    engine.dispose()
    return elapsed, result, max(held) if held else 0.0


def import_raw(root: Path, src: Path) -> float:
    data_dir, engine = fresh_db(root, "imp-raw")
    stamp = dt.datetime.now().isoformat(sep=" ")
    start = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        with open(src, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            cur.executemany(
                "INSERT INTO products (sku, name, category, price_cents, currency, stock, "
                "supplier, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], stamp) for r in reader))
        raw.commit()
    finally:
        raw.close()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


# ------------------------------------------------------------------- export
def export_ours(data_dir: Any, engine: Any) -> tuple[float, int]:
    from swifty_desktop.tasks.export import export

    bench = BenchContext(data_dir, engine, "export")
    start = time.perf_counter()
    result = export({"table": "products", "format": "xlsx"}, bench.ctx)
    elapsed = time.perf_counter() - start
    bench.close()
    os.unlink(result["path"])
    return elapsed, int(result["rows"])


def export_raw(data_dir: Any, engine: Any) -> float:
    from openpyxl import Workbook

    from swifty_desktop.tasks.export import _query

    path = data_dir.outputs / "raw.xlsx"
    start = time.perf_counter()
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Products")
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=2000).execute(_query("products")):
            ws.append(list(row))
    wb.save(path)
    elapsed = time.perf_counter() - start
    os.unlink(path)
    return elapsed


# ------------------------------------------------------------------- report
def report(root: Path) -> dict[str, Any]:
    from swifty_desktop.demo.seed import seed
    from swifty_desktop.tasks.report_pdf import report_pdf

    data_dir, engine = fresh_db(root, "report")
    seeded = seed(engine, "full")
    print(f"seeded the full demo data in {seeded.seconds:.1f} s", file=sys.stderr)
    bench = BenchContext(data_dir, engine, "report_pdf")
    start = time.perf_counter()
    result = report_pdf({}, bench.ctx)
    elapsed = time.perf_counter() - start
    bench.close()
    engine.dispose()
    result["elapsed"] = elapsed
    result["seed_seconds"] = seeded.seconds
    return result


# ------------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """This process's peak resident memory.

    /proc's VmHWM belongs to this process image; ``ru_maxrss`` would not do here, as
    Linux carries it over from the parent across fork and exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a subprocess: one job body, then its peak resident memory."""
    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.paths import DataDir

    data_dir = DataDir(Path(args.data)).ensure()
    engine = open_database(data_dir)
    bench = BenchContext(data_dir, engine, args.child)
    start = time.perf_counter()
    if args.child == "baseline":
        import openpyxl  # noqa: F401  (what the job bodies load, without the work)

        import swifty_desktop.tasks.export  # noqa: F401
        import swifty_desktop.tasks.import_csv  # noqa: F401
        rows = 0
    elif args.child == "import_csv":
        from swifty_desktop.tasks.import_csv import import_csv

        rows = import_csv({"path": args.src, "table": "products"}, bench.ctx)["inserted"]
    else:
        from swifty_desktop.tasks.export import export

        result = export({"table": "products", "format": args.format}, bench.ctx)
        rows = result["rows"]
        os.unlink(result["path"])
    elapsed = time.perf_counter() - start
    bench.close()
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1), "rows": rows,
                      "seconds": round(elapsed, 1)}))


def run_child(kind: str, data: Path, **extra: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--data", str(data)]
    for key, value in extra.items():
        cmd += [f"--{key}", value]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def memory(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    figures["baseline"] = run_child("baseline", root / "mem-base")
    for rows in sorted({100_000, args.memory_rows}):
        src = root / f"mem-{rows}.csv"
        write_csv(src, rows)
        folder = root / f"mem-{rows}"
        imported = run_child("import_csv", folder, src=str(src))
        figures[f"import_{rows}"] = imported
        print(f"import {rows:,}: {imported}", file=sys.stderr)
        for fmt in ("xlsx", "csv"):
            exported = run_child("export", folder, format=fmt)
            figures[f"export_{fmt}_{rows}"] = exported
            print(f"export {fmt} {rows:,}: {exported}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        src.unlink()
    return figures


# --------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows in the import file")
    parser.add_argument("--export-rows", type=int, default=50_000,
                        help="products exported to XLSX")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory of 100k- and --memory-rows-row "
                             "imports and exports, each in its own process")
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory figures (the last line then holds only them)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--format", default="xlsx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(args)
        return

    root = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    if args.memory_only:
        try:
            print(json.dumps({"memory": memory(args, root)}))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    try:
        src = root / "products.csv"
        write_csv(src, args.rows)
        warm = root / "warm.csv"  # first use loads modules and warms caches: not timed
        write_csv(warm, 2000)
        import_ours(root, warm)
        import_raw(root, warm)
        ours_t: list[float] = []
        raw_t: list[float] = []
        longest_tx: list[float] = []
        for r in range(args.rounds):
            elapsed, result, held = import_ours(root, src)
            assert result["inserted"] == args.rows, result
            ours_t.append(elapsed)
            longest_tx.append(held)
            raw_t.append(import_raw(root, src))
            print(f"import round {r + 1}: ours {args.rows / ours_t[-1]:,.0f} rows/s, raw "
                  f"{args.rows / raw_t[-1]:,.0f} rows/s, longest write transaction "
                  f"{held * 1000:.0f} ms", file=sys.stderr)
        imp_ours, imp_raw = statistics.median(ours_t), statistics.median(raw_t)

        exp_src = root / "export.csv"
        write_csv(exp_src, args.export_rows)
        data_dir, engine = fresh_db(root, "export-db")
        from swifty_desktop.tasks.import_csv import import_csv

        bench = BenchContext(data_dir, engine, "import_csv")
        import_csv({"path": str(exp_src), "table": "products"}, bench.ctx)
        bench.close()
        export_ours(data_dir, engine)  # warm-up, not timed
        export_raw(data_dir, engine)
        e_ours: list[float] = []
        e_raw: list[float] = []
        for r in range(args.rounds):
            elapsed, rows = export_ours(data_dir, engine)
            assert rows == args.export_rows
            e_ours.append(elapsed)
            e_raw.append(export_raw(data_dir, engine))
            print(f"export round {r + 1}: ours {rows / e_ours[-1]:,.0f} rows/s, raw "
                  f"{rows / e_raw[-1]:,.0f} rows/s", file=sys.stderr)
        engine.dispose()
        exp_ours, exp_raw = statistics.median(e_ours), statistics.median(e_raw)

        out: dict[str, Any] = {
            "import_rows_per_s": round(args.rows / imp_ours),
            "import_vs_raw": round(imp_raw / imp_ours, 2),
            "export_rows_per_s": round(args.export_rows / exp_ours),
            "export_vs_raw": round(exp_raw / exp_ours, 2),
            "report_pages_per_s": None,
            "report_pages": None,
            "import_raw_rows_per_s": round(args.rows / imp_raw),
            "export_raw_rows_per_s": round(args.export_rows / exp_raw),
            "import_longest_write_tx_ms": round(max(longest_tx) * 1000),
            "rows": args.rows, "export_rows": args.export_rows, "rounds": args.rounds,
        }
        if not args.no_report:
            rep = report(root)
            out["report_pages_per_s"] = round(rep["pages"] / rep["elapsed"], 1)
            out["report_pages"] = rep["pages"]
            out["report_seconds"] = round(rep["elapsed"], 1)
            out["seed_full_seconds"] = rep["seed_seconds"]
            print(f"report: {rep['pages']:,} pages in {rep['elapsed']:.1f} s", file=sys.stderr)
        if args.memory:
            out["memory"] = memory(args, root)
        out["machine"] = (f"{platform.machine()} {os.cpu_count()} cores, "
                          f"Python {platform.python_version()}")
        print(json.dumps(out))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
