"""``swifty-desktop schedules ...``: recurring jobs from the command line.

``list [--json]``, ``add NAME KIND (--cron EXPR | --every SECONDS) [-p key=value]...
[--tz ZONE] [--misfire coalesce|skip] [--grace SECONDS] [--paused]``, ``run NAME``,
``pause NAME``, ``resume NAME``, ``remove NAME``.  Bad input prints one line on
stderr and exits 2 without writing anything.

Importing this module is cheap (no Qt, no APScheduler): it registers the command
and sets :data:`swifty_desktop.cli.SCHEDULER_HOOK` so that ``worker`` fires
schedules.
"""

from __future__ import annotations

import argparse
from typing import Any

from swifty_desktop import cli as core
from swifty_desktop.cli import CliError

_HELP = "recurring jobs: list, add, run now, pause, resume, remove"


def register(sub: Any) -> None:
    """Add the ``schedules`` command to the main parser's sub-commands."""
    parser = sub.add_parser(
        "schedules", help=_HELP,
        description="Recurring jobs. A schedule queues an ordinary job (kind and parameters) "
                    "at the times of a cron expression or every N seconds; the app or a "
                    "`worker` must be running for it to fire.")
    actions = parser.add_subparsers(dest="schedules_command", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="every schedule with its rule, last and next run")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = actions.add_parser(
        "add", help="add a schedule",
        description="Add a schedule. Cron expressions have five fields (minute hour "
                    "day-of-month month day-of-week; 0 and 7 are Sunday), e.g. '0 6 * * 1' "
                    "for Mondays at 06:00.")
    p.add_argument("name", help="a unique name, e.g. 'Nightly export'")
    p.add_argument("kind", help="job kind (see `kinds`)")
    p.add_argument("--cron", metavar="EXPR", help="cron expression, e.g. '0 7 * * *'")
    p.add_argument("--every", metavar="SECONDS", help="run every this many seconds")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a job parameter; repeat for several")
    p.add_argument("--tz", default="local", metavar="ZONE",
                   help="time zone of the cron times: an IANA name such as Europe/Berlin, "
                        "or 'local' (default)")
    p.add_argument("--misfire", default="coalesce", metavar="POLICY",
                   help="runs missed while no engine ran: 'coalesce' into one catch-up run "
                        "(default) or 'skip' them")
    p.add_argument("--grace", default=None, metavar="SECONDS",
                   help="catch up missed runs at most this old (default 86400: one day)")
    p.add_argument("--paused", action="store_true", help="add it paused")
    p.add_argument("--json", action="store_true", help="print the schedule as JSON")

    p = actions.add_parser("run", help="queue a run now (the trigger is the schedule)")
    p.add_argument("name")
    p.add_argument("--wait", action="store_true",
                   help="run (or wait for) the job; exit 0 only if it completed")
    p.add_argument("--json", action="store_true", help="print the job as JSON")

    for action, text in (("pause", "stop firing a schedule until it is resumed"),
                         ("resume", "fire a paused schedule again (missed runs are not "
                                    "made up)"),
                         ("remove", "delete a schedule (its past jobs stay in the registry)")):
        p = actions.add_parser(action, help=text)
        p.add_argument("name")


def cmd_schedules(args: argparse.Namespace) -> int:
    """Dispatch ``schedules ACTION``; user errors become one-line CliErrors (exit 2)."""
    from swifty_desktop.scheduling.rules import RuleError
    from swifty_desktop.scheduling.store import ScheduleError

    try:
        return _dispatch(args)
    except (ScheduleError, RuleError) as exc:
        raise CliError(str(exc)) from None


def _dispatch(args: argparse.Namespace) -> int:
    action = args.schedules_command
    if action == "add":
        return _add(args)
    svc = core._services(args)
    try:
        from swifty_desktop.scheduling.store import ScheduleStore

        store = ScheduleStore(svc.engine)
        store.ensure_defaults()
        if action == "list":
            return _list(store, args)
        record = store.by_name(args.name)
        if action == "run":
            return _run(svc, store, record, args)
        if action in ("pause", "resume"):
            enabled = action == "resume"
            if record.enabled == enabled:
                print(f"Schedule '{record.name}' is already "
                      f"{'active' if enabled else 'paused'}; nothing changed.")
                return core.EXIT_OK
            record = store.set_enabled(record.id, enabled)
            if enabled:
                nxt = record.next_run(store.clock())
                print(f"Resumed schedule '{record.name}' ({record.describe_rule()}); next run "
                      f"{_when(nxt)}. Runs due while it was paused are not made up.")
            else:
                print(f"Paused schedule '{record.name}'; it will not fire until you resume "
                      "it.")
            return core.EXIT_OK
        if action == "remove":
            store.remove(record.id)
            print(f"Removed schedule '{record.name}'; its past jobs stay in the registry.")
            return core.EXIT_OK
        raise CliError(f"unknown schedules action {action!r}")  # pragma: no cover
    finally:
        svc.dispose()


def _add(args: argparse.Namespace) -> int:
    from swifty_desktop.scheduling.store import DEFAULT_GRACE_S, ScheduleStore, validate_input

    if bool(args.cron) == bool(args.every):
        raise CliError("give either --cron EXPR (e.g. --cron '0 7 * * *') or --every SECONDS "
                       "(e.g. --every 900), not both and not neither")
    # everything that needs no database is checked before the database is opened
    params = core.parse_params(args.param)
    data = validate_input(name=args.name, kind=args.kind, params=params, cron=args.cron,
                          interval_seconds=args.every, timezone=args.tz,
                          misfire_policy=args.misfire,
                          grace_seconds=DEFAULT_GRACE_S if args.grace is None else args.grace,
                          enabled=not args.paused)
    svc = core._services(args)
    try:
        store = ScheduleStore(svc.engine)
        store.ensure_defaults()
        record = store.add(name=data.name, kind=data.kind, params=data.params, cron=data.cron,
                           interval_seconds=data.interval_seconds, timezone=data.timezone,
                           misfire_policy=data.misfire_policy,
                           grace_seconds=data.grace_seconds, enabled=data.enabled)
        summary = store.summaries([record])[0]
        if args.json:
            core._print_json(summary.to_json())
        else:
            state = f"next run {_when(summary.next_run)}" if record.enabled else "paused"
            print(f"Added schedule '{record.name}': {summary.rule}, runs {record.kind}; {state}.")
        return core.EXIT_OK
    finally:
        svc.dispose()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    from swifty_desktop.scheduling.rules import format_instant

    return format_instant(ts)


def _list(store: Any, args: argparse.Namespace) -> int:
    summaries = store.summaries()
    if args.json:
        core._print_json([s.to_json() for s in summaries])
        return core.EXIT_OK
    if not summaries:
        print("No schedules. Add one with `swifty-desktop schedules add NAME KIND --cron EXPR`.")
        return core.EXIT_OK
    rows = []
    for s in summaries:
        r = s.record
        last = "-"
        if s.last_run is not None:
            last = f"{core._fmt_time(s.last_run)[:16]} {s.last_status}"
            if s.last_job_id is not None:
                last += f" (#{s.last_job_id})"
        rows.append([r.name, r.kind, s.rule, "yes" if r.enabled else "paused", last,
                     core._fmt_time(s.next_run)[:16] if s.next_run else "-", str(r.missed)])
    print(core._table(rows, ["NAME", "KIND", "RULE", "ENABLED", "LAST RUN", "NEXT RUN",
                             "MISSED"]))
    notes = [(s.record.name, s.record.status_note) for s in summaries if s.record.status_note]
    if notes:
        print()
        for name, note in notes:
            print(f"{name}: {note}")
    return core.EXIT_OK


def _run(svc: Any, store: Any, record: Any, args: argparse.Namespace) -> int:
    """Queue a run now: the engine's own prepare step (validate, secrets to the keyring),
    then one ``queued`` row; an app or ``worker`` runs it (or this process, with --wait)."""
    from swifty_desktop.jobs import secrets
    from swifty_desktop.jobs.model import Trigger
    from swifty_desktop.jobs.store import JobStore
    from swifty_desktop.tasks import ParamError, get_kind

    try:
        spec = get_kind(record.kind)
        record = store.secure_params(record)  # a row from before secrets left the table
        # a saved schedule holds keyring references already: stash moves nothing then
        params = secrets.stash(spec, spec.validate(record.params), svc.engine)
    except ParamError as exc:
        raise CliError(f"schedule '{record.name}' cannot run: {exc}. Update the app if the "
                       "kind is new, or remove the schedule and add it again with a kind and "
                       "parameters that work") from None
    jobs = JobStore(svc.engine)
    try:
        job_id = jobs.insert(spec.name, spec.make_title(params), params,
                             Trigger.schedule(record.name, record.id))
        store.record_job(record.id, job_id)
        if args.wait:
            return int(core._wait_for(svc, job_id, args))
        job = jobs.get(job_id)
        if args.json:
            core._print_json(job.to_json())
        else:
            print(f"Queued job #{job.id}: {job.title} (schedule '{record.name}'). The app or a "
                  "`worker` runs it.")
        return core.EXIT_OK
    finally:
        jobs.close()


def start_background_scheduler(services: Any, manager: Any) -> Any:
    """The headless ``worker``'s scheduler: a BackgroundScheduler-driven SchedulerService.

    Seeds the default schedules once, then fires schedules into ``manager`` until
    ``shutdown()``.  Call it on the manager's thread.
    """
    from swifty_desktop.scheduling.service import SchedulerService
    from swifty_desktop.scheduling.store import ScheduleStore

    service = SchedulerService(ScheduleStore(services.engine), manager, mode="background")
    service.start()
    return service


COMMANDS = {"schedules": cmd_schedules}
core.SCHEDULER_HOOK[0] = start_background_scheduler
