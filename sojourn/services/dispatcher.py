"""Turns accepted jobs into Prefect flow runs, in the background, as fast as Prefect takes them.

A submission only writes its ledger row and wakes this loop; the client has
its answer by then. Each round claims up to 100 due jobs (oldest first),
creates their runs with one request per flow (Prefect's bulk create), and
records the flow run ids. The job id is the run's idempotency key (and its
name, and a ``job:`` tag), so a dispatcher that dies between "created" and
"recorded" leaves nothing doubled: whoever claims the job next gets the same
run back. Every API process runs one; claims keep them apart.

A job cancelled before dispatch gets its run created Cancelled (so the Prefect
UI shows it too); one cancelled while its run was being created has that run
cancelled at once. When Prefect cannot be reached, claims are handed back and
the loop backs off; the jobs wait in the ledger, accepted, until it answers.
A run Prefect refuses (its parameters, its work queue: see ``REFUSALS``) is
retried a few times and then the job fails with ``SCHEDULER_REJECTED``; any
other failure to create it is passing (SQLite's "database is locked" inside the
bulk create is common under load) and it is tried again at once, uncounted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections import defaultdict
from typing import Any, Awaitable, Callable
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.states import Cancelled, Scheduled, to_state_create

from sojourn.services.ledger import Created, Ledger, tags_of
from sojourn.services.job_view import CANCELLED_BEFORE_START
from sojourn.store.clock import aware
from sojourn.store.jobs import Job

log = logging.getLogger(__name__)

BULK = 100  # Prefect's limit per bulk create
REJECT_AFTER = 5  # refusals (not transport errors) before a job is failed
QUICK_RETRIES = (0.005, 0.02, 0.05)  # pauses between quick retries of passing failures within one round


# What Prefect's bulk create answers when it refuses a run for good (3.8.8, server/api/deployments.py);
# anything else (a locked SQLite database, a lost connection inside the server) passes and is retried.
REFUSALS = ("Parameter validation failed", "Parameter schema enforcement", "Invalid schema", "Cannot create flow run",
            "job variables", "hydrat")


def is_refusal(error: str) -> bool:
    return any(marker.lower() in error.lower() for marker in REFUSALS)


class Dispatcher:
    def __init__(self, ledger: Ledger, client: PrefectClient, deployments: Callable[[], dict[str, UUID]],
                 *, on_dispatched: Callable[[list[Job]], Awaitable[None] | None] | None = None, poll: float = 1.0,
                 lease: float = 30.0) -> None:
        self.ledger = ledger
        self.client = client
        self.deployments = deployments
        self.on_dispatched = on_dispatched
        self.poll = poll
        self.lease = lease  # seconds a claim holds before another dispatcher may take the job
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.woken = asyncio.Event()
        self.created = 0  # flow runs this process created (for /metrics)
        self.failures = 0
        self._passing_streak = 0  # rounds in a row with passing failures: the next waits longer
        # Held from "create the runs" to "record their ids": a job is then either undispatched in the ledger or
        # queued in Prefect, never both or neither, for a reader holding it too (JobService's waiting count).
        self.moving = asyncio.Lock()

    def wake(self) -> None:
        self.woken.set()

    async def step(self) -> int:
        """One round for the background runner (``dispatcher`` in :mod:`sojourn.background.registry`)."""
        try:
            return await self.dispatch_once()
        except Exception:
            self.failures += 1
            raise

    async def dispatch_once(self) -> int:
        """One round: claim, create, record. Returns how many jobs it handled."""
        rows = await asyncio.to_thread(self.ledger.claim, self.name, BULK, self.lease)
        if not rows:
            return 0
        by_flow: dict[str, list[Job]] = defaultdict(list)
        for row in rows:
            by_flow[row.kind if row.kind in self.deployments() else "browse"].append(row)
        async with self.moving:
            try:
                results = await asyncio.gather(*(self._create_retrying(flow, batch) for flow, batch in by_flow.items()))
            except Exception:
                await asyncio.to_thread(self.ledger.unclaim, self.name, [r.id for r in rows], 1.0)
                raise
            outcomes = [o for batch in results for o in batch]
            raced = await asyncio.to_thread(self.ledger.record, self.name, outcomes, retry_in=1.0, reject_after=REJECT_AFTER)
        created_cancelled = {r.id for r in rows if r.cancel_requested_at is not None}
        for row in raced:
            if row.id not in created_cancelled and row.flow_run_id:
                await self.client.set_flow_run_state(UUID(row.flow_run_id), Cancelled(message=CANCELLED_BEFORE_START), force=True)
        made = [o for o in outcomes if o.flow_run_id]
        self.created += len(made)
        passing = [o for o in outcomes if o.transient]
        for o in outcomes:
            if o.error and not o.transient:
                log.warning("Prefect refused the run of job %s: %s", o.job_id, o.error)
        if passing:
            self.failures += 1
            self._passing_streak += 1
            log.info("Prefect could not create %d run(s) just now (%s); trying again", len(passing), (passing[0].error or "").splitlines()[0][:200])
            await asyncio.sleep(min(0.01 * 4 ** (self._passing_streak - 1), 2.0))
        else:
            self._passing_streak = 0
        if self.on_dispatched is not None and made:
            ids = {o.job_id for o in made}
            result = self.on_dispatched([r for r in rows if r.id in ids])
            if asyncio.iscoroutine(result):
                await result
        return len(rows)

    async def _create_retrying(self, flow: str, rows: list[Job]) -> list[Created]:
        """Create, and at once again for the runs that failed in passing, still under this round's claim.

        On SQLite, Prefect's bulk create reads and then writes in a deferred transaction, so any write
        committed in between (a worker's poll marks its queue polled) fails it with "database is locked";
        a moment later it goes through."""
        done: dict[str, Created] = {}
        todo = rows
        for pause in (0.0, *QUICK_RETRIES):
            await asyncio.sleep(pause)
            for out in await self._create(flow, todo):
                done[out.job_id] = out
            todo = [r for r in todo if done[r.id].transient]
            if not todo:
                break
        return [done[r.id] for r in rows]

    async def _create(self, flow: str, rows: list[Job]) -> list[Created]:
        body = [self._run_request(row).model_dump(mode="json", exclude_unset=True) for row in rows]
        response = await self.client.request("POST", "/deployments/{id}/create_flow_run/bulk", path_params={"id": self.deployments()[flow]}, json=body)  # type: ignore[arg-type]
        results: list[dict[str, Any]] = response.json()["results"]
        out = []
        for row, r in zip(rows, results):
            if r.get("status") == "CREATED" and r.get("flow_run_id"):
                out.append(Created(row.id, flow_run_id=str(r["flow_run_id"])))
            else:
                error = str(r.get("error") or r)
                out.append(Created(row.id, error=error, transient=not is_refusal(error)))
        return out

    @staticmethod
    def _run_request(row: Job) -> DeploymentFlowRunCreate:
        if row.cancel_requested_at is not None:
            state = Cancelled(message=CANCELLED_BEFORE_START)
        elif row.run_at is not None:
            state = Scheduled(scheduled_time=aware(row.run_at))
        else:
            state = Scheduled()
        return DeploymentFlowRunCreate(
            name=row.id,
            parameters={"spec": json.loads(row.spec)},
            tags=tags_of(row),
            work_queue_name=row.priority,
            state=to_state_create(state),
            idempotency_key=row.id,
        )
