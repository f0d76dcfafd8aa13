"""How much more work the cluster can take: ``GET /pressure`` in browserless's shape, for balancers and autoscalers.

browserless answers ``{"pressure": {cpu, date, isAvailable, maxConcurrent, maxQueued, memory, message, queued, reason,
recentlyRejected, running}}`` for its one instance. Sojourn's figures are the cluster's, whichever API process is
asked: ``queued`` is the jobs waiting to start (the same count QUEUE_FULL is decided on), ``running`` the jobs' flow
runs running in Prefect, ``maxConcurrent`` the slots of the workers heard from recently, ``maxQueued``
SOJOURN_MAX_QUEUED_JOBS, ``recentlyRejected`` the submissions every API process refused with QUEUE_FULL in the last
five minutes (counted in the facade database), ``cpu``/``memory`` the mean over those workers' machines in percent
(null when no worker reports them). ``isAvailable`` is false with ``reason`` ``full`` when the queue is at its limit
(a submission now would be refused), ``cpu``/``memory`` when the workers' machines are past
SOJOURN_PRESSURE_MAX_CPU_PERCENT / SOJOURN_PRESSURE_MAX_MEMORY_PERCENT.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
from prefect.client.schemas.objects import StateType
from prometheus_client import Gauge

from sojourn.services.jobs import JobService
from sojourn.services.metrics import Metrics
from sojourn.services.stale_while_revalidate import Refreshed
from sojourn.settings import Settings
from sojourn.store import refusals
from sojourn.store.db import session

RECENT_MINUTES = 5
MESSAGES = {
    "full": "The job queue is full: submissions are refused until jobs start",
    "cpu": "CPU of the workers' machines is over the configured maximum for cpu percent",
    "memory": "Memory of the workers' machines is over the configured maximum for memory percent",
    "": "",
}


class Pressure:
    def __init__(self, settings: Settings, jobs: JobService, client: PrefectClient, metrics: Metrics) -> None:
        self.settings = settings
        self.jobs = jobs
        self.client = client
        self.metrics = metrics
        self._running: Refreshed[int] = Refreshed(self._count_running, every=1.0)
        self._rejected: Refreshed[int] = Refreshed(lambda: asyncio.to_thread(self._count_rejected), every=1.0)
        r = metrics.registry
        self._available = Gauge("sojourn_pressure_available", "1 when a job submitted now is accepted and the workers are not overloaded", registry=r)
        self._running_gauge = Gauge("sojourn_jobs_running", "Jobs running (flow runs running in Prefect)", registry=r)
        self._max_concurrent = Gauge("sojourn_slots", "Jobs the workers heard from recently may run at once", registry=r)
        self._max_queued = Gauge("sojourn_queue_limit", "Jobs that may wait to start (SOJOURN_MAX_QUEUED_JOBS)", registry=r)
        self._recently_rejected = Gauge("sojourn_jobs_recently_rejected", f"Submissions refused with QUEUE_FULL in the last {RECENT_MINUTES} minutes", registry=r)
        metrics.refreshers.append(self.export)

    async def _count_running(self) -> int:
        return await self.client.count_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["sojourn"]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.CANCELLING]))))

    def _count_rejected(self) -> int:
        with session(self.settings.database_location) as db:
            return refusals.since(db, int(time.time()) // 60 - (RECENT_MINUTES - 1))

    async def read(self) -> dict[str, Any]:
        waiting, running, rejected = await asyncio.gather(self.jobs.waiting.get(), self._running.get(), self._rejected.get())
        reports = list(self.metrics.live_reports().values())
        cpu, memory = (_mean([r.get(key) for r in reports]) for key in ("cpu", "memory"))
        queued = sum(waiting.values())
        reason = ("full" if queued >= self.settings.max_queued_jobs
                  else "cpu" if cpu is not None and cpu > self.settings.pressure_max_cpu_percent
                  else "memory" if memory is not None and memory > self.settings.pressure_max_memory_percent
                  else "")
        return {"pressure": {
            "cpu": cpu, "date": int(time.time() * 1000), "isAvailable": reason == "",
            "maxConcurrent": sum(int(r.get("slots") or 0) for r in reports), "maxQueued": self.settings.max_queued_jobs,
            "memory": memory, "message": MESSAGES[reason], "queued": queued, "reason": reason,
            "recentlyRejected": rejected, "running": running,
        }}

    async def export(self) -> None:
        """The same figures as Prometheus gauges (refreshed with the rest of /metrics)."""
        p = (await self.read())["pressure"]
        self._available.set(1 if p["isAvailable"] else 0)
        self._running_gauge.set(p["running"])
        self._max_concurrent.set(p["maxConcurrent"])
        self._max_queued.set(p["maxQueued"])
        self._recently_rejected.set(p["recentlyRejected"])


def _mean(values: list[Any]) -> int | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known)) if known else None
