"""Diagnostic kinds used by tests, benchmarks and the self-test.

``noop`` does nothing, ``sleep`` waits (cancellable), ``fail`` raises, ``crash``
kills its own worker process the hard way and ``burn`` keeps a core busy with
allocation-heavy pure Python, the way a real export or report does.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from swifty_desktop.tasks.base import (
    Context,
    Param,
    RetryPolicy,
    TaskError,
    TransientError,
    task,
)


@task("noop", title="No-op", description="Does nothing; measures the engine's own cost.",
      params=(Param("mark", "bool", default=False,
                    help="log one line naming the process that ran it"),),
      diagnostic=True, rerun_safe=True)
def noop(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    if params.get("mark"):
        ctx.log(f"ran in process {os.getpid()}")
    return {"ok": True, "pid": os.getpid()}


@task(
    "sleep",
    title="Sleep",
    description="Waits for a number of seconds, reporting progress; can be cancelled.",
    params=(
        Param("seconds", "float", default=1.0, minimum=0, help="how long to wait"),
        Param("checkpoints", "bool", default=False,
              help="save a checkpoint every step so that a re-run resumes"),
        Param("ignore_cancel", "bool", default=False,
              help="never check for cancellation (to test the hard kill)"),
        Param("check_every", "int", minimum=1,
              help="check for cancellation every this many steps of 50 ms (default 1)"),
    ),
    diagnostic=True,
    rerun_safe=True,
    title_fn=lambda p: f"Sleep {p.get('seconds', 1.0):g} s",
)
def sleep(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    seconds = float(params.get("seconds", 1.0))
    steps = max(1, int(seconds * 20))
    start_step = int(ctx.resume_state.get("step", 0)) if isinstance(ctx.resume_state, dict) else 0
    if start_step:
        ctx.log(f"resuming at step {start_step} of {steps}")
    check_every = int(params.get("check_every") or 1)
    for step in range(start_step, steps):
        if not params.get("ignore_cancel") and step % check_every == 0:
            ctx.check_cancelled()
        time.sleep(seconds / steps)
        ctx.progress((step + 1) / steps, f"{(step + 1) * seconds / steps:.1f} of {seconds:g} s")
        if params.get("checkpoints"):
            ctx.checkpoint({"step": step + 1})
    ctx.log(f"slept {seconds:g} s in process {os.getpid()}")
    return {"slept": seconds, "resumed_from_step": start_step}


@task(
    "fail",
    title="Fail",
    description="Raises an error (transient errors are retried automatically).",
    params=(
        Param("message", "str", default="failing on purpose", help="the error message"),
        Param("transient", "bool", default=False, help="raise a transient error"),
        Param("succeed_on_attempt", "int", default=0, minimum=0,
              help="succeed from this attempt on (0: never)"),
        Param("retry_after", "float", minimum=0,
              help="a transient error asks to be retried no sooner than this (seconds)"),
    ),
    retry=RetryPolicy(max_attempts=3, backoff_base=0.2, backoff_max=2.0),
    diagnostic=True,
    title_fn=lambda p: f"Fail ({'transient' if p.get('transient') else 'permanent'})",
)
def fail(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    ctx.log(f"attempt {ctx.attempt}")
    succeed_on = int(params.get("succeed_on_attempt") or 0)
    if succeed_on and ctx.attempt >= succeed_on:
        return {"succeeded_on_attempt": ctx.attempt}
    if params.get("transient"):
        raise TransientError(str(params.get("message")),
                             retry_after=float(params.get("retry_after") or 0.0) or None)
    raise TaskError(str(params.get("message")))


@task(
    "crash",
    title="Crash",
    description="Kills its own worker process (segfault-like) to test crash handling.",
    params=(
        Param("how", "choice", default="sigkill",
              choices=("sigkill", "segv", "exit", "memory"),
              help="sigkill, segv (signal 11), exit (os._exit(3)) or memory (allocate past "
                   "a memory limit: a real MemoryError; the process survives it)"),
        Param("after", "float", default=0.0, minimum=0, help="seconds to run before crashing"),
    ),
    diagnostic=True,
)
def crash(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    time.sleep(float(params.get("after") or 0.0))
    how = params.get("how", "sigkill")
    if how == "memory":
        _exhaust_memory()
    if how == "exit":
        os._exit(3)
    sig = signal.SIGSEGV if how == "segv" else getattr(signal, "SIGKILL", signal.SIGTERM)
    if how == "segv":
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    time.sleep(5)
    raise TaskError("the crash kind did not crash")  # pragma: no cover


def _exhaust_memory() -> None:
    """Run out of memory for real, under a temporary address-space limit of 256 MB
    above what the process uses now (Linux; elsewhere a plain MemoryError)."""
    try:
        import resource

        with open("/proc/self/statm") as fh:
            in_use = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        raise MemoryError from None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (256 << 20), hard))
    try:
        hog = bytearray(1 << 30)  # 1 GB: past the limit
        raise TaskError(f"could not exhaust memory ({len(hog)} bytes fit)")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def burn_work(units: int, on_step: Any = None) -> int:
    """CPU- and allocation-heavy pure Python: about 60 µs of one core per unit.

    Shared with ``bench/ui_stall.py`` so the thread baseline runs the same body.
    """
    total = 0
    for unit in range(units):
        rows = [{"sku": f"SKU-{unit}-{i}", "price": i * 1.07, "name": "x" * (i % 17)}
                for i in range(120)]
        total += sum(len(r["name"]) + int(r["price"]) for r in rows)
        if on_step is not None and unit % 50 == 0:
            on_step(unit)
    return total


@task(
    "burn",
    title="Burn CPU",
    description="Keeps one core busy with allocation-heavy pure Python.",
    params=(Param("units", "int", default=1000, minimum=0,
                  help="amount of work, about 60 µs of one core per unit"),),
    diagnostic=True,
    rerun_safe=True,
    title_fn=lambda p: f"Burn {p.get('units', 1000)} units",
)
def burn(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    units = int(params.get("units", 1000))

    def step(unit: int) -> None:
        ctx.check_cancelled()
        ctx.progress(unit / max(units, 1), f"unit {unit} of {units}")

    return {"checksum": burn_work(units, step)}


@task(
    "write",
    title="Write a file",
    description="Writes a file of a given size to the outputs folder, slowly if asked.",
    params=(
        Param("name", "str", default="diagnostic.bin", help="file name, or an absolute path"),
        Param("size", "int", default=1_000_000, minimum=0, help="bytes to write"),
        Param("seconds", "float", default=0.0, minimum=0, help="spread the writing over this"),
        Param("fail_at", "float", default=-1.0,
              help="raise an error after writing this fraction (0..1); -1: never"),
    ),
    diagnostic=True,
    title_fn=lambda p: f"Write {p.get('name', 'diagnostic.bin')}",
)
def write(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    size = int(params.get("size", 0))
    seconds = float(params.get("seconds") or 0.0)
    fail_at = float(params.get("fail_at", -1.0))
    path = ctx.output_path(str(params.get("name") or "diagnostic.bin"))
    chunks = 20
    written = 0
    with open(path, "wb") as fh:
        for i in range(chunks):
            ctx.check_cancelled()
            part = size // chunks + (1 if i < size % chunks else 0)
            fh.write(b"x" * part)
            fh.flush()
            written += part
            if 0 <= fail_at <= written / max(size, 1):
                raise TaskError(f"failing on purpose after writing {written} bytes")
            ctx.progress((i + 1) / chunks, f"{written:,} of {size:,} bytes")
            if seconds:
                time.sleep(seconds / chunks)
    return {"bytes": written, "path": str(path)}
