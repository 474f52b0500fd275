"""When a schedule fires: cron expressions, intervals, time zones, human-readable rules.

No Qt here.  APScheduler's ``CronTrigger`` does the field parsing and the calendar
search, but only on *wall-clock* times (it runs in UTC, where no clock ever jumps);
this module then maps each wall-clock time to an instant in the schedule's time zone
with rules a person can predict, because APScheduler 3's own time-zone handling
fires a daily 02:30 schedule twice on the autumn night the clocks go back (and a
sub-hourly one can even step backwards in time):

* a wall-clock time that does not exist (spring forward: 02:30 in Berlin on the last
  Sunday of March) fires as if the clocks had not moved yet, i.e. one hour later by
  the new clock (03:30 CEST) — the run is late, never lost;
* a wall-clock time that happens twice (fall back: 02:30 in Berlin on the last Sunday
  of October) fires once, at its first occurrence — unless the hour field is ``*``
  ("every hour at :30"), which fires in both hours because an hour of real time passed;
* fire times are strictly increasing instants (epoch seconds, UTC), never repeated.

Cron expressions are standard five-field crontab (minute hour day-of-month month
day-of-week) with standard day-of-week numbers: 0 or 7 is Sunday, 1 is Monday.
(APScheduler 3 counts 0 as Monday; day-of-week fields are translated to names before
APScheduler sees them.)  An expression that restricts both the day of the month and
the day of the week is refused: cron implementations disagree on whether that means
"either" or "both".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

LOCAL = "local"
MIN_INTERVAL_S = 1
MAX_INTERVAL_S = 366 * 86400
CRON_HELP = ("use five fields: minute hour day-of-month month day-of-week, "
             "e.g. '0 7 * * *' for every day at 07:00 or '0 6 * * 1' for Mondays at 06:00")

_EPOCH = dt.datetime(1970, 1, 1)
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # standard cron order
_DAY_TITLES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                "dec")
_MONTH_TITLES = ("January", "February", "March", "April", "May", "June", "July", "August",
                 "September", "October", "November", "December")
# A buffered instant is safe to emit once the wall clock we search from has moved this
# far past it: no later wall-clock time can map to an earlier instant (real UTC offset
# changes are at most two hours).
_DST_MARGIN_S = 3 * 3600.0


class RuleError(ValueError):
    """A cron expression, interval or time zone that cannot be used; says why and how."""


# --------------------------------------------------------------------- time zones
def resolve_timezone(name: str | None) -> dt.tzinfo:
    """The tzinfo for an IANA name (``Europe/Berlin``) or ``local`` (this computer's zone)."""
    name = (name or LOCAL).strip()
    if name.lower() == LOCAL:
        return _local_zone()
    return _zone(name)


@lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise RuleError(
            f"unknown time zone '{name}'; use an IANA name such as Europe/Berlin or "
            "America/New_York, or 'local' for this computer's time zone") from None


def _local_zone() -> dt.tzinfo:
    return _local_zone_for(os.environ.get("TZ"))


@lru_cache(maxsize=8)
def _local_zone_for(tz_variable: str | None) -> dt.tzinfo:
    """This computer's zone, looked up again whenever ``TZ`` changes (tzlocal alone
    would keep the first zone it found for the life of the process)."""
    try:
        import tzlocal

        return tzlocal.reload_localzone()
    except Exception:  # no zone configured: fall back to the C library's notion
        return dt.datetime.now().astimezone().tzinfo or dt.UTC


def normalize_timezone(name: str | None) -> str:
    """Validate a time zone name; return it canonically (``local`` or the IANA name)."""
    name = (name or LOCAL).strip()
    if name.lower() == LOCAL:
        return LOCAL
    resolve_timezone(name)
    return name


# ---------------------------------------------------------------------- intervals
def parse_interval(value: Any) -> int:
    """Seconds between runs, as a whole number from 1 s to 366 days."""
    text = str(value).strip()
    try:
        seconds = int(text)
    except ValueError:
        raise RuleError(f"interval '{text}' must be a whole number of seconds, "
                        "e.g. 900 for every 15 minutes") from None
    if seconds < MIN_INTERVAL_S or seconds > MAX_INTERVAL_S:
        raise RuleError(f"interval {seconds} s is out of range; use 1 to {MAX_INTERVAL_S} "
                        "seconds (366 days)")
    return seconds


# ---------------------------------------------------------------------------- cron
@dataclasses.dataclass(frozen=True)
class CronFields:
    """A validated five-field expression; ``dow`` holds standard day numbers (0 = Sunday)."""

    text: str
    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str
    dow: frozenset[int] | None  # None: every day of the week

    def aps_kwargs(self) -> dict[str, str]:
        """Keyword arguments for APScheduler's CronTrigger (day of week as names)."""
        dow = "*" if self.dow is None else ",".join(
            _DAY_NAMES[d] for d in sorted(self.dow, key=lambda d: (d + 6) % 7))
        return {"minute": self.minute, "hour": self.hour, "day": self.day,
                "month": self.month, "day_of_week": dow}


def _dow_value(token: str, expr: str) -> int:
    """A day number 0-7 (0 and 7: Sunday) from a number, an abbreviation or a full name."""
    t = token.strip().lower()
    if t in _DAY_NAMES:
        return _DAY_NAMES.index(t)
    titles = [title.lower() for title in _DAY_TITLES]
    if t in titles:
        return titles.index(t)
    if t.isdigit() and int(t) <= 7:
        return int(t)
    raise RuleError(f"cron expression '{expr}': day of week '{token}' is not valid; use 0-7 "
                    "(0 and 7 are Sunday) or sun, mon, tue, wed, thu, fri, sat")


def _parse_dow(field: str, expr: str) -> frozenset[int] | None:
    """Expand a standard day-of-week field into day numbers (0 = Sunday)."""
    if field in ("*", "?"):
        return None
    days: set[int] = set()
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise RuleError(f"cron expression '{expr}': step '/{step_text}' in the day of "
                                "week must be a whole number above 0")
            step = int(step_text)
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, hi = _dow_value(a, expr), _dow_value(b, expr)
            if lo == 7:
                lo = 0
            if hi < lo:
                raise RuleError(f"cron expression '{expr}': day-of-week range '{base}' runs "
                                "backwards; write it from the earlier day, e.g. 1-5")
        else:
            lo = _dow_value(base, expr)
            hi = 6 if step_text else lo
        for d in range(lo, hi + 1, step):
            days.add(d % 7)
    if not days:  # pragma: no cover - every branch above adds at least one day
        raise RuleError(f"cron expression '{expr}': the day of week matches no day")
    return None if len(days) == 7 else frozenset(days)


def parse_cron(expr: str) -> CronFields:
    """Validate a five-field crontab expression; raise :class:`RuleError` saying what is wrong."""
    from apscheduler.triggers.cron import CronTrigger

    text = " ".join(str(expr or "").split())
    if not text:
        raise RuleError(f"the cron expression is empty; {CRON_HELP}")
    parts = text.split(" ")
    if len(parts) != 5:
        raise RuleError(f"cron expression '{text}' has {len(parts)} field"
                        f"{'' if len(parts) == 1 else 's'}; {CRON_HELP}")
    minute, hour, day, month, dow_field = parts
    dow = _parse_dow(dow_field.lower(), text)
    if day not in ("*", "?") and dow is not None:
        raise RuleError(f"cron expression '{text}' restricts both the day of the month and the "
                        "day of the week, which cron programs read differently; restrict only "
                        "one of them (use * for the other)")
    fields = CronFields(text, minute, hour, "*" if day == "?" else day, month, dow_field, dow)
    try:
        trigger = CronTrigger(timezone=dt.UTC, **fields.aps_kwargs())
    except (ValueError, TypeError) as exc:
        raise RuleError(f"cron expression '{text}' is not valid: {exc}; {CRON_HELP}") from None
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    if trigger.get_next_fire_time(None, start) is None:
        raise RuleError(f"cron expression '{text}' never fires (no such date, e.g. 30 February); "
                        "pick a day that exists")
    return fields


@lru_cache(maxsize=256)
def _wall_trigger(text: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(timezone=dt.UTC, **parse_cron(text).aps_kwargs())


def _naive_seconds(wall: dt.datetime) -> float:
    return (wall - _EPOCH).total_seconds()


# ---------------------------------------------------------------------------- rule
@dataclasses.dataclass(frozen=True)
class Rule:
    """When a schedule fires: a cron expression or an interval, in a time zone.

    ``anchor`` (epoch seconds) places an interval's runs: ``anchor + k * interval``.
    """

    cron: str | None = None
    interval: int | None = None
    timezone: str = LOCAL
    anchor: float = 0.0

    @classmethod
    def build(cls, cron: str | None, interval: Any, timezone: str | None = LOCAL,
              anchor: float = 0.0) -> Rule:
        """Validate and build; exactly one of ``cron`` and ``interval`` must be given."""
        has_cron = bool(cron and str(cron).strip())
        has_interval = interval not in (None, "")
        if has_cron == has_interval:
            raise RuleError("give either a cron expression or an interval in seconds "
                            "(exactly one of them)")
        tz = normalize_timezone(timezone)
        if has_cron:
            return cls(cron=parse_cron(str(cron)).text, timezone=tz, anchor=anchor)
        return cls(interval=parse_interval(interval), timezone=tz, anchor=anchor)

    @property
    def tzinfo(self) -> dt.tzinfo:
        return resolve_timezone(self.timezone)

    # ------------------------------------------------------------------ fire times
    def iter_after(self, after: float) -> Iterator[float]:
        """Fire times strictly after ``after`` (epoch seconds), increasing, without end."""
        if self.interval:
            step = float(self.interval)
            k = max(1, math.floor((after - self.anchor) / step) + 1)
            while True:
                t = self.anchor + k * step
                if t > after:
                    yield t
                k += 1
        else:
            yield from self._cron_after(after)

    def next_after(self, after: float) -> float | None:
        """The first fire time strictly after ``after``."""
        return next(self.iter_after(after), None)

    def preview(self, count: int, after: float) -> list[float]:
        """The next ``count`` fire times after ``after``."""
        out: list[float] = []
        for t in self.iter_after(after):
            out.append(t)
            if len(out) >= count:
                break
        return out

    def count_between(self, after: float, until: float, cap: int = 10_000
                      ) -> tuple[int, float | None, bool]:
        """Fire times in ``(after, until]``: (how many, the latest, whether ``cap`` was hit).

        When the cap is hit the count is a lower bound and the latest is still exact.
        """
        if until <= after:
            return 0, None, False
        if self.interval:
            step = float(self.interval)
            first = self.next_after(after)
            assert first is not None
            if first > until:
                return 0, None, False
            n = math.floor((until - first) / step) + 1
            return n, first + (n - 1) * step, False
        count, last = 0, None
        for t in self._cron_after(after):
            if t > until:
                return count, last, False
            count, last = count + 1, t
            if count >= cap:
                break
        # Dense schedule, long gap: find the latest fire time by looking back from
        # ``until`` in growing windows instead of walking the whole gap.
        window = 3600.0
        while True:
            start = max(after, until - window)
            found = None
            for t in self._cron_after(start):
                if t > until:
                    break
                found = t
            if found is not None or start <= after:
                return count, found if found is not None else last, True
            window *= 4

    def _instants(self, wall: dt.datetime, tz: dt.tzinfo) -> list[float]:
        first = wall.replace(tzinfo=tz, fold=0)
        second = wall.replace(tzinfo=tz, fold=1)
        a, b = first.timestamp(), second.timestamp()
        if a == b:
            return [a]
        back = dt.datetime.fromtimestamp(a, tz).replace(tzinfo=None)
        if back != wall:  # does not exist (spring forward): fold=0 shifts it by the gap
            return [a]
        early, late = min(a, b), max(a, b)  # happens twice (fall back)
        assert self.cron is not None
        return [early, late] if self.cron.split(" ")[1] == "*" else [early]

    def _cron_after(self, after: float) -> Iterator[float]:
        assert self.cron is not None
        tz = self.tzinfo
        trigger = _wall_trigger(self.cron)
        start = dt.datetime.fromtimestamp(after, tz).replace(tzinfo=None)
        cursor = (start - dt.timedelta(seconds=_DST_MARGIN_S)).replace(tzinfo=dt.UTC)
        heap: list[float] = []
        last = after
        while True:
            wall_aware = trigger.get_next_fire_time(None, cursor)
            if wall_aware is None:  # the calendar ran out (year 9999)
                break
            wall = wall_aware.replace(tzinfo=None)
            for inst in self._instants(wall, tz):
                heapq.heappush(heap, inst)
            offset = (wall.replace(tzinfo=tz).utcoffset() or dt.timedelta()).total_seconds()
            safe_below = _naive_seconds(wall) - offset - _DST_MARGIN_S
            while heap and heap[0] < safe_below:
                t = heapq.heappop(heap)
                if t > last:
                    last = t
                    yield t
            cursor = wall_aware + dt.timedelta(seconds=1)
        while heap:
            t = heapq.heappop(heap)
            if t > last:
                last = t
                yield t

    # ----------------------------------------------------------------- description
    def describe(self) -> str:
        """The rule for people: "Every Monday at 06:00", "Every 15 minutes"."""
        text = describe_interval(self.interval) if self.interval else describe_cron(self.cron or "")
        if self.cron and self.timezone != LOCAL:
            text += f" ({self.timezone})"
        return text


# -------------------------------------------------------------------- description
def _plural(n: int, unit: str) -> str:
    return f"Every {unit}" if n == 1 else f"Every {n} {unit}s"


def describe_interval(seconds: int) -> str:
    """ "Every 15 minutes", "Every day", "Every 90 seconds"."""
    for size, unit in ((86400 * 7, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            return _plural(seconds // size, unit)
    return _plural(seconds, "second")


def _ints(field: str, lo: int, hi: int) -> list[int] | None:
    """Plain numbers or a comma list of them (no ranges or steps); None otherwise."""
    if not re.fullmatch(r"\d+(,\d+)*", field):
        return None
    values = sorted({int(v) for v in field.split(",")})
    return values if all(lo <= v <= hi for v in values) else None


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _days_phrase(dow: frozenset[int]) -> str:
    if dow == frozenset({1, 2, 3, 4, 5}):
        return "weekday"
    if dow == frozenset({0, 6}):
        return "Saturday and Sunday"
    ordered = sorted(dow, key=lambda d: (d + 6) % 7)  # Monday first
    return _join([_DAY_TITLES[d] for d in ordered])


def describe_cron(expr: str) -> str:
    """A sentence for common expressions; the expression itself for unusual ones."""
    try:
        f = parse_cron(expr)
    except RuleError:
        return f"Cron {expr}"
    fallback = f"Cron {f.text}"
    minutes = _ints(f.minute, 0, 59)
    hours = _ints(f.hour, 0, 23)
    days = _ints(f.day, 1, 31)
    months = _ints(f.month, 1, 12)
    if f.month != "*" and (months is None or days is None or len(days) != 1):
        return fallback

    # the "when in the day" part
    if minutes is not None and hours is not None:
        if len(minutes) * len(hours) > 4:
            return fallback
        times = [f"{h:02d}:{m:02d}" for h in hours for m in minutes]
        when = "at " + _join(times)
        fixed = True
    else:
        fixed = False
        step_min = re.fullmatch(r"(?:\*|0)/(\d+)", f.minute)
        step_hour = re.fullmatch(r"(?:\*|0)/(\d+)", f.hour)
        if f.minute == "*" and f.hour == "*":
            when = "Every minute"
        elif step_min and f.hour == "*":
            when = _plural(int(step_min.group(1)), "minute")
        elif minutes is not None and f.hour == "*":
            when = ("Every hour, on the hour" if minutes == [0]
                    else "Every hour at " + _join([f":{m:02d}" for m in minutes]))
        elif minutes is not None and len(minutes) == 1 and step_hour:
            n = int(step_hour.group(1))
            when = _plural(n, "hour") + (", on the hour" if minutes == [0]
                                         else f" at :{minutes[0]:02d}")
        else:
            return fallback

    # the "which days" part
    if f.day == "*" and f.month == "*":
        if f.dow is None:
            return f"Every day {when}" if fixed else when
        days_text = _days_phrase(f.dow)
        if fixed:
            return f"Every {days_text} {when}"
        return f"{when} on {days_text if days_text == 'Saturday and Sunday' else days_text + 's'}"
    if days is not None and f.dow is None:
        on = _join([_ordinal(d) for d in days])
        if f.month == "*":
            return (f"Every month on the {on} {when}" if fixed
                    else f"{when} on the {on} of the month")
        assert months is not None
        month_text = _join([_MONTH_TITLES[m - 1] for m in months])
        return (f"Every year on {month_text} {days[0]} {when}" if fixed
                else f"{when} on {month_text} {days[0]}")
    return fallback


def format_instant(ts: float, timezone: str = LOCAL, *, with_zone: bool = True) -> str:
    """ "Mon 2026-12-07 06:00 CET": a fire time as shown in previews and the CLI."""
    moment = dt.datetime.fromtimestamp(ts, resolve_timezone(timezone))
    text = moment.strftime("%a %Y-%m-%d %H:%M")
    if moment.second:
        text += moment.strftime(":%S")
    if with_zone:
        text += " " + (moment.tzname() or "")
    return text.rstrip()
