"""Schedules: one per project, each a Prefect deployment of the ``scrape`` flow with a cron schedule.

A schedule ``sch_…`` is the deployment ``scrape/sch_…`` in Sojourn's work pool, carrying a cron schedule in
the schedule's timezone (``frequency``/``time``/``day_*`` are turned into a cron; ``cron`` is taken as it is),
paused while the schedule is disabled: it shows in the Prefect UI, and Prefect's scheduler makes its runs.
The deployment's parameters are a snapshot of the project's active targets and config, rewritten whenever
they change (Prefect then replaces the runs it scheduled ahead), so the worker never reads the facade database.

Runs Prefect creates are adopted into the job ledger (:meth:`JobService.adopt`: the row's id is the flow run's
id) and into ``scrape_jobs`` (``source: "scheduled"``, ``schedule_id``) once they come due: on their flow-run
events (the scheduler's ``Scheduled``, the worker's ``Pending``/``Running``) and by a periodic sweep of the
schedule deployments' runs. Only then do they get the ``sojourn`` tag, so runs scheduled days ahead are not
counted as jobs waiting in the queues. A run that comes due while another job of the project is pending or
running, or past the project's daily job limit, is adopted and cancelled (``skipped`` in ``run_history``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from cronsim import CronSim, CronSimError
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentScheduleUpdate, DeploymentUpdate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from sojourn.services.deployment_firings import AdoptsTaggedRuns, due_runs, not_due_yet, run_of_firing
from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService
from sojourn.services.ledger import tags_of
from sojourn.services.principals import Principal
from sojourn.services.scrape.catalog import Catalog
from sojourn.services.scrape.conventions import derived_id, iso, invalid, loads, new_id, not_found, sees
from sojourn.services.scrape.jobs import ScrapeJobs
from sojourn.settings import Settings
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.scrape import ScrapeJob, ScrapeProject, ScrapeSchedule
from sojourn.tags import job_id_from_tags, tag_values

log = logging.getLogger(__name__)

FREQUENCIES = ("hourly", "daily", "weekly", "monthly")
SCHEDULE_TAG = "sojourn-schedule"  # on a schedule deployment's runs until they are adopted (then: "sojourn")
TICK_SECONDS = 2.0  # how often due firings are looked for (a database read; Prefect only when one is due)
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def schedule_of(run: FlowRun) -> str | None:
    return next(iter(tag_values(run.tags or [], "schedule")), None)


def cron_of(fields: dict[str, Any]) -> str:
    """The cron a schedule runs on: its own, or its frequency at ``time`` (``day_of_week`` 0 = Monday … 6 = Sunday)."""
    if fields.get("cron"):
        return str(fields["cron"])
    hour, minute = (int(x) for x in (fields.get("time") or "00:00").split(":"))
    freq = fields.get("frequency")
    if freq == "hourly":
        return f"{minute} * * * *"
    if freq == "daily":
        return f"{minute} {hour} * * *"
    if freq == "weekly":
        dow = fields.get("day_of_week")
        return f"{minute} {hour} * * {((0 if dow is None else int(dow)) + 1) % 7}"
    dom = fields.get("day_of_month")
    return f"{minute} {hour} {1 if dom is None else int(dom)} * *"


def validate(fields: dict[str, Any]) -> None:
    """The schedule's fields together (after a partial update too): VALIDATION_ERROR naming the field at fault."""
    if fields.get("cron") and fields.get("frequency"):
        raise invalid("cron", "give either `frequency` (with `time`) or `cron`, not both")
    if not fields.get("cron") and not fields.get("frequency"):
        raise invalid("frequency", f"one of {', '.join(FREQUENCIES)} (or a `cron` expression) is required")
    if fields.get("frequency") and fields["frequency"] not in FREQUENCIES:
        raise invalid("frequency", f"'{fields['frequency']}' is not one of {', '.join(FREQUENCIES)}")
    if fields.get("time") is not None and not _TIME.match(str(fields["time"])):
        raise invalid("time", f"'{fields['time']}' is not a time HH:MM (24 h)")
    try:
        ZoneInfo(str(fields.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("timezone", f"'{fields.get('timezone')}' is not an IANA timezone (such as Europe/Berlin)") from None
    if fields.get("cron"):
        cron = str(fields["cron"]).strip()
        if len(cron.split()) != 5:
            raise invalid("cron", f"'{cron}' is not a cron expression of five fields (minute hour day month weekday)")
        try:
            CronSim(cron, datetime.now(timezone.utc))
        except (CronSimError, ValueError) as exc:
            raise invalid("cron", f"'{cron}' is not a valid cron expression ({exc})") from None


def next_fire(fields: dict[str, Any], after: datetime | None = None) -> datetime | None:
    tz = ZoneInfo(str(fields.get("timezone") or "UTC"))
    try:
        return next(CronSim(cron_of(fields), (after or datetime.now(timezone.utc)).astimezone(tz))).astimezone(timezone.utc)
    except (CronSimError, ValueError, StopIteration):
        return None


FIELDS = ("frequency", "time", "timezone", "day_of_week", "day_of_month", "cron")


class Schedules(AdoptsTaggedRuns):
    TAG_PREFIX = "schedule"  # schedule:<id> on the deployment and its runs

    def __init__(self, settings: Settings, svc: JobService, catalog: Catalog, jobs: ScrapeJobs) -> None:
        self.settings = settings
        self.svc = svc
        self.catalog = catalog
        self.jobs = jobs
        self.db_url = settings.database_location
        self._adopted: dict[str, None] = {}  # flow run ids adopted (or not ours): no Prefect read for their events
        self._run_locks: dict[str, asyncio.Lock] = {}
        self._flow_id: UUID | None = None
        self._due: dict[tuple[str, str, str, str | None], datetime | None] = {}  # next firing of each enabled schedule

    @property
    def client(self) -> Any:
        return self.svc.client

    # ------------------------------------------------------------------ rows
    def row(self, project_id: str, principal: Principal) -> ScrapeSchedule:
        self.catalog.project(project_id, principal)
        with session(self.db_url) as db:
            row = db.exec(select(ScrapeSchedule).where(ScrapeSchedule.project_id == project_id)).first()
        if row is None or not sees(principal, row.owner):
            raise not_found("Schedule for project", project_id)
        return row

    def _by_project(self, project_id: str) -> ScrapeSchedule | None:
        with session(self.db_url) as db:
            return db.exec(select(ScrapeSchedule).where(ScrapeSchedule.project_id == project_id)).first()

    def _by_id(self, schedule_id: str) -> ScrapeSchedule | None:
        with session(self.db_url) as db:
            return db.get(ScrapeSchedule, schedule_id)

    def _save(self, row: ScrapeSchedule) -> None:
        with session(self.db_url) as db:
            if db.get(ScrapeSchedule, row.id) is None:
                return
            db.merge(row)
            db.commit()

    def list_rows(self, principal: Principal, page: int, per_page: int) -> tuple[list[ScrapeSchedule], int]:
        with session(self.db_url) as db:
            q = select(ScrapeSchedule)
            c = select(func.count()).select_from(ScrapeSchedule)
            if not principal.is_admin:
                q, c = q.where(ScrapeSchedule.owner == principal.name), c.where(ScrapeSchedule.owner == principal.name)
            total = db.exec(c).one()
            rows = db.exec(q.order_by(ScrapeSchedule.created_at.desc(), ScrapeSchedule.id).offset((page - 1) * per_page).limit(per_page)).all()  # type: ignore[union-attr]
        return list(rows), int(total)

    @staticmethod
    def fields(row: ScrapeSchedule) -> dict[str, Any]:
        return {k: getattr(row, k) for k in FIELDS}

    def render(self, row: ScrapeSchedule) -> dict[str, Any]:
        history = loads(row.history, [])
        open_ids = [h["job_id"] for h in history if h.get("status") in ("pending", "running")]
        if open_ids:  # statuses the jobs' table knows better by now
            with session(self.db_url) as db:
                now = dict(db.exec(select(ScrapeJob.id, ScrapeJob.status).where(ScrapeJob.id.in_(open_ids))).all())  # type: ignore[attr-defined]
            for h in history:
                if h["job_id"] in now:
                    h["status"] = now[h["job_id"]]
        last_status = history[-1]["status"] if history else row.last_status
        fields = self.fields(row)
        return {
            "id": row.id, "project_id": row.project_id, **fields, "timezone": row.timezone or "UTC",
            "enabled": row.enabled, "next_run": iso(next_fire(fields)) if row.enabled else None,
            "last_run": iso(row.last_run), "last_status": last_status,
            "run_history": list(reversed(history)),
            "deployment": f"scrape/{row.id}", "deployment_id": row.deployment_id,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        }

    # ------------------------------------------------------------------ the Prefect side
    def _tags(self, row: ScrapeSchedule) -> list[str]:
        return [SCHEDULE_TAG, f"owner:{row.owner}", "dialect:scrape", "type:scrape", f"project:{row.project_id}",
                "source:scheduled", f"schedule:{row.id}"]

    def _spec(self, row: ScrapeSchedule, project: ScrapeProject) -> dict[str, Any]:
        config = self.catalog.project_config(project)
        targets = self.catalog.targets_of(row.project_id)
        spec = self.jobs.spec_for(row.project_id, config, targets, None, loads(row.url_allow, []), owner=row.owner)
        spec["schedule_id"] = row.id
        return spec

    def _cron(self, row: ScrapeSchedule) -> CronSchedule:
        return CronSchedule(cron=cron_of(self.fields(row)), timezone=row.timezone or "UTC")

    async def _flow(self) -> UUID:
        if self._flow_id is None:
            self._flow_id = await self.client.create_flow_from_name("scrape")
        return self._flow_id

    async def _create_deployment(self, row: ScrapeSchedule, project: ScrapeProject) -> UUID:
        from prefect.utilities.callables import parameter_schema

        from sojourn.deployments.bootstrap import FLOWS
        from sojourn.flows.scrape import scrape as scrape_flow

        spec = await asyncio.to_thread(self._spec, row, project)
        return await self.client.create_deployment(  # type: ignore[no-any-return]
            flow_id=await self._flow(), name=row.id, work_pool_name=self.settings.work_pool, work_queue_name="normal",
            entrypoint=FLOWS["scrape"], parameters={"spec": spec}, tags=self._tags(row),
            parameter_openapi_schema=parameter_schema(scrape_flow).model_dump_for_openapi(), enforce_parameter_schema=False,
            schedules=[DeploymentScheduleCreate(schedule=self._cron(row), active=True)], paused=not row.enabled,
            description=f"Scrape-jobs schedule {row.id} of project {row.project_id} ({project.name}): its active targets, "
                        f"on `{cron_of(self.fields(row))}` ({row.timezone or 'UTC'}).",
        )

    async def _update_deployment(self, row: ScrapeSchedule, *, schedule: bool = False, parameters: bool = False,
                                 paused: bool = False) -> None:
        """Prefect replaces the runs it scheduled ahead with ones of the new values (an update deletes them)."""
        if not row.deployment_id:
            return
        update = DeploymentUpdate()
        if parameters:
            project = await asyncio.to_thread(self._project, row.project_id)
            if project is None:
                return
            update.parameters = {"spec": await asyncio.to_thread(self._spec, row, project)}
        if schedule:
            update.schedules = [DeploymentScheduleUpdate(schedule=self._cron(row), active=True)]
        if paused:
            update.paused = not row.enabled
        try:
            await self.client.update_deployment(UUID(row.deployment_id), update)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                raise ObjectNotFound(http_exc=exc) from exc
            raise
        if paused and not row.enabled:
            await self._drop_runs_ahead([row.deployment_id])

    async def _drop_runs_ahead(self, deployment_ids: list[str]) -> None:
        """A paused schedule keeps no run waiting. Prefect deletes the runs its scheduler made ahead when the deployment
        is paused, but a scheduler round that read the schedule just before inserts its runs just after (seen in CI
        on a loaded machine): those are deleted here, when pausing and by the sweep."""
        for i in range(0, len(deployment_ids), 100):  # one read for all of them (the sweep passes every paused one)
            flt = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[UUID(d) for d in deployment_ids[i:i + 100]]),
                                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
            for run in await self.client.read_flow_runs(flow_run_filter=flt, limit=200):
                if job_id_from_tags(run.tags) is None:
                    try:
                        await self.client.delete_flow_run(run.id)
                    except ObjectNotFound:
                        pass

    def _project(self, project_id: str) -> ScrapeProject | None:
        with session(self.db_url) as db:
            return db.get(ScrapeProject, project_id)

    def _unavailable(self, exc: Exception) -> ServiceError:
        log.warning("scrape schedules: Prefect refused or did not answer: %r", exc)
        return ServiceError(503, "SERVICE_UNAVAILABLE", "The schedule could not be saved in Prefect just now; try again.",
                            headers={"Retry-After": "2"})

    # ------------------------------------------------------------------ change
    async def create(self, principal: Principal, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
        project = await asyncio.to_thread(self.catalog.project, project_id, principal)
        fields = {k: body.get(k) for k in FIELDS}
        fields["timezone"] = fields.get("timezone") or "UTC"
        validate(fields)
        if await asyncio.to_thread(self._by_project, project_id) is not None:
            raise _exists(project_id)
        row = ScrapeSchedule(id=new_id("sch"), project_id=project_id, owner=project.owner, enabled=body.get("enabled", True) is not False,
                             url_allow=json.dumps(list(principal.url_allow)), **fields)
        try:
            row.deployment_id = str(await self._create_deployment(row, project))
        except Exception as exc:
            raise self._unavailable(exc) from None

        def insert() -> None:
            with session(self.db_url) as db:
                db.add(row)
                db.commit()

        try:
            await asyncio.to_thread(insert)
        except IntegrityError:
            await self._delete_deployment(row)
            raise _exists(project_id) from None
        return await asyncio.to_thread(self.render, row)

    async def update(self, principal: Principal, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        row = await asyncio.to_thread(self.row, project_id, principal)
        fields = self.fields(row)
        if changes.get("cron"):
            fields.update(frequency=None, time=None, day_of_week=None, day_of_month=None)
        if changes.get("frequency"):
            fields["cron"] = None
        fields.update({k: v for k, v in changes.items() if k in FIELDS})
        fields["timezone"] = fields.get("timezone") or "UTC"
        validate(fields)
        for k, v in fields.items():
            setattr(row, k, v)
        if changes.get("enabled") is not None:
            row.enabled = bool(changes["enabled"])
        row.updated_at = utcnow()
        try:
            await self._update_deployment(row, schedule=True, parameters=True, paused=True)
        except ObjectNotFound:  # deleted in the Prefect UI: make it again
            project = await asyncio.to_thread(self.catalog.project, project_id, principal)
            row.deployment_id = str(await self._create_deployment(row, project))
        except Exception as exc:
            raise self._unavailable(exc) from None
        await asyncio.to_thread(self._save, row)
        return await asyncio.to_thread(self.render, row)

    async def toggle(self, principal: Principal, project_id: str) -> dict[str, Any]:
        row = await asyncio.to_thread(self.row, project_id, principal)
        row.enabled = not row.enabled
        row.updated_at = utcnow()
        try:
            if row.deployment_id:
                if row.enabled:
                    await self.client.resume_deployment(UUID(row.deployment_id))
                else:
                    await self.client.pause_deployment(UUID(row.deployment_id))
        except Exception as exc:
            raise self._unavailable(exc) from None
        await asyncio.to_thread(self._save, row)
        return await asyncio.to_thread(self.render, row)

    async def delete(self, principal: Principal, project_id: str) -> None:
        row = await asyncio.to_thread(self.row, project_id, principal)
        await self._delete_deployment(row)

        def remove() -> None:
            with session(self.db_url) as db:
                found = db.get(ScrapeSchedule, row.id)
                if found is not None:
                    db.delete(found)
                    db.commit()

        await asyncio.to_thread(remove)

    async def _delete_deployment(self, row: ScrapeSchedule) -> None:
        """Prefect deletes the runs it had scheduled with it; runs already adopted stay jobs."""
        if not row.deployment_id:
            return
        try:
            await self.client.delete_deployment(UUID(row.deployment_id))
        except ObjectNotFound:
            pass
        except Exception as exc:
            raise self._unavailable(exc) from None

    async def project_deleted(self, project_id: str) -> None:
        """The project goes: its schedule's deployment too (the row goes with the project's rows)."""
        row = await asyncio.to_thread(self._by_project, project_id)
        if row is not None:
            await self._delete_deployment(row)

    async def refresh(self, project_id: str) -> None:
        """The project's targets or config changed: the schedule's runs get the new snapshot."""
        row = await asyncio.to_thread(self._by_project, project_id)
        if row is None:
            return
        try:
            await self._update_deployment(row, parameters=True)
        except Exception as exc:  # the change itself is saved; runs made before adoption are brought up to date then
            log.warning("scrape schedules: could not update the parameters of %s: %r", row.id, exc)

    # ------------------------------------------------------------------ runs
    async def run_now(self, principal: Principal, project_id: str) -> dict[str, Any]:
        """A run of the schedule's deployment now (a scheduled job): the same checks as creating a job."""
        row = await asyncio.to_thread(self.row, project_id, principal)
        project = await asyncio.to_thread(self.catalog.project, project_id, principal)
        from sojourn.services.scrape.conventions import bad_request

        async with self.jobs.project_lock(project_id):
            spec = await asyncio.to_thread(self._spec, row, project)
            if not spec["targets"]:
                raise bad_request("NO_TARGETS", "Project has no targets", project_id=project_id)
            job_id = new_id("job")
            if not await self.jobs.claim(project_id, job_id):
                raise bad_request("JOB_RUNNING", f"Another job is already running in project '{project_id}'", project_id=project_id)
            try:
                limit = self.jobs.daily_limit(self.catalog.project_config(project))
                if await asyncio.to_thread(self.jobs.created_today, project_id) >= limit:
                    raise bad_request("RATE_LIMITED", f"Daily job limit exceeded ({limit} jobs per day for this project)", limit=limit)
                if not row.deployment_id:
                    raise not_found("Schedule for project", project_id)
                try:
                    run = await self.client.create_flow_run_from_deployment(UUID(row.deployment_id), parameters={"spec": spec},
                                                                           tags=self._tags(row))
                except ObjectNotFound:
                    raise not_found("Schedule for project", project_id) from None
                except Exception as exc:
                    raise self._unavailable(exc) from None
                job, view = await self._adopt(run, row, project, checked=True, job_id=job_id)
            except BaseException:
                await self.jobs.release(project_id, job_id)
                raise
        assert job is not None
        return await self.jobs.render(job, view) if view is not None else await self.jobs.current(job)

    async def consider(self, flow_run_id: str) -> None:
        """A flow-run event of a schedule deployment's run: adopt it if it is due (else the sweep will, later)."""
        if flow_run_id in self._adopted:
            return
        try:
            run = await self.client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return
        await self.maybe_adopt(run)

    async def maybe_adopt(self, run: FlowRun) -> ScrapeJob | None:
        sch_id = schedule_of(run)
        if sch_id is None or "dialect:scrape" not in (run.tags or []):
            self._remember(str(run.id))
            return None
        if not_due_yet(run):
            return None  # not due yet
        row = await asyncio.to_thread(self._by_id, sch_id)
        project = await asyncio.to_thread(self._project, row.project_id) if row is not None else None
        if row is None or project is None:
            self._remember(str(run.id))  # its schedule (or project) was deleted
            return None
        async with self.jobs.project_lock(row.project_id):
            job, _ = await self._adopt(run, row, project, checked=False)
        return job

    def _remember(self, run_id: str) -> None:
        self._adopted[run_id] = None
        while len(self._adopted) > 20_000:
            self._adopted.pop(next(iter(self._adopted)))

    async def _adopt(self, run: FlowRun, row: ScrapeSchedule, project: ScrapeProject, *, checked: bool,
                     job_id: str | None = None) -> tuple[ScrapeJob | None, Any]:
        """Under the project's lock: the run as a ledger job and a scheduled scrape job (once: idempotent on the run).
        ``checked``: the caller claimed the project for it, as ``job_id``; otherwise a run that has not started yet
        claims it here, and is skipped if another job of the project is open."""
        run_id = str(run.id)
        existing = await asyncio.to_thread(self.jobs.by_sojourn_id, run_id)
        if existing is not None:
            self._remember(run_id)
            try:
                return existing, await self.svc.get(run_id, _SWEEPER, with_progress=False)
            except ServiceError:  # its ledger row expired meanwhile
                return existing, None
        skip = None
        waiting = run.state_type in (StateType.SCHEDULED, StateType.PENDING)
        job_id = job_id or derived_id("job", run_id)  # two processes adopting this run at once claim it alike
        if not checked and waiting:
            config = self.catalog.project_config(project)
            if not await self.jobs.claim(row.project_id, job_id):
                skip = "another job of the project was still pending or running"
            elif await asyncio.to_thread(self.jobs.created_today, row.project_id) >= self.jobs.daily_limit(config):
                skip = "the project's daily job limit was reached"
                await self.jobs.release(row.project_id, job_id)
        spec = (run.parameters or {}).get("spec") or {}
        if waiting and run.state_type == StateType.SCHEDULED and not checked:
            # The snapshot it was made with may predate a change Prefect had no time to apply: the targets as they are now.
            fresh = await asyncio.to_thread(self._spec, row, project)
            if fresh != spec:
                spec = fresh
                try:
                    await self.client.update_flow_run(run.id, parameters={"spec": spec})
                    run.parameters = {"spec": spec}
                except Exception as exc:
                    log.warning("scrape schedules: could not refresh the parameters of run %s: %r", run_id, exc)
        labels = {"type": "scrape", "project": row.project_id, "source": "scheduled", "schedule": row.id}
        view, _created = await self.svc.adopt(run, row.owner, dialect="scrape", kind="scrape", labels=labels,
                                              external_id=job_id, group_id=row.project_id)
        ledger_row = await self.svc.ledger.get(run_id)
        if ledger_row is not None:  # it is a Sojourn job now: the tags every job's run carries (queues, lists, the UI)
            try:
                await self.client.update_flow_run(run.id, tags=sorted(set(run.tags or []) - {SCHEDULE_TAG} | set(tags_of(ledger_row))))
            except Exception as exc:
                log.warning("scrape schedules: could not tag run %s: %r", run_id, exc)
        cap = spec.get("max_results_per_target") or self.catalog.project_config(project)["max_results_per_target"]
        job = ScrapeJob(
            id=view.external_id or new_id("job"), job_id=run_id, project_id=row.project_id, owner=row.owner, source="scheduled",
            schedule_id=row.id, config=json.dumps({"max_results_per_target": int(cap), "targets": [t.get("id") for t in spec.get("targets") or []]}),
        )
        await asyncio.to_thread(self.jobs.save, job, new=True)
        when = aware(run.expected_start_time) or utcnow()
        await asyncio.to_thread(self._note_run, row.id, job.id, when, "skipped" if skip else "pending")
        self._remember(run_id)
        if skip and waiting:
            try:
                await self.client.set_flow_run_state(run.id, Cancelled(message=f"Skipped: {skip}."), force=True)
            except Exception as exc:
                log.warning("scrape schedules: could not skip run %s: %r", run_id, exc)
        if view.final:
            await self.jobs.finish(job, view)
        return job, view

    def _note_run(self, schedule_id: str, job_id: str, when: datetime, status: str) -> None:
        with session(self.db_url) as db:
            sch = db.get(ScrapeSchedule, schedule_id)
            if sch is None:
                return
            history = loads(sch.history, [])
            if any(h.get("job_id") == job_id for h in history):
                return
            history.append({"job_id": job_id, "scheduled_at": iso(when), "status": status})
            sch.history = json.dumps(history[-50:])
            if sch.last_run is None or aware(sch.last_run) <= when:  # type: ignore[operator]
                sch.last_run, sch.last_status = when, status
            db.add(sch)
            db.commit()

    # ------------------------------------------------------------------ firing (the ``scrape-schedule-firing`` service)
    async def tick(self) -> int:
        """Every firing of every enabled schedule gets its run when it comes due, made here if Prefect's scheduler
        has not made it (its service runs once a minute, and cannot insert runs at all with SQLAlchemy 2.1)."""
        def enabled() -> list[ScrapeSchedule]:
            with session(self.db_url) as db:
                return list(db.exec(select(ScrapeSchedule).where(ScrapeSchedule.enabled == True)).all())  # noqa: E712

        now = utcnow()
        fired = 0
        rows = await asyncio.to_thread(enabled)
        live = set()
        for row in rows:
            fields = self.fields(row)
            key = (row.id, cron_of(fields), row.timezone or "UTC", row.deployment_id)
            live.add(key)
            due = self._due.get(key)
            if due is None:  # first seen (made, changed, or this process started): from when it last changed, a minute back at most
                since = max(aware(row.updated_at) or now, now - timedelta(seconds=60))  # type: ignore[type-var]
                due = self._due[key] = next_fire(fields, after=since - timedelta(microseconds=1))
            if due is None or due > now:
                continue
            self._due[key] = next_fire(fields, after=due)
            try:
                if await self.fire(row, due) is not None:
                    fired += 1
            except Exception as exc:
                log.warning("scrape schedules: could not fire %s at %s: %r", row.id, due, exc)
        for key in [k for k in self._due if k not in live]:
            self._due.pop(key, None)
        return fired

    async def fire(self, row: ScrapeSchedule, due: datetime) -> ScrapeJob | None:
        """The run of this firing, made by Prefect (one run, whoever asks: :mod:`sojourn.services.deployment_firings`)."""
        if not row.deployment_id:
            return None
        project = await asyncio.to_thread(self._project, row.project_id)
        if project is None:
            return None
        run = await run_of_firing(self.client, row.deployment_id, due)
        if run is None:
            return None
        async with self.jobs.project_lock(row.project_id):
            job, _ = await self._adopt(run, row, project, checked=False)
        return job

    # ------------------------------------------------------------------ background (``scrape-schedule-events``, ``scrape-schedule-sweep``)
    async def sweep_once(self) -> int:
        """Runs of schedule deployments that came due (in the last two days) and are not jobs yet: adopt them."""
        def deployments() -> list[str]:
            with session(self.db_url) as db:
                return [d for d in db.exec(select(ScrapeSchedule.deployment_id)).all() if d]

        def paused() -> list[str]:
            with session(self.db_url) as db:
                return [d for d in db.exec(select(ScrapeSchedule.deployment_id).where(ScrapeSchedule.enabled == False)).all() if d]  # noqa: E712

        await self._drop_runs_ahead(await asyncio.to_thread(paused))
        n = 0
        async for runs in due_runs(self.client, await asyncio.to_thread(deployments)):
            known = await self.svc.ledger.get_many(str(r.id) for r in runs)
            for run in runs:
                if str(run.id) in known and await asyncio.to_thread(self.jobs.by_sojourn_id, str(run.id)) is not None:
                    self._remember(str(run.id))
                    continue
                if await self.maybe_adopt(run) is not None:
                    n += 1
        return n


_SWEEPER = Principal("scrape-schedules", frozenset({"admin"}))


def _exists(project_id: str) -> ServiceError:
    return ServiceError(409, "SCHEDULE_EXISTS", f"Project '{project_id}' already has a schedule", {"project_id": project_id})
