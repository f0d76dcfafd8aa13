"""Runs made the Prefect way on Sojourn's ``browse`` deployment become jobs.

A run created on ``browse/browse`` in Prefect itself (the Prefect UI's "Custom run", ``prefect deployment run
browse/browse -p spec='{...}'``, ``run_deployment()`` from a user's own flow, a schedule added in the Prefect UI or
under ``schedules:`` in prefect.yaml) runs like any job: the flow is the same, and it knows its job by the run's
id. It is adopted into the ledger as a native job with that id, so it is read, listed and cancelled through the
API, its webhooks fire and retention deletes it, like any job.

Its owner is the principal its ``owner:<name>`` tag names, else the admin. A run is refused (cancelled, the reason
as its state message) when that principal does not exist, when its ``spec`` is not a valid job, or when the
owner's API key has a URL allow-list its steps leave. (Whoever can reach the Prefect API can make runs for any
owner: Prefect's open-source server has no users, so keep it where only operators reach it.)

- ``prefect-made-runs`` (replica): flow-run events of such runs (a run of this installation's ``browse``
  deployment without a ``job:`` tag) → adopt it once it is due within ``DUE_WITHIN`` (a schedule's runs far
  ahead wait until then, so a cron does not fill the ledger with a hundred future jobs);
- ``prefect-made-runs-sweep`` (cluster, every ``SWEEP_SECONDS``): runs of that deployment expected between
  ``SWEEP_BACK`` ago and ``DUE_WITHIN`` ahead that are not jobs yet (the events missed them).

Once adopted, the run carries ``sojourn``, ``owner:<name>`` and ``job:<id>`` tags like any job's run, and the
outcome and retention services treat it as one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from cachetools import TTLCache
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterExpectedStartTime
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelled
from pydantic import ValidationError
from sqlmodel import select

from sojourn.services.jobs import JobService
from sojourn.services.principals import Principal, principal_of
from sojourn.services.service_error import ServiceError
from sojourn.spec import JobSpec, spec_errors
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.keys import ApiKey
from sojourn.tags import job_id_from_tags, job_tag, owner_tag, tag_values

log = logging.getLogger(__name__)

DUE_WITHIN = timedelta(seconds=60)
SWEEP_BACK = timedelta(hours=1)
SWEEP_SECONDS = 30.0
ADMIN = "admin"
WAITING = (StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING)


class PrefectMadeRuns:
    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        # Runs this process adopted or refused lately (each state change of a run is an event).
        self._adopted: TTLCache[str, bool] = TTLCache(maxsize=10_000, ttl=SWEEP_BACK.total_seconds())

    def _browse(self) -> UUID | None:
        return self.jobs.deployments.get("browse")

    def concerns(self, item: dict[str, Any]) -> bool:
        browse = self._browse()
        return (item["event"].startswith("prefect.flow-run.") and browse is not None and item.get("deployment_id") == str(browse)
                and job_id_from_tags(item.get("tags") or []) is None and item["job_id"] not in self._adopted)

    async def on_event(self, item: dict[str, Any]) -> None:
        run = await self.jobs.client.read_flow_run(UUID(item["job_id"]))
        await self.consider(run)

    async def sweep(self) -> int:
        browse = self._browse()
        if browse is None:
            return 0
        now = utcnow()
        flt = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[browse]),
                            expected_start_time=FlowRunFilterExpectedStartTime(after_=now - SWEEP_BACK, before_=now + DUE_WITHIN))
        runs = [r for r in await self.jobs.client.read_flow_runs(flow_run_filter=flt, limit=200) if job_id_from_tags(r.tags) is None]
        known = await self.jobs.ledger.get_many(str(r.id) for r in runs)
        adopted = 0
        for run in runs:
            if str(run.id) not in known and await self.consider(run):
                adopted += 1
        return adopted

    async def consider(self, run: FlowRun) -> bool:
        """Adopt ``run`` if it is a Prefect-made run of ``browse`` that is due; True if it became a job now."""
        run_id = str(run.id)
        if run.deployment_id != self._browse() or job_id_from_tags(run.tags) is not None or run_id in self._adopted:
            return False
        expected = aware(run.expected_start_time)
        if run.state_type == StateType.SCHEDULED and expected is not None and expected > utcnow() + DUE_WITHIN:
            return False  # far ahead: adopted when it comes due
        owner = next(iter(tag_values(run.tags, "owner")), ADMIN)
        refusal = await asyncio.to_thread(self._refusal, run, owner)
        self._adopted[run_id] = True
        if refusal is not None:
            log.warning("flow run %s of browse was made in Prefect and is refused: %s", run_id, refusal)
            if run.state_type in WAITING:
                await self.jobs.client.set_flow_run_state(run.id, Cancelled(message=f"Refused by Sojourn: {refusal}"), force=True)
            return False
        _view, created = await self.jobs.adopt(run, owner, dialect="native", kind="browse")
        tags = sorted({*run.tags, "sojourn", owner_tag(owner), job_tag(run_id)})
        if tags != sorted(run.tags):
            await self.jobs.client.update_flow_run(run.id, tags=tags)
        if created:
            log.info("flow run %s of browse, made in Prefect, is now job %s of %s", run_id, run_id, owner)
        return created

    def _refusal(self, run: FlowRun, owner: str) -> str | None:
        principal = self._principal(owner)
        if principal is None:
            return f"its owner tag names '{owner}', who has no API key here"
        try:
            spec = JobSpec.model_validate((run.parameters or {}).get("spec"))
        except ValidationError as exc:
            first = spec_errors(exc)[0]
            return f"invalid field `{first['field']}` of its spec: {first['message']}"
        if principal.url_allow:
            try:
                JobService.within_allow_list(spec, principal)
            except ServiceError as exc:
                return exc.message
        return None

    def _principal(self, name: str) -> Principal | None:
        with session(self.jobs.settings.database_location) as db:
            row = db.exec(select(ApiKey).where(ApiKey.principal == name, ApiKey.revoked_at == None)).first()  # noqa: E711
        return principal_of(row) if row is not None else None
