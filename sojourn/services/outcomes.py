"""What the API does when a job ends: metrics, webhook deliveries owed, batch slots freed.

Two paths lead here, so nothing is missed:

- live: the shared Prefect event stream (final flow-run events of `sojourn`
  runs), handled within moments of the job ending. Metrics come from the
  event itself; the job is read back only for an owner with webhooks or a
  job in a batch, so a job nobody waits on costs the API no Prefect call;
- sweep: at start and every minute, the runs that ended since the last sweep
  (a watermark in the facade database, overlapping by a margin) are read back
  from Prefect, so a job that ended while no API process was running, or
  while the event stream was down, still gets its webhooks. Open batches are
  settled in the same sweep.

Webhook deliveries have stable ids, so handling one ending twice is harmless.
"""

from __future__ import annotations

import logging
from uuid import UUID
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterEndTime, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from sqlmodel import select

from sojourn.services.batches import BatchService
from sojourn.services.jobs import JobService, flow_run_pages, job_id_of
from sojourn.services.job_view import FINAL_EVENTS, STATUS, JobView
from sojourn.store.jobs import Job
from sojourn.tags import owner_tag, tag_values
from sojourn.services.metrics import Metrics
from sojourn.services.webhooks import WebhookService
from sojourn.store.clock import aware
from sojourn.store.db import session
from sojourn.store.watermarks import Watermark
from sojourn.store.webhooks import Webhook

log = logging.getLogger(__name__)

SAVES_PROFILE = "saves-profile"  # the tag of a job whose end applies a profile save (services/profiles.py)
EVENT_FOR_STATUS = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
SWEEP_SECONDS = 60.0
MARGIN = timedelta(minutes=5)


class Outcomes:
    def __init__(self, svc: JobService, webhooks: WebhookService, batches: BatchService, metrics: Metrics,
                 render: Callable[[JobView], Awaitable[dict[str, Any]]]) -> None:
        self.svc = svc
        self.webhooks = webhooks
        self.batches = batches
        self.metrics = metrics
        self.render = render
        self._running_since: OrderedDict[str, datetime] = OrderedDict()  # job id → when its run started

    async def observe(self, item: dict[str, Any]) -> None:
        """Every event, in every API process (the ``job-metrics`` service): the figures this process's /metrics
        exports and its submissions' estimates learn from (workers' reports, jobs' run times), from the event alone."""
        if item["event"] == "sojourn.worker.stats":
            name = item["resource"].get("prefect.resource.name") or item["resource"]["prefect.resource.id"]
            self.metrics.worker_report(name, item.get("payload") or {})
        elif item["job_id"] is None or "sojourn" not in item["tags"]:
            return
        elif item["event"] == "prefect.flow-run.Running":
            self._running_since[item["job_id"]] = item["occurred"]
            while len(self._running_since) > 50_000:
                self._running_since.popitem(last=False)
        elif item["event"] in FINAL_EVENTS:
            started = self._running_since.pop(item["job_id"], None)
            state = StateType(item["resource"].get("prefect.state-type") or "FAILED")
            ran = (item["occurred"] - started).total_seconds() if started else None
            self.metrics.observe(STATUS.get(state, "failed"), ran)
            job_type = next(iter(tag_values(item["tags"], "type")), None)
            if ran is not None and state == StateType.COMPLETED and job_type:
                self.svc.note_duration(job_type, ran)

    @staticmethod
    def concerns(item: dict[str, Any]) -> bool:
        return item["event"] in FINAL_EVENTS and item["job_id"] is not None and "sojourn" in item["tags"]

    async def on_event(self, item: dict[str, Any]) -> None:
        """A job's final event (the ``outcomes`` service): the webhook deliveries it owes and its batch settled; the
        job is read back only for an owner with webhooks or a job in a batch."""
        owner = next(iter(tag_values(item["tags"], "owner")), None)
        if (owner is not None and await self.webhooks.has_webhooks(owner)) or tag_values(item["tags"], "batch") or SAVES_PROFILE in item["tags"]:
            rid = str(item["resource"].get("prefect.resource.id") or "")
            await self.job_ended(item["job_id"], live=True, run_id=rid.removeprefix("prefect.flow-run.") if rid.startswith("prefect.flow-run.") else None)

    async def job_ended(self, job_id: str, *, live: bool, run: FlowRun | None = None, row: Job | None = None, run_id: str | None = None) -> None:
        row = row or await self.svc.ledger.get(job_id)
        if row is None:
            return  # a run started some other way: not a job of this API
        if run is None and row.flow_run_id is None and run_id is not None:
            # A short job can end before its dispatcher has recorded the run it made (a busy ledger): the final event
            # names the run, so read that one. (Reading the row alone, the job looked unstarted and its webhook
            # waited for the next sweep, a minute later.)
            try:
                run = await self.svc.client.read_flow_run(UUID(run_id))
            except ObjectNotFound:
                run = None
        view = await self.svc.read(row, run, with_progress=False)
        if not view.final:
            if live:  # told by a final event: left to the sweep, and said, since its webhooks wait a minute
                log.warning("job %s ended, but reads as %s (run %s): its webhooks wait for the outcome sweep", job_id, view.state,
                            row.flow_run_id or run_id)
            return
        ref = view.spec.get("profile_ref") if view.spec.get("save_profile") else None
        if ref and view.status == "completed" and self.svc.profiles is not None:
            await self.svc.profiles.apply_save(view.id, ref)  # before the webhook, whose body tells how the save went
        event = EVENT_FOR_STATUS.get(view.status)
        if event:
            self.webhooks.enqueue(view.owner, view.id, event, await self.render(view), ended_at=view.ended_at)
        batch = view.tag("batch")
        if batch and live:
            await self.batches.settle(batch)

    # -------------------------------------------------------------- sweep (the ``outcome-sweep`` service, every SWEEP_SECONDS)
    async def sweep(self) -> int:
        started = datetime.now(timezone.utc)
        await self.batches.settle_open()
        with session(self.svc.settings.database_location) as db:
            mark = db.get(Watermark, "outcomes")
            owners = sorted({w.owner for w in db.exec(select(Webhook))})
        since = aware(mark.value) - MARGIN if mark else started - MARGIN  # type: ignore[operator]
        handled = 0
        if owners or self.svc.profiles is not None:
            for tags in [[owner_tag(owner)] for owner in owners] + [[SAVES_PROFILE]]:
                flt = FlowRunFilter(
                    tags=FlowRunFilterTags(all_=["sojourn", *tags]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED])),
                    end_time=FlowRunFilterEndTime(after_=since),
                )
                async for page in flow_run_pages(self.svc.client, flt, FlowRunSort.END_TIME_DESC):
                    rows = await self.svc.ledger.get_many(i for r in page if (i := job_id_of(r)))
                    for run in page:
                        job_id = job_id_of(run)
                        if job_id in rows:
                            await self.job_ended(job_id, live=False, run=run, row=rows[job_id])
                            handled += 1
        with session(self.svc.settings.database_location) as db:
            row = db.get(Watermark, "outcomes") or Watermark(name="outcomes", value=started)
            row.value = started
            db.add(row)
            db.commit()
        return handled
