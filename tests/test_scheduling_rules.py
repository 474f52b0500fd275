"""Schedule rules: cron and intervals, time zones, DST transitions, human-readable text."""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from swifty_desktop.scheduling.rules import (
    Rule,
    RuleError,
    describe_interval,
    format_instant,
    parse_cron,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, UTC)


def local(t: float, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, tz)


def test_daily_0230_in_berlin_on_spring_forward_runs_once_an_hour_later() -> None:
    # 2024-03-31: clocks jump from 02:00 to 03:00, so 02:30 does not exist that day
    rule = Rule.build("30 2 * * *", None, "Europe/Berlin")
    runs = rule.preview(4, ts(2024, 3, 29, 12))
    assert [utc(t).strftime("%m-%d %H:%M") for t in runs] == [
        "03-30 01:30",  # 02:30 CET
        "03-31 01:30",  # the missing 02:30 runs at 03:30 CEST: late, never lost
        "04-01 00:30",  # 02:30 CEST
        "04-02 00:30",
    ]
    assert local(runs[1], BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    assert [local(t, BERLIN).day for t in runs] == [30, 31, 1, 2]  # one run per day


def test_daily_0230_in_berlin_on_fall_back_runs_once_not_twice() -> None:
    # 2024-10-27: clocks go back from 03:00 CEST to 02:00 CET, 02:30 happens twice
    rule = Rule.build("30 2 * * *", None, "Europe/Berlin")
    runs = rule.preview(4, ts(2024, 10, 25, 12))
    on_the_day = [t for t in runs if local(t, BERLIN).date() == dt.date(2024, 10, 27)]
    assert len(on_the_day) == 1
    assert local(on_the_day[0], BERLIN).strftime("%H:%M %Z") == "02:30 CEST"  # the first one
    assert [local(t, BERLIN).strftime("%d %H:%M") for t in runs] == [
        "26 02:30", "27 02:30", "28 02:30", "29 02:30"]


def test_hourly_schedule_fires_in_both_repeated_hours_and_never_goes_backwards() -> None:
    rule = Rule.build("30 * * * *", None, "Europe/Berlin")
    runs = rule.preview(6, ts(2024, 10, 26, 22, 0))  # 00:00 CEST on the 27th
    stamps = [local(t, BERLIN).strftime("%H:%M %Z") for t in runs]
    assert stamps == ["00:30 CEST", "01:30 CEST", "02:30 CEST", "02:30 CET", "03:30 CET",
                      "04:30 CET"]
    assert all(b - a == 3600 for a, b in pairwise(runs))  # an hour of real time each


def test_sub_hourly_schedule_over_both_transitions_is_strictly_increasing() -> None:
    rule = Rule.build("*/30 * * * *", None, "Europe/Berlin")
    for start in (ts(2024, 3, 30, 22), ts(2024, 10, 26, 21)):
        runs = rule.preview(20, start)
        assert all(b > a for a, b in pairwise(runs))
        assert len(set(runs)) == len(runs)
        assert all(b - a <= 3600 for a, b in pairwise(runs))
    spring = [local(t, BERLIN).strftime("%H:%M") for t in rule.preview(6, ts(2024, 3, 31, 0, 10))]
    assert spring == ["01:30", "03:00", "03:30", "04:00", "04:30", "05:00"]


def test_monday_0600_in_new_york_keeps_local_time_across_dst() -> None:
    rule = Rule.build("0 6 * * 1", None, "America/New_York")
    runs = rule.preview(3, ts(2024, 3, 1))  # DST starts Sunday 10 March
    assert [local(t, NEW_YORK).strftime("%a %d %H:%M") for t in runs] == [
        "Mon 04 06:00", "Mon 11 06:00", "Mon 18 06:00"]
    assert [utc(t).hour for t in runs] == [11, 10, 10]  # EST, then EDT
    assert rule.describe() == "Every Monday at 06:00 (America/New_York)"
    assert format_instant(runs[1], "America/New_York") == "Mon 2024-03-11 06:00 EDT"


def test_day_of_week_numbers_follow_crontab_not_apscheduler3() -> None:
    # APScheduler 3 reads 0 as Monday; crontab (and people) read 0 and 7 as Sunday
    after = ts(2024, 5, 1)
    assert local(Rule.build("0 6 * * 1", None, "UTC").next_after(after), UTC).strftime("%a") \
        == "Mon"
    for sunday in ("0", "7", "sun", "SUN"):
        t = Rule.build(f"0 2 * * {sunday}", None, "UTC").next_after(after)
        assert local(t, UTC).strftime("%a %H:%M") == "Sun 02:00"
    weekdays = Rule.build("0 9 * * 1-5", None, "UTC").preview(10, after)
    assert {local(t, UTC).strftime("%a") for t in weekdays} == {"Mon", "Tue", "Wed", "Thu",
                                                                 "Fri"}
    weekend = Rule.build("0 9 * * 5-7", None, "UTC").preview(6, after)
    assert {local(t, UTC).strftime("%a") for t in weekend} == {"Fri", "Sat", "Sun"}
    every_other = Rule.build("0 9 * * */2", None, "UTC").preview(8, after)
    assert {local(t, UTC).strftime("%a") for t in every_other} == {"Sun", "Tue", "Thu", "Sat"}


@pytest.mark.parametrize("cron, text", [
    ("0 6 * * 1", "Every Monday at 06:00"),
    ("0 7 * * *", "Every day at 07:00"),
    ("0 2 * * 0", "Every Sunday at 02:00"),
    ("*/15 * * * *", "Every 15 minutes"),
    ("* * * * *", "Every minute"),
    ("0 * * * *", "Every hour, on the hour"),
    ("5 * * * *", "Every hour at :05"),
    ("0 */2 * * *", "Every 2 hours, on the hour"),
    ("0 6,18 * * *", "Every day at 06:00 and 18:00"),
    ("30 8 * * 1-5", "Every weekday at 08:30"),
    ("0 9 * * mon,wed,fri", "Every Monday, Wednesday and Friday at 09:00"),
    ("0 10 * * 6,0", "Every Saturday and Sunday at 10:00"),
    ("*/15 * * * 1-5", "Every 15 minutes on weekdays"),
    ("0 0 1 * *", "Every month on the 1st at 00:00"),
    ("0 0 1 1 *", "Every year on January 1 at 00:00"),
    ("5 4 * 1-6 *", "Cron 5 4 * 1-6 *"),  # unusual: the expression itself
])
def test_human_readable_rules(cron: str, text: str) -> None:
    assert Rule.build(cron, None).describe() == text


@pytest.mark.parametrize("seconds, text", [
    (1, "Every second"), (90, "Every 90 seconds"), (900, "Every 15 minutes"),
    (3600, "Every hour"), (5400, "Every 90 minutes"), (86400, "Every day"),
    (604800, "Every week"),
])
def test_human_readable_intervals(seconds: int, text: str) -> None:
    assert describe_interval(seconds) == text
    assert Rule.build(None, seconds).describe() == text


@pytest.mark.parametrize("cron, message", [
    ("61 * * * *", "the last value (61) is higher than the maximum value (59)"),
    ("* * *", "has 3 fields; use five fields"),
    ("", "the cron expression is empty"),
    ("0 7 * * 8", "day of week '8' is not valid"),
    ("0 7 * * 5-1", "runs backwards"),
    ("0 6 1 * 1", "restricts both the day of the month and the day of the week"),
    ("0 0 30 2 *", "never fires"),
    ("*/0 * * * *", "Increment must be higher than 0"),
])
def test_bad_cron_expressions_say_what_is_wrong(cron: str, message: str) -> None:
    with pytest.raises(RuleError, match="cron expression") as info:
        parse_cron(cron)
    assert message in str(info.value)


def test_time_zones_and_intervals_are_validated() -> None:
    with pytest.raises(RuleError, match="unknown time zone 'Mars/Olympus'.*IANA name"):
        Rule.build("0 7 * * *", None, "Mars/Olympus")
    with pytest.raises(RuleError, match="exactly one"):
        Rule.build("0 7 * * *", 60)
    with pytest.raises(RuleError, match="exactly one"):
        Rule.build(None, None)
    with pytest.raises(RuleError, match="whole number of seconds"):
        Rule.build(None, "soon")
    with pytest.raises(RuleError, match="out of range"):
        Rule.build(None, 0)
    assert Rule.build(None, "900", "local").interval == 900
    assert Rule.build("0  7 * *   *", None, "LOCAL").cron == "0 7 * * *"  # normalised
    assert Rule.build("0 7 * * *", None, "local").timezone == "local"


def test_interval_runs_count_from_their_anchor() -> None:
    rule = Rule(interval=60, anchor=1000.0)
    assert rule.preview(3, 0.0) == [1060.0, 1120.0, 1180.0]
    assert rule.next_after(1060.0) == 1120.0  # strictly after
    assert rule.count_between(1000.0, 1300.0) == (5, 1300.0, False)
    assert rule.count_between(1300.0, 1300.0) == (0, None, False)


def test_counting_a_long_gap_of_a_dense_schedule_is_capped_but_finds_the_latest() -> None:
    rule = Rule.build("* * * * *", None, "Europe/Berlin")
    start, end = ts(2024, 1, 1), ts(2024, 3, 1, 12, 30)
    count, latest, capped = rule.count_between(start, end, cap=500)
    assert capped and count == 500
    assert latest == end  # 12:30 UTC is a fire time of "every minute"
    count, latest, capped = rule.count_between(start, start + 600.5)
    assert (count, latest, capped) == (10, start + 600, False)
