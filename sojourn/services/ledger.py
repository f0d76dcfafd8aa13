"""Reading and writing the job ledger (:class:`sojourn.store.jobs.Job`).

Every method is one short transaction. The async ones run it in a thread so
the event loop never waits on the database; the sync ones are for callers
already in a thread. Claims work the same on SQLite (whose writers take turns)
and PostgreSQL (``FOR UPDATE SKIP LOCKED``): a row is claimed by a conditional
update, so two dispatchers never both hold it, and a dispatcher that dies
only delays its rows until the claim lapses.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import delete, func, or_, update
from sqlmodel import col, select

from sojourn.store.clock import utcnow
from sojourn.tags import job_tag
from sojourn.store.db import session
from sojourn.store.jobs import Job

@dataclass(frozen=True)
class Created:
    """What one dispatch attempt learnt about one job: its run, or Prefect's refusal, or a passing failure
    (``transient``: e.g. SQLite's "database is locked" inside the bulk create), which is tried again at once."""

    job_id: str
    flow_run_id: str | None = None
    error: str | None = None
    transient: bool = False


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url

    # ------------------------------------------------------------------ acceptance
    async def accept(self, rows: list[Job]) -> None:
        """All of them or none, committed before anyone is told they were accepted."""
        await asyncio.to_thread(self._accept, rows)

    def _accept(self, rows: list[Job]) -> None:
        with session(self.url) as db:
            db.add_all(rows)
            db.commit()

    async def adopt(self, row: Job) -> tuple[Job, bool]:
        """Record a job whose flow run already exists (``row.flow_run_id`` set): one Prefect made itself, e.g. from a
        deployment's schedule. Idempotent on ``row.id``: the row already there is returned as it is (False)."""
        return await asyncio.to_thread(self._adopt, row)

    def _adopt(self, row: Job) -> tuple[Job, bool]:
        from sqlalchemy.exc import IntegrityError

        with session(self.url) as db:
            existing = db.exec(select(Job).where(Job.id == row.id)).first()
            if existing is not None:
                return existing, False
            db.add(row)
            try:
                db.commit()
            except IntegrityError:  # another process adopted it in between
                db.rollback()
                existing = db.exec(select(Job).where(Job.id == row.id)).first()
                if existing is None:
                    raise
                return existing, False
            return row, True

    async def set_priority(self, job_id: str, queue: str) -> bool:
        """The work queue of a job whose flow run is not created yet (a run cannot move between queues)."""
        return await asyncio.to_thread(self._set_priority, job_id, queue)

    def _set_priority(self, job_id: str, queue: str) -> bool:
        with session(self.url) as db:
            result = db.execute(update(Job).where(col(Job.id) == job_id, col(Job.flow_run_id).is_(None)).values(priority=queue))
            db.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ reads
    async def get(self, job_id: str) -> Job | None:
        return await asyncio.to_thread(self.get_sync, job_id)

    def get_sync(self, job_id: str) -> Job | None:
        with session(self.url) as db:
            return db.exec(select(Job).where(Job.id == job_id)).first()

    async def by_external_id(self, dialect: str, external_id: str) -> Job | None:
        """The job a dialect knows by its own id (unique per dialect)."""
        def read() -> Job | None:
            with session(self.url) as db:
                return db.exec(select(Job).where(Job.dialect == dialect, Job.external_id == external_id)).first()

        return await asyncio.to_thread(read)

    async def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        ids = list(set(job_ids))
        if not ids:
            return {}
        return await asyncio.to_thread(self._get_many, ids)

    def _get_many(self, ids: list[str]) -> dict[str, Job]:
        with session(self.url) as db:
            return {row.id: row for row in db.exec(select(Job).where(col(Job.id).in_(ids)))}

    async def by_seq(self, seq: int) -> Job | None:
        return await asyncio.to_thread(self._by_seq, seq)

    def _by_seq(self, seq: int) -> Job | None:
        with session(self.url) as db:
            return db.get(Job, seq)

    async def group(self, group_id: str) -> list[Job]:
        return await asyncio.to_thread(self._group, group_id)

    def _group(self, group_id: str) -> list[Job]:
        with session(self.url) as db:
            return list(db.exec(select(Job).where(Job.group_id == group_id).order_by(col(Job.seq))))

    @staticmethod
    def _waiting(q: Any) -> Any:
        """Jobs accepted whose flow run does not exist yet (and never will, for rejected ones)."""
        return q.where(col(Job.flow_run_id).is_(None))

    async def page(
        self, *, owner: str | None, priority: str | None, created_from: datetime | None, created_to: datetime | None,
        newest_first: bool, limit: int, offset: int,
    ) -> tuple[list[Job], int]:
        """A page of all jobs (of ``owner``; everyone's for None) in acceptance order, and how many there are."""
        return await asyncio.to_thread(self._page, False, owner, None, priority, created_from, created_to, newest_first, limit, offset)

    async def undispatched(
        self, *, owner: str | None, statuses: list[str] | None, priority: str | None,
        created_from: datetime | None, created_to: datetime | None, newest_first: bool, limit: int, offset: int,
    ) -> tuple[list[Job], int]:
        """A page of the jobs that have no flow run yet, and how many there are."""
        return await asyncio.to_thread(self._page, True, owner, statuses, priority, created_from, created_to, newest_first, limit, offset)

    def _page(self, waiting_only: bool, owner: str | None, statuses: list[str] | None, priority: str | None, created_from: datetime | None,
              created_to: datetime | None, newest_first: bool, limit: int, offset: int) -> tuple[list[Job], int]:
        q = self._waiting(select(Job)) if waiting_only else select(Job)
        if owner is not None:
            q = q.where(Job.owner == owner)
        if priority:
            q = q.where(Job.priority == priority)
        if created_from:
            q = q.where(Job.created_at >= created_from)
        if created_to:
            q = q.where(Job.created_at <= created_to)
        if statuses is not None:
            kinds = []
            if "submitted" in statuses:
                kinds.append((col(Job.cancel_requested_at).is_(None)) & (Job.rejected == False))  # noqa: E712
            if "cancelled" in statuses:
                kinds.append(col(Job.cancel_requested_at).is_not(None))
            if "failed" in statuses:
                kinds.append((Job.rejected == True) & col(Job.cancel_requested_at).is_(None))  # noqa: E712
            if not kinds:
                return [], 0
            q = q.where(or_(*kinds))
        with session(self.url) as db:
            total = db.exec(select(func.count()).select_from(q.subquery())).one()
            order = col(Job.seq).desc() if newest_first else col(Job.seq)
            rows = list(db.exec(q.order_by(order).offset(offset).limit(limit))) if limit else []
        return rows, int(total)

    async def waiting_by_priority(self) -> tuple[dict[str, int], int]:
        """Jobs accepted whose runs are not created yet (not cancelled or rejected), by priority; held ones under
        ``held``. With the highest ``seq`` the count could see (one statement, one snapshot): jobs accepted after
        it are not in the count."""
        return await asyncio.to_thread(self._waiting_by_priority)

    def _waiting_by_priority(self) -> tuple[dict[str, int], int]:
        newest = select(func.coalesce(func.max(Job.seq), 0)).scalar_subquery()
        q = self._waiting(select(Job.priority, Job.held, func.count(), newest).where(Job.rejected == False, col(Job.cancel_requested_at).is_(None)))  # noqa: E712
        out: dict[str, int] = {}
        seen = None
        with session(self.url) as db:
            for priority, held, n, seen in db.exec(q.group_by(Job.priority, Job.held)):
                key = "held" if held else priority
                out[key] = out.get(key, 0) + int(n)
            if seen is None:  # nothing waiting: the newest job, read after (a job accepted in between is uncounted until the next read)
                seen = db.exec(select(func.coalesce(func.max(Job.seq), 0))).one()
        return out, int(seen)

    async def accepted_before(self, cutoff: datetime, *, after_seq: int, limit: int) -> list[Job]:
        """Jobs accepted before ``cutoff``, in acceptance order after ``after_seq``: the retention sweep's scan."""
        return await asyncio.to_thread(self._accepted_before, cutoff, after_seq, limit)

    def _accepted_before(self, cutoff: datetime, after_seq: int, limit: int) -> list[Job]:
        with session(self.url) as db:
            q = select(Job).where(Job.created_at < cutoff, col(Job.seq) > after_seq).order_by(col(Job.seq)).limit(limit)
            return list(db.exec(q))

    async def delete(self, job_id: str) -> None:
        """The job is gone (its results expired): every dialect answers not found for it from now on."""
        await asyncio.to_thread(self._delete, job_id)

    def _delete(self, job_id: str) -> None:
        with session(self.url) as db:
            db.execute(delete(Job).where(Job.id == job_id))
            db.commit()

    # ------------------------------------------------------------------ changes before dispatch
    async def cancel_undispatched(self, job_id: str) -> bool:
        """Mark it cancelled if its flow run does not exist yet; False if it does (cancel that instead)."""
        return await asyncio.to_thread(self._cancel_undispatched, job_id)

    def _cancel_undispatched(self, job_id: str) -> bool:
        with session(self.url) as db:
            result = db.execute(
                update(Job)
                .where(Job.id == job_id, col(Job.flow_run_id).is_(None), col(Job.cancel_requested_at).is_(None), Job.rejected == False)  # noqa: E712
                .values(cancel_requested_at=utcnow())
            )
            db.commit()
        return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]

    async def release(self, job_ids: list[str]) -> int:
        """Held jobs may be dispatched now."""
        return await asyncio.to_thread(self._release, job_ids)

    def _release(self, job_ids: list[str]) -> int:
        with session(self.url) as db:
            result = db.execute(update(Job).where(col(Job.id).in_(job_ids), Job.held == True).values(held=False))  # noqa: E712
            db.commit()
        return result.rowcount  # type: ignore[attr-defined, no-any-return]

    # ------------------------------------------------------------------ dispatch
    def claim(self, me: str, limit: int, lease: float) -> list[Job]:
        """Up to ``limit`` jobs due for a flow run, oldest first, claimed by ``me`` for ``lease`` seconds."""
        now = utcnow()
        with session(self.url) as db:
            candidates = select(Job.seq).where(
                col(Job.flow_run_id).is_(None), Job.rejected == False,  # noqa: E712
                or_(Job.held == False, col(Job.cancel_requested_at).is_not(None)),  # noqa: E712
                or_(col(Job.claimed_until).is_(None), col(Job.claimed_until) < now),
            ).order_by(col(Job.seq)).limit(limit)
            if db.bind is not None and db.bind.dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            seqs = list(db.exec(candidates))
            if not seqs:
                db.rollback()
                return []
            until = now + timedelta(seconds=lease)
            db.execute(
                update(Job)
                .where(col(Job.seq).in_(seqs), col(Job.flow_run_id).is_(None),
                       or_(col(Job.claimed_until).is_(None), col(Job.claimed_until) < now))
                .values(claimed_by=me, claimed_until=until, attempts=Job.attempts + 1)
            )
            db.commit()
            return list(db.exec(select(Job).where(col(Job.seq).in_(seqs), Job.claimed_by == me, Job.claimed_until == until).order_by(col(Job.seq))))

    def record(self, me: str, outcomes: list[Created], *, retry_in: float, reject_after: int) -> list[Job]:
        """Write what a dispatch attempt did; returns the rows created while a cancel raced them (cancel their runs)."""
        now = utcnow()
        raced: list[str] = []
        with session(self.url) as db:
            for out in outcomes:
                if out.flow_run_id:
                    db.execute(
                        update(Job).where(Job.id == out.job_id, col(Job.flow_run_id).is_(None))
                        .values(flow_run_id=out.flow_run_id, dispatched_at=now, claimed_by=None, claimed_until=None, last_error=None)
                    )
                    raced.append(out.job_id)
                else:
                    row = db.exec(select(Job).where(Job.id == out.job_id, Job.claimed_by == me)).first()
                    if row is None:
                        continue
                    row.last_error = (out.error or "unknown error")[:1000]
                    row.claimed_by = None
                    if out.transient:  # not the job's fault: not counted, free to be tried again now
                        row.attempts -= 1
                        row.claimed_until = None
                    else:
                        row.claimed_until = now + timedelta(seconds=retry_in * min(2 ** max(row.attempts - 1, 0), 30))
                        row.rejected = row.attempts >= reject_after
                    db.add(row)
            db.commit()
            if not raced:
                return []
            return list(db.exec(select(Job).where(col(Job.id).in_(raced), col(Job.cancel_requested_at).is_not(None))))

    def unclaim(self, me: str, job_ids: list[str], retry_in: float) -> None:
        """Prefect could not be asked at all: try these again after ``retry_in`` seconds (not counted as an attempt)."""
        with session(self.url) as db:
            db.execute(
                update(Job).where(col(Job.id).in_(job_ids), Job.claimed_by == me, col(Job.flow_run_id).is_(None))
                .values(claimed_by=None, claimed_until=utcnow() + timedelta(seconds=retry_in), attempts=Job.attempts - 1)
            )
            db.commit()


def labels_of(row: Job) -> dict[str, str]:
    return json.loads(row.labels or "{}")  # type: ignore[no-any-return]


def tags_of(row: Job) -> list[str]:
    """The flow run's tags: how the Prefect UI and Prefect-side queries find a job by owner, id, type, ..."""
    tags = ["sojourn", job_tag(row.id), f"owner:{row.owner}", f"dialect:{row.dialect}", f"priority:{row.priority}"]
    tags += [f"{k}:{v}" if v != "" else k for k, v in labels_of(row).items()]
    return tags
