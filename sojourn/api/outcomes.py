"""What the API does when a job ends: metrics, webhook deliveries owed, batch slots freed.

Two paths lead here, so nothing is missed:

- live: the shared Prefect event stream (final flow-run events of `sojourn`
  runs), handled within moments of the job ending;
- sweep: at start and every minute, the runs that ended since the last sweep
  (a watermark in the facade database, overlapping by a margin) are read back
  from Prefect, so a job that ended while no API process was running, or
  while the event stream was down, still gets its webhooks. Open batches are
  settled in the same sweep.

Webhook deliveries have stable ids, so handling one ending twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterEndTime, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from sqlmodel import select

from sojourn.api.batches import BatchService
from sojourn.api.jobs import FINAL, JobService, JobView, flow_run_pages, owner_tag
from sojourn.api.metrics import Metrics
from sojourn.api.streams import FINAL_EVENTS
from sojourn.api.webhooks import WebhookService, aware
from sojourn.store.db import session
from sojourn.store.models import Watermark, Webhook

log = logging.getLogger(__name__)

EVENT_FOR_STATUS = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
SWEEP_SECONDS = 60.0
MARGIN = timedelta(minutes=5)


class Outcomes:
    def __init__(self, svc: JobService, webhooks: WebhookService, batches: BatchService, metrics: Metrics,
                 render: Callable[[JobView], dict[str, Any]]) -> None:
        self.svc = svc
        self.webhooks = webhooks
        self.batches = batches
        self.metrics = metrics
        self.render = render

    async def listen_forever(self) -> None:
        queue = self.svc.hub.listen()
        while True:
            item = await queue.get()
            try:
                if item["event"] == "sojourn.worker.stats":
                    name = item["resource"].get("prefect.resource.name") or item["resource"]["prefect.resource.id"]
                    self.metrics.worker_report(name, item.get("payload") or {})
                elif item["event"] in FINAL_EVENTS and "sojourn" in item["tags"] and item["job_id"]:
                    await self.job_ended(item["job_id"], live=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outcome of %s: %s", item.get("job_id"), exc)

    async def job_ended(self, job_id: str, *, live: bool, run: FlowRun | None = None) -> None:
        run = run or await self.svc.client.read_flow_run(job_id)  # type: ignore[arg-type]
        if run.state_type not in FINAL:
            return
        view = await self.svc.view(run, with_progress=False)
        if live:
            self.metrics.observe(view)
        owner = view.tag("owner")
        event = EVENT_FOR_STATUS.get(view.status)
        if owner and event:
            self.webhooks.enqueue(owner, view.id, event, self.render(view), ended_at=run.end_time)
        batch = view.tag("batch")
        if batch and live:
            await self.batches.settle(batch)

    # -------------------------------------------------------------- sweep
    async def sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outcome sweep: %s", exc)
            await asyncio.sleep(SWEEP_SECONDS)

    async def sweep(self) -> int:
        started = datetime.now(timezone.utc)
        await self.batches.settle_open()
        with session(self.svc.settings.database_location) as db:
            mark = db.get(Watermark, "outcomes")
            owners = sorted({w.owner for w in db.exec(select(Webhook))})
        since = aware(mark.value) - MARGIN if mark else started - MARGIN  # type: ignore[operator]
        handled = 0
        if owners:
            for owner in owners:
                flt = FlowRunFilter(
                    tags=FlowRunFilterTags(all_=["sojourn", owner_tag(owner)]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED])),
                    end_time=FlowRunFilterEndTime(after_=since),
                )
                async for page in flow_run_pages(self.svc.client, flt, FlowRunSort.END_TIME_DESC):
                    for run in page:
                        await self.job_ended(str(run.id), live=False, run=run)
                        handled += 1
        with session(self.svc.settings.database_location) as db:
            row = db.get(Watermark, "outcomes") or Watermark(name="outcomes", value=started)
            row.value = started
            db.add(row)
            db.commit()
        return handled
