"""Thread-safe claiming of queued jobs within the worker count and per-kind limits.

The manager (GUI thread) and runners (pool threads) both claim: the manager when a
slot is free and nothing runs in it, a runner for its next job as soon as its
current one ends.  One lock keeps the per-kind counts right; the database keeps the
claim atomic across processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from typing import Any

from swifty_desktop.jobs.model import JobRecord
from swifty_desktop.jobs.store import JobStore
from swifty_desktop.tasks import registry


class Dispatcher:
    """Decides which queued jobs this engine may take now, and takes them."""

    def __init__(self, store: JobStore, engine_id: str, max_workers: int, lease_s: float,
                 roots: Iterable[int] | None = None,
                 limits: Mapping[str, int] | None = None) -> None:
        self.store = store
        self.engine_id = engine_id
        self.max_workers = max_workers
        self.lease_s = lease_s
        self.roots: set[int] | None = set(roots) if roots is not None else None
        # The store's write lock: claims and every other write of this process take
        # turns on it, so threads of one process never meet in SQLite's busy handler
        # (which sleeps in steps of milliseconds).
        self.lock = store.write_lock
        self.slots_in_use = 0  # runners alive (each one runs at most one job at a time)
        self.kind_counts: dict[str, int] = {}  # this engine's own running jobs per kind
        self.skipped = False  # the last claim passed over due jobs of full kinds
        self.limits = dict(limits or {})  # per-kind limits that override the kinds' own

    def limit_for(self, kind: str) -> int | None:
        if kind in self.limits:
            return self.limits[kind]
        spec = registry().get(kind)
        return spec.concurrency if spec is not None else None

    def claim_locked(self, n: int, cur: Any = None
                     ) -> tuple[list[JobRecord], list[JobRecord]]:
        """Claim up to ``n`` jobs; the caller holds ``lock``.  Returns (runnable, unknown).

        Per-kind limits count the jobs running in *every* engine on the database.
        One UPDATE takes the oldest due jobs of every kind that had room; then, inside
        the same transaction (which now holds the database's write lock, so no other
        engine can claim meanwhile), the running jobs are counted again and any
        excess of a limited kind goes back to the queue: nobody ever sees it claimed.
        With ``cur`` the claim joins the caller's transaction.
        """
        kinds = registry()
        self.skipped = False
        limits = {k: limit for k in kinds if (limit := self.limit_for(k)) is not None}
        with self.store.hot_transaction() if cur is None else nullcontext(cur) as c:
            before = self.store.running_counts(c) if limits else {}
            saturated = {k for k, limit in limits.items() if before.get(k, 0) >= limit}
            if self.roots is not None:  # a CLI waiting on its own job (and its retries)
                ids = [i for i, _kind in self.store.claim_candidates(
                    n, roots=self.roots, exclude_kinds=saturated)]
                claimed = self.store.claim(ids, self.engine_id, self.lease_s, c)
            else:
                claimed = self.store.claim_next(n, self.engine_id, self.lease_s, c,
                                                exclude=saturated)
            unknown = [job for job in claimed if job.kind not in kinds]
            runnable = [job for job in claimed if job.kind in kinds]
            if any(job.kind in limits for job in runnable):
                over = {k: n_running - limits[k]
                        for k, n_running in self.store.running_counts(c).items()
                        if k in limits and n_running > limits[k]}
                excess: list[int] = []
                for job in sorted(runnable, key=lambda j: -j.id):  # give back the newest
                    if over.get(job.kind, 0) > 0:
                        over[job.kind] -= 1
                        excess.append(job.id)
                if excess:
                    self.store.unclaim(self.engine_id, excess, c)
                    self.skipped = True
                    runnable = [job for job in runnable if job.id not in excess]
        if saturated:
            self.skipped = True
        for job in runnable:
            self.kind_counts[job.kind] = self.kind_counts.get(job.kind, 0) + 1
        return runnable, unknown

    def done_locked(self, job: JobRecord) -> None:
        """A job of this engine ended; the caller holds ``lock``."""
        self.kind_counts[job.kind] = max(0, self.kind_counts.get(job.kind, 1) - 1)
