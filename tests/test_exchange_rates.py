"""exchange_rates against an ECB-format feed (and impostors) served on loopback."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_final, wait_until
from loopback import StaticServer, make_due
from sqlalchemy import select

from swifty_desktop.db.models import ExchangeRate
from swifty_desktop.integrations.ecb import ECB_DAILY_URL, FeedFormatError, parse_rates
from swifty_desktop.jobs.model import JobStatus
from swifty_desktop.settings import Settings, spec_for

DAILY = (Path(__file__).parent / "servers" / "eurofxref-daily.xml").read_bytes()
XML = "application/xml"


def rates(db: Any) -> dict[tuple[dt.date, str], float]:
    t = ExchangeRate.__table__
    with db.connect() as conn:
        return {(r.rate_date, r.currency): r.rate
                for r in conn.execute(select(t.c.rate_date, t.c.currency, t.c.rate))}


def test_daily_feed_is_stored_once_per_day_and_corrections_update(make_manager, qtbot,
                                                                  db) -> None:
    corrected = DAILY.replace(b"rate='1.0745'", b"rate='1.0750'")
    routes = {"/eurofxref-daily.xml": (200, "text/xml", DAILY),
              "/corrected.xml": (200, XML, corrected)}
    with StaticServer(routes) as server:
        manager = make_manager()
        Settings(db).set("rates.url", server.base_url + "/eurofxref-daily.xml")
        first = wait_final(qtbot, manager, manager.submit("exchange_rates", {}))
        assert first.status is JobStatus.COMPLETED, first.error
        assert first.result["date"] == "2024-05-03" and first.result["currencies"] == 30
        assert (first.result["inserted"], first.result["updated"]) == (30, 0)
        assert first.result["source"].endswith("/eurofxref-daily.xml")  # from the settings
        stored = rates(db)
        assert len(stored) == 30
        day = dt.date(2024, 5, 3)
        assert stored[(day, "USD")] == 1.0745 and stored[(day, "JPY")] == 164.52
        assert stored[(day, "IDR")] == 17313.53

        again = wait_final(qtbot, manager, manager.submit("exchange_rates", {}))
        assert (again.result["inserted"], again.result["updated"],
                again.result["unchanged"]) == (0, 0, 30)
        assert rates(db) == stored  # idempotent for the same day

        fixed = wait_final(qtbot, manager, manager.submit(
            "exchange_rates", {"url": server.base_url + "/corrected.xml"}))
        assert (fixed.result["inserted"], fixed.result["updated"]) == (0, 1)
        assert rates(db)[(day, "USD")] == 1.075
        assert server.hits == ["/eurofxref-daily.xml", "/eurofxref-daily.xml",
                               "/corrected.xml"]


def test_a_feed_in_another_format_fails_saying_what_was_received(make_manager, qtbot,
                                                                 db) -> None:
    page = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>Hi</body></html>"
    routes = {"/page": (200, "text/html; charset=utf-8", page),
              "/json": (200, "application/json", b'{"rates": {"USD": 1.07}}'),
              "/other.xml": (200, XML, b"<?xml version='1.0'?><rss><channel/></rss>")}
    with StaticServer(routes) as server:
        manager = make_manager()
        html = wait_final(qtbot, manager, manager.submit(
            "exchange_rates", {"url": server.base_url + "/page"}))
        assert html.status is JobStatus.FAILED and not html.error.transient
        message = html.error.message
        assert "is not an ECB euro reference-rates feed" in message
        assert "text/html" in message and "<!DOCTYPE html><html>" in message
        assert "Settings › Exchange rates" in message

        as_json = wait_final(qtbot, manager, manager.submit(
            "exchange_rates", {"url": server.base_url + "/json"}))
        assert "application/json" in as_json.error.message and '{"rates"' in \
            as_json.error.message
        rss = wait_final(qtbot, manager, manager.submit(
            "exchange_rates", {"url": server.base_url + "/other.xml"}))
        assert "root element is <rss>" in rss.error.message

        missing = wait_final(qtbot, manager, manager.submit(
            "exchange_rates", {"url": server.base_url + "/gone.xml"}))
        assert missing.status is JobStatus.FAILED and not missing.error.transient
        assert "HTTP 404" in missing.error.message and ECB_DAILY_URL in missing.error.message
        for job in (html, as_json, rss, missing):
            assert len(manager.store.chain(job.id)) == 1  # permanent: not retried
        assert rates(db) == {}


def next_attempt(qtbot: Any, manager: Any, job_id: int) -> int:
    """The automatic retry the engine queues right after a transient failure."""
    return int(wait_until(qtbot, lambda: manager.store.get(job_id).superseded_by, 10,
                          f"an automatic retry of job #{job_id}"))


@pytest.mark.parametrize("fault", ["503", "stall:1.5"], ids=["503", "read-timeout"])
def test_a_503_or_a_read_timeout_is_transient_and_the_engine_retry_completes(
        make_manager, qtbot, db, fault) -> None:
    path = "/eurofxref-daily.xml"
    with StaticServer({path: (200, "text/xml", DAILY)}) as server:
        server.fail(path, *[fault] * 4)  # the first try and urllib3's 3 retries
        manager = make_manager()
        first = wait_final(qtbot, manager, manager.submit(
            "exchange_rates", {"url": server.base_url + path, "timeout": 0.5}))
        assert first.status is JobStatus.FAILED and first.error.transient, first.error
        reason = "HTTP 503" if fault == "503" else "no answer within the read timeout"
        assert reason in first.error.message and "retry automatically" in first.error.message
        assert [what for _, _, what in server.log] == [fault] * 4
        assert rates(db) == {}
        retry = manager.store.get(next_attempt(qtbot, manager, first.id))
        assert retry.trigger.automatic and retry.not_before > time.time()
        make_due(db, retry.id)
        done = wait_final(qtbot, manager, retry.id)
        assert done.status is JobStatus.COMPLETED, done.error
        assert done.result["inserted"] == 30 and len(rates(db)) == 30


def test_a_retry_after_above_the_cap_delays_the_engine_retry(make_manager, qtbot, db) -> None:
    from swifty_desktop.integrations.http import RETRY_AFTER_MAX_S

    path = "/eurofxref-daily.xml"
    wait = RETRY_AFTER_MAX_S * 20
    with StaticServer({path: (200, "text/xml", DAILY)}) as server:
        server.fail(path, f"503:{wait}")
        manager = make_manager()
        started = time.monotonic()
        first = wait_final(qtbot, manager, manager.submit(
            "exchange_rates", {"url": server.base_url + path}), timeout=20)
        assert time.monotonic() - started < 15  # nobody slept through it
        assert first.status is JobStatus.FAILED and first.error.transient
        assert f"wait {wait} s" in first.error.message
        assert len(server.log) == 1  # no request-level retry either
        retry = manager.store.get(next_attempt(qtbot, manager, first.id))
        assert retry.not_before >= time.time() + wait - 30


def test_storing_a_day_another_engine_stored_meanwhile_updates_instead_of_failing(db) -> None:
    """Two engines read "not stored yet", the other one writes first: no unique-key error."""
    from swifty_desktop.tasks.exchange_rates import _plan_rates, _write_rates

    day = dt.date(2024, 5, 3)
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    with db.connect() as mine:
        planned = _plan_rates(mine, {day: {"USD": 1.0745, "GBP": 0.85788}}, counts)
        mine.rollback()
        assert counts["inserted"] == 2
        with db.begin() as other:  # the other engine stores the day (one rate differs)
            other_counts = {"inserted": 0, "updated": 0, "unchanged": 0}
            _write_rates(other, _plan_rates(other, {day: {"USD": 1.07, "GBP": 0.85788}},
                                            other_counts))
        with mine.begin():
            _write_rates(mine, planned)  # a plain INSERT would raise IntegrityError here
    assert rates(db) == {(day, "USD"): 1.0745, (day, "GBP"): 0.85788}


def test_parser_reads_histories_and_refuses_bad_values() -> None:
    history = (b"<gesmes:Envelope xmlns:gesmes='http://www.gesmes.org/xml/2002-08-01' "
               b"xmlns='http://www.ecb.int/vocabulary/2002-08-01/eurofxref'><Cube>"
               b"<Cube time='2024-05-02'><Cube currency='USD' rate='1.0715'/></Cube>"
               b"<Cube time='2024-05-03'><Cube currency='USD' rate='1.0745'/>"
               b"<Cube currency='GBP' rate='0.85788'/></Cube></Cube></gesmes:Envelope>")
    days = parse_rates(history)
    assert days == {dt.date(2024, 5, 2): {"USD": 1.0715},
                    dt.date(2024, 5, 3): {"USD": 1.0745, "GBP": 0.85788}}
    with pytest.raises(FeedFormatError, match="USD rate on 2024-05-03 is '-1'"):
        parse_rates(history.replace(b"1.0745", b"-1"))
    with pytest.raises(FeedFormatError, match="not XML"):
        parse_rates(b"USD,1.07", "text/csv")
    with pytest.raises(FeedFormatError, match="without any rates"):
        parse_rates(b"<gesmes:Envelope xmlns:gesmes='http://www.gesmes.org/xml/2002-08-01'/>")
    spec = spec_for("rates.url")
    assert spec is not None and spec.default == ECB_DAILY_URL  # the real ECB by default
