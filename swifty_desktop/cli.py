"""Command line: the same services as the window, without one.

``swifty-desktop [--data-dir DIR]`` with no command opens the app; with a command
it runs headless.  The commands and their ``--json`` output are a public contract
(scripts rely on them): add, never rename.

Exit codes: 0 success; 1 the job did not complete (``--wait``); 2 bad input or the
app cannot start; 130 interrupted by Ctrl-C.

This module imports no Qt at import time: worker processes re-import the entry
point's module, and they must stay light.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from swifty_desktop import __version__

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """Bad input: printed as one line, exit code 2."""


# ---------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> Any:  # argparse's contract: never returns
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} "
                              f"(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="swifty-desktop",
        description="Swifty Desktop: run business jobs (exports, imports, reports, syncs, "
                    "e-mail) in the background. Without a command, opens the app.",
    )
    parser.add_argument("--data-dir", metavar="DIR",
                        help="data directory (default: $SWIFTY_DATA_DIR, else the "
                             "per-user data folder)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, to stderr too")
    parser.add_argument("--self-test", action="store_true",
                        help="run one small job of each local kind and exit 0 if all is well")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    jobs = sub.add_parser("jobs", help="submit, list, show, retry and cancel jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)

    p = jsub.add_parser("submit", help="queue a job")
    p.add_argument("kind", help="job kind (see `kinds`)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter; repeat for several")
    p.add_argument("--wait", action="store_true",
                   help="run (or wait for) the job; exit 0 only if it completed")
    p.add_argument("--json", action="store_true", help="print the job as JSON")

    p = jsub.add_parser("list", help="list jobs, newest first")
    p.add_argument("--status", action="append", default=[],
                   help="only this status (queued, running, completed, failed, cancelled, "
                        "interrupted); repeat for several")
    p.add_argument("--kind", action="append", default=[], help="only this kind; repeatable")
    p.add_argument("--search", default="", help="text in title, trigger, parameters or error")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = jsub.add_parser("show", help="show one job, its attempts and its log")
    p.add_argument("id", type=_job_id)
    p.add_argument("--json", action="store_true", help="print the job as JSON")

    p = jsub.add_parser("retry", help="queue a new attempt of a failed/cancelled/interrupted job")
    p.add_argument("id", type=_job_id)
    p.add_argument("--wait", action="store_true", help="run (or wait for) the new attempt")
    p.add_argument("--json", action="store_true", help="print the new attempt as JSON")

    p = jsub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("id", type=_job_id)

    p = sub.add_parser("kinds", help="list job kinds and their parameters")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = sub.add_parser("worker", help="run the engine (and the scheduler) without a window")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: number of CPUs)")
    p.add_argument("--no-scheduler", action="store_true", help="do not fire schedules")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds running jobs get to finish after SIGINT/SIGTERM (default 30)")

    p = sub.add_parser(
        "restore", help="put a database backup back (the app must be closed)",
        description="Replace the data directory's database with a backup made by File → "
                    "Back up database (or the backup job). The database as it was is kept "
                    "in outputs/backups/ first, so a restore can be undone the same way.")
    p.add_argument("file", help="the backup file (a .db from outputs/backups/)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--wait-for-exit", type=int, metavar="PID", default=None,
                   help="first wait (up to a minute) for process PID to end: the app that "
                        "handed over the restore (File → Restore from backup…)")
    p.add_argument("--then-start", action="store_true",
                   help="open the app afterwards, saying how the restore went")

    for extension in _EXTENSIONS:
        extension(sub)
    return parser


# Later features add sub-commands here (demo, schedules) without touching the core.
_EXTENSIONS: list[Any] = []


def _job_id(text: str) -> int:
    try:
        value = int(text.lstrip("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a job id (a number such as 12)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a job id (a number such as 12)")
    return value


def parse_params(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"parameter '{item}' must look like key=value")
        if key in out:
            raise CliError(f"parameter '{key}' is given twice")
        out[key] = value
    return out


# ---------------------------------------------------------------------- output
def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    widths[-1] = 0  # the last column is never padded
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)


def describe_job(job: Any, store: Any) -> str:
    """The human-readable form of ``jobs show``."""
    lines = [
        f"Job #{job.id}: {job.title}",
        f"  kind        {job.kind}",
        f"  status      {job.status.value}" + (
            f" (retry at {_fmt_time(job.not_before)})" if job.not_before and
            job.status.value == "queued" else ""),
        f"  triggered   {job.trigger.describe()}",
        f"  attempt     {job.attempt}" + (f" (retry of #{job.retry_of})" if job.retry_of else ""),
        f"  created     {_fmt_time(job.created_at)}",
        f"  started     {_fmt_time(job.started_at)}",
        f"  finished    {_fmt_time(job.finished_at)}",
        f"  duration    {_fmt_duration(job.duration)}",
    ]
    if job.superseded_by:
        lines.append(f"  retried as  #{job.superseded_by}")
    if job.params:
        lines.append("  parameters  " + ", ".join(f"{k}={v}" for k, v in job.params.items()))
    if job.progress is not None and job.status.value == "running":
        lines.append(f"  progress    {job.progress * 100:.0f}% {job.message or ''}".rstrip())
    if job.output_path:
        # a failed job keeps only a report on its failure (a strict import's invalid
        # rows): say so, as it is not the job's usual output
        lines.append(f"  output      {job.output_path}" + (
            " (kept although the job failed; the error says what it holds)"
            if job.status.value == "failed" else ""))
    did = _outcome(job) if job.status.value == "completed" else ""
    if did:
        lines.append(f"  done        {did}")
    if job.result is not None:
        lines.append(f"  result      {json.dumps(job.result, ensure_ascii=False)}")
    if job.error:
        lines.append(f"  error       {job.error.type}: {job.error.message}")
        if job.error.traceback:
            lines.append("")
            lines.extend("    " + line for line in job.error.traceback.rstrip().splitlines())
    chain = store.chain(job.id)
    if len(chain) > 1:
        lines.append("")
        lines.append("Attempts:")
        for attempt in chain:
            marker = "*" if attempt.id == job.id else " "
            outcome = attempt.status.value
            if attempt.error:
                outcome += f" ({attempt.error.message[:70]})"
            lines.append(f" {marker} #{attempt.id}  attempt {attempt.attempt}  "
                         f"{_fmt_time(attempt.started_at)}  {outcome}")
    log_lines = store.logs(job.id)
    if log_lines:
        lines.append("")
        lines.append("Log:")
        for _, ts, line in log_lines[-200:]:
            lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(ts))}  {line}")
    return "\n".join(lines)


# --------------------------------------------------------------------- commands
def _services(args: argparse.Namespace) -> Any:
    from swifty_desktop import bootstrap

    return bootstrap.start(args.data_dir, console_log=args.verbose, verbose=args.verbose,
                           role="worker" if args.command == "worker" else "cli")


def cmd_kinds(args: argparse.Namespace) -> int:
    from swifty_desktop.tasks import all_kinds

    kinds = all_kinds()
    if args.json:
        _print_json([k.describe() for k in kinds])
        return EXIT_OK
    rows = []
    for k in kinds:
        params = ", ".join(
            f"{p.name}{'' if p.required else '?'}:{p.type}" for p in k.params) or "-"
        rows.append([k.name, k.title, params])
    print(_table(rows, ["KIND", "TITLE", "PARAMETERS (? = optional)"]))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    action = args.jobs_command
    if action == "submit":
        # validate before opening anything: bad input writes nothing
        from swifty_desktop.tasks import get_kind

        spec = get_kind(args.kind)
        params = spec.validate(parse_params(args.param))
        svc = _services(args)
        try:
            from swifty_desktop.jobs import secrets
            from swifty_desktop.jobs.model import Trigger
            from swifty_desktop.jobs.store import JobStore

            store = JobStore(svc.engine)
            params = secrets.stash(spec, params, svc.engine)  # secrets to the keyring
            job_id = store.insert(spec.name, spec.make_title(params), params,
                                  Trigger.cli("jobs submit"))
            if args.wait:
                return _wait_for(svc, job_id, args)
            job = store.get(job_id)
            if args.json:
                _print_json(job.to_json())
            else:
                print(f"Queued job #{job.id}: {job.title} ({job.kind})")
            return EXIT_OK
        finally:
            svc.dispose()

    if not _has_database(args):  # reading an empty place creates nothing there
        if action == "list":
            _check_kinds(args.kind, None)
            for status in args.status:
                _check_status(status)
            if args.json:
                _print_json([])
            else:
                print("No jobs.")
            return EXIT_OK
        from swifty_desktop.jobs.store import JobNotFound

        raise JobNotFound(args.id)
    svc = _services(args)
    try:
        from swifty_desktop.jobs.store import JobQuery, JobStore

        store = JobStore(svc.engine)
        if action == "list":
            statuses = tuple(_check_status(s) for s in args.status)
            _check_kinds(args.kind, store)
            jobs = store.list(JobQuery(statuses=statuses, kinds=tuple(args.kind),
                                       text=args.search), limit=max(1, args.limit))
            if args.json:
                _print_json([j.to_json() for j in jobs])
            elif not jobs:
                print("No jobs." if not (statuses or args.kind or args.search)
                      else "No jobs match.")
            else:
                rows = [[str(j.id), j.status.value, j.kind, _fmt_time(j.created_at),
                         j.trigger.describe(), j.title] for j in jobs]
                print(_table(rows, ["ID", "STATUS", "KIND", "CREATED", "TRIGGERED BY", "TITLE"]))
            return EXIT_OK
        if action == "show":
            job = store.get(args.id)
            if args.json:
                data = job.to_json()
                data["attempts"] = [a.to_json() for a in store.chain(job.id)]
                data["log"] = [line for _, _, line in store.logs(job.id)]
                _print_json(data)
            else:
                print(describe_job(job, store))
            return EXIT_OK
        if action == "retry":
            latest = store.retry_target(args.id)
            new_id = store.create_retry(latest, automatic=False)
            if args.wait:
                return _wait_for(svc, new_id, args)
            job = store.get(new_id)
            if args.json:
                _print_json(job.to_json())
            else:
                print(f"Queued job #{job.id}: attempt {job.attempt} of #{latest.id} ({job.title})")
            return EXIT_OK
        if action == "cancel":
            job = store.get(args.id)
            JobStore.check_cancellable(job)
            if store.cancel_queued(job.id):
                print(f"Cancelled job #{job.id} ({job.title}); it had not started.")
            elif store.cancel_orphaned(job.id):
                print(f"Cancelled job #{job.id} ({job.title}); the engine that was running "
                      "it had stopped, so nothing was running any more.")
            elif store.request_cancel(job.id):
                print(f"Asked job #{job.id} ({job.title}) to stop; the engine running it "
                      "will cancel it within a second or two.")
            else:
                JobStore.check_cancellable(store.get(job.id))
            return EXIT_OK
        raise CliError(f"unknown jobs action {action!r}")  # pragma: no cover
    finally:
        svc.dispose()


def _check_status(value: str) -> str:
    from swifty_desktop.jobs.model import JobStatus

    try:
        return JobStatus(value.lower()).value
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise CliError(f"unknown status '{value}'; use one of {known}") from None


def _has_database(args: argparse.Namespace) -> bool:
    from swifty_desktop import paths

    return paths.resolve(args.data_dir).db_path.exists()


def _check_kinds(kinds: Sequence[str], store: Any) -> None:
    """A kind filter must name a kind this app has, or one found in the history."""
    from swifty_desktop.tasks import registry

    unknown = [k for k in kinds if k not in registry()]
    history = set(store.kinds_in_history()) if store is not None and unknown else set()
    if unknown and set(unknown) - history:
        raise CliError(f"unknown job kind '{unknown[0]}'; `swifty-desktop kinds` lists them")


def _wait_for(svc: Any, job_id: int, args: argparse.Namespace) -> int:
    """Run the job (or watch another engine run it) until its last attempt ends."""
    import signal

    from PySide6.QtCore import QCoreApplication, QTimer

    from swifty_desktop.jobs.manager import JobManager
    from swifty_desktop.jobs.model import FINAL_STATES

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    manager = JobManager(svc.engine, svc.data_dir, workers=1, role="cli", roots=[job_id],
                         watch_external=False, poll_s=0.2)
    interrupted = {"count": 0}
    state: dict[str, Any] = {"last": None, "shown": 0.0}
    tty = sys.stderr.isatty()

    def on_sigint(*_: Any) -> None:
        interrupted["count"] += 1
        latest = manager.store.latest_attempt(job_id)
        if interrupted["count"] == 1 and latest.status.value in ("queued", "running"):
            print(f"\nCancelling job #{latest.id}… (Ctrl-C again to stop waiting)",
                  file=sys.stderr)
            try:
                manager.cancel(latest.id)
            except Exception:
                app.quit()
        else:
            app.quit()

    def check() -> None:
        latest = manager.store.latest_attempt(job_id)
        state["last"] = latest
        if latest.status in FINAL_STATES and latest.superseded_by is None:
            app.quit()
            return
        if not args.json:
            now = time.monotonic()
            if latest.status.value == "running" and (tty or now - state["shown"] > 2):
                state["shown"] = now
                pct = f"{(latest.progress or 0) * 100:3.0f}%"
                line = f"#{latest.id} running {pct} {latest.message or ''}"
                print(("\r" + line[:100].ljust(100)) if tty else line, end="" if tty else "\n",
                      file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(100)
    keepalive = QTimer()  # lets Python run signal handlers while Qt waits
    keepalive.timeout.connect(lambda: None)
    keepalive.start(100)
    manager.start()
    try:
        check()
        if state["last"] is None or not (state["last"].status in FINAL_STATES
                                         and state["last"].superseded_by is None):
            app.exec()
    finally:
        timer.stop()
        keepalive.stop()
        manager.stop(cancel_running=True, timeout=10)
        signal.signal(signal.SIGINT, previous)
    if tty and not args.json:
        print("\r" + " " * 100 + "\r", end="", file=sys.stderr)
    job = manager.store.latest_attempt(job_id)
    if args.json:
        _print_json(job.to_json())
    else:
        print(_summary(job))
    if interrupted["count"] and job.status.value != "completed":
        return EXIT_INTERRUPTED
    return EXIT_OK if job.status.value == "completed" else EXIT_JOB_FAILED


def _outcome(job: Any) -> str:
    """What a completed job did, in the words its kind declares ("" if it says nothing)."""
    from swifty_desktop.tasks import registry

    spec = registry().get(job.kind)
    return spec.outcome_text(job.result) if spec is not None else ""


def _summary(job: Any) -> str:
    if job.status.value == "completed":
        text = f"Job #{job.id} completed in {_fmt_duration(job.duration)}: {job.title}"
        did = _outcome(job)
        if did:
            text += f"\n  done: {did}"
        if job.output_path:
            text += f"\n  output: {job.output_path}"
        if job.result:
            text += f"\n  result: {json.dumps(job.result, ensure_ascii=False)}"
        return text
    text = f"Job #{job.id} {job.status.value}: {job.title}"
    if job.error:
        text += f"\n  {job.error.type}: {job.error.message}"
    if job.output_path:  # a report the failed job kept (a strict import's invalid rows)
        text += f"\n  kept: {job.output_path}"
    text += f"\n  details: swifty-desktop jobs show {job.id}"
    return text


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the engine until SIGINT/SIGTERM; then let running jobs finish, then stop."""
    import signal

    from PySide6.QtCore import QCoreApplication, QTimer

    from swifty_desktop.jobs.manager import JobManager

    svc = _services(args)
    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    manager = JobManager(svc.engine, svc.data_dir, workers=args.workers, role="worker",
                         watch_external=False)
    scheduler = None
    if not args.no_scheduler:
        scheduler = _start_scheduler(svc, manager)
    signals_seen = {"n": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        signals_seen["n"] += 1
        app.quit()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    keepalive = QTimer()  # lets Python run signal handlers while Qt waits, and catches a
    # signal that came before the event loop ran (app.quit() does nothing then)
    keepalive.timeout.connect(lambda: app.quit() if signals_seen["n"] else None)
    keepalive.start(100)
    recovered = manager.start()
    print(f"Swifty worker {manager.engine_id} running on {svc.data_dir.root} with "
          f"{manager.max_workers} worker processes"
          + (f"; {len(recovered)} interrupted job(s) found" if recovered else "")
          + ". Stop with Ctrl-C.", file=sys.stderr, flush=True)
    try:
        app.exec()
        print("Stopping: no new jobs; waiting for running jobs "
              f"(up to {args.grace:g} s; Ctrl-C again to stop them now)…",
              file=sys.stderr, flush=True)
        if scheduler is not None:
            scheduler.shutdown()
        # a second signal ends the drain early
        deadline = time.monotonic() + max(0.0, args.grace)
        before = signals_seen["n"]
        while time.monotonic() < deadline and signals_seen["n"] == before:
            if manager.drain(0.2):
                break
        manager.stop(interrupt=True, timeout=10)
    finally:
        keepalive.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        svc.dispose()
    print("Worker stopped.", file=sys.stderr)
    return EXIT_OK


def _start_scheduler(svc: Any, manager: Any) -> Any:
    """The headless scheduler, if the scheduling package provides one."""
    hook = SCHEDULER_HOOK[0]
    return hook(svc, manager) if hook is not None else None


# Set by the scheduling package: (services, manager) -> a scheduler with shutdown().
SCHEDULER_HOOK: list[Any] = [None]


def run_gui(args: argparse.Namespace) -> int:
    from swifty_desktop.app import run_app

    return run_app(args.data_dir, verbose=args.verbose)


# ------------------------------------------------------------------------- main
def _engines_using(db: Any) -> list[str]:
    """The engines (app, worker, CLI) that still use the database file ``db``."""
    from sqlalchemy.exc import SQLAlchemyError

    from swifty_desktop.db import make_engine
    from swifty_desktop.jobs.store import JobStore

    engine = make_engine(db)
    try:
        live = JobStore(engine).live_engines()
    except SQLAlchemyError:  # no engines table: nothing of ours ever ran on it
        live = []
    finally:
        engine.dispose()
    return [f"the {e['role']} (pid {e['pid']})" for e in live]


def cmd_restore(args: argparse.Namespace) -> int:
    """Put a backup back: checked first, the current database kept, the app closed.

    With ``--then-start`` (the app's File → Restore from backup… hands over to this)
    the app opens afterwards in this process and shows the outcome, failure included:
    nobody reads a terminal there.
    """
    if args.then_start:
        from swifty_desktop import bootstrap
        from swifty_desktop.app import Notice, run_app

        notice: Notice
        try:
            result = _restore(args)
        except Exception as exc:
            message = _user_error(exc)
            if message is None:
                raise
            notice = ("warning", "The backup was not restored",
                      f"{message[0].upper()}{message[1:]}.")
        else:
            from pathlib import Path

            from swifty_desktop.db.backup import describe_counts

            text = (f"{Path(result['restored']).name} is the database now: "
                    f"{describe_counts(result['counts'], zeros=True)}.")
            if result["kept"]:
                text += (f"\n\nThe database as it was is kept in outputs/backups as "
                         f"{Path(result['kept']).name}: File → Restore from backup… goes "
                         "back to it.")
            notice = ("information", "Backup restored", text)
        bootstrap.close_logs(bootstrap.open_data_dir(args.data_dir).root)  # the app logs anew
        return run_app(args.data_dir, verbose=args.verbose, notice=notice)
    result = _restore(args)
    if args.json:
        _print_json(result)
    else:
        print(_restored_text(result))
    return EXIT_OK


def _restored_text(result: dict[str, Any]) -> str:
    from swifty_desktop.db.backup import describe_counts

    text = (f"Restored {result['restored']} into {result['database']}: "
            f"{describe_counts(result['counts'], zeros=True)}.")
    if result["kept"]:
        text += (f"\nThe database as it was is kept as {result['kept']}; restore that file "
                 "the same way to undo.")
    return text


@contextlib.contextmanager
def _alone_on(root: Any) -> Iterator[None]:
    """No engine runs on ``root`` during the block (one starting meanwhile waits)."""
    from swifty_desktop.jobs.inuse import InUse, exclusive_use

    try:
        with exclusive_use(root):
            yield
    except InUse as exc:
        raise CliError(f"{exc}; close the app and stop any `swifty-desktop worker` on it, "
                       "then restore again") from None


def _wait_for_exit(pid: int, timeout: float = 60.0) -> None:
    from swifty_desktop.jobs.store import pid_alive

    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise CliError(f"the app (pid {pid}) did not close within {timeout:.0f} s, so "
                           "nothing was restored; close it and restore again")
        time.sleep(0.1)


def _restore(args: argparse.Namespace) -> dict[str, Any]:
    import datetime as dt
    from pathlib import Path

    from filelock import FileLock

    from swifty_desktop import bootstrap
    from swifty_desktop.db.backup import BackupError, copy_database, inspect_copy, restore_into
    from swifty_desktop.db.migrate import HEAD, KNOWN_REVISIONS
    from swifty_desktop.jobs.worker import unique_path

    folder = bootstrap.open_data_dir(args.data_dir)
    bootstrap.init_logging(folder, verbose=args.verbose, console=args.verbose, role="cli")
    db = folder.db_path
    source = Path(args.file).expanduser().resolve()
    if source == db.resolve():
        raise CliError(f"{source} is this data directory's own database; name a backup "
                       "file (from outputs/backups/)")
    try:
        info = inspect_copy(source)
    except BackupError as exc:
        raise CliError(f"cannot restore: {exc}; name a backup made by File → Back up "
                       "database (in outputs/backups/)") from None
    if info.revision not in KNOWN_REVISIONS:
        raise CliError(f"{source} was written by a newer version of Swifty Desktop (schema "
                       f"'{info.revision}'; this version knows up to '{HEAD}'); install the "
                       "newer version to restore it")
    if args.wait_for_exit is not None:
        _wait_for_exit(args.wait_for_exit)
    with FileLock(str(folder.root / ".migrate.lock")).acquire(timeout=60):
        users = _engines_using(db) if db.exists() else []  # names them, where it can
        if users:
            raise CliError(f"the data directory {folder.root} is in use by "
                           f"{', '.join(users)}; close the app and stop any "
                           "`swifty-desktop worker` on it, then restore again")
        with _alone_on(folder.root):  # and none starts until the restore is done
            kept = None
            if db.exists():
                stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
                kept = unique_path(folder.outputs / "backups" /
                                   f"swifty-before-restore_{stamp}.db")
                kept.parent.mkdir(parents=True, exist_ok=True)
                copy_database(db, kept)
            try:
                restore_into(source, db)
            except BackupError as exc:
                raise CliError(f"{exc}; the database as it was is kept as {kept}: restore "
                               "that file the same way") from None
    bootstrap.open_database(folder).dispose()  # an older copy's schema is brought up to date
    return {"restored": str(source), "database": str(db), "counts": info.counts,
            "kept": str(kept) if kept else None}


COMMANDS: dict[str, Any] = {"kinds": cmd_kinds, "jobs": cmd_jobs, "worker": cmd_worker,
                            "restore": cmd_restore}


def main(argv: Sequence[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # a frozen bundle's workers start here
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.self_test:
            from swifty_desktop.selftest import run_self_test

            return run_self_test(args.data_dir)
        if args.command is None:
            return run_gui(args)
        return int(COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        print(f"swifty-desktop: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def _user_error(exc: Exception) -> str | None:
    """The one-line message for errors a user can fix; None for bugs."""
    from swifty_desktop.bootstrap import StartupError
    from swifty_desktop.tasks import ParamError

    known: tuple[type[Exception], ...] = (CliError, ParamError, StartupError)
    try:
        from swifty_desktop.jobs.store import JobNotFound, JobStateError

        known += (JobNotFound, JobStateError)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, known):
        return str(exc)
    return None


def _load_extensions() -> None:
    """Let feature packages (demo data, schedules) add their sub-commands."""
    import importlib

    for module in EXTENSION_MODULES:
        mod = importlib.import_module(module)
        register = getattr(mod, "register", None)
        if register is not None and register not in _EXTENSIONS:
            _EXTENSIONS.append(register)
            COMMANDS.update(getattr(mod, "COMMANDS", {}))


# Modules with ``register(subparsers)`` and ``COMMANDS``; kept light at import.
EXTENSION_MODULES: tuple[str, ...] = ("swifty_desktop.demo.cli", "swifty_desktop.scheduling.cli")


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser", "parse_params", "describe_job"]
