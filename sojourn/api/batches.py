"""Batches: many jobs in one request, at most ``maxConcurrent`` of them running at once.

Every job of a batch is a flow run from the start (its id is known, it shows
in the UI, it can be cancelled). Jobs past the limit are created *held*: a
Scheduled state named "Held" due far in the future, so no worker takes them.
When a job of the batch ends, the outcome listener calls :meth:`settle`,
which releases the next held jobs in submission order until the limit is
filled again. A periodic sweep settles every open batch as well, so a
release owed while no API process was running still happens.

Why not a Prefect concurrency limit inside the flow: a job waiting for a
slot there would occupy a worker slot while it waits, starving other jobs.
Holding the run keeps waiting jobs out of the workers entirely.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled
from sqlmodel import select

from sojourn.api.auth import Principal
from sojourn.api.errors import ApiError
from sojourn.api.jobs import FINAL, HELD, JobService, flow_run_pages
from sojourn.spec import JobSpec
from sojourn.tags import tag_values
from sojourn.store.db import owned, session
from sojourn.store.models import Batch

log = logging.getLogger(__name__)


def batch_tag(batch_id: str) -> str:
    return f"batch:{batch_id}"


def is_held(run: FlowRun) -> bool:
    return run.state_name == HELD


class BatchService:
    def __init__(self, svc: JobService) -> None:
        self.svc = svc
        self.settings = svc.settings
        self._locks: dict[str, asyncio.Lock] = {}

    async def submit(self, specs: list[tuple[JobSpec, list[str]]], principal: Principal, max_concurrent: int | None) -> tuple[Batch, list[FlowRun]]:
        """Queue the jobs in order; those past ``max_concurrent`` are held."""
        batch_id = "batch_" + secrets.token_hex(8)
        limit = max_concurrent or len(specs)
        runs: list[FlowRun] = []
        try:
            for i, (spec, tags) in enumerate(specs):
                run = await self.svc.submit(
                    spec, principal, dialect="native", extra_tags=[*tags, batch_tag(batch_id), f"batch-index:{i}"], held=i >= limit,
                )
                runs.append(run)
        except Exception:
            # All or nothing: a batch refused halfway must not leave jobs behind (held ones would wait forever).
            for run in runs:
                try:
                    await self.svc.client.set_flow_run_state(run.id, Cancelled(message="Its batch was not accepted."), force=True)
                except Exception as exc:
                    log.warning("batch %s: could not withdraw job %s: %s", batch_id, run.id, exc)
            raise
        batch = Batch(id=batch_id, owner=principal.name, max_concurrent=limit, job_ids=json.dumps([str(r.id) for r in runs]), settled=limit >= len(specs))
        with session(self.settings.database_location) as db:
            db.add(batch)
            db.commit()
        return batch, runs

    def get(self, batch_id: str, principal: Principal) -> Batch:
        row = owned(self.settings.database_location, Batch, batch_id, principal.owner_filter)
        if row is None:
            raise ApiError(404, "BATCH_NOT_FOUND", f"Batch with ID '{batch_id}' not found", {"batchId": batch_id})
        return row

    async def runs(self, batch_id: str) -> list[FlowRun]:
        flt = FlowRunFilter(tags=FlowRunFilterTags(all_=["sojourn", batch_tag(batch_id)]))
        runs = [run async for page in flow_run_pages(self.svc.client, flt) for run in page]
        return sorted(runs, key=lambda r: int(next(iter(tag_values(r.tags, "batch-index")), "0")))

    async def settle(self, batch_id: str) -> None:
        """Release held jobs until ``max_concurrent`` are queued or running."""
        lock = self._locks.setdefault(batch_id, asyncio.Lock())
        async with lock:
            with session(self.settings.database_location) as db:
                batch = db.get(Batch, batch_id)
            if batch is None or batch.settled:
                return
            runs = await self.runs(batch_id)
            active = [r for r in runs if r.state_type not in FINAL and not is_held(r)]
            held = [r for r in runs if r.state_type not in FINAL and is_held(r)]
            for run in held[: max(batch.max_concurrent - len(active), 0)]:
                await self.svc.release(str(run.id))
                log.info("batch %s: released job %s", batch_id, run.id)
            if len(held) <= max(batch.max_concurrent - len(active), 0):
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
