"""Batches: many jobs in one request, at most ``maxConcurrent`` of them running at once.

Every job of a batch is accepted at once, all or none, in one ledger
transaction (its id is known, it can be read and cancelled). Jobs past the
limit are accepted *held*: the dispatcher leaves them alone, so they take no
worker slot and no Prefect run until released. When a job of the batch ends,
the outcome listener calls :meth:`settle`, which releases the next held jobs
in submission order until the limit is filled again. A periodic sweep settles
every open batch as well, so a release owed while no API process was running
still happens.

Why not a Prefect concurrency limit inside the flow: a job waiting for a
slot there would occupy a worker slot while it waits, starving other jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from sqlmodel import select

from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService, NewJob
from sojourn.services.principals import Principal
from sojourn.services.job_view import HELD, JobView
from sojourn.spec import JobSpec
from sojourn.store.batches import Batch
from sojourn.store.db import owned, session

log = logging.getLogger(__name__)


class BatchService:
    def __init__(self, svc: JobService) -> None:
        self.svc = svc
        self.settings = svc.settings
        self._locks: dict[str, asyncio.Lock] = {}

    async def submit(self, specs: list[tuple[JobSpec, dict[str, str]]], principal: Principal, max_concurrent: int | None) -> tuple[Batch, list[JobView]]:
        """Accept the jobs in order, all or none; those past ``max_concurrent`` are held."""
        batch_id = "batch_" + secrets.token_hex(8)
        limit = max_concurrent or len(specs)
        jobs = [
            NewJob(spec, {**labels, "batch": batch_id, "batch-index": str(i)}, held=i >= limit, group_id=batch_id)
            for i, (spec, labels) in enumerate(specs)
        ]
        views = await self.svc.accept(jobs, principal, dialect="native")
        batch = Batch(id=batch_id, owner=principal.name, max_concurrent=limit, job_ids=json.dumps([v.id for v in views]), settled=limit >= len(specs))
        with session(self.settings.database_location) as db:
            db.add(batch)
            db.commit()
        return batch, views

    def get(self, batch_id: str, principal: Principal) -> Batch:
        row = owned(self.settings.database_location, Batch, batch_id, principal.owner_filter)
        if row is None:
            raise ServiceError(404, "BATCH_NOT_FOUND", f"Batch with ID '{batch_id}' not found", {"batchId": batch_id})
        return row

    async def jobs(self, batch_id: str) -> list[JobView]:
        """The batch's jobs as they stand, in submission order."""
        return await self.svc.read_many(await self.svc.ledger.group(batch_id))

    async def settle(self, batch_id: str) -> None:
        """Release held jobs until ``max_concurrent`` are queued or running."""
        lock = self._locks.setdefault(batch_id, asyncio.Lock())
        async with lock:
            with session(self.settings.database_location) as db:
                batch = db.get(Batch, batch_id)
            if batch is None or batch.settled:
                return
            views = await self.jobs(batch_id)
            active = [v for v in views if not v.final and v.state != HELD]
            held = [v for v in views if not v.final and v.state == HELD]
            room = max(batch.max_concurrent - len(active), 0)
            if held[:room]:
                await self.svc.release([v.id for v in held[:room]])
                log.info("batch %s: released %s", batch_id, ", ".join(v.id for v in held[:room]))
            if len(held) <= room:
                with session(self.settings.database_location) as db:
                    row = db.get(Batch, batch_id)
                    if row is not None:
                        row.settled = True
                        db.add(row)
                        db.commit()

    async def settle_open(self) -> None:
        with session(self.settings.database_location) as db:
            open_ids = [b.id for b in db.exec(select(Batch).where(Batch.settled == False))]  # noqa: E712
        for batch_id in open_ids:
            try:
                await self.settle(batch_id)
            except Exception as exc:
                log.warning("batch %s: could not settle: %s", batch_id, exc)

    def summary(self, batch: Batch, statuses: list[str]) -> dict[str, Any]:
        """The batch's status in the spec's words: submitted until one starts, processing until all end,
        then completed (all completed), cancelled (all cancelled) or failed (any failed)."""
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        n = len(statuses)
        if counts.get("submitted", 0) == n:
            status = "submitted"
        elif counts.get("submitted", 0) or counts.get("processing", 0):
            status = "processing"
        elif counts.get("failed"):
            status = "failed"
        elif counts.get("cancelled", 0) == n:
            status = "cancelled"
        else:
            status = "completed"
        return {"status": status, "counts": counts}
