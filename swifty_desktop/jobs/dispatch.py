"""Thread-safe claiming of queued jobs within the worker count and per-kind limits.

The manager (GUI thread) and runners (pool threads) both claim: the manager when a
slot is free and nothing runs in it, a runner for its next job as soon as its
current one ends.  One lock keeps the per-kind counts right; the database keeps the
claim atomic across processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection

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
        self.kind_counts: dict[str, int] = {}
        self.skipped = False  # the last claim passed over due jobs of full kinds
        self.limits = dict(limits or {})  # per-kind limits that override the kinds' own

    def limit_for(self, kind: str) -> int | None:
        if kind in self.limits:
            return self.limits[kind]
        spec = registry().get(kind)
        return spec.concurrency if spec is not None else None

    def _exclusions(self, n: int) -> tuple[set[str], bool]:
        saturated: set[str] = set()
        tight = False
        for name in registry():
            limit = self.limit_for(name)
            if limit is not None:
                room = limit - self.kind_counts.get(name, 0)
                if room <= 0:
                    saturated.add(name)
                elif room < n:
                    tight = True
        return saturated, tight

    def claim_locked(self, n: int, conn: Connection | None = None
                     ) -> tuple[list[JobRecord], list[JobRecord]]:
        """Claim up to ``n`` jobs; the caller holds ``lock``.  Returns (runnable, unknown).

        With ``conn``, the claim joins the caller's transaction.
        """
        kinds = registry()
        saturated, tight = self._exclusions(n)
        self.skipped = False
        if not saturated and not tight and self.roots is None:
            claimed = self.store.claim_next(n, self.engine_id, self.lease_s, conn)
        else:
            counts = dict(self.kind_counts)
            candidates = self.store.claim_candidates(n * 4 + 8, roots=self.roots,
                                                     exclude_kinds=saturated)
            chosen: list[int] = []
            for job_id, kind in candidates:
                limit = self.limit_for(kind) if kind in kinds else None
                if limit is not None and counts.get(kind, 0) >= limit:
                    self.skipped = True
                    continue
                counts[kind] = counts.get(kind, 0) + 1
                chosen.append(job_id)
                if len(chosen) >= n:
                    break
            claimed = self.store.claim(chosen, self.engine_id, self.lease_s, conn)
            if len(claimed) < len(chosen):
                self.skipped = True  # another engine took some: look again soon
            if saturated:
                self.skipped = True
        runnable = [j for j in claimed if j.kind in kinds]
        unknown = [j for j in claimed if j.kind not in kinds]
        for job in runnable:
            self.kind_counts[job.kind] = self.kind_counts.get(job.kind, 0) + 1
        return runnable, unknown

    def done_locked(self, job: JobRecord) -> None:
        """A job of this engine ended; the caller holds ``lock``."""
        self.kind_counts[job.kind] = max(0, self.kind_counts.get(job.kind, 1) - 1)
