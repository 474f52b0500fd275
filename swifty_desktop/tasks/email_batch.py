"""``email_batch``: one notification per customer, exactly once per recipient.

Recipients: customers who opted in (the default audience) or customers with open
orders (about their orders).  Messages come from a template with placeholders
(plain text + HTML, a unique Message-ID each).  With an SMTP server in
Settings › E-mail they are sent there (STARTTLS or SSL, user + password from the
system keyring, at most N messages a minute); without one they are written as
``.eml`` files to the data folder's ``outbox/``, so the batch works out of the box.

Exactly once across retries and crashes: see
:mod:`swifty_desktop.integrations.mail_ledger` for the ledger and the policy for
the one ambiguous case (the final dot of a message went out, the server's answer
was not recorded — a window of milliseconds per message): it is never sent twice;
it is reported as *uncertain*.  A message interrupted before its final dot is
simply sent again.  A 45x to one recipient (full mailbox, greylisting) sets that
recipient aside and the batch goes on; at the end the job fails as transient, so
the engine retries it for those recipients only.  421 answers and broken
connections stop the batch after a few tries in the job, and the engine retries it,
sending only what is left.  A 5xx for one recipient fails that recipient, not the
batch.

Time limit: a job of this kind may run for :data:`TIME_LIMIT_S`.  A batch that
the messages-per-minute limit makes longer than that stops a few minutes before
the limit with a transient error, and the engine's automatic retry sends the rest
(up to the retry policy's attempts; after that, *Retry* continues the batch).
"""

from __future__ import annotations

import datetime as dt
import email.errors
import email.utils
import time
from collections.abc import Mapping
from typing import Any

from swifty_desktop.settings import SettingSpec, register_group
from swifty_desktop.tasks.base import (
    Action,
    Context,
    Param,
    RetryPolicy,
    TaskError,
    TransientError,
    task,
)

SETTINGS = register_group(
    "mail",
    "E-mail",
    [
        SettingSpec("mail.smtp_host", "SMTP server",
                    help="e.g. smtp.example.com; empty: messages are written as .eml files "
                         "to the outbox folder instead of being sent"),
        SettingSpec("mail.smtp_port", "Port", type="int", default=0, minimum=0, maximum=65535,
                    help="Automatic: the usual port for the security choice (587 with "
                         "STARTTLS, 465 with SSL, 25 without). Enter another port only if "
                         "your provider asks for one; 0 is Automatic again."),
        SettingSpec("mail.smtp_security", "Security", type="choice", default="starttls",
                    choices=("starttls", "ssl", "none"),
                    help="starttls or ssl encrypt the connection; none only for a server on "
                         "your own network"),
        SettingSpec("mail.smtp_user", "User", help="empty: the server needs no login"),
        SettingSpec("mail.smtp_password", "Password", type="password",
                    help="kept in the system keyring, never in the database"),
        SettingSpec("mail.from_address", "From",
                    help="the sender, e.g. My Shop <shop@example.com>; the name is used as "
                         "{shop_name} in templates"),
        SettingSpec("mail.per_minute", "Messages per minute", type="int", default=60,
                    minimum=0, maximum=100000,
                    help="at most this many messages a minute (0: no limit); many providers "
                         "limit this"),
    ],
    description="How e-mail batches are sent. Without an SMTP server they go to the outbox "
                "folder as .eml files you can open or forward.",
    check="swifty_desktop.integrations.checks:check_smtp",
)

IN_JOB_TRIES = 3  # tries per message inside one attempt before the engine retries the job
IN_JOB_BACKOFF_S = 0.5
TIME_LIMIT_S = 6 * 3600.0  # the kind's timeout
STOP_MARGIN_S = 300.0  # stop this long before the time limit (a message can take minutes)
AUDIENCES = ("opted_in", "open_orders")
TEMPLATES = ("auto", "order_status", "newsletter")
UNCERTAIN_POLICY = (
    "A message is uncertain when the connection broke or the app stopped in the moment "
    "between sending its final end-of-message mark and recording the server's "
    "confirmation; the server may or may not have accepted it. Uncertain messages are "
    "never sent again automatically, so nobody gets a duplicate. Check the mail server's "
    "log for their Message-IDs, or send them again on purpose with a new job that has "
    "continue_batch set to this batch's job number and resend_uncertain on (a recipient "
    "who did get it then has two copies with the same Message-ID)."
)


def _title(params: Mapping[str, Any]) -> str:
    if params.get("continue_batch"):
        return f"Continue e-mail batch #{params['continue_batch']}"
    audience = params.get("audience", "opted_in")
    return "E-mail customers with open orders" if audience == "open_orders" else \
        "E-mail opted-in customers"


def _outcome(result: Mapping[str, Any]) -> str:
    """"120 e-mails sent, 2 failed", or "… written to the outbox" without SMTP."""
    from swifty_desktop.tasks.base import counted, result_count

    if "sent" not in result:
        return ""
    outbox = result.get("transport") == "outbox"
    text = f"{counted(result_count(result, 'sent'), 'e-mail')} " + (
        "written to the outbox" if outbox else "sent")
    if earlier := result_count(result, "skipped_already_sent"):  # a continued batch
        text += f", {earlier:,} {'written' if outbox else 'sent'} earlier"
    if failed := result_count(result, "failed"):
        text += f", {failed:,} failed"
    if uncertain := result_count(result, "uncertain"):
        text += f", {uncertain:,} uncertain (see the job's details before sending again)"
    return text


@task(
    "email_batch",
    title="Send e-mail batch",
    outcome=_outcome,
    description="Sends one notification per customer from a template, exactly once per "
                "recipient; without an SMTP server the messages go to the outbox folder.",
    params=(
        Param("template", "choice", default="auto", choices=TEMPLATES, label="Template",
              help="auto: order_status for customers with open orders, newsletter for "
                   "opted-in customers"),
        Param("audience", "choice", default="opted_in", choices=AUDIENCES, label="Recipients",
              help="opted_in: customers who asked for news; open_orders: customers with open "
                   "orders, about their orders"),
        Param("template_file", "path", label="Template file", file_filter="Text (*.txt)",
              help="a UTF-8 text file whose first line is 'Subject: …' (an .html file beside "
                   "it is the HTML part); replaces the built-in template"),
        Param("smtp_host", "str", label="SMTP server",
              help="overrides Settings › E-mail; empty: the setting (none: the outbox)"),
        Param("smtp_port", "int", minimum=1, maximum=65535, label="SMTP port",
              help="overrides Settings › E-mail"),
        Param("continue_batch", "int", minimum=1, label="Continue batch",
              help="the job number of an earlier batch to continue: sends only to its "
                   "recipients not reached yet"),
        Param("resend_uncertain", "bool", default=False, label="Re-send uncertain",
              help="with continue_batch: also send to recipients whose delivery was "
                   "uncertain (they may get a second copy, with the same Message-ID)"),
    ),
    retry=RetryPolicy(max_attempts=6, backoff_base=20.0, backoff_max=900.0),
    concurrency=1,
    timeout=TIME_LIMIT_S,
    rerun_safe=True,
    title_fn=_title,
    icon="mail",
    actions=(
        Action("Send order notifications…", params={"audience": "open_orders"},
               ask=("template", "audience"), icon="mail", menu="Mail",
               tooltip="E-mail every customer with open orders about them (or another "
                       "audience); without an SMTP server they go to the outbox folder",
               ack="Sending e-mail notifications…"),
        Action("Send newsletter…", params={"audience": "opted_in", "template": "newsletter"},
               ask=("template_file",), icon="mail", menu="Mail",
               tooltip="E-mail the customers who opted in, from a template file",
               ack="Sending the newsletter…"),
    ),
)
def email_batch(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    from swifty_desktop.db.engine import write_transaction
    from swifty_desktop.integrations import mail_ledger as ledger
    from swifty_desktop.integrations import mailer
    from swifty_desktop.settings import Settings

    engine = ctx.engine()  # type: ignore[attr-defined]
    root, manual_retry = _chain(engine, ctx, params)
    key = ledger.batch_key(root)
    audience = str(params.get("audience") or "opted_in")
    template_name = str(params.get("template") or "auto")
    if template_name == "auto":
        template_name = "order_status" if audience == "open_orders" else "newsletter"
    template = mailer.load_template(template_name, params.get("template_file"))
    settings = Settings(engine)
    smtp = _smtp_config(params, settings, mailer)
    from_addr = _setting(settings, "mail.from_address")
    if smtp is not None and not from_addr:
        raise TaskError("no sender address for e-mail; enter a From address (e.g. My Shop "
                        "<shop@example.com>) in Settings › E-mail")
    from_addr = from_addr or "Swifty Desktop <noreply@localhost>"
    from_name, from_email = email.utils.parseaddr(from_addr)
    if "@" not in from_email:
        raise TaskError(f"the From address {from_addr!r} is not an e-mail address; correct "
                        "it in Settings › E-mail (e.g. My Shop <shop@example.com>)")
    domain = from_email.rsplit("@", 1)[1]
    shop_name = from_name or domain

    # -- plan once per chain: every attempt sends to the same recipients ------------
    with write_transaction(engine) as conn:
        rows = ledger.load(conn, key)
        if not rows and not params.get("continue_batch"):
            recipients = _audience(conn, audience)
            ledger.plan(conn, key, [(address, cid, mailer.new_message_id(key, domain))
                                    for cid, address in recipients])
            rows = ledger.load(conn, key)
            ctx.log(f"Batch {key}: {len(rows)} recipients ({audience}), template "
                    f"{template.name}")
        else:
            ctx.log(f"Batch {key}: continuing; {len(rows)} recipients planned earlier")
    if params.get("continue_batch") and not rows:
        raise TaskError(f"job #{params['continue_batch']} has no e-mail batch to continue "
                        "(it planned no recipients); start a new batch instead")
    customers, orders = _recipient_data(engine, [r.customer_id for r in rows], mailer)

    started = time.monotonic()
    outbox = mailer.OutboxTransport(ctx.data_dir / "outbox") if smtp is None else None
    if outbox is not None:
        for leftover in outbox.remove_leftovers():
            ctx.log(f"Removed {leftover.name}, a half-written message left by a batch that "
                    "was stopped; its recipient gets the message from this batch")
    transport = mailer.SmtpTransport(smtp) if smtp is not None else None
    where = f"the mail server {smtp.where}" if smtp else f"the outbox {ctx.data_dir / 'outbox'}"
    ctx.log(f"Delivering to {where}")

    skipped = 0
    failed: list[dict[str, str]] = []
    uncertain: list[dict[str, str]] = []
    todo: list[tuple[Any, str]] = []
    resend = bool(params.get("resend_uncertain")) and bool(params.get("continue_batch"))
    for row in rows:
        if row.status == ledger.SENT:
            skipped += 1
        elif row.status == ledger.FAILED:
            if manual_retry or params.get("continue_batch"):
                todo.append((row, ledger.FAILED))
            else:
                failed.append({"recipient": row.recipient, "reason": row.error or "failed"})
        elif row.status in (ledger.SENDING, ledger.DOT_PENDING):
            name = mailer.eml_name(key, row.id, row.recipient)
            if outbox is not None and outbox.exists(name):
                with write_transaction(engine) as conn:  # the rename happened: it is sent
                    ledger.mark(conn, row.id, ledger.SENT)
                skipped += 1
            elif outbox is not None or row.status == ledger.SENDING or resend:
                # sending: the final dot never went out, so the server discarded it
                todo.append((row, row.status))
            else:
                uncertain.append(_uncertain(row, row.error))
        else:
            todo.append((row, ledger.QUEUED))
    if skipped:
        ctx.log(f"{skipped} recipients already have their message (sent by an earlier "
                "attempt); not sending to them again")
    for item in uncertain:
        ctx.log(f"Delivery to {item['recipient']} is uncertain ({item['reason']}); not sent "
                f"again. Message-ID {item['message_id']}")

    pacer = mailer.Pacer(0 if outbox is not None else
                         int(settings.get("mail.per_minute") or 0))
    limit_s = float(getattr(ctx, "time_limit", TIME_LIMIT_S))  # the engine's, if it says
    deadline = started + max(limit_s - STOP_MARGIN_S, limit_s / 2)
    if pacer.interval and pacer.interval * len(todo) > deadline - time.monotonic():
        ctx.log(f"At {60 / pacer.interval:g} messages a minute, {len(todo)} messages take "
                f"{pacer.interval * len(todo) / 3600:.1f} h, longer than a job may run "
                f"({_span(limit_s)}): this attempt stops before that and the "
                "automatic retry sends the rest")
    today = dt.date.today().isoformat()
    sent = 0
    deferred: list[dict[str, str]] = []
    try:
        for index, (row, expected) in enumerate(todo):
            ctx.check_cancelled()
            if time.monotonic() > deadline:
                raise TransientError(
                    f"the batch stopped before its time limit of {_span(limit_s)} "
                    f"with {len(todo) - index} messages left ({sent} sent in this attempt); "
                    "the job will retry automatically and send only to the recipients not "
                    "reached yet. A higher messages-per-minute limit in Settings › E-mail "
                    "makes big batches finish sooner.")
            ctx.progress(index / max(1, len(todo)),
                         f"{index:,} of {len(todo):,} messages: {row.recipient}")
            customer = customers.get(row.customer_id or -1) or {"email": row.recipient}
            text_values, html_values = mailer.placeholder_values(
                customer, orders.get(row.customer_id or -1, []), shop_name, today)
            message_id = row.message_id or mailer.new_message_id(key, domain)
            try:
                msg = mailer.build_message(
                    template, text_values, html_values, from_addr=from_addr,
                    to_name=str(customer.get("name") or ""), to_addr=row.recipient,
                    message_id=message_id, batch_key=key)
                msg.as_bytes()  # an address that cannot be encoded fails here, alone
            except (ValueError, TypeError, email.errors.MessageError) as exc:
                reason = (f"no message could be made for the address {row.recipient!r} "
                          f"({exc}); correct the customer's e-mail address and retry")
                with write_transaction(engine) as conn:
                    ledger.mark(conn, row.id, ledger.FAILED, reason)
                failed.append({"recipient": row.recipient, "reason": reason})
                continue
            state: dict[str, Any] = {"expected": expected, "token": None}

            def claim(row: Any = row, state: dict[str, Any] = state) -> None:
                with write_transaction(engine) as conn:
                    token = ledger.claim(conn, row.id, state["expected"])
                if token is None:
                    raise _Taken(row.recipient)
                state["token"] = token

            def before_dot(row: Any = row, state: dict[str, Any] = state) -> None:
                with write_transaction(engine) as conn:
                    if not ledger.mark_dot_pending(conn, row.id, state["token"]):
                        raise _Taken(row.recipient)

            if outbox is not None:
                try:
                    outbox.send(msg, mailer.eml_name(key, row.id, row.recipient), claim)
                except _Taken:
                    ctx.log(f"{row.recipient} was handled by another job; skipped")
                    continue
                with write_transaction(engine) as conn:
                    ledger.mark(conn, row.id, ledger.SENT)
                sent += 1
                continue
            assert transport is not None
            outcome = _send_smtp(ctx, transport, pacer, msg, from_email, row, state,
                                 (claim, before_dot), engine, ledger, mailer, sent,
                                 len(todo) - index)
            if outcome == "sent":
                sent += 1
            elif outcome.startswith("deferred:"):
                deferred.append({"recipient": row.recipient,
                                 "reason": outcome[len("deferred:"):]})
            elif outcome.startswith("uncertain:"):
                uncertain.append(_uncertain(row, outcome[len("uncertain:"):]))
            elif outcome.startswith("failed:"):
                failed.append({"recipient": row.recipient, "reason": outcome[len("failed:"):]})
    finally:
        if transport is not None:
            transport.close()
    if deferred:
        names = ", ".join(d["recipient"] for d in deferred[:5]) + \
            (f" and {len(deferred) - 5} more" if len(deferred) > 5 else "")
        raise TransientError(
            f"the mail server deferred {len(deferred)} recipients ({names}; "
            f"{deferred[0]['reason']}). {sent} messages were sent in this attempt; the job "
            "will retry automatically and send only to the recipients not reached yet.")

    result: dict[str, Any] = {
        "recipients": len(rows), "sent": sent, "failed": failed,
        "skipped_already_sent": skipped, "uncertain": uncertain,
        "delivered_total": sent + skipped, "batch": key, "audience": audience,
        "template": template.name,
        "transport": f"smtp {smtp.where}" if smtp else "outbox",
    }
    if outbox is not None:
        result["outbox"] = str(outbox.folder)
    if uncertain:
        result["policy"] = UNCERTAIN_POLICY
        ctx.log(UNCERTAIN_POLICY)
    ctx.log(f"{len(rows)} recipients: {sent} sent now, {skipped} already sent earlier, "
            f"{len(failed)} failed, {len(uncertain)} uncertain")
    ctx.progress(1.0, f"{sent + skipped:,} of {len(rows):,} delivered"
                      + (f", {len(failed):,} failed" if failed else ""))
    return result


class _Taken(Exception):
    """Another job changed this recipient's ledger row first."""


def _uncertain(row: Any, reason: str | None) -> dict[str, str]:
    return {"recipient": row.recipient, "message_id": row.message_id or "",
            "reason": reason or "an earlier attempt stopped after handing the message to the "
                                "mail server and before it confirmed delivery"}


def _send_smtp(ctx: Context, transport: Any, pacer: Any, msg: Any, from_email: str, row: Any,
               state: dict[str, Any], hooks: tuple[Any, Any], engine: Any, ledger: Any,
               mailer: Any, sent_so_far: int, remaining: int) -> str:
    """One recipient over SMTP with in-job retries.

    Returns 'sent', 'skipped', 'failed:…', 'uncertain:…' or 'deferred:…' (a 45x for
    this recipient: set aside for the engine's retry).  Raises TransientError when
    the server or the connection keeps failing.
    """
    from swifty_desktop.db.engine import write_transaction

    tries = 0
    while True:
        pacer.wait(ctx.check_cancelled)
        tries += 1
        try:
            transport.send(msg, from_email, row.recipient, *hooks)
        except _Taken:
            ctx.log(f"{row.recipient} was handled by another job; skipped")
            return "skipped"
        except mailer.Rejected as exc:
            with write_transaction(engine) as conn:
                ledger.mark(conn, row.id, ledger.FAILED, exc.reason)
            ctx.log(f"Not delivered to {row.recipient}: {exc.reason}")
            return "failed:" + str(exc.reason)
        except mailer.Deferred as exc:
            with write_transaction(engine) as conn:
                if exc.ambiguous:
                    ledger.note(conn, row.id, exc.reason)
                elif state["token"] is not None:
                    ledger.release(conn, row.id, state["token"], exc.reason)
                    state.update(expected=ledger.QUEUED, token=None)
                else:
                    ledger.note(conn, row.id, exc.reason)
            if exc.ambiguous:
                ctx.log(f"Delivery to {row.recipient} is uncertain: {exc.reason}. It will not "
                        f"be sent again. Message-ID {row.message_id}")
                return "uncertain:" + str(exc.reason)
            if exc.recipient_only:
                ctx.log(f"{row.recipient} set aside for a later attempt: {exc.reason}")
                return "deferred:" + str(exc.reason)
            ctx.log(f"Try {tries} for {row.recipient} did not work: {exc.reason}")
            if tries >= IN_JOB_TRIES:
                raise TransientError(
                    f"{exc.reason}. {sent_so_far} messages were sent in this attempt and "
                    f"{remaining} are left; the job will retry automatically and send only to "
                    "the recipients not reached yet. If this keeps happening, check the mail "
                    "server in Settings › E-mail.") from exc
            deadline = time.monotonic() + IN_JOB_BACKOFF_S * 2 ** (tries - 1)
            while time.monotonic() < deadline:
                ctx.check_cancelled()
                time.sleep(0.05)
            continue
        with write_transaction(engine) as conn:
            ledger.mark(conn, row.id, ledger.SENT)
        return "sent"


# ----------------------------------------------------------------------- helpers
def _setting(settings: Any, key: str) -> str:
    value = settings.get(key)
    return "" if value is None else str(value).strip()


def _smtp_config(params: Mapping[str, Any], settings: Any, mailer: Any) -> Any:
    host = str(params.get("smtp_host") or "").strip() or _setting(settings, "mail.smtp_host")
    if not host:
        return None
    security = _setting(settings, "mail.smtp_security") or "starttls"
    if security not in ("starttls", "ssl", "none"):
        raise TaskError(f"the e-mail security setting is {security!r}; choose starttls, ssl "
                        "or none in Settings › E-mail")
    port = int(params.get("smtp_port") or settings.get("mail.smtp_port") or 0)
    user = _setting(settings, "mail.smtp_user")
    password = settings.get_secret("mail.smtp_password") if user else ""
    return mailer.SmtpConfig(host=host, port=port, security=security, user=user,
                             password=password or "")


def _chain(engine: Any, ctx: Context, params: Mapping[str, Any]) -> tuple[int, bool]:
    """(root job id of the batch, whether this attempt is a manual retry)."""
    import json

    from sqlalchemy import text

    with engine.connect() as conn:
        row = conn.execute(text("SELECT root_id, trigger FROM jobs WHERE id = :id"),
                           {"id": ctx.job_id}).first()
        root = int(row[0] or ctx.job_id) if row else ctx.job_id
        try:
            trigger = json.loads(row[1]) if row and row[1] else {}
        except ValueError:
            trigger = {}
        manual = trigger.get("type") == "retry" and not trigger.get("automatic")
        other = params.get("continue_batch")
        if other:
            found = conn.execute(text("SELECT root_id, kind FROM jobs WHERE id = :id"),
                                 {"id": int(other)}).first()
            if found is None or found[1] != "email_batch":
                raise TaskError(f"job #{other} is not an e-mail batch; continue_batch needs "
                                "the number of an earlier email_batch job")
            root = int(found[0] or other)
    return root, manual


def _audience(conn: Any, audience: str) -> list[tuple[int, str]]:
    """(customer id, address) of the recipients, in customer order."""
    from sqlalchemy import select

    from swifty_desktop.db.models import Customer, Order

    customers, orders = Customer.__table__, Order.__table__
    if audience == "open_orders":
        stmt = (select(customers.c.id, customers.c.email)
                .where(customers.c.id.in_(
                    select(orders.c.customer_id).where(orders.c.status == "open")
                    .where(orders.c.archived_at.is_(None))))
                .order_by(customers.c.id))
    elif audience == "opted_in":
        stmt = (select(customers.c.id, customers.c.email)
                .where(customers.c.opted_in.is_(True)).order_by(customers.c.id))
    else:
        raise TaskError(f"unknown audience {audience!r}; choose one of {', '.join(AUDIENCES)}")
    return [(cid, address.strip()) for cid, address in conn.execute(stmt)
            if address and "@" in address]


def _recipient_data(engine: Any, ids: list[int | None], mailer: Any
                    ) -> tuple[dict[int, dict[str, Any]], dict[int, list[Any]]]:
    from sqlalchemy import select

    from swifty_desktop.db.models import Customer, Order

    customers, orders = Customer.__table__, Order.__table__
    wanted = sorted({i for i in ids if i is not None})
    people: dict[int, dict[str, Any]] = {}
    open_orders: dict[int, list[Any]] = {}
    with engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for r in conn.execute(select(customers.c.id, customers.c.name, customers.c.email,
                                         customers.c.country)
                                  .where(customers.c.id.in_(chunk))).mappings():
                people[r["id"]] = dict(r)
            for r in conn.execute(
                    select(orders.c.customer_id, orders.c.number, orders.c.order_date,
                           orders.c.total_cents, orders.c.currency, orders.c.status)
                    .where(orders.c.customer_id.in_(chunk)).where(orders.c.status == "open")
                    .where(orders.c.archived_at.is_(None))
                    .order_by(orders.c.order_date, orders.c.id)):
                open_orders.setdefault(r.customer_id, []).append(mailer.OrderInfo(
                    r.number, r.order_date.isoformat() if r.order_date else "",
                    int(r.total_cents or 0), r.currency, r.status))
    return people, open_orders


def _span(seconds: float) -> str:
    """A time limit as people say it: "6 h", "90 min", "20 s"."""
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
