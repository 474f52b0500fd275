"""email_batch against a real SMTP server on loopback (aiosmtpd) that answers 4xx/5xx
and drops connections on cue, and against the outbox folder; real worker processes,
a real database ledger, engines killed the hard way."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from typing import Any

import keyring
import pytest
from conftest import wait_final, wait_until
from helpers import start_worker, stop
from loopback import (
    MailServer,
    SmtpProxy,
    free_port,
    make_due,
    self_signed_cert,
    use_file_keyring,
    wait_for,
)
from sqlalchemy import insert, select

from swifty_desktop.db.models import Customer, EmailDelivery, Order
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.jobs.store import JobStore
from swifty_desktop.settings import Settings
from swifty_desktop.tasks import get_kind


def next_attempt(qtbot: Any, manager: Any, job_id: int) -> int:
    """The automatic retry the engine queues right after a transient failure."""
    return int(wait_until(qtbot, lambda: manager.store.get(job_id).superseded_by, 10,
                          f"an automatic retry of job #{job_id}"))

def add_customers(db: Any, *people: tuple[str, str, bool]) -> list[int]:
    now = dt.datetime(2024, 1, 1)
    with db.begin() as conn:
        ids = conn.execute(insert(Customer.__table__).returning(Customer.__table__.c.id,
                                                                  sort_by_parameter_order=True),
                           [{"name": n, "email": e, "opted_in": o, "country": "DE",
                             "created_at": now} for n, e, o in people]).scalars().all()
    return list(ids)


def add_order(db: Any, customer_id: int, number: str, cents: int, status: str = "open") -> None:
    with db.begin() as conn:
        conn.execute(insert(Order.__table__).values(
            number=number, customer_id=customer_id, order_date=dt.date(2024, 4, 30),
            status=status, currency="EUR", total_cents=cents))


def ledger(db: Any) -> dict[str, dict[str, Any]]:
    t = EmailDelivery.__table__
    with db.connect() as conn:
        return {r["recipient"]: dict(r) for r in conn.execute(select(t)).mappings()}


def smtp_settings(db: Any, server: MailServer, **extra: Any) -> Settings:
    settings = Settings(db)
    settings.set("mail.smtp_host", server.host)
    settings.set("mail.smtp_port", server.port)
    settings.set("mail.smtp_security", "none")
    settings.set("mail.from_address", "Corner Shop <shop@corner.example>")
    settings.set("mail.per_minute", 0)
    for key, value in extra.items():
        settings.set(key, value)
    return settings


def customers(n: int) -> list[tuple[str, str, bool]]:
    return [(f"Customer{i} Test", f"c{i}@example.com", True) for i in range(1, n + 1)]


def test_without_smtp_messages_go_to_the_outbox_as_complete_eml_files(
        make_manager, qtbot, db, data_dir, tmp_path) -> None:
    ada, grace, alan, edsger = add_customers(
        db, ("Ada Lovelace", "ada@example.com", True), ("Grace Hopper", "grace@example.com", True),
        ("Alan Turing", "alan@example.com", False), ("Edsger Dijkstra", "edsger@example.com", True))
    add_order(db, alan, "SO-1001", 4999)
    add_order(db, edsger, "SO-1002", 123450)
    add_order(db, edsger, "SO-1003", 1000)
    add_order(db, edsger, "SO-0999", 500, status="shipped")
    Settings(db).set("mail.from_address", "Corner Shop <shop@corner.example>")
    manager = make_manager()
    news = wait_final(qtbot, manager, manager.submit("email_batch", {}))
    assert news.status is JobStatus.COMPLETED, news.error
    assert news.result["recipients"] == 3 and news.result["sent"] == 3
    assert news.result["failed"] == [] and news.result["transport"] == "outbox"
    assert news.result["outbox"] == str(data_dir.outbox)  # the notification opens it
    files = sorted(data_dir.outbox.iterdir())
    assert [f.suffix for f in files] == [".eml"] * 3  # no temporary files left
    messages = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
                for f in files]
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == \
        ["ada@example.com", "edsger@example.com", "grace@example.com"]
    ids = {m["Message-ID"] for m in messages}
    assert len(ids) == 3 and all(i.endswith("@corner.example>") for i in ids)
    for m in messages:
        assert m["Subject"] == "News from Corner Shop"
        assert m["X-Swifty-Batch"] == f"job-{news.id}"
        text = m.get_body(("plain",)).get_content()
        html = m.get_body(("html",)).get_content()
        first = m["To"].addresses[0].display_name.split()[0]
        assert f"Hello {first}," in text and f"Hello {first}," in html
        assert "{" not in text and "Corner Shop" in text

    orders = wait_final(qtbot, manager, manager.submit("email_batch",
                                                       {"audience": "open_orders"}))
    assert orders.status is JobStatus.COMPLETED, orders.error
    assert orders.result["recipients"] == 2 and orders.result["template"] == "order_status"
    mail = {m["To"].addresses[0].addr_spec: m for m in (
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        for f in data_dir.outbox.glob(f"job-{orders.id}-*.eml"))}
    assert sorted(mail) == ["alan@example.com", "edsger@example.com"]
    text = mail["edsger@example.com"].get_body(("plain",)).get_content()
    assert "SO-1002" in text and "SO-1003" in text and "SO-0999" not in text
    assert "Open total: 1,244.50 EUR" in text
    html = mail["edsger@example.com"].get_body(("html",)).get_content()
    assert "<table" in html and "<td" in html and "SO-1002" in html

    again = wait_final(qtbot, manager, manager.submit("email_batch",
                                                      {"continue_batch": news.id}))
    assert (again.result["sent"], again.result["skipped_already_sent"]) == (0, 3)
    assert len(list(data_dir.outbox.iterdir())) == 5  # nobody got a second message

    bad = tmp_path / "bad.txt"
    bad.write_text("Subject: Hi {first_name}\n\nYour {discount} awaits\n", encoding="utf-8")
    broken = wait_final(qtbot, manager, manager.submit("email_batch",
                                                       {"template_file": str(bad)}))
    assert broken.status is JobStatus.FAILED and not broken.error.transient
    assert "{discount}" in broken.error.message and "{first_name}" in broken.error.message
    assert len(list(data_dir.outbox.iterdir())) == 5


def test_flaky_smtp_every_recipient_gets_exactly_one_message_after_automatic_retries(
        make_manager, qtbot, db, monkeypatch, tmp_path) -> None:
    previous = use_file_keyring(monkeypatch, tmp_path)
    add_customers(db, *customers(9))
    try:
        with MailServer(auth=("mailer", "s3cret from keyring")) as server:
            server.script[("rcpt", "c2@example.com")] = ["421 4.3.2 Service shutting down"]
            server.drop_mail = {5}  # c4's first MAIL: the connection just drops
            server.script[("data", "c5@example.com")] = ["451 4.3.0 Try again later"]
            server.script[("rcpt", "c6@example.com")] = ["550 5.1.1 Mailbox unavailable"]
            server.script[("data", "c7@example.com")] = ["store_then_drop"]
            server.script[("rcpt", "c8@example.com")] = ["421 4.7.0 Busy"] * 3
            settings = smtp_settings(db, server, **{"mail.smtp_user": "mailer"})
            settings.set("mail.smtp_password", "s3cret from keyring")  # -> the keyring
            manager = make_manager()
            first = wait_final(qtbot, manager, manager.submit("email_batch", {}), timeout=60)
            assert first.status is JobStatus.FAILED and first.error.transient
            assert "421 4.7.0 Busy" in first.error.message
            assert "send only to the recipients not reached yet" in first.error.message
            assert server.logins and set(server.logins) == {"mailer"}
            retry = manager.store.get(next_attempt(qtbot, manager, first.id))
            assert retry.status is JobStatus.QUEUED and retry.trigger.automatic
            make_due(db, retry.id)
            done = wait_final(qtbot, manager, retry.id, timeout=60)
            assert done.status is JobStatus.COMPLETED, done.error
            result = done.result
            assert result["recipients"] == 9
            assert (result["sent"], result["skipped_already_sent"]) == (2, 5)  # c8, c9
            assert [f["recipient"] for f in result["failed"]] == ["c6@example.com"]
            assert "550 5.1.1" in result["failed"][0]["reason"]
            assert [u["recipient"] for u in result["uncertain"]] == ["c7@example.com"]
            assert "never sent again" in result["policy"]
            assert "final end-of-message mark" in result["policy"]  # says which moment

            received = server.received()
            assert received == {f"c{i}@example.com": 1 for i in (1, 2, 3, 4, 5, 7, 8, 9)}
            book = ledger(db)
            assert {r: v["status"] for r, v in book.items()} == {
                **{f"c{i}@example.com": "sent" for i in (1, 2, 3, 4, 5, 8, 9)},
                "c6@example.com": "failed", "c7@example.com": "dot_pending"}
            assert {v["batch_key"] for v in book.values()} == {f"job-{first.id}"}
            ids = [m["message_id"] for m in server.messages]
            assert len(set(ids)) == len(ids) == 8
            assert set(ids) == {v["message_id"] for r, v in book.items() if r != "c6@example.com"}
            assert book["c2@example.com"]["attempts"] >= 1

            # on purpose: continue the batch and re-send the uncertain one
            more = wait_final(qtbot, manager, manager.submit(
                "email_batch", {"continue_batch": first.id, "resend_uncertain": True}))
            assert more.status is JobStatus.COMPLETED, more.error
            assert more.result["skipped_already_sent"] == 7 and more.result["sent"] == 2
            again = [m for m in server.messages if m["to"] == ["c7@example.com"]]
            assert len(again) == 2 and again[0]["message_id"] == again[1]["message_id"]
            assert server.received()["c6@example.com"] == 1  # the 550 went away: reached now
    finally:
        keyring.set_keyring(previous)


def test_server_down_fails_transient_and_a_manual_retry_later_completes(
        make_manager, qtbot, db) -> None:
    add_customers(db, *customers(3))
    port = free_port()
    server = MailServer(port)
    smtp_settings(db, server)
    server.script[("rcpt", "c2@example.com")] = ["421 4.3.2 Try later"] * 3
    manager = make_manager()
    with server:
        first = wait_final(qtbot, manager, manager.submit("email_batch", {}))
        assert first.status is JobStatus.FAILED and first.error.transient
        assert server.received() == {"c1@example.com": 1}
    second = manager.store.get(next_attempt(qtbot, manager, first.id))  # server down
    make_due(db, second.id)
    second = wait_final(qtbot, manager, second.id)
    assert second.status is JobStatus.FAILED and second.error.transient
    assert f"cannot reach the mail server 127.0.0.1:{port}" in second.error.message
    assert "retry automatically" in second.error.message
    third = next_attempt(qtbot, manager, second.id)
    assert manager.cancel(third) == "cancelled"  # no more automatic retries

    with MailServer(port) as server:
        manual = manager.retry(second.id)
        done = wait_final(qtbot, manager, manual)
        assert done.status is JobStatus.COMPLETED, done.error
        assert not done.trigger.automatic
        assert (done.result["sent"], done.result["skipped_already_sent"]) == (2, 1)
        assert server.received() == {"c2@example.com": 1, "c3@example.com": 1}
    assert {v["status"] for v in ledger(db).values()} == {"sent"}

    Settings(db).set("mail.smtp_security", "starttls")
    with MailServer(port):
        plain = wait_final(qtbot, manager, manager.submit("email_batch", {}))
    assert plain.status is JobStatus.FAILED and not plain.error.transient
    assert "does not offer STARTTLS" in plain.error.message
    assert "Settings › E-mail" in plain.error.message


@pytest.mark.slow
def test_kill_9_during_a_batch_then_restart_no_recipient_gets_a_second_message(
        data_dir, db, qtbot, make_manager) -> None:
    add_customers(db, *customers(12))
    with MailServer() as server:
        smtp_settings(db, server, **{"mail.per_minute": 300})  # one message every 0.2 s
        store = JobStore(db)
        engine = start_worker(data_dir.root, "--workers", "1")
        job_id = store.insert("email_batch", "E-mail", get_kind("email_batch").validate({}),
                              Trigger("api"))
        wait_for(lambda: sum(v["status"] == "sent" for v in ledger(db).values()) >= 3, 60,
                 "a few messages to go out")
        os.kill(engine.pid, signal.SIGKILL)
        stop(engine)
        before = len(server.messages)
        assert before < 12  # killed part-way
        times = [m["at"] for m in server.messages]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert gaps and min(gaps) > 0.15  # the messages-per-minute limit held

        manager = make_manager()  # restart: recovery re-queues the batch (ledger-safe)
        old = store.get(job_id)
        assert old.status is JobStatus.INTERRUPTED and old.superseded_by is not None
        rerun = wait_final(qtbot, manager, old.superseded_by, timeout=60)
        assert rerun.status is JobStatus.COMPLETED, rerun.error
        result = rerun.result
        uncertain = {u["recipient"] for u in result["uncertain"]}
        received = server.received()
        assert result["skipped_already_sent"] + result["sent"] + len(uncertain) == 12
        assert result["skipped_already_sent"] >= 3
        assert len(uncertain) <= 1  # at most the one message in flight at the kill
        assert all(n == 1 for n in received.values()), received  # never a second message
        for i in range(1, 13):
            if f"c{i}@example.com" not in uncertain:
                assert received.get(f"c{i}@example.com") == 1  # everyone else: exactly one
        store.close()


def test_outbox_batch_interrupted_between_rename_and_ledger_resumes_without_duplicates(
        make_manager, qtbot, db, data_dir) -> None:
    """The states a crash can leave in outbox mode, written into the ledger directly."""
    from swifty_desktop.integrations import mail_ledger

    add_customers(db, *customers(3))
    store = JobStore(db)
    crashed = store.insert("email_batch", "E-mail", get_kind("email_batch").validate({}),
                           Trigger("api"))
    assert store.cancel_queued(crashed)  # it "ran" and stopped: leave only its ledger behind
    key = f"job-{crashed}"
    with db.begin() as conn:
        mail_ledger.plan(conn, key, [(f"c{i}@example.com", i, f"<m{i}.{key}@x>")
                                     for i in (1, 2, 3)])
        rows = {r.recipient: r for r in mail_ledger.load(conn, key)}
        mail_ledger.claim(conn, rows["c1@example.com"].id, "queued")  # renamed, not marked
        mail_ledger.claim(conn, rows["c2@example.com"].id, "queued")  # died before renaming
    written = data_dir.outbox / f"{key}-{rows['c1@example.com'].id:06d}-c1@example.com.eml"
    written.write_bytes(b"Message-ID: <m1>\r\n\r\nalready here\r\n")
    manager = make_manager()
    done = wait_final(qtbot, manager, manager.retry(crashed))
    assert done.status is JobStatus.COMPLETED, done.error
    assert (done.result["sent"], done.result["skipped_already_sent"]) == (2, 1)
    assert done.result["uncertain"] == []  # the outbox can always tell
    assert written.read_bytes() == b"Message-ID: <m1>\r\n\r\nalready here\r\n"  # untouched
    assert len(list(data_dir.outbox.glob(f"{key}-*.eml"))) == 3
    assert {v["status"] for v in ledger(db).values()} == {"sent"}
    store.close()


def big_template(folder: Any, megabytes: float = 4.0) -> str:
    """A template whose messages are ~2 x ``megabytes`` (text and HTML parts): more than
    the socket buffers hold, so a client whose peer stops reading blocks mid-body."""
    line = "Our whole catalogue, line by line, so that this message is really large.\n"
    path = folder / "catalogue.txt"
    path.write_text("Subject: The catalogue for {first_name}\n\nHello {first_name},\n\n"
                    + line * int(megabytes * 1e6 / len(line)), encoding="utf-8")
    return str(path)


def test_a_message_cut_off_before_its_final_dot_is_sent_again_and_one_cut_after_it_is_uncertain(
        make_manager, qtbot, db, tmp_path) -> None:
    add_customers(db, *customers(4))
    with MailServer() as server, SmtpProxy(server) as proxy:
        smtp_settings(db, server, **{"mail.smtp_host": proxy.host, "mail.smtp_port": proxy.port})
        proxy.fault("c2@example.com", "reset_body")  # the server drops it mid-body
        proxy.fault("c3@example.com", "reset_after_dot")  # kept by the server, 250 lost
        manager = make_manager()
        job = wait_final(qtbot, manager, manager.submit(
            "email_batch", {"template_file": big_template(tmp_path)}), timeout=90)
        assert job.status is JobStatus.COMPLETED, job.error
        assert proxy.seen("c2@example.com", "reset") and proxy.seen("c3@example.com", "reset")
        assert server.received() == {f"c{i}@example.com": 1 for i in range(1, 5)}
        assert job.result["sent"] == 3  # c2 was simply sent again
        assert [u["recipient"] for u in job.result["uncertain"]] == ["c3@example.com"]
        assert "final end-of-message mark" in job.result["policy"]
        book = ledger(db)
        assert book["c2@example.com"]["status"] == "sent"
        assert book["c2@example.com"]["attempts"] == 2
        assert book["c3@example.com"]["status"] == "dot_pending"
        kept = [m for m in server.messages if m["to"] == ["c3@example.com"]]
        assert job.result["uncertain"][0]["message_id"] == kept[0]["message_id"]


@pytest.mark.slow
def test_kill_9_mid_body_resends_and_kill_9_after_the_final_dot_is_reported_uncertain(
        data_dir, db, qtbot, make_manager, tmp_path) -> None:
    add_customers(db, *customers(5))
    with MailServer() as server, SmtpProxy(server) as proxy:
        smtp_settings(db, server, **{"mail.smtp_host": proxy.host, "mail.smtp_port": proxy.port})
        proxy.fault("c2@example.com", "stall_body")  # the worker blocks mid-body
        proxy.fault("c4@example.com", "hold_after_dot")  # the server has it, 250 held
        store = JobStore(db)
        params = get_kind("email_batch").validate({"template_file": big_template(tmp_path)})
        job_id = store.insert("email_batch", "E-mail", params, Trigger("api"))

        engine = start_worker(data_dir.root, "--workers", "1")
        wait_for(lambda: proxy.seen("c2@example.com", "stalled"), 60, "c2's body to stall")
        time.sleep(0.5)
        assert ledger(db)["c2@example.com"]["status"] == "sending"  # blocked mid-body
        os.kill(engine.pid, signal.SIGKILL)
        stop(engine)
        proxy.release("c2@example.com")  # the server sees the connection end, no dot
        assert server.received() == {"c1@example.com": 1}

        engine = start_worker(data_dir.root, "--workers", "1")  # recovery re-queues it
        wait_for(lambda: proxy.seen("c4@example.com", "held"), 60, "c4's answer to be held")
        assert ledger(db)["c4@example.com"]["status"] == "dot_pending"
        os.kill(engine.pid, signal.SIGKILL)
        stop(engine)
        proxy.release("c4@example.com")
        assert server.received() == {f"c{i}@example.com": 1 for i in range(1, 5)}

        manager = make_manager()  # recovery again
        last = store.latest_attempt(job_id)
        assert len(store.chain(job_id)) == 3 and last.trigger.type == "recovery"
        done = wait_final(qtbot, manager, last.id, timeout=60)
        assert done.status is JobStatus.COMPLETED, done.error
        assert server.received() == {f"c{i}@example.com": 1 for i in range(1, 6)}
        assert [u["recipient"] for u in done.result["uncertain"]] == ["c4@example.com"]
        assert (done.result["sent"], done.result["skipped_already_sent"]) == (1, 3)
        assert ledger(db)["c2@example.com"]["status"] == "sent"  # re-sent, not uncertain
        store.close()


def test_a_45x_for_one_recipient_sets_it_aside_and_the_batch_goes_on(make_manager, qtbot,
                                                                    db) -> None:
    add_customers(db, *customers(5))
    with MailServer() as server:
        smtp_settings(db, server)
        server.script[("rcpt", "c2@example.com")] = ["450 4.2.1 Greylisted, come back later"]
        server.script[("rcpt", "c4@example.com")] = ["452 4.2.2 Mailbox full"] * 2
        manager = make_manager()
        first = wait_final(qtbot, manager, manager.submit("email_batch", {}))
        assert first.status is JobStatus.FAILED and first.error.transient
        # everyone else was reached in the first attempt
        assert server.received() == {f"c{i}@example.com": 1 for i in (1, 3, 5)}
        assert "deferred 2 recipients" in first.error.message
        assert "c2@example.com, c4@example.com" in first.error.message
        assert "450 4.2.1" in first.error.message
        assert {r: v["status"] for r, v in ledger(db).items()}["c2@example.com"] == "queued"

        second = manager.store.get(next_attempt(qtbot, manager, first.id))
        make_due(db, second.id)
        second = wait_final(qtbot, manager, second.id)
        assert second.status is JobStatus.FAILED and second.error.transient
        assert "deferred 1 recipients (c4@example.com; " in second.error.message
        third = manager.store.get(next_attempt(qtbot, manager, second.id))
        make_due(db, third.id)
        done = wait_final(qtbot, manager, third.id)
        assert done.status is JobStatus.COMPLETED, done.error
        assert (done.result["sent"], done.result["skipped_already_sent"]) == (1, 4)
        assert server.received() == {f"c{i}@example.com": 1 for i in range(1, 6)}


def test_a_454_login_failure_is_transient_and_a_554_greeting_is_permanent(
        make_manager, qtbot, db, monkeypatch, tmp_path) -> None:
    previous = use_file_keyring(monkeypatch, tmp_path)
    add_customers(db, *customers(2))
    try:
        port = free_port()
        settings = smtp_settings(db, MailServer(port), **{"mail.smtp_user": "mailer"})
        settings.set("mail.smtp_password", "pw")
        manager = make_manager()
        with MailServer(port, auth=("mailer", "pw"),
                        auth_reply="454 4.7.0 Temporary authentication failure"):
            busy = wait_final(qtbot, manager, manager.submit("email_batch", {}))
        assert busy.status is JobStatus.FAILED and busy.error.transient, busy.error
        assert "454 4.7.0 Temporary authentication failure" in busy.error.message
        assert "retry automatically" in busy.error.message
        retry = next_attempt(qtbot, manager, busy.id)
        assert manager.cancel(retry) == "cancelled"

        with MailServer(port, auth=("mailer", "pw"),
                        greeting="554 5.7.1 No SMTP service here") as server:
            refused = wait_final(qtbot, manager, manager.submit("email_batch", {}))
        assert refused.status is JobStatus.FAILED and not refused.error.transient
        assert "554 5.7.1 No SMTP service here" in refused.error.message
        assert "Settings › E-mail" in refused.error.message
        assert len(manager.store.chain(refused.id)) == 1  # not retried
        assert server.messages == []
    finally:
        keyring.set_keyring(previous)


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_starttls_and_ssl_deliver_to_a_server_whose_certificate_is_trusted(
        make_manager, qtbot, db, monkeypatch, tmp_path, mode) -> None:
    cert, key = self_signed_cert(tmp_path)
    add_customers(db, *customers(2))
    port = free_port()
    smtp_settings(db, MailServer(port), **{"mail.smtp_security": mode})
    with MailServer(port, tls=(mode, cert, key)) as server:
        manager = make_manager()  # its workers do not trust the certificate
        untrusted = wait_final(qtbot, manager, manager.submit("email_batch", {}))
        assert untrusted.status is JobStatus.FAILED and not untrusted.error.transient
        assert "certificate that cannot be trusted" in untrusted.error.message
        assert server.messages == []
        manager.stop(timeout=5)

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as if the OS trusted it
        manager = make_manager()
        job = wait_final(qtbot, manager, manager.submit("email_batch", {}))
        assert job.status is JobStatus.COMPLETED, job.error
        assert server.received() == {"c1@example.com": 1, "c2@example.com": 1}
        assert server.tls_sessions == 2  # both messages travelled encrypted


def test_a_half_written_outbox_file_of_a_killed_batch_is_removed_at_the_next_start(
        make_manager, qtbot, db, data_dir) -> None:
    add_customers(db, *customers(2))
    Settings(db).set("mail.from_address", "Corner Shop <shop@corner.example>")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no process now, like a batch killed with kill -9
    data_dir.outbox.mkdir(parents=True, exist_ok=True)
    leftover = data_dir.outbox / f".job-9-000001-c1@example.com.eml.part-{dead.pid}"
    leftover.write_bytes(b"Message-ID: <half>\r\n\r\nhalf a mess")
    manager = make_manager()
    job = wait_final(qtbot, manager, manager.submit("email_batch", {}))
    assert job.status is JobStatus.COMPLETED, job.error
    assert not leftover.exists()
    assert sorted(f.suffix for f in data_dir.outbox.iterdir()) == [".eml", ".eml"]
    assert any(leftover.name in line for _, _, line in manager.store.logs(job.id))


def test_a_batch_longer_than_the_time_limit_stops_before_it_and_the_next_attempt_goes_on(
        db, data_dir, monkeypatch) -> None:
    """The body alone (a stand-in ctx, real SMTP server and database): the kind's 6 h
    limit is shortened to 3 s, at 60 messages a minute."""
    from task_context import FakeContext

    from swifty_desktop.tasks import email_batch as kind
    from swifty_desktop.tasks.base import TransientError

    monkeypatch.setattr(kind, "TIME_LIMIT_S", 3.0)  # stops after 1.5 s
    add_customers(db, *customers(5))
    with MailServer() as server:
        smtp_settings(db, server, **{"mail.per_minute": 60})
        with pytest.raises(TransientError, match="stopped before its time limit") as info:
            kind.email_batch({"audience": "opted_in", "template": "auto"},
                             FakeContext(db, data_dir))
        assert "retry automatically" in str(info.value)
        first = len(server.messages)
        assert 1 <= first < 5
        monkeypatch.setattr(kind, "TIME_LIMIT_S", 60.0)
        result = kind.email_batch({"audience": "opted_in", "template": "auto"},
                                  FakeContext(db, data_dir))
        assert (result["sent"], result["skipped_already_sent"]) == (5 - first, first)
        assert server.received() == {f"c{i}@example.com": 1 for i in range(1, 6)}


def test_the_engine_time_limit_given_to_a_batch_is_the_one_it_stops_before(db,
                                                                          data_dir) -> None:
    """The worker tells the body its time limit (a per-kind override included): a batch
    told 3 s at 60 messages a minute stops after about half of it, and says so."""
    from task_context import FakeContext

    from swifty_desktop.tasks import email_batch as kind
    from swifty_desktop.tasks.base import TransientError

    add_customers(db, *customers(5))
    with MailServer() as server:
        smtp_settings(db, server, **{"mail.per_minute": 60})
        ctx = FakeContext(db, data_dir)
        ctx.time_limit = 3.0
        with pytest.raises(TransientError, match="before its time limit of 3 s"):
            kind.email_batch({"audience": "opted_in", "template": "auto"}, ctx)
        assert 1 <= len(server.messages) < 5
