"""The per-recipient ledger (``email_deliveries``) that makes an e-mail batch exactly-once.

A batch is keyed by its job chain (``job-<root id>``): every attempt of one job —
automatic retries, manual retries, re-runs after a crash — shares the key, so
what one attempt delivered, the next one skips.

Life of a row::

    queued ──claim──► sending ──250──► sent
       ▲                 │  └──5xx──► failed
       └──4xx / broken ──┘     (before the end of the message went out)

* The first attempt *plans* the batch: one ``queued`` row per recipient with its
  Message-ID, in one transaction.  Later attempts send to that same list.
* ``sending`` is committed after the server accepted MAIL/RCPT/DATA and before
  the message is transmitted; ``sent`` right after the server's 250.
* A row still ``sending`` when a later attempt looks at it is *uncertain*: the
  attempt that wrote it died (or lost the connection) after handing the message
  over and before the 250 was recorded.  It may or may not have been delivered.
  The policy is at-most-once for those: they are **not** sent again (nobody gets a
  duplicate), and are reported as uncertain with their Message-ID so the server's
  log can tell.  A new job with ``continue_batch`` and ``resend_uncertain`` sends
  them again on purpose, with the same Message-ID (mail clients drop duplicates).
* Claims are conditional updates (``WHERE status = <expected>``), so even two
  engines working on one batch by mistake cannot both send to one recipient.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select, update

from swifty_desktop.db.models import EmailDelivery

deliveries = cast("Table", EmailDelivery.__table__)

QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"


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


def claim(conn: Any, row_id: int, expected: str) -> bool:
    """Move a row from ``expected`` to ``sending`` (one more attempt); False if it moved."""
    res = conn.execute(
        update(deliveries).where(deliveries.c.id == row_id)
        .where(deliveries.c.status == expected)
        .values(status=SENDING, attempts=deliveries.c.attempts + 1, error=None,
                updated_at=_now()))
    return bool(res.rowcount)


def mark(conn: Any, row_id: int, status: str, error: str | None = None) -> None:
    conn.execute(update(deliveries).where(deliveries.c.id == row_id)
                 .values(status=status, error=(error or None) and error[:2000],
                         updated_at=_now()))


def note(conn: Any, row_id: int, error: str) -> None:
    """Record why a row is what it is, without changing its status."""
    conn.execute(update(deliveries).where(deliveries.c.id == row_id)
                 .values(error=error[:2000], updated_at=_now()))
