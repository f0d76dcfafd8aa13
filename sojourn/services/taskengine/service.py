"""The Task Engine over JobService: integer jobs with priorities, run_at, semaphores, pause/broken, reruns.

A Task Engine job is a ledger job (dialect ``taskengine``; the ledger's ``seq`` is
its id) plus a ``taskengine_jobs`` row with the Task Engine's own facts. Where
a job waits:

* ``scheduled``: ``run_at`` ahead or a ``semaphore_url`` not open yet. The job is
  *held* in the ledger; the ``queue_scheduled_jobs`` schedule (every
  ``schedule_interval`` seconds, or at once when a PUT makes it due) releases it.
* ``queued``: its flow run waits in work queue ``te-<priority>``; Prefect serves
  the queues in priority order, FIFO within one (:mod:`.queues`).
* ``paused``: held, or its run set to Prefect's Paused state, until set back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable
from uuid import UUID

import httpx
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import State, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort
from prefect.states import Scheduled
from sqlalchemy import func, or_
from sqlmodel import col, select
from urllib.parse import urlsplit

from sojourn.browser.url_policy import check_host
from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService, NewJob
from sojourn.services.principals import Principal
from sojourn.services.taskengine.config import ConfigStore, TaskEngineConfig
from sojourn.services.taskengine.queues import DIALECT_TAG, SlotController, priority_of_queue, queue_name
from sojourn.services.job_view import FINAL_EVENTS, HELD, JobView
from sojourn.settings import Settings
from sojourn.spec import JobSpec
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.taskengine import TaskEngineJob
from sojourn.tags import owner_tag

log = logging.getLogger(__name__)

STATES = ["queued", "started", "completed", "pending", "broken", "scheduled", "paused"]  # index = the `state` filter id
ACTIVE_TYPES = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED]
SCAN_LIMIT = 5000  # rows a filtered list looks through at most
ORDERS = ("id", "created_at", "updated_at", "run_at", "priority", "position")


def not_found(seq: Any) -> ServiceError:
    return ServiceError(404, "JOB_NOT_FOUND", f"job {seq} not found")


def bad(message: str) -> ServiceError:
    return ServiceError(400, "INVALID_INPUT", message)


@dataclass
class TEJob:
    """A Task Engine job as its API shows it."""

    row: TaskEngineJob
    view: JobView
    state: str
    failed: bool
    position: int
    updated_at: datetime

    @property
    def id(self) -> int:
        return self.row.seq

    @property
    def parameters(self) -> dict[str, Any]:
        return json.loads(self.row.parameters or "{}")  # type: ignore[no-any-return]

    @property
    def run_at(self) -> datetime:
        return aware(self.row.run_at) or aware(self.row.created_at)  # type: ignore[return-value]


def te_state(row: TaskEngineJob, view: JobView, now: datetime) -> tuple[str, bool]:
    if row.queue_state == "broken" or view.status == "cancelled":
        return "broken", False
    if view.final:
        return "completed", view.status != "completed"
    if row.queue_state == "paused" or view.state_type == StateType.PAUSED:
        return "paused", False
    if view.state_type in (StateType.RUNNING, StateType.CANCELLING):
        return "started", False
    if view.state_type == StateType.PENDING:
        return "pending", False
    if view.state == HELD or (row.run_at is not None and aware(row.run_at) > now):  # type: ignore[operator]
        return "scheduled", False
    return "queued", False


class TaskEngine:
    def __init__(self, settings: Settings, jobs: JobService) -> None:
        self.settings = settings
        self.jobs = jobs
        self.url = settings.database_location
        secret = settings.taskengine_callback_secret.get_secret_value() if settings.taskengine_callback_secret else None
        self.config = ConfigStore(self.url, secret)
        self.controller = SlotController(jobs.client, settings.work_pool, settings.taskengine_queue_priority_base, self.config.read,
                                         every=settings.taskengine_controller_seconds)
        self.scheduler_woken = asyncio.Event()
        self.scheduler_runs = 0
        self.schedule_interval = TaskEngineConfig().schedule_interval
        self._http: httpx.AsyncClient | None = None
        from sojourn.services.taskengine.callbacks import Callbacks

        self.callbacks = Callbacks(settings, self, self.files)
        self._pending: set[asyncio.Future[None]] = set()
        # The scrape dialect's jobs service (ScrapeJobs), for the ``scrape`` workflow: set by the API once it exists.
        self.scrape_jobs: Callable[[], Any] = lambda: None

    def files(self, job: "TEJob") -> list[str]:
        """The job's captures, as native API URLs (readable with the client's key); a scrape job's: the exports
        of its results through the scrape API (JSON, then CSV)."""
        base = self.settings.public_base
        if job.row.workflow == "scrape":
            sid = job.view.external_id
            return [f"{base}/scrape/api/v1/jobs/{sid}/results?format={fmt}" for fmt in ("json", "csv")] if sid else []
        m = job.view.manifest
        return [f"{base}/api/v1/jobs/{job.view.id}/artifacts/{a.name}" for a in (m.artifacts if m else [])]

    # ------------------------------------------------------------------ rows
    def _rows_sync(self, q: Any) -> list[TaskEngineJob]:
        with session(self.url) as db:
            return list(db.exec(q))

    async def rows(self, q: Any) -> list[TaskEngineJob]:
        return await asyncio.to_thread(self._rows_sync, q)

    async def row(self, seq: int) -> TaskEngineJob | None:
        def get() -> TaskEngineJob | None:
            with session(self.url) as db:
                return db.get(TaskEngineJob, seq)

        return await asyncio.to_thread(get)

    async def save(self, row: TaskEngineJob) -> None:
        def write() -> None:
            row.updated_at = utcnow()
            with session(self.url) as db:
                db.add(row)
                db.commit()

        await asyncio.to_thread(write)

    # ------------------------------------------------------------------ accept
    async def submit(self, principal: Principal, *, workflow: str, spec: JobSpec, parameters: dict[str, Any], priority: int,
                     run_at: datetime | None, semaphore_url: str | None, rerun_of: int | None = None) -> int:
        config = await self.config.read()
        if "retries" not in parameters and "retry_delay" not in parameters and "retryDelay" not in parameters:
            spec = spec.model_copy(update={"retries": config.retry_limit, "retry_delay": config.retry_delay})
        held = bool(semaphore_url) or (run_at is not None and run_at > utcnow())
        (view,) = await self.jobs.accept(
            [NewJob(spec, labels={"workflow": workflow}, held=held, priority=queue_name(priority))], principal, dialect="taskengine")
        return await self._keep(view, principal, workflow=workflow, parameters=parameters, priority=priority, run_at=run_at,
                                semaphore_url=semaphore_url, held=held, rerun_of=rerun_of)

    async def submit_scrape(self, principal: Principal, *, parameters: dict[str, Any], project_id: str, target_ids: list[str] | None,
                            priority: int, run_at: datetime | None, semaphore_url: str | None, rerun_of: int | None = None) -> int:
        """The ``scrape`` workflow: a scrape job of the client's project (``source: "taskengine"`` in the scrape API),
        accepted as a Task Engine job (its queue, its hold for run_at / semaphore, its slots)."""
        scrape = self.scrape_jobs()
        if scrape is None:
            raise ServiceError(503, "SERVICE_UNAVAILABLE", "the scrape service is not running")
        held = bool(semaphore_url) or (run_at is not None and run_at > utcnow())
        accepted: list[JobView] = []
        try:
            await scrape.create(project_id, principal, target_ids=target_ids, max_results=None, source="taskengine",
                                priority=queue_name(priority), held=held, dialect="taskengine", labels={"workflow": "scrape"},
                                accepted=accepted)
        except ServiceError as exc:
            if exc.status >= 500:
                raise
            field = (exc.details or {}).get("field")
            if field:
                message = exc.message.split(": ", 1)[-1] if exc.message.startswith("Invalid field") else exc.message
                raise bad(f"parameters.{field}: {message}") from None
            if exc.status == 404:
                raise bad(f"parameters.project_id: no scrape project {project_id!r} of yours (see GET /scrape/api/v1/projects)") from None
            raise bad(f"parameters.project_id: {exc.message}") from None
        return await self._keep(accepted[0], principal, workflow="scrape", parameters=parameters, priority=priority, run_at=run_at,
                                semaphore_url=semaphore_url, held=held, rerun_of=rerun_of)

    async def _keep(self, view: JobView, principal: Principal, *, workflow: str, parameters: dict[str, Any], priority: int,
                    run_at: datetime | None, semaphore_url: str | None, held: bool, rerun_of: int | None) -> int:
        assert view.seq is not None
        content_id = parameters.get("content_id")
        row = TaskEngineJob(
            seq=view.seq, job_id=view.id, client=principal.name, workflow=workflow, priority=priority,
            parameters=json.dumps(parameters), content_id=str(content_id) if content_id is not None else None,
            run_at=run_at, semaphore_url=semaphore_url, released=not held, rerun_of=rerun_of, created_at=view.created_at,
        )
        await self.save(row)
        if held:
            self.scheduler_woken.set()
        self.controller.wake()
        return view.seq

    # ------------------------------------------------------------------ read
    async def assemble(self, rows: list[TaskEngineJob], positions: dict[str, int] | None = None) -> list[TEJob]:
        """The jobs of these rows (rows whose ledger job is gone, past retention, are left out)."""
        if not rows:
            return []
        ledger = await self.jobs.ledger.get_many(r.job_id for r in rows)
        present = [r for r in rows if r.job_id in ledger]
        views = {v.id: v for v in await self.jobs.read_many([ledger[r.job_id] for r in present])}
        if positions is None:
            positions = await self.positions()
        now = utcnow()
        out = []
        for r in present:
            view = views[r.job_id]
            state, failed = te_state(r, view, now)
            stamps = [aware(r.updated_at), view.state_at, view.ended_at, view.started_at]
            updated = max(s for s in stamps if s is not None)
            out.append(TEJob(r, view, state, failed, positions.get(r.job_id, 0) if state == "queued" else 0, updated))
        return out

    async def get(self, seq: int, client: str | None) -> TEJob:
        """The job, if ``client`` may see it (None: the admin, anyone's)."""
        row = await self.row(seq)
        if row is None or (client is not None and row.client != client):
            raise not_found(seq)
        found = await self.assemble([row])
        if not found:
            raise not_found(seq)
        return found[0]

    async def positions(self) -> dict[str, int]:
        """Each queued job's place: by queue priority, then by when its run became due (Prefect's own order)."""
        flt = FlowRunFilter(tags=FlowRunFilterTags(all_=["sojourn", DIALECT_TAG]),
                            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
        runs = await self.read_runs(flt, FlowRunSort.EXPECTED_START_TIME_ASC)
        now = utcnow()
        due = [r for r in runs if r.expected_start_time is None or r.expected_start_time <= now]
        due.sort(key=lambda r: (priority_of_queue(r.work_queue_name) or 11, r.expected_start_time or now))
        out: dict[str, int] = {}
        for run in due:
            job_id = next((t[4:] for t in run.tags if t.startswith("job:")), None)
            if job_id:
                out[job_id] = len(out) + 1
        return out

    async def read_runs(self, flt: FlowRunFilter, sort: FlowRunSort, most: int = 2000) -> list[Any]:
        """Runs matching ``flt``, 200 (Prefect's page) at a time, at most ``most``."""
        out: list[Any] = []
        while len(out) < most:
            page = await self.jobs.client.read_flow_runs(flow_run_filter=flt, sort=sort, limit=200, offset=len(out))
            out += page
            if len(page) < 200:
                break
        return out

    async def active(self, client: str | None) -> list[TEJob]:
        """The jobs not ended: runs waiting or running in Prefect, and jobs the scheduler holds."""
        tags = ["sojourn", DIALECT_TAG] + ([owner_tag(client)] if client else [])
        flt = FlowRunFilter(tags=FlowRunFilterTags(all_=tags), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE_TYPES)))
        # Those accepted a moment ago, whose runs the dispatcher is creating (read first: one dispatched in
        # between is then among Prefect's runs).
        waiting, _ = await self.jobs.ledger.undispatched(owner=client, statuses=["submitted"], priority=None, created_from=None,
                                                         created_to=None, newest_first=True, limit=1000, offset=0)
        runs = await self.read_runs(flt, FlowRunSort.EXPECTED_START_TIME_ASC)
        ids = {t[4:] for r in runs for t in r.tags if t.startswith("job:")} | {r.id for r in waiting if r.dialect == "taskengine"}
        q = select(TaskEngineJob).where(or_(col(TaskEngineJob.job_id).in_(ids or [""]),
                                            (TaskEngineJob.released == False) & or_(col(TaskEngineJob.queue_state).is_(None), TaskEngineJob.queue_state != "broken")))  # noqa: E712
        if client:
            q = q.where(TaskEngineJob.client == client)
        found = await self.assemble(await self.rows(q.order_by(col(TaskEngineJob.seq))))
        return [j for j in found if j.state not in ("completed", "broken")]

    async def list(self, client: str | None, *, limit: int = 10, order_by: str = "id", asc: bool = False, state: int | None = None,
                   created_from: datetime | None = None, created_to: datetime | None = None, failed: bool | None = None,
                   search: str | None = None, job_ids: list[int] | None = None) -> list[TEJob]:
        q = select(TaskEngineJob)
        if client is not None:
            q = q.where(TaskEngineJob.client == client)
        if created_from:
            q = q.where(TaskEngineJob.created_at >= created_from)
        if created_to:
            q = q.where(TaskEngineJob.created_at <= created_to)
        if job_ids is not None:
            q = q.where(col(TaskEngineJob.seq).in_(job_ids or [-1]))
        if search:
            like = f"%{search.lower()}%"
            q = q.where(or_(func.lower(TaskEngineJob.content_id).like(like), func.lower(TaskEngineJob.parameters).like(like),
                            func.lower(TaskEngineJob.workflow).like(like)))
        wanted = STATES[state] if state is not None else None
        if failed is not None and wanted not in (None, "completed"):
            return []

        def keep(job: TEJob) -> bool:
            if wanted is not None and job.state != wanted:
                return False
            if failed is True and not (job.state == "completed" and job.failed):
                return False
            if failed is False and job.failed:
                return False
            return True

        in_memory = order_by in ("updated_at", "position")
        if wanted in ("queued", "started", "pending", "scheduled", "paused") and not in_memory:
            # Jobs not ended are few: take them from Prefect's active runs, not by scanning history.
            jobs = [j for j in await self.active(client) if keep(j) and self._matches(j.row, created_from, created_to, job_ids, search)]
            return sorted(jobs, key=lambda j: self._key(j, order_by), reverse=not asc)[:limit]
        order = {
            "id": [col(TaskEngineJob.seq)],
            "created_at": [col(TaskEngineJob.created_at), col(TaskEngineJob.seq)],
            "run_at": [func.coalesce(TaskEngineJob.run_at, TaskEngineJob.created_at), col(TaskEngineJob.seq)],
            "priority": [col(TaskEngineJob.priority), col(TaskEngineJob.seq)],
        }.get(order_by, [col(TaskEngineJob.seq)])
        q = q.order_by(*[(o if asc else o.desc()) for o in order])
        filtering = wanted is not None or failed is not None
        if not filtering and not in_memory:
            return await self.assemble(await self.rows(q.limit(limit)))
        positions = await self.positions()
        out: list[TEJob] = []
        for offset in range(0, SCAN_LIMIT, 200):
            rows = await self.rows(q.offset(offset).limit(200))
            out += [j for j in await self.assemble(rows, positions) if keep(j)]
            if len(rows) < 200 or (not in_memory and len(out) >= limit):
                break
        if in_memory:
            out.sort(key=lambda j: self._key(j, order_by), reverse=not asc)
        return out[:limit]

    @staticmethod
    def _matches(row: TaskEngineJob, start: datetime | None, end: datetime | None, ids: list[int] | None, search: str | None) -> bool:
        created = aware(row.created_at)
        if (start and created < start) or (end and created > end) or (ids is not None and row.seq not in ids):  # type: ignore[operator]
            return False
        if search:
            s = search.lower()
            return any(s in (v or "").lower() for v in (row.content_id, row.parameters, row.workflow))
        return True

    @staticmethod
    def _key(job: TEJob, order_by: str) -> Any:
        return {
            "created_at": (job.view.created_at, job.id), "updated_at": (job.updated_at, job.id), "run_at": (job.run_at, job.id),
            "priority": (job.row.priority, job.id), "position": (job.position, job.id),
        }.get(order_by, job.id)

    # ------------------------------------------------------------------ change
    async def update(self, seq: int, principal: Principal, changes: dict[str, Any]) -> list[str]:
        """PUT/PATCH /jobs/<id>: queue_state (paused | broken | queued), run_at, priority, semaphore_url; ``changes``
        holds the fields sent, parsed (the API's ``JobChanges``)."""
        job = await self.get(seq, principal.name if not principal.is_admin else None)
        row = job.row
        done: list[str] = []
        if "priority" in changes:
            priority = changes["priority"]
            if priority != row.priority:
                if job.state not in ("queued", "scheduled", "paused"):
                    raise bad(f"priority: job {seq} is {job.state}; only a job that has not started can change priority")
                moved = await self._requeue(row, priority)
                row.priority = priority
                done.append(f"priority={priority}" + ("" if moved else " (shown; the job keeps its place in the queue it is in)"))
        if "run_at" in changes:
            run_at = changes["run_at"]
            if job.state not in ("queued", "scheduled", "paused"):
                raise bad(f"run_at: job {seq} is {job.state}; only a job that has not started can be rescheduled")
            row.run_at = run_at
            if row.released and job.view.flow_run_id and job.view.state_type in (StateType.SCHEDULED, None):
                # Its run is in the queue already: Prefect starts it at the new time.
                when = run_at if run_at and run_at > utcnow() else utcnow()
                await self.jobs.client.set_flow_run_state(UUID(job.view.flow_run_id), Scheduled(scheduled_time=when), force=True)
                self.jobs.live.drop(row.job_id)
            done.append(f"run_at={run_at.isoformat().replace('+00:00', 'Z') if run_at else None}")
        for key in ("semaphore_url", "sempahore_url"):
            if key in changes:
                url = changes[key]
                if row.released and url and job.state != "scheduled":
                    raise bad(f"{key}: job {seq} is {job.state}; a semaphore applies to a job that is still scheduled")
                row.semaphore_url = url
                done.append(f"semaphore_url={url}")
        if "queue_state" in changes:
            done.append(await self._set_queue_state(job, principal, changes["queue_state"]))
        if not done:
            raise bad("nothing to update: send queue_state, run_at, priority or semaphore_url")
        await self.save(row)
        self.scheduler_woken.set()
        self.controller.wake()
        return done

    async def _requeue(self, row: TaskEngineJob, priority: int) -> bool:
        """A job still held by the scheduler takes its new priority's queue when it is released. (A run already
        in a queue stays there: Prefect cannot move a run between work queues.)"""
        if row.released:
            return False
        return await self.jobs.ledger.set_priority(row.job_id, queue_name(priority))

    async def _set_queue_state(self, job: TEJob, principal: Principal, value: Any) -> str:
        row = job.row
        if value not in ("paused", "broken", "queued", "scheduled"):
            raise bad(f"queue_state: expected paused or broken (or queued to resume a paused job), got {value!r}")
        if value == "broken":
            if not job.view.final:
                try:
                    await self.jobs.cancel(row.job_id, self._as_owner(principal, row), wait=0.5)
                except ServiceError as exc:
                    if exc.status != 409:
                        raise
            row.queue_state = "broken"
            return "queue_state=broken"
        if value == "paused":
            if job.state in ("started", "pending"):
                raise bad(f"queue_state: job {row.seq} is {job.state}; a running job cannot be paused (set it broken to stop it)")
            if job.state in ("completed", "broken"):
                raise bad(f"queue_state: job {row.seq} is {job.state}; only a queued or scheduled job can be paused")
            row.queue_state = "paused"
            await self.save(row)  # before touching the run: the scheduler must not release it meanwhile
            if row.released:
                run_id = job.view.flow_run_id or await self._wait_dispatched(row.job_id)
                if run_id is None:
                    raise ServiceError(503, "SERVICE_UNAVAILABLE", f"queue_state: job {row.seq} has no run yet; try again")
                state = State(type=StateType.PAUSED, name="Paused", message="Paused over the Task Engine API")
                result = await self.jobs.client.set_flow_run_state(UUID(run_id), state, force=False)
                if getattr(result.state, "type", None) != StateType.PAUSED:
                    await self.jobs.client.set_flow_run_state(UUID(run_id), state, force=True)
                self.jobs.live.drop(row.job_id)
                # It may have started between our look and the pause: then it runs on, unpaused.
                again = await self.get(row.seq, None)
                if again.view.state_type in (StateType.RUNNING, StateType.PENDING):
                    row.queue_state = None
                    raise bad(f"queue_state: job {row.seq} started meanwhile; a running job cannot be paused")
            return "queue_state=paused"
        # queued / scheduled: back from paused
        if job.state != "paused":
            raise bad(f"queue_state: job {row.seq} is {job.state}; only a paused job can be set back to {value}")
        row.queue_state = None
        if row.released and job.view.flow_run_id and job.view.state_type == StateType.PAUSED:
            run = await self.jobs.client.read_flow_run(UUID(job.view.flow_run_id))
            when = max(d for d in (run.expected_start_time, aware(row.run_at)) if d is not None) if (run.expected_start_time or row.run_at) else utcnow()
            await self.jobs.client.set_flow_run_state(UUID(job.view.flow_run_id), Scheduled(scheduled_time=when), force=True)
            self.jobs.live.drop(row.job_id)
        return f"queue_state={value}"

    async def _wait_dispatched(self, job_id: str, timeout: float = 15.0) -> str | None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            ledger = await self.jobs.ledger.get(job_id)
            if ledger is not None and ledger.flow_run_id:
                return ledger.flow_run_id
            self.jobs.dispatcher.wake()
            await asyncio.sleep(0.2)
        return None

    @staticmethod
    def _as_owner(principal: Principal, row: TaskEngineJob) -> Principal:
        return principal if principal.name == row.client else Principal(row.client, frozenset({"jobs:read", "jobs:write"}))

    async def rerun(self, seq: int, principal: Principal, spec: JobSpec | None) -> int:
        """The same parameters as a new job; the original becomes broken."""
        job = await self.get(seq, principal.name if not principal.is_admin else None)
        owner = self._as_owner(principal, job.row)
        if job.row.workflow == "scrape":
            params = job.parameters
            new = await self.submit_scrape(owner, parameters=params, project_id=str(params.get("project_id")), target_ids=params.get("target_ids"),
                                           priority=job.row.priority, run_at=None, semaphore_url=None, rerun_of=seq)
        else:
            assert spec is not None
            new = await self.submit(owner, workflow=job.row.workflow, spec=spec, parameters=job.parameters, priority=job.row.priority,
                                    run_at=None, semaphore_url=None, rerun_of=seq)
        await self._set_queue_state(job, owner, "broken")
        await self.save(job.row)
        return new

    # ------------------------------------------------------------------ background (``taskengine-events``)
    @staticmethod
    def concerns(item: dict[str, Any]) -> bool:
        return item["event"].startswith("prefect.flow-run.") and DIALECT_TAG in item.get("tags", ())

    async def on_event(self, item: dict[str, Any]) -> None:
        """A Task Engine run started, ended or arrived: recount the slots; one ended: owe its callbacks."""
        self.controller.wake()
        if item["event"] in FINAL_EVENTS and item.get("job_id"):
            task = asyncio.ensure_future(self._ended(item["job_id"]))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _ended(self, job_id: str) -> None:
        await self._scrape_ended(job_id)
        # Task runs reach Prefect's database through its event pipeline, a moment after the flow run's end.
        for i, settle in enumerate((1.0, 2.0, 4.0, 8.0, 15.0)):
            await asyncio.sleep(settle)
            try:
                if await self.callbacks.job_ended(job_id, patient=i < 4):
                    return
            except Exception as exc:  # the sweep owes them later
                log.warning("taskengine callbacks of %s: %r", job_id, exc)
                return

    async def _scrape_ended(self, job_id: str) -> None:
        """A ``scrape`` job ended: its results are ingested (readable through the scrape API, and the exports its
        job callback names) before that callback is owed. The scrape dialect's sweep is the net for this."""
        scrape = self.scrape_jobs()
        if scrape is None:
            return
        try:
            found = await self.rows(select(TaskEngineJob).where(TaskEngineJob.job_id == job_id, TaskEngineJob.workflow == "scrape"))
            if found:
                row = await asyncio.to_thread(scrape.by_sojourn_id, job_id)
                if row is not None and not row.final:
                    await asyncio.sleep(0.2)  # the status file is written before the run ends; let the view catch up
                    await scrape.finish(row)
        except Exception as exc:
            log.warning("taskengine: scrape results of %s: %r", job_id, exc)

    def push(self) -> None:
        """Let queued jobs take free slots now, and held jobs that are due leave the scheduler."""
        self.controller.wake()
        self.scheduler_woken.set()

    # ------------------------------------------------------------------ the scheduler (queue_scheduled_jobs), the ``taskengine-scheduler`` service
    async def schedule_step(self) -> None:
        config = await self._config_or_default()
        self.schedule_interval = config.schedule_interval  # the runner waits this long (or for a wake) before the next round
        if await self.config.active("queue_scheduled_jobs"):
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=5.0, follow_redirects=False)
            await self.queue_scheduled_jobs(self._http)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _config_or_default(self) -> TaskEngineConfig:
        try:
            return await self.config.read()
        except Exception as exc:
            log.warning("taskengine settings unreadable: %r", exc)
            return TaskEngineConfig()

    async def queue_scheduled_jobs(self, http: httpx.AsyncClient) -> list[int]:
        """Release the held jobs whose run_at has passed and whose semaphore (if any) is open."""
        self.scheduler_runs += 1
        rows = await self.rows(select(TaskEngineJob).where(TaskEngineJob.released == False, col(TaskEngineJob.queue_state).is_(None))  # noqa: E712
                               .order_by(col(TaskEngineJob.seq)).limit(1000))
        now = utcnow()
        released = []
        for row in rows:
            if row.run_at is not None and aware(row.run_at) > now:  # type: ignore[operator]
                continue
            if row.semaphore_url and not await self._semaphore_open(http, row.semaphore_url):
                continue
            row.released = True
            await self.save(row)
            await self.jobs.release([row.job_id])
            released.append(row.seq)
        if released:
            self.controller.wake()
        return released

    @staticmethod
    async def _semaphore_open(http: httpx.AsyncClient, url: str) -> bool:
        decision = await check_host(urlsplit(url).hostname or "")
        if not decision.allowed:  # the URL policy of job browsers and webhooks: no probes into private networks
            log.info("semaphore %s refused by the URL policy: %s", url, decision.reason)
            return False
        try:
            response = await http.get(url)
        except Exception:
            return False
        return 200 <= response.status_code < 400

    # ------------------------------------------------------------------ logs
    async def logs(self, job: TEJob) -> list[dict[str, Any]]:
        """The job's log as the Task Engine shows it: its acceptance (api), its run's flow-level lines
        (controller) and its tasks' lines (worker), oldest first."""
        created = job.view.created_at
        entries: list[dict[str, Any]] = [{
            "severity": 1, "progname": "api", "task_id": 0, "created_at": created,
            "message": json.dumps({"path": "POST /job", "parameters": {"client": job.row.client, "parameters": job.parameters,
                                                                        "job": {"workflow": job.row.workflow, "priority": job.row.priority}},
                                   "payload": "job_created"}),
        }]
        if job.view.flow_run_id:
            run_id = UUID(job.view.flow_run_id)
            tasks, lines = await asyncio.gather(
                self.jobs.client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id])),
                                                sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200),
                self._run_logs(run_id),
            )
            task_ids = {**task_numbers(tasks), **await asyncio.to_thread(self.callbacks.task_numbers, job.id)}
            for line in lines:
                entries.append({
                    "severity": severity(line.level), "progname": "worker" if line.task_run_id else "controller",
                    "task_id": task_ids.get(str(line.task_run_id), 0) if line.task_run_id else 0,
                    "created_at": line.timestamp, "message": line.message,
                })
            if job.view.final:
                entries.append({"severity": 1 if job.view.status == "completed" else 3, "progname": "controller", "task_id": 0,
                                "created_at": job.view.ended_at or job.updated_at,
                                "message": "job has completed successfully" if job.view.status == "completed"
                                else f"job {job.view.status}: {(job.view.error or {}).get('message') or job.view.state_message or ''}".strip()})
        for d in await self.callbacks.deliveries(job.id):
            body = json.loads(d.payload)
            what = f"job callback ({body.get('status')})" if "status" in body else f"task callback ({body.get('event')} of {body.get('task_name')})"
            outcome = {"delivered": "delivered", "failed": f"given up: {d.last_error}", "pending": f"pending{': ' + d.last_error if d.last_error else ''}"}
            entries.append({"severity": 3 if d.status == "failed" else 1, "progname": "callback", "task_id": body.get("task_id", 0),
                            "created_at": aware(d.created_at), "message": f"{what} to {d.url}: {outcome.get(d.status, d.status)}"})
        for i, entry in enumerate(entries):
            entry["id"] = job.id * 100_000 + i + 1
            entry["job_id"] = job.id
            entry["visible"] = True
        return entries

    async def _run_logs(self, run_id: UUID, most: int = 2000) -> list[Any]:
        out: list[Any] = []
        while len(out) < most:
            page = await self.jobs.client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200,
                                                    offset=len(out), sort=LogSort.TIMESTAMP_ASC)
            out += page
            if len(page) < 200:
                break
        return out

    # ------------------------------------------------------------------ health
    async def health(self, client: str | None) -> dict[str, Any]:
        databases: dict[str, str] = {}
        kind = "postgres" if self.url.startswith("postgres") else "sqlite"
        try:
            await asyncio.to_thread(self._rows_sync, select(TaskEngineJob).limit(1))
            databases[kind] = "OK"
        except Exception as exc:
            databases[kind] = f"error: {exc}"[:300]
        try:
            await self.jobs.client.api_healthcheck()
            databases["prefect"] = "OK"
        except Exception as exc:
            databases["prefect"] = f"error: {exc}"[:300]
        if self.settings.redis_url:
            try:
                import redis.asyncio as aioredis

                r = aioredis.from_url(self.settings.redis_url)
                try:
                    await r.ping()
                finally:
                    await r.aclose()
                databases["redis"] = "OK"
            except Exception as exc:
                databases["redis"] = f"error: {exc}"[:300]
        config = await self.config.read()
        queues = await self.queue_stats()
        active = await self.active(client)
        counts = {s: 0 for s in ("completed", "failed", "pending", "broken", "queued", "started", "scheduled", "paused")}
        for j in active:
            counts[j.state] = counts.get(j.state, 0) + 1
        counts["completed"], counts["failed"], counts["broken"], tasks = await self._ended_counts(client)
        return {"version": VERSION, "databases": databases, "queues": queues, "tasks": tasks,
                "jobs": {**counts, "max_jobs": config.max_jobs, "priority_slots": config.priority_slots},
                "slots": {"priority_threshold": config.priority_threshold, "applied": self.controller.last}}

    async def queue_stats(self) -> dict[str, dict[str, int]]:
        client = self.jobs.client
        workers = await client.read_workers_for_work_pool(self.settings.work_pool)
        online = sum(1 for w in workers if str(getattr(w, "status", "")).upper().endswith("ONLINE"))
        running, waiting = await self.controller.counts()
        return {queue_name(level): {"workers": online, "working": running.get(level, 0), "pending": waiting.get(level, 0)} for level in range(1, 11)}

    async def _ended_counts(self, client: str | None) -> tuple[int, int, int, dict[str, int]]:
        tags = ["sojourn", DIALECT_TAG] + ([owner_tag(client)] if client else [])

        async def count(*types: StateType) -> int:
            return await self.jobs.client.count_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(types)))))

        done, failed, cancelled = await asyncio.gather(count(StateType.COMPLETED), count(StateType.FAILED, StateType.CRASHED), count(StateType.CANCELLED))
        q = select(func.count()).select_from(TaskEngineJob).where(TaskEngineJob.queue_state == "broken")
        if client:
            q = q.where(TaskEngineJob.client == client)
        broken_rows = (await self.rows(q))[0]
        tasks = await self._task_counts()
        return done, failed, max(int(broken_rows), cancelled), tasks

    async def _task_counts(self) -> dict[str, int]:
        from prefect.client.schemas.filters import TaskRunFilterState, TaskRunFilterStateType

        async def count(*types: StateType) -> int:
            flt = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=list(types))))
            response = await self.jobs.client.request("POST", "/task_runs/count", json={"task_runs": flt.model_dump(mode="json")})
            return int(response.json())

        failed, pending, processed = await asyncio.gather(count(StateType.FAILED, StateType.CRASHED), count(StateType.PENDING, StateType.SCHEDULED),
                                                          count(StateType.COMPLETED))
        return {"failed": failed, "pending": pending, "processed": processed}

    async def dashboard(self, client: str | None) -> dict[str, Any]:
        config = await self.config.read()
        active = await self.active(client)
        lists: dict[str, list[TEJob]] = {"started": [], "queued": [], "scheduled": []}
        for j in active:
            key = "started" if j.state in ("started", "pending") else j.state
            if key in lists:
                lists[key].append(j)
        lists["queued"].sort(key=lambda j: j.position or 10**9)
        return {"max_jobs": config.max_jobs, "priority_slots": config.priority_slots, **lists, "version": VERSION}


VERSION = "sojourn-taskengine-1"


def severity(level: int) -> int:
    """Python log levels as the Task Engine's (Ruby Logger) severities: DEBUG 0, INFO 1, WARN 2, ERROR 3, FATAL 4."""
    return 0 if level < 20 else 1 if level < 30 else 2 if level < 40 else 3 if level < 50 else 4


SEVERITIES = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def task_numbers(tasks: Iterable[Any]) -> dict[str, int]:
    """Task runs numbered 1, 2, ... in the order they started: the Task Engine's integer task ids within a job."""
    return {str(t.id): i + 1 for i, t in enumerate(tasks)}


def due_soon(row: TaskEngineJob, within: float) -> bool:
    return row.run_at is None or aware(row.run_at) <= utcnow() + timedelta(seconds=within)  # type: ignore[operator]
