"""What to do about a schedule right now: fire, catch up, skip, or wait.  No Qt here.

A pure function of a schedule row and "now", so that misfire rules are tested with
any clock.  Terms:

* *due*: fire times after the last claim (or the last edit) up to now;
* *on time*: the newest due fire time is at most ``on_time_s`` old (a scheduler that
  wakes a few milliseconds or seconds late is not a misfire);
* *missed*: due fire times that did not get a run of their own — older ones coalesced
  into the newest, or all of them when the app was not running at fire time.

Runs missed while the app was closed (or the machine asleep) are coalesced into one
catch-up run when the newest is within the schedule's grace period and its misfire
policy is ``coalesce``; otherwise they are skipped, and the note says so.
"""

from __future__ import annotations

import dataclasses

from swifty_desktop.scheduling.rules import LOCAL, format_instant
from swifty_desktop.scheduling.store import ScheduleRecord

ON_TIME_S = 60.0


@dataclasses.dataclass(frozen=True)
class FirePlan:
    """The decision for one schedule: claim ``fire_at``; start a job if ``run``."""

    fire_at: float  # the newest due fire time: the one claimed
    due: int  # fire times due (a lower bound when ``capped``)
    missed: int  # added to the schedule's missed count
    run: bool  # start a job now
    catch_up: bool  # the run is late (it stands in for missed runs)
    note: str | None  # the schedule's new status note (unless keep_note)
    keep_note: bool  # leave the status note as it is (e.g. a back-off note)
    capped: bool = False
    reason: str = ""  # on time | catch-up | skip policy | past grace | backing off


def _runs(n: int, capped: bool) -> str:
    if capped:
        return f"more than {n:,} runs"
    return "1 run" if n == 1 else f"{n:,} runs"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 86400 == 0 and seconds:
        days = seconds // 86400
        return "1 day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def plan_fire(record: ScheduleRecord, now: float, *, on_time_s: float = ON_TIME_S,
              cap: int = 2_000) -> FirePlan | None:
    """Decide what to do about ``record`` at ``now``; None when nothing is due.

    Missed runs are counted up to ``cap`` (then "more than"), which bounds the work
    after a long absence of a dense schedule.  Raises
    :class:`~swifty_desktop.scheduling.rules.RuleError` for a stored rule that no
    longer parses (e.g. a time zone this computer does not know).
    """
    if not record.enabled:
        return None
    count, last, capped = record.rule.count_between(record.since, now, cap)
    if not count or last is None:
        return None
    late_by = now - last
    backing_off = record.backoff_until is not None and last < record.backoff_until
    keep_failure_note = record.failure_streak > 0 or record.backoff_until is not None
    if late_by <= on_time_s:
        if backing_off:
            return FirePlan(last, count, count - 1, False, False, None, True, capped,
                            "backing off")
        return FirePlan(last, count, count - 1, True, False, None, keep_failure_note, capped,
                        "on time")

    when = format_instant(last, LOCAL)
    runs = _runs(count, capped)
    if backing_off:
        return FirePlan(last, count, count, False, False, None, True, capped, "backing off")
    if record.misfire_policy == "skip":
        note = (f"Skipped {runs} missed while the app was not running (latest due {when}); "
                "this schedule's misfire policy is 'skip'. Use Run now if a run is needed.")
        return FirePlan(last, count, count, False, False, note, False, capped, "skip policy")
    if late_by > record.grace_seconds:
        note = (f"Skipped {runs} missed while the app was not running: the latest (due "
                f"{when}) is older than the grace period of "
                f"{_duration(record.grace_seconds)}. Use Run now if a run is still needed, or "
                "lengthen the grace period.")
        return FirePlan(last, count, count, False, False, note, False, capped, "past grace")
    note = (f"Caught up: {runs} missed while the app was not running (latest due {when}); "
            f"ran once at {format_instant(now, LOCAL)}.")
    return FirePlan(last, count, count, True, True, note, False, capped, "catch-up")
