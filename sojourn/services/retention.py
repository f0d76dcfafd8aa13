"""Results do not outlive ``SOJOURN_RESULT_RETENTION_SECONDS``.

A job's results stay readable for that long after it ended (after it was
accepted, for a job that never ran: refused, or cancelled before its run
existed). Then the sweep deletes all of it: the captures and manifest in the
artifact store, the flow run in Prefect (its logs, task runs and artifacts
go with it) and the ledger row, so every dialect answers "not found" for it,
as for a job that never existed.

One process of the cluster sweeps (the ``retention`` service); deletions are
idempotent anyway, so a sweep cut short is finished by the next. A process that still holds an expired job in
memory stops serving it at once (:meth:`RetentionPolicy.expired`), before any
sweep runs.
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import ObjectNotFound

from sojourn.services.jobs import JobService
from sojourn.store.clock import aware
from sojourn.store.jobs import Job

log = logging.getLogger("sojourn.retention")

BATCH = 200


class Retention:
    """The ``retention`` service: deletes what JobService's :class:`~sojourn.services.retention_policy.RetentionPolicy`
    says has expired."""

    def __init__(self, svc: JobService) -> None:
        self.svc = svc
        self.policy = svc.retention
        self.seconds = self.policy.seconds

    def cutoff(self) -> datetime:
        return self.policy.cutoff()

    @property
    def every(self) -> float:
        return min(60.0, max(1.0, self.seconds / 3))

    async def step(self) -> None:
        """One round of the ``retention`` service."""
        deleted = await self.sweep()
        if deleted:
            log.info("deleted %d jobs past their retention of %.0f s", deleted, self.seconds)

    async def sweep(self) -> int:
        """Delete every job that ended before the cutoff; how many were deleted."""
        cutoff, after, deleted = self.cutoff(), 0, 0
        while True:
            rows = await self.svc.ledger.accepted_before(cutoff, after_seq=after, limit=BATCH)
            if not rows:
                return deleted
            after = rows[-1].seq or after
            ended = await self._ended_before(rows, cutoff)
            for row in ended:
                await self._delete(row)
            deleted += len(ended)

    async def _ended_before(self, rows: list[Job], cutoff: datetime) -> list[Job]:
        ids = [UUID(r.flow_run_id) for r in rows if r.flow_run_id]
        runs = {str(r.id): r for r in await self.svc.client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))} if ids else {}
        out = []
        for row in rows:
            if row.flow_run_id is None:
                if row.rejected or row.cancel_requested_at is not None:
                    out.append(row)  # never ran; accepted before the cutoff
                continue
            run = runs.get(row.flow_run_id)
            if run is None:
                out.append(row)  # its run is gone already (a sweep that stopped half way)
            elif run.state is not None and run.state.is_final() and aware(run.end_time or run.state.timestamp) < cutoff:
                out.append(row)
        return out

    async def _delete(self, row: Job) -> None:
        store = self.svc.store
        try:
            await store.delete(store.job_path(row.id))
        except FileNotFoundError:
            pass
        if row.flow_run_id:
            try:
                await self.svc.client.delete_flow_run(UUID(row.flow_run_id))
            except ObjectNotFound:
                pass
        await self.svc.ledger.delete(row.id)
        self.svc.forget(row.id, row.owner)
