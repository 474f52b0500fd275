"""The European Central Bank's euro foreign exchange reference rates.

The ECB publishes them every working day around 16:00 CET as
``eurofxref-daily.xml`` (and 90-day / full histories in the same format)::

    <gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
                     xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
      <gesmes:subject>Reference rates</gesmes:subject>
      <Cube>
        <Cube time="2024-05-03">
          <Cube currency="USD" rate="1.0765"/>
          ...

A rate is units of the currency per 1 EUR.  Anything that is not this format is
refused with a message saying what was received instead.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

ECB_DAILY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
GESMES_NS = "http://www.gesmes.org/xml/2002-08-01"
EUROFXREF_NS = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
MAX_BYTES = 20_000_000  # the full history since 1999 is ~6 MB


class FeedFormatError(ValueError):
    """The document is not an ECB eurofxref rates feed; the message says what it is."""


def describe_body(body: bytes, content_type: str | None) -> str:
    """'text/html, 1,234 bytes, starting "<!DOCTYPE html>…"' for error messages."""
    text = body[:300].decode("utf-8", "replace")
    text = " ".join(text.split())
    start = text[:70] + ("…" if len(text) > 70 else "")
    what = content_type or "no content type"
    if not body:
        return f"an empty answer ({what})"
    return f"{what}, {len(body):,} bytes, starting {start!r}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_rates(body: bytes, content_type: str | None = None
                ) -> dict[dt.date, dict[str, float]]:
    """Rates by day from an eurofxref document; FeedFormatError if it is not one."""
    what = describe_body(body, content_type)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise FeedFormatError(f"it is not XML ({exc}); received {what}") from None
    if _local(root.tag) != "Envelope" or not root.tag.startswith("{" + GESMES_NS):
        raise FeedFormatError(f"its root element is <{_local(root.tag)}> rather than the "
                              f"ECB's <gesmes:Envelope>; received {what}")
    days: dict[dt.date, dict[str, float]] = {}
    for cube in root.iter(f"{{{EUROFXREF_NS}}}Cube"):
        when = cube.get("time")
        if when is None:
            continue
        try:
            day = dt.date.fromisoformat(when.strip())
        except ValueError:
            raise FeedFormatError(f"it has a day {when!r} that is not a date") from None
        rates = days.setdefault(day, {})
        for entry in cube:
            if _local(entry.tag) != "Cube":
                continue
            currency = (entry.get("currency") or "").strip().upper()
            raw = (entry.get("rate") or "").strip()
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise FeedFormatError(f"it has a currency code {currency!r} on {day} that is "
                                      "not 3 letters")
            try:
                rate = float(raw)
            except ValueError:
                raise FeedFormatError(f"the {currency} rate on {day} is {raw!r}, not a "
                                      "number") from None
            if not math.isfinite(rate) or rate <= 0:
                raise FeedFormatError(f"the {currency} rate on {day} is {raw!r}, not a "
                                      "positive number")
            rates[currency] = rate
    days = {d: r for d, r in days.items() if r}
    if not days:
        raise FeedFormatError(f"it is an ECB envelope without any rates; received {what}")
    return days


def fetch(url: str, *, timeout: float = 30.0, retries: int = 3) -> tuple[bytes, str]:
    """GET the feed; (body, content type).  Raises requests exceptions after retries."""
    from swifty_desktop.integrations.http import HttpPolicy, make_session

    policy = HttpPolicy(read_timeout=timeout, retries=retries)
    with make_session(policy, accept="application/xml, text/xml;q=0.9, */*;q=0.1") as session:
        with session.get(url, timeout=policy.timeout, stream=True) as resp:
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_content(64 * 1024):  # body errors: requests exceptions
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BYTES:
                    raise FeedFormatError(f"it is larger than {MAX_BYTES:,} bytes")
            body = b"".join(chunks)
            _raise_for_status(url, resp, body)
            return body, resp.headers.get("Content-Type", "")


def _raise_for_status(url: str, resp: Any, body: bytes) -> None:
    from swifty_desktop.integrations.http import (
        RETRY_AFTER_MAX_S,
        RETRY_AFTER_STATUSES,
        retry_after_of,
    )
    from swifty_desktop.tasks.base import TaskError, TransientError

    status = resp.status_code
    if status < 400:
        return
    wait = retry_after_of(resp) if status in RETRY_AFTER_STATUSES else None
    if wait is not None and wait > RETRY_AFTER_MAX_S:  # not slept through by urllib3
        raise TransientError(
            f"the exchange-rates source {url} answered HTTP {status} "
            f"({resp.reason or 'error'}) and asked to wait {wait:.0f} s (Retry-After); the "
            f"job will retry automatically in {wait:.0f} s or later", retry_after=wait)
    if status in (429, 500, 502, 503, 504):
        raise TransientError(
            f"the exchange-rates source {url} kept answering HTTP {status} "
            f"({resp.reason or 'error'}); the job will retry automatically")
    raise TaskError(
        f"the exchange-rates source {url} answered HTTP {status} ({resp.reason or 'error'}). "
        "Check the rates address in Settings › Exchange rates (the ECB's is "
        f"{ECB_DAILY_URL}).")
