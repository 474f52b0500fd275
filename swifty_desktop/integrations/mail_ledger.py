"""The per-recipient ledger (``email_deliveries``) that makes an e-mail batch exactly-once.

A batch is keyed by its job chain (``job-<root id>``): every attempt of one job —
automatic retries, manual retries, re-runs after a crash — shares the key, so
what one attempt delivered, the next one skips.

Life of a row over SMTP::

    queued ──claim──► sending ──body out──► dot_pending ──final dot, 250──► sent
       ▲                 │                      │  └──5xx──► failed
       └──4xx / broken ──┴──────────────────────┘  (only if the final dot surely did
                                                     not go out)

* The first attempt *plans* the batch: one ``queued`` row per recipient with its
  Message-ID, in one transaction.  Later attempts send to that same list.
* ``sending`` is committed after the server accepted MAIL/RCPT/DATA (354) and
  before the message is transmitted.  The message then goes out *without* the
  final ``<CRLF>.<CRLF>``; only after ``dot_pending`` is committed does the final
  dot follow.  A server accepts a message only at that final dot, so:
* a row still ``sending`` was never accepted (the attempt died, or lost the
  connection, before the final dot): a later attempt simply sends it again;
* a row still ``dot_pending`` is *uncertain*: the attempt died, or the connection
  broke, between sending the final dot and recording the server's 250.  It may
  or may not have been delivered.  That window is a few milliseconds per message
  (one network round trip and one commit).  The policy for it is at-most-once: it
  is **not** sent again (nobody gets a duplicate), and is reported as uncertain
  with its Message-ID so the server's log can tell.  A new job with
  ``continue_batch`` and ``resend_uncertain`` sends them again on purpose, with the
  same Message-ID (mail clients drop duplicates).
* The outbox (no SMTP server) needs no ``dot_pending``: a ``sending`` row whose
  ``.eml`` file exists was written (the rename is the commit point); one without
  it is written again.
* Claims are conditional updates (``WHERE status = <expected>``) that return a
  token (the row's attempt count), and ``dot_pending`` is only set while the token
  still matches: even two engines working on one batch by mistake cannot both
  send the final dot to one recipient.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select, update

from swifty_desktop.db.models import EmailDelivery

deliveries = cast("Table", EmailDelivery.__table__)

QUEUED, SENDING, DOT_PENDING, SENT, FAILED = (
    "queued", "sending", "dot_pending", "sent", "failed")


@dataclasses.dataclass
class Delivery:
    id: int
    recipient: str
    customer_id: int | None
    status: str
    message_id: str | None
    attempts: int
    error: str | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def batch_key(root_id: int) -> str:
    return f"job-{root_id}"


def load(conn: Any, key: str) -> list[Delivery]:
    rows = conn.execute(
        select(deliveries.c.id, deliveries.c.recipient, deliveries.c.customer_id,
               deliveries.c.status, deliveries.c.message_id, deliveries.c.attempts,
               deliveries.c.error)
        .where(deliveries.c.batch_key == key).order_by(deliveries.c.id)
    ).all()
    return [Delivery(*r) for r in rows]


def plan(conn: Any, key: str, recipients: Sequence[tuple[str, int | None, str]]) -> int:
    """Add ``(address, customer id, message id)`` rows not yet in the batch; return how many."""
    known = {r.recipient.lower() for r in load(conn, key)}
    now = _now()
    rows = []
    for address, customer_id, message_id in recipients:
        if address.lower() in known:
            continue
        known.add(address.lower())
        rows.append({"batch_key": key, "recipient": address, "customer_id": customer_id,
                     "status": QUEUED, "message_id": message_id, "attempts": 0,
                     "error": None, "updated_at": now})
    if rows:
        conn.execute(insert(deliveries), rows)
    return len(rows)


def claim(conn: Any, row_id: int, expected: str) -> int | None:
    """Move a row from ``expected`` to ``sending`` (one more attempt).

    Returns the claim's token (the new attempt count), or None if the row was no
    longer ``expected`` (another job moved it).
    """
    res = conn.execute(
        update(deliveries).where(deliveries.c.id == row_id)
        .where(deliveries.c.status == expected)
        .values(status=SENDING, attempts=deliveries.c.attempts + 1, error=None,
                updated_at=_now())
        .returning(deliveries.c.attempts))
    token = res.scalar()
    return None if token is None else int(token)


def mark_dot_pending(conn: Any, row_id: int, token: int) -> bool:
    """Record that the final dot is about to go out; False if the claim was lost."""
    res = conn.execute(
        update(deliveries).where(deliveries.c.id == row_id)
        .where(deliveries.c.status == SENDING).where(deliveries.c.attempts == token)
        .values(status=DOT_PENDING, updated_at=_now()))
    return bool(res.rowcount)


def release(conn: Any, row_id: int, token: int, error: str) -> bool:
    """Give a claimed row back (``queued``) when its message surely was not accepted."""
    res = conn.execute(
        update(deliveries).where(deliveries.c.id == row_id)
        .where(deliveries.c.status.in_((SENDING, DOT_PENDING)))
        .where(deliveries.c.attempts == token)
        .values(status=QUEUED, error=error[:2000], updated_at=_now()))
    return bool(res.rowcount)


def mark(conn: Any, row_id: int, status: str, error: str | None = None) -> None:
    conn.execute(update(deliveries).where(deliveries.c.id == row_id)
                 .values(status=status, error=(error or None) and error[:2000],
                         updated_at=_now()))


def note(conn: Any, row_id: int, error: str) -> None:
    """Record why a row is what it is, without changing its status."""
    conn.execute(update(deliveries).where(deliveries.c.id == row_id)
                 .values(error=error[:2000], updated_at=_now()))
