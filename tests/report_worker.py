"""A real worker process that also knows one test kind, ``report_probe``.

The engine's workers only know the app's kinds, so a test that needs a job body
doing something the app's kinds never do (finish a report, then fail in a chosen
way) starts this process instead: :func:`serve` registers the kind and then runs
the worker's own loop (:func:`swifty_desktop.jobs.worker.worker_main`), so the
outputs go through the real ``WorkerContext`` and ``run_job``.  The kind is
registered only inside that process, never in the test process.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swifty_desktop.tasks.base import Param, TaskError, task


def report_probe(params: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    """Writes ``report.txt`` (keep_on_failure) and ``data.bin``, then ends as ``how`` says:

    ``complete-then-fail``   closes and completes the report, raises TaskError naming it
    ``complete-then-error``  the same, but a plain ValueError
    ``fail-while-writing``   raises while the report is still open (never completed)
    ``write-after-complete`` completes it, writes more, raises
    ``complete-then-cancel`` completes it, then waits to be cancelled
    ``complete-then-succeed`` completes it and returns
    """
    how = str(params["how"])
    data = ctx.output_path("data.bin")
    data.write_bytes(b"x" * 1000)
    report = ctx.output_path("report.txt", keep_on_failure=True, primary=False)
    fh = open(report, "w", encoding="utf-8")
    fh.write("line 1\nline 2\n")
    if how == "fail-while-writing":
        fh.flush()  # half a report on disk, as a task that fails mid-way leaves it
        raise TaskError(f"failed while writing {report.name}")
    fh.close()
    ctx.mark_output_complete(report)
    if how == "write-after-complete":
        with open(report, "a", encoding="utf-8") as more:
            more.write("line 3, after the task said it was complete\n")
        raise TaskError(f"failed; see {report.name}")
    if how == "complete-then-fail":
        raise TaskError(f"failed; the details are in {report.name} ({report})")
    if how == "complete-then-error":
        raise ValueError(f"a bug; see {report.name}")
    if how == "complete-then-cancel":
        ctx.log("report complete")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(0.01)
        raise TaskError("was never cancelled")
    return {"report": str(report), "data": str(data)}


def serve(conn: Any, cancel_flag: Any) -> None:
    """Entry point of the test worker process."""
    from swifty_desktop.jobs.worker import worker_main

    task("report_probe", title="Report probe", diagnostic=True,
         params=(Param("how", "str", required=True, help="how the job ends"),))(report_probe)
    worker_main(conn, cancel_flag, nice=0)


class ProbeWorker:
    """The test's end of one :func:`serve` process: run a job, read how it ended."""

    def __init__(self, data_dir: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.cancel_flag = ctx.RawValue("q", 0)
        self.process = ctx.Process(target=serve, args=(child, self.cancel_flag), daemon=True)
        self.process.start()
        child.close()
        self.data_dir = data_dir
        self.next_id = 1
        assert self.conn.poll(60), "the test worker did not start"
        assert self.conn.recv()[0] == "ready"

    def run(self, how: str, cancel_on_log: str | None = None) -> tuple[dict[str, Any], list[Any]]:
        """Run one ``report_probe`` job; return its outcome and the messages before it.

        ``cancel_on_log``: set the cancel value once the job logs this line."""
        job_id, self.next_id = self.next_id, self.next_id + 1
        self.conn.send({"job": {"id": job_id, "kind": "report_probe", "params": {"how": how},
                                "data_dir": str(self.data_dir), "db_url": "sqlite://"}})
        messages: list[Any] = []
        while True:
            assert self.conn.poll(60), f"job {how} did not end"
            msg = self.conn.recv()
            if msg[0] == "done":
                self.cancel_flag.value = 0
                return msg[1], messages
            messages.append(msg)
            if msg[0] == "log" and msg[1] == cancel_on_log:
                self.cancel_flag.value = job_id

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
