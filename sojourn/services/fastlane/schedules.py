"""Cron jobs as Prefect schedules: each recurring fastlane job is a deployment of the ``browse`` flow.

A job with a ``cron`` is the deployment ``browse/fastlane-<job id>`` in Sojourn's work pool, with that cron
(UTC) as its schedule: it shows in the Prefect UI, and Prefect's scheduler makes its runs. The deployment's
parameters are the job's JobSpec as it is now (command, envs, timeout, host map, the enqueuing key's URL
allow-list), rewritten by a PUT (Prefect then replaces the runs it had scheduled ahead); ``stop/`` deletes the
deployment, and with it every run still scheduled.

Each run of it becomes one execution once it comes due: adopted into the job ledger
(:meth:`JobService.adopt`: the ledger job's id is the flow run's id, ``external_id`` the execution id,
``group_id`` the fastlane job id) on its flow-run events and by a periodic sweep, and only then tagged as a
Sojourn job (``sojourn``, ``job:``), so runs scheduled an hour ahead are not counted as waiting. Prefect's
scheduler runs once a minute and may be late or off; the firing loop (:func:`.loops.cron`) makes a due
firing's run itself a few seconds ahead, with the idempotency key Prefect's scheduler gives that firing,
so each firing has exactly one run whoever makes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import httpx
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentScheduleUpdate, DeploymentUpdate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from sojourn.services.deployment_firings import AdoptsTaggedRuns, due_runs, not_due_yet, run_of_firing
from sojourn.services.service_error import ServiceError
from sojourn.services.fastlane import commands
from sojourn.services.ledger import tags_of
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.fastlane import FastlaneExecution, FastlaneJob

if TYPE_CHECKING:
    from sojourn.services.jobs import JobService
    from sojourn.services.job_view import JobView
    from sojourn.services.principals import Principal


class Executions(Protocol):
    """What the cron schedules need of the fastlane service (:class:`~.service.FastlaneService`), which owns the
    executions' life cycle: the schedules make a firing's run and adopt it; the service follows it from there."""

    jobs: "JobService"

    def spec_of(self, job: FastlaneJob, payload: dict[str, Any] | None = None) -> Any: ...

    def by_ledger_job(self, ledger_job_id: str) -> FastlaneExecution | None: ...

    async def finish(self, ex: FastlaneExecution, status: str, *, exit_code: int | None, log: str, error: str,
                     started_at: datetime | None = None, finished_at: datetime | None = None) -> bool: ...

    async def follow(self, ex: FastlaneExecution, view: "JobView") -> FastlaneExecution: ...

log = logging.getLogger(__name__)

SCHEDULE_TAG = "sojourn-schedule"  # on a cron deployment's runs until they are adopted (then: "sojourn")
CRON_TAG = "fastlane-cron"  # fastlane-cron:<job id> on the deployment and its runs
SWEEP_SECONDS = 10.0


def deployment_name(job_id: str) -> str:
    return f"fastlane-{job_id}"


def job_of(run: FlowRun) -> str | None:
    return next((t[len(CRON_TAG) + 1:] for t in run.tags or [] if t.startswith(CRON_TAG + ":")), None)


class CronSchedules(AdoptsTaggedRuns):
    TAG_PREFIX = CRON_TAG

    def __init__(self, svc: Executions) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.db = svc.db
        self._flow_id: UUID | None = None
        self._known: dict[str, None] = {}  # flow run ids adopted (or not to be): no Prefect read for their events

    @property
    def client(self) -> Any:
        return self.svc.jobs.client

    # ------------------------------------------------------------------ the deployment
    def parameters(self, job: FastlaneJob) -> dict[str, Any]:
        """The spec every firing runs (a snapshot; ``{}`` when the command cannot run: adoption then fails the execution)."""
        try:
            spec = self.svc.spec_of(job)
        except commands.CommandError:
            return {}
        allow = json.loads(job.url_allow or "[]")
        if allow:
            spec = spec.model_copy(update={"url_allow": list(allow)})
        return spec.model_dump(mode="json", exclude_defaults=True)  # type: ignore[no-any-return]

    def check_allowed(self, job: FastlaneJob, principal: Principal) -> None:
        """A key with a URL allow-list: the command's URLs must be in it (403 URL_NOT_ALLOWED, as for any job)."""
        if not principal.url_allow:
            return
        try:
            spec = self.svc.spec_of(job)
        except commands.CommandError:
            return
        type(self.svc.jobs).within_allow_list(spec, principal)

    def tags(self, job: FastlaneJob) -> list[str]:
        return [SCHEDULE_TAG, f"owner:{job.owner}", "dialect:fastlane", f"fastlane-task:{job.task_id[:200]}",
                f"fastlane-job:{job.id}", f"{CRON_TAG}:{job.id}"]

    async def _flow(self) -> UUID:
        if self._flow_id is None:
            self._flow_id = await self.client.create_flow_from_name("browse")
        return self._flow_id

    async def save(self, job: FastlaneJob) -> str:
        """Create or update the job's deployment (its cron and its spec); returns its id."""
        params = await asyncio.to_thread(self.parameters, job)
        schedule = CronSchedule(cron=str(job.cron), timezone="UTC")
        if job.deployment_id:
            try:
                await self.client.update_deployment(UUID(job.deployment_id), DeploymentUpdate(
                    parameters={"spec": params}, schedules=[DeploymentScheduleUpdate(schedule=schedule, active=True)], paused=False))
                return job.deployment_id
            except (ObjectNotFound, httpx.HTTPStatusError) as exc:
                if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code != 404:
                    raise
                # deleted in the Prefect UI: made again below
        from prefect.utilities.callables import parameter_schema

        from sojourn.deployments.bootstrap import FLOWS
        from sojourn.flows.browse import browse as browse_flow

        dep_id = str(await self.client.create_deployment(
            flow_id=await self._flow(), name=deployment_name(job.id), work_pool_name=self.settings.work_pool,
            work_queue_name=params.get("priority") or "normal", entrypoint=FLOWS["browse"], parameters={"spec": params},
            tags=self.tags(job), parameter_openapi_schema=parameter_schema(browse_flow).model_dump_for_openapi(),
            enforce_parameter_schema=False, schedules=[DeploymentScheduleCreate(schedule=schedule, active=True)], paused=False,
            description=f"fastlane job {job.id} of task {job.task_id}: `{job.command[:200]}` on `{job.cron}` (UTC).",
        ))
        job.deployment_id = dep_id

        def store() -> None:
            with session(self.db) as db:
                db.execute(update(FastlaneJob).where(col(FastlaneJob.id) == job.id).values(deployment_id=dep_id))
                db.commit()

        await asyncio.to_thread(store)
        return dep_id

    async def remove(self, job: FastlaneJob) -> None:
        """Delete the job's deployment: its schedule and every run still scheduled go with it (Prefect's doing)."""
        if not job.deployment_id:
            return
        try:
            await self.client.delete_deployment(UUID(job.deployment_id))
        except ObjectNotFound:
            pass
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise

        def clear() -> None:
            with session(self.db) as db:
                db.execute(update(FastlaneJob).where(col(FastlaneJob.id) == job.id, col(FastlaneJob.deployment_id) == job.deployment_id)
                           .values(deployment_id=None))
                db.commit()

        await asyncio.to_thread(clear)
        job.deployment_id = None

    def unavailable(self, exc: Exception) -> ServiceError:
        log.warning("fastlane cron: Prefect refused or did not answer: %r", exc)
        return ServiceError(503, "SERVICE_UNAVAILABLE", "The job's schedule could not be saved in Prefect just now; try again.",
                            headers={"Retry-After": "2"})

    # ------------------------------------------------------------------ firing
    async def fire(self, job: FastlaneJob, firing: datetime) -> FastlaneExecution | None:
        """The run of this firing, made by Prefect (one run, whoever asks: :mod:`sojourn.services.deployment_firings`)."""
        dep_id = job.deployment_id or await self.save(job)
        run = await run_of_firing(self.client, dep_id, firing)
        if run is None:
            return None
        return await self.adopt(run, force=True)

    # ------------------------------------------------------------------ adoption
    def _remember(self, run_id: str) -> None:
        self._known[run_id] = None
        while len(self._known) > 20_000:
            self._known.pop(next(iter(self._known)))

    def _job(self, job_id: str) -> FastlaneJob | None:
        with session(self.db) as db:
            return db.get(FastlaneJob, job_id)

    async def consider(self, run_id: str) -> None:
        """A flow-run event of a cron deployment's run: adopt it if it is due (else the sweep will, later)."""
        if run_id in self._known:
            return
        try:
            run = await self.client.read_flow_run(UUID(run_id))
        except ObjectNotFound:
            return
        await self.adopt(run)

    async def adopt(self, run: FlowRun, *, force: bool = False) -> FastlaneExecution | None:
        """The run as one execution of its job (once: idempotent on the run), when it is due."""
        run_id = str(run.id)
        existing = await asyncio.to_thread(self.svc.by_ledger_job, run_id)
        if existing is not None:
            self._remember(run_id)
            return existing
        job_id = job_of(run)
        if job_id is None or (run.work_pool_name is not None and run.work_pool_name != self.settings.work_pool):
            # Not a run of this installation's pool: another Sojourn sharing the Prefect server owns it (and would have
            # seen this one cancel its runs as "stopped", not knowing their jobs).
            self._remember(run_id)
            return None
        waiting = run.state_type in (StateType.SCHEDULED, StateType.PENDING)
        if not force and not_due_yet(run):
            return None  # not due yet
        job = await asyncio.to_thread(self._job, job_id)
        if job is None or job.stopped or not job.cron or job.deployment_id != (str(run.deployment_id) if run.deployment_id else None):
            self._remember(run_id)  # the job was stopped, changed or deleted since Prefect made the run
            if waiting:
                try:
                    await self.client.set_flow_run_state(run.id, Cancelled(message="The fastlane job's schedule was stopped or changed."), force=True)
                except Exception as exc:
                    log.warning("fastlane cron: could not cancel the stale run %s: %r", run_id, exc)
            return None
        labels = {"fastlane-task": job.task_id[:200], "fastlane-job": job.id}
        view, _created = await self.svc.jobs.adopt(run, job.owner, dialect="fastlane", kind="browse", labels=labels,
                                                   external_id=str(uuid.uuid4()), group_id=job.id)
        ledger_row = await self.svc.jobs.ledger.get(run_id)
        if ledger_row is not None:  # a Sojourn job now: the tags every job's run carries (queues, lists, the UI)
            try:
                await self.client.update_flow_run(run.id, tags=sorted(set(run.tags or []) - {SCHEDULE_TAG} | set(tags_of(ledger_row))))
            except Exception as exc:
                log.warning("fastlane cron: could not tag run %s: %r", run_id, exc)
        ex = FastlaneExecution(
            id=view.external_id or str(uuid.uuid4()), job_id=job.id, owner=job.owner, task_id=job.task_id, image=job.image,
            command=job.command, request_ip=job.request_ip, attempt=job.retry_count, run_at=aware(run.expected_start_time),
            created_at=utcnow(), ledger_job_id=run_id,
        )
        ex = await asyncio.to_thread(self._insert, ex)
        self._remember(run_id)
        try:
            self.svc.spec_of(job)
        except commands.CommandError as exc:  # the command or image cannot run: this firing fails with its message
            if waiting:
                try:
                    await self.client.set_flow_run_state(run.id, Cancelled(message=exc.message), force=True)
                except Exception as err:
                    log.warning("fastlane cron: could not cancel run %s: %r", run_id, err)
            await self.svc.finish(ex, "failed", exit_code=None if exc.pulling else 1, log="", error=exc.message)
            return ex
        if view.final:
            return await self.svc.follow(ex, view)
        return ex

    def _insert(self, ex: FastlaneExecution) -> FastlaneExecution:
        with session(self.db) as db:
            found = db.get(FastlaneExecution, ex.id)
            if found is not None:
                return found
            db.add(ex)
            try:
                db.commit()
            except IntegrityError:  # another process adopted it in between
                db.rollback()
                found = db.get(FastlaneExecution, ex.id)
                if found is None:
                    raise
                return found
            db.refresh(ex)
            return ex

    # ------------------------------------------------------------------ background (``fastlane-cron-events``, ``fastlane-cron-sweep``)
    async def sweep_once(self) -> int:
        """Runs of cron deployments that came due (in the last two days) and are no executions yet: adopt them."""
        def deployments() -> list[str]:
            with session(self.db) as db:
                return [d for d in db.exec(select(FastlaneJob.deployment_id).where(
                    FastlaneJob.deployment_id != None, FastlaneJob.stopped == False)).all() if d]  # noqa: E711,E712

        n = 0
        async for runs in due_runs(self.client, await asyncio.to_thread(deployments)):
            for run in runs:
                if str(run.id) in self._known:
                    continue
                if await self.adopt(run) is not None:
                    n += 1
        return n
