"""No job stuck Running: runs whose worker stopped sending heartbeats are crashed or retried.

A flow run's ``infrastructure_pid`` is the name of the sojourn worker running
it (every worker process has its own name). When that worker has not sent a
heartbeat for ``crash_after_seconds``, the run is over as far as anyone can
tell: it is rescheduled while the job's retries last, plus
``worker_lost_reruns`` (a dead worker is not the job's fault, as a crashed
browser is not), and marked Crashed (WORKER_LOST) after that. Every worker and the API run this
sweep, so one live process is enough to clean up after a dead one.

A worker cannot send heartbeats while Prefect is unreachable, so silence only
counts once Prefect has answered this sweeper for ``crash_after_seconds``:
after an outage (or when the sweeper starts) live workers get that long to
report in before their runs are judged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.states import AwaitingRetry, Crashed

from sojourn.settings import Settings

if TYPE_CHECKING:
    from sojourn.background.runner import Scope, Service

log = logging.getLogger(__name__)


async def reap_once(client: PrefectClient, settings: Settings, pool: str, reachable_since: datetime | None = None) -> list[str]:
    """One sweep; returns the ids of the runs it crashed or rescheduled.

    ``reachable_since``: since when Prefect has answered without a break; no
    worker is judged before it has had ``crash_after_seconds`` to send a heartbeat.
    """
    now = datetime.now(timezone.utc)
    horizon = now - timedelta(seconds=settings.crash_after_seconds)
    if reachable_since is not None and reachable_since > horizon:
        await client.hello()  # still tells the caller whether Prefect answers
        return []
    workers = await client.read_workers_for_work_pool(pool)
    alive = {w.name for w in workers if w.last_heartbeat_time and w.last_heartbeat_time > horizon}
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        limit=200,
    )
    reaped = []
    for run in runs:
        owner = run.infrastructure_pid
        if owner and owner in alive:
            continue
        since = run.state.timestamp if run.state and run.state.timestamp else now
        if since > horizon:
            continue  # too recent to judge (the worker may just be setting it up)
        retries = _job_retries(run.parameters) + settings.worker_lost_reruns
        message = f"Worker {owner or '(none)'} stopped responding while running this job."
        if run.run_count <= retries:
            state = AwaitingRetry(message=message + " Retrying.", scheduled_time=now)
        else:
            state = Crashed(message=message)
        await client.set_flow_run_state(run.id, state, force=True)
        log.warning("flow run %s: %s -> %s", run.id, message, state.name)
        reaped.append(str(run.id))
    return reaped


def _job_retries(parameters: dict) -> int:
    spec = parameters.get("spec") if isinstance(parameters, dict) else None
    if isinstance(spec, dict):
        value = spec.get("retries", 0)
        return value if isinstance(value, int) else 0
    return 0


class Reaper:
    """The sweep as a background service (``reaper``): remembers since when Prefect has answered it."""

    def __init__(self, client: PrefectClient, settings: Settings, pool: str) -> None:
        self.client, self.settings, self.pool = client, settings, pool
        self.every = max(2.0, settings.crash_after_seconds / 4)
        self.reachable_since: datetime | None = None  # Prefect has answered every sweep since

    async def step(self) -> None:
        self.reachable_since = self.reachable_since or datetime.now(timezone.utc)
        try:
            await reap_once(self.client, self.settings, self.pool, self.reachable_since)
        except Exception:
            self.reachable_since = None
            raise

    def service(self, scope: "Scope") -> "Service":
        from sojourn.background.runner import Service

        return Service("reaper", scope, "Crashes or reruns the runs of workers that stopped sending heartbeats",
                       step=self.step, every=self.every)
