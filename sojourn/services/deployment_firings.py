"""The run of a deployment schedule's firing, made by Prefect when Sojourn asks, through Prefect's public API only.

Scrape schedules and fastlane cron jobs are Prefect deployments with a schedule. Prefect's scheduler service makes
their runs ahead of time, once a minute; a schedule made or changed less than a minute before a firing may not
have that firing's run yet. Prefect's "schedule runs" endpoint (``POST /deployments/{id}/schedule``) makes the runs
of a window of firings at once, as its scheduler service does and with the idempotency keys it uses, so asking
for a firing's run again (from another process, or after the scheduler made it) makes nothing more. The dialects
compute when a firing comes due with cronsim, ask for its run here, and adopt it; what they share besides (when a
run is due, the sweep's read of due runs, the run an event is about) is here too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Iterable
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterExpectedStartTime
from prefect.client.schemas.objects import FlowRun, StateType

from sojourn.store.clock import aware, utcnow

DUE_WITHIN = timedelta(seconds=15)  # a scheduled run this close to its start is adopted
SWEEP_BACK = timedelta(days=2)  # runs that came due while no API ran, this far back, are adopted by the sweep


async def run_of_firing(client: PrefectClient, deployment_id: UUID | str, firing: datetime) -> FlowRun | None:
    """The run of the deployment's firing at ``firing``, made now by Prefect if it was not made yet; None when the
    deployment has no active schedule firing then (removed or paused meanwhile)."""
    deployment_id = UUID(str(deployment_id))
    window = {"start_time": firing.isoformat(), "end_time": (firing + timedelta(seconds=1)).isoformat(),
              "min_time": 0, "min_runs": 1, "max_runs": 1}
    response = await client.request("POST", "/deployments/{id}/schedule", path_params={"id": deployment_id}, json=window)
    response.raise_for_status()
    runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=firing - timedelta(seconds=1), before_=firing + timedelta(seconds=1))),
        limit=5)
    return min(runs, key=lambda r: r.created or firing) if runs else None


def not_due_yet(run: FlowRun) -> bool:
    """The run waits for a start more than :data:`DUE_WITHIN` ahead: too early to adopt."""
    return run.state_type == StateType.SCHEDULED and run.expected_start_time is not None and aware(run.expected_start_time) > utcnow() + DUE_WITHIN


async def due_runs(client: PrefectClient, deployment_ids: Iterable[str]) -> AsyncIterator[list[FlowRun]]:
    """The runs of these deployments that came due (up to :data:`SWEEP_BACK` ago) or come due within
    :data:`DUE_WITHIN`, a page per 100 deployments: what a schedule sweep adopts if nobody has yet."""
    ids = [UUID(str(d)) for d in deployment_ids]
    for i in range(0, len(ids), 100):
        now = utcnow()
        yield await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=ids[i:i + 100]),
            expected_start_time=FlowRunFilterExpectedStartTime(after_=now - SWEEP_BACK, before_=now + DUE_WITHIN)), limit=200)


def flow_run_of(item: dict[str, Any]) -> str | None:
    """The flow run id an event of the hub is about, if it is about one."""
    resource = str((item.get("resource") or {}).get("prefect.resource.id", ""))
    return resource[len("prefect.flow-run."):] if resource.startswith("prefect.flow-run.") else None


class AdoptsTaggedRuns:
    """The event half of adopting a schedule's runs, for a class whose deployments (and so their runs) carry a tag
    ``<TAG_PREFIX>:<id>``: a flow-run event of such a run makes it :meth:`consider` the run at once (the sweep, each
    class's own, finds what an event missed)."""

    TAG_PREFIX: str

    def concerns(self, item: dict[str, Any]) -> bool:
        return item["event"].startswith("prefect.flow-run.") and any(t.startswith(self.TAG_PREFIX + ":") for t in item.get("tags") or [])

    async def on_event(self, item: dict[str, Any]) -> None:
        """A flow-run event of one of these runs: adopt the run as it comes due (or starts)."""
        run_id = flow_run_of(item)
        if run_id:
            await self.consider(run_id)

    async def consider(self, run_id: str) -> Any:
        raise NotImplementedError

