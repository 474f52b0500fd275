"""``exchange_rates``: the ECB's euro reference rates into ``exchange_rates``.

Reads ``eurofxref-daily.xml`` (the real ECB address by default, or the address in
Settings › Exchange rates, or the ``url`` parameter) and stores each day's rates.
Idempotent: fetching the same day again changes nothing (a corrected rate is
updated).  A document that is not that format fails with a message saying what
was received.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from swifty_desktop.settings import SettingSpec, register_group
from swifty_desktop.tasks.base import Action, Context, Param, RetryPolicy, TaskError, task

ECB_DAILY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"

if TYPE_CHECKING:
    from sqlalchemy import Table

SETTINGS = register_group(
    "rates",
    "Exchange rates",
    [
        SettingSpec("rates.url", "Rates address", default=ECB_DAILY_URL,
                    help="an ECB euro reference-rates feed (eurofxref XML); the default is "
                         "the European Central Bank's daily feed"),
    ],
    description="Where Update exchange rates reads the euro reference rates from.",
    check="swifty_desktop.integrations.checks:check_rates_settings",
)


def _outcome(result: Mapping[str, Any]) -> str:
    """"30 rates for 2026-03-02: 30 new, 0 corrected"."""
    from swifty_desktop.tasks.base import counted, result_count

    if "currencies" not in result:
        return ""
    date = result.get("date")
    return (counted(result_count(result, "currencies"), "rate")
            + (f" for {date}" if isinstance(date, str) and date else "")
            + f": {result_count(result, 'inserted'):,} new, "
              f"{result_count(result, 'updated'):,} corrected")


@task(
    "exchange_rates",
    title="Update exchange rates",
    outcome=_outcome,
    description="Reads the European Central Bank's euro reference rates and stores them by day.",
    params=(
        Param("url", "str", label="Address",
              help="an ECB eurofxref XML feed; empty: Settings › Exchange rates (the ECB's "
                   "daily feed)"),
        Param("timeout", "float", default=30.0, minimum=0.1, maximum=600,
              help="seconds to wait for the answer"),
    ),
    retry=RetryPolicy(max_attempts=4, backoff_base=30.0, backoff_max=900.0,
                      transient=("requests.exceptions:ConnectionError",
                                 "requests.exceptions:Timeout")),
    concurrency=1,
    timeout=600.0,
    rerun_safe=True,
    icon="rates",
    actions=(
        Action("Update exchange rates", icon="rates", menu="Sync",
               tooltip="Fetch today's euro reference rates from the European Central Bank",
               ack="Updating exchange rates…"),
    ),
)
def exchange_rates(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    import requests

    from swifty_desktop.db.engine import write_transaction
    from swifty_desktop.integrations import ecb
    from swifty_desktop.integrations.http import describe_exception
    from swifty_desktop.settings import Settings
    from swifty_desktop.tasks.base import TransientError

    url = str(params.get("url") or "").strip()
    if not url:
        url = str(Settings(ctx.engine()).get("rates.url") or "").strip()  # type: ignore[attr-defined]
    url = url or ECB_DAILY_URL
    if not url.startswith(("http://", "https://")):
        raise TaskError(f"the exchange-rates address {url!r} is not a web address; enter an "
                        f"https:// address in Settings › Exchange rates (the ECB's is "
                        f"{ECB_DAILY_URL})")
    ctx.progress(None, f"Fetching {url}")
    try:
        body, content_type = ecb.fetch(url, timeout=float(params.get("timeout") or 30.0))
    except requests.exceptions.RequestException as exc:
        raise TransientError(
            f"could not fetch exchange rates from {url} ({describe_exception(exc)}); the job "
            "will retry automatically. If it keeps failing, check the internet connection "
            "and the address in Settings › Exchange rates.") from exc
    except ecb.FeedFormatError as exc:
        raise TaskError(f"{url} is not an ECB euro reference-rates feed: {exc}. Check the "
                        "address in Settings › Exchange rates.") from exc
    try:
        days = ecb.parse_rates(body, content_type)
    except ecb.FeedFormatError as exc:
        raise TaskError(
            f"{url} is not an ECB euro reference-rates feed (eurofxref XML): {exc}. Check the "
            f"address in Settings › Exchange rates (the ECB's daily feed is {ECB_DAILY_URL})."
        ) from exc
    ctx.check_cancelled()
    ctx.progress(0.5, "Storing rates")
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    with write_transaction(ctx.engine()) as conn:  # type: ignore[attr-defined]
        _store(conn, days, counts)
    latest = max(days)
    currencies = sorted(days[latest])
    ctx.log(f"{len(currencies)} rates for {latest.isoformat()} from {url}: "
            f"{counts['inserted']} new, {counts['updated']} corrected, "
            f"{counts['unchanged']} already stored")
    return {
        "date": latest.isoformat(), "days": len(days), "currencies": len(currencies),
        **counts, "source": url,
        "sample": {c: days[latest][c] for c in ("USD", "GBP", "CHF", "JPY") if c in days[latest]},
    }


def _store(conn: Any, days: Mapping[dt.date, Mapping[str, float]], counts: dict[str, int]
           ) -> None:
    """Store the rates: new days and corrected rates are written, the rest left alone."""
    _write_rates(conn, _plan_rates(conn, days, counts))


def _plan_rates(conn: Any, days: Mapping[dt.date, Mapping[str, float]],
                counts: dict[str, int]) -> list[dict[str, Any]]:
    """The rows to write (new or corrected), counting them into ``counts``."""
    from sqlalchemy import select

    from swifty_desktop.db.models import ExchangeRate

    table = cast("Table", ExchangeRate.__table__)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    existing = {
        (r.rate_date, r.currency): r.rate for r in conn.execute(
            select(table.c.rate_date, table.c.currency, table.c.rate)
            .where(table.c.rate_date.in_(list(days))))
    }
    rows = []
    for day, rates in sorted(days.items()):
        for currency, rate in sorted(rates.items()):
            old = existing.get((day, currency))
            if old is not None and abs(old - rate) <= 1e-12:
                counts["unchanged"] += 1
                continue
            counts["inserted" if old is None else "updated"] += 1
            rows.append({"rate_date": day, "currency": currency, "rate": rate,
                         "fetched_at": now})
    return rows


def _write_rates(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Insert or update by (day, currency); another engine's rows of that day are fine.

    Between reading what is stored and writing, another engine (or an app on
    another database server) may have stored the same day: the write must update
    those rows, not fail on the unique key.
    """
    from swifty_desktop.db.engine import upsert
    from swifty_desktop.db.models import ExchangeRate

    table = cast("Table", ExchangeRate.__table__)
    upsert(conn, table, rows, keys=("rate_date", "currency"), update=("rate", "fetched_at"))
