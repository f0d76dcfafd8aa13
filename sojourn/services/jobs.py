"""JobService: the one place dialects call to accept, read, list, cancel and wait for jobs.

A job is accepted by writing its row in the job ledger (the facade database)
and nothing else: the answer does not wait for Prefect. The dispatcher
(:mod:`sojourn.services.dispatcher`) creates its flow run moments later. From
then on Prefect owns its execution state and this service reads it back; the
ledger keeps what Prefect has no place for (the job's own id, its owner,
dialect ids, when it was accepted, a cancel that came before its run).
Outputs are in the artifact store under ``jobs/<job id>/``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    FlowRunFilterWorkQueueName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from sojourn.blocks.artifact_store import ArtifactRecord, ArtifactStore
from sojourn.browser.url_policy import host_allowed, url_host
from sojourn.deployments.bootstrap import bootstrap
from sojourn.progress import parse_progress
from sojourn.services.dispatcher import Dispatcher
from sojourn.services.service_error import ServiceError
from sojourn.services.events import EventHub
from sojourn.services.ledger import Ledger
from sojourn.services.job_view_cache import ALL, LiveViews
from sojourn.services.principals import Principal
from sojourn.services.stale_while_revalidate import Refreshed
from sojourn.services.retention_policy import RetentionPolicy
from sojourn.services.job_view import FINAL, FINAL_EVENTS, HELD, PRIORITIES, STATE_TYPES_FOR_STATUS, JobView
from sojourn.settings import Settings
from sojourn.spec import JobSpec, ProfileRef
from sojourn.store import refusals
from sojourn.store.db import session
from sojourn.store.jobs import Job
from sojourn.tags import job_id_from_tags, owner_tag

log = logging.getLogger(__name__)

PAGE = 200  # Prefect serves at most this many runs per read
DESCENDING = {FlowRunSort.EXPECTED_START_TIME_DESC, FlowRunSort.START_TIME_DESC, FlowRunSort.END_TIME_DESC}


async def flow_run_pages(client: PrefectClient, flt: FlowRunFilter, sort: FlowRunSort | None = None) -> AsyncIterator[list[FlowRun]]:
    """Every run matching ``flt``, a page at a time."""
    offset = 0
    while True:
        page = await client.read_flow_runs(flow_run_filter=flt, sort=sort, limit=PAGE, offset=offset)
        yield page
        if len(page) < PAGE:
            return
        offset += PAGE


def queued_filter(before: datetime | None = None, priorities: list[str] | None = None) -> FlowRunFilter:
    """Sojourn runs waiting to start, due no later than ``before``, optionally in some priority queues."""
    flt = FlowRunFilter(
        tags=FlowRunFilterTags(all_=["sojourn"]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])),
        expected_start_time=FlowRunFilterExpectedStartTime(before_=before or datetime.now(timezone.utc) + timedelta(days=3650)),
    )
    if priorities:
        flt.work_queue_name = FlowRunFilterWorkQueueName(any_=priorities)
    return flt


def job_id_of(run: FlowRun) -> str | None:
    """The Sojourn job a flow run belongs to (its ``job:`` tag)."""
    return job_id_from_tags(run.tags)


@dataclass
class NewJob:
    """One job to accept: its spec and what the dialect wants kept with it."""

    spec: JobSpec | dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    held: bool = False
    external_id: str | None = None
    group_id: str | None = None
    # For dialects with flows or queues of their own: ``kind`` names the flow (a key of
    # deployments.bootstrap.FLOWS; then ``spec`` may be that flow's own parameters as a dict),
    # ``priority`` the work queue and ``run_at`` the start time, overriding the spec's.
    kind: str | None = None
    priority: str | None = None
    run_at: datetime | None = None

    def row_fields(self) -> dict[str, Any]:
        spec = self.spec
        if isinstance(spec, dict):
            return {"kind": self.kind or "browse", "spec": json.dumps(spec), "priority": self.priority or "normal", "run_at": self.run_at}
        return {
            "kind": self.kind or ("agent" if spec.kind == "agent" else "browse"),
            "spec": json.dumps(spec.model_dump(mode="json", exclude_defaults=True)),
            "priority": self.priority or spec.priority,
            "run_at": self.run_at or spec.run_at,
        }


ALL_TYPES = "*"


def request_estimate_ms(spec: JobSpec) -> int:
    """A first guess with no history: about a second per page and a second more for captures, five seconds for a
    plain-English job; never past the job's own timeout."""
    guess = 5.0 if spec.kind == "agent" else max(len(spec.steps), 1) + (1.0 if spec.capture.any else 0.0)
    return int(1000 * min(guess, spec.effective_timeout))


class JobService:
    def __init__(self, settings: Settings, client: PrefectClient, hub: EventHub, store: ArtifactStore,
                 dispatch_client: PrefectClient | None = None) -> None:
        self.settings = settings
        self.client = client
        self.hub = hub
        self.store = store
        self.ledger = Ledger(settings.database_location)
        self.deployments: dict[str, UUID] = {}
        self.profiles: Any = None  # the ProfileService, when profiles are served (sojourn.assembly sets it)
        # Flow runs are created with connections of their own: dispatching never queues behind reads.
        self.dispatcher = Dispatcher(self.ledger, dispatch_client or client, lambda: self.deployments, lease=settings.dispatch_lease_seconds)
        # A final job never changes: its view is served from memory after the first read.
        self._final: OrderedDict[str, JobView] = OrderedDict()
        self._final_max = 5000
        # Jobs still moving, and job lists, kept fresh by the event stream.
        self.live = LiveViews(hub)
        self.retention = RetentionPolicy(settings.result_retention_seconds)  # results are deleted after it (services/retention.py)
        self.reads: Counter[str] = Counter()  # job and list reads by where the answer came from
        # Jobs waiting to start, by priority (ledger + Prefect): read at most once a second however many
        # submit, counted up in between. QUEUE_FULL and the queue position come from it.
        self.waiting: Refreshed[dict[str, int]] = Refreshed(self._count_waiting, every=1.0)
        self._accepted_recently: list[tuple[int, str]] = []  # (seq, priority or "held") since the last count
        self._estimates: dict[str, Refreshed[int | None]] = {}
        self._durations: dict[str, deque[float]] = {}

    async def start(self) -> None:
        boot = await bootstrap(self.settings)
        self.deployments = boot.deployments

    # ------------------------------------------------------------------ accept
    async def submit(self, spec: JobSpec, principal: Principal, *, dialect: str, labels: dict[str, str] | None = None,
                     held: bool = False, external_id: str | None = None, group_id: str | None = None) -> JobView:
        """Accept one job; it runs once the dispatcher has created its flow run (moments later)."""
        views = await self.accept([NewJob(spec, labels or {}, held, external_id, group_id)], principal, dialect=dialect)
        return views[0]

    async def submit_once(self, spec: JobSpec, principal: Principal, *, dialect: str, external_id: str, labels: dict[str, str] | None = None) -> JobView:
        """The job already made under ``external_id`` (unique per dialect), else a new one. Two submissions at the same
        instant make one job: the ledger's unique constraint refuses the second, which then answers the first's."""
        made = await self.ledger.by_external_id(dialect, external_id)
        if made is None:
            try:
                return await self.submit(spec, principal, dialect=dialect, labels=labels, external_id=external_id)
            except ServiceError:
                made = await self.ledger.by_external_id(dialect, external_id)
                if made is None:
                    raise
        return await self.get(made.id, principal, with_progress=False)

    async def accept(self, jobs: list[NewJob], principal: Principal, *, dialect: str) -> list[JobView]:
        """Accept jobs, all or none: they are in the ledger when this returns. Held ones wait for :meth:`release`."""
        jobs = [dataclasses.replace(j, spec=self.within_allow_list(j.spec, principal)) if principal.url_allow and isinstance(j.spec, JobSpec) else j
                for j in jobs]
        jobs = [await self._with_profile(j, principal) if isinstance(j.spec, JobSpec) and (j.spec.profile or j.spec.profile_ref) else j for j in jobs]
        await self._check_queue_room(len(jobs))
        rows = [
            Job(
                id=str(uuid.uuid4()), owner=principal.name, dialect=dialect, external_id=j.external_id, group_id=j.group_id,
                labels=json.dumps(j.labels), held=j.held, **j.row_fields(),
            )
            for j in jobs
        ]
        try:
            await self.ledger.accept(rows)
        except Exception as exc:
            log.error("could not write jobs to the ledger: %r", exc)
            raise ServiceError(503, "SERVICE_UNAVAILABLE", "The job could not be recorded (the database is unavailable); it was not accepted. Try again.",
                               headers={"Retry-After": "2"}) from None
        self.dispatcher.wake()
        added = Counter("held" if r.held else r.priority for r in rows)
        self._accepted_recently += [(r.seq or 0, "held" if r.held else r.priority) for r in rows]
        del self._accepted_recently[:-10_000]
        self.waiting.update(lambda counts: {k: counts.get(k, 0) + added.get(k, 0) for k in {*counts, *added}})
        self.live.drop_lists(principal.name)  # the owner's lists now hold more jobs
        token = self.live.token()
        views = [JobView.of(row, None) for row in rows]
        for view in views:
            self.live.put_view(view, token)
        return views

    async def adopt(self, flow_run: FlowRun, owner: str, *, dialect: str, kind: str, labels: dict[str, str] | None = None,
                    external_id: str | None = None, group_id: str | None = None) -> tuple[JobView, bool]:
        """Make a flow run that Prefect created itself (a deployment's schedule) a job of the ledger, so every read
        path works for it: a row already dispatched, whose id is the flow run's id (what the flow's
        :func:`~sojourn.job_identity.current_job_id` falls back to without a ``job:`` tag). Idempotent on that
        id: a run adopted before keeps its row (and ``external_id``); the second value says whether it was new."""
        run_id = str(flow_run.id)
        params = flow_run.parameters or {}
        row = Job(
            id=run_id, owner=owner, dialect=dialect, external_id=external_id, group_id=group_id, kind=kind,
            spec=json.dumps(params.get("spec", params), default=str), priority=flow_run.work_queue_name or "normal",
            run_at=flow_run.expected_start_time, labels=json.dumps(labels or {}), flow_run_id=run_id, dispatched_at=datetime.now(timezone.utc),
        )
        try:
            row, created = await self.ledger.adopt(row)
        except Exception as exc:
            log.error("could not adopt flow run %s into the ledger: %r", run_id, exc)
            raise ServiceError(503, "SERVICE_UNAVAILABLE", "The job could not be recorded (the database is unavailable). Try again.",
                               headers={"Retry-After": "2"}) from None
        if created:
            self.live.drop_lists(row.owner)
        return await self.read(row, flow_run, with_progress=False), created

    @staticmethod
    def within_allow_list(spec: JobSpec, principal: Principal) -> JobSpec:
        """A key with a URL allow-list: its step URLs must match, and the job carries the list to the browser."""
        for i, step in enumerate(spec.steps):
            host = url_host(step.url)
            if not host_allowed(host, principal.url_allow):
                raise ServiceError(
                    403, "URL_NOT_ALLOWED", f"Invalid field `steps.{i}.url`: host '{host}' is not in this API key's URL allow-list",
                    {"field": f"steps.{i}.url", "host": host, "allowed": list(principal.url_allow)},
                )
        return spec.model_copy(update={"url_allow": list(principal.url_allow)})

    async def _count_waiting(self) -> dict[str, int]:
        """Jobs waiting to start: in the ledger (``held``: in batches, waiting for a slot) or queued in Prefect, by priority."""
        async def prefect(priority: str) -> int:
            return await self.client.count_flow_runs(flow_run_filter=queued_filter(priorities=[priority]))

        # Both read while this process's dispatcher moves no job from the ledger to Prefect: read in parallel
        # without it, a job dispatched in between was counted by neither (two submissions got one position).
        # Another process's dispatcher can still move one: across processes the position is an estimate.
        async with self.dispatcher.moving:
            (ledger, seen), *runs = await asyncio.gather(self.ledger.waiting_by_priority(), *(prefect(p) for p in PRIORITIES))
        counts = {**{p: ledger.get(p, 0) + n for p, n in zip(PRIORITIES, runs)}, "held": ledger.get("held", 0)}
        # Jobs this process accepted after the count's snapshot are added again, so the fresh count never
        # forgets one it counted up a moment ago (queue positions of consecutive submissions stay in order).
        self._accepted_recently = [(seq, key) for seq, key in self._accepted_recently if seq > seen]
        for _seq, key in self._accepted_recently:
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def _check_queue_room(self, adding: int) -> None:
        try:
            counts = await asyncio.wait_for(self.waiting.get(), timeout=2.0)  # only the first count is ever waited for
        except Exception as exc:  # nothing known yet and Prefect does not answer: accept, the ledger keeps the job
            log.warning("could not count waiting jobs: %r", exc)
            return
        queued = sum(counts.values())
        if queued + adding > self.settings.max_queued_jobs:
            try:  # counted for every API process to see (/pressure's recentlyRejected)
                await asyncio.to_thread(self._record_refusal, adding)
            except Exception as exc:
                log.warning("could not count a refused submission: %r", exc)
            raise ServiceError(
                503, "QUEUE_FULL",
                f"The job queue is full ({queued} jobs waiting, limit {self.settings.max_queued_jobs}); try again later.",
                {"queued": queued, "limit": self.settings.max_queued_jobs}, headers={"Retry-After": "5"},
            )

    async def _with_profile(self, job: NewJob, principal: Principal) -> NewJob:
        """The job's profile reference, from the principal's own profile of that name (a reference sent is dropped);
        a job that saves to it is tagged, so that its end is handled (``services/profiles.py``)."""
        spec = job.spec
        assert isinstance(spec, JobSpec)
        if not spec.profile:
            return dataclasses.replace(job, spec=spec.model_copy(update={"profile_ref": None}))
        if self.profiles is None:
            raise ServiceError(400, "INVALID_INPUT", "Invalid field `profile`: profiles are not available here", {"field": "profile"})
        try:
            ref = await asyncio.to_thread(self.profiles.reference, principal.name, spec.profile)
        except ServiceError:
            raise ServiceError(400, "INVALID_INPUT", f"Invalid field `profile`: you have no profile named '{spec.profile}'", {"field": "profile"}) from None
        labels = {**job.labels, "saves-profile": ""} if spec.save_profile else job.labels
        return dataclasses.replace(job, spec=spec.model_copy(update={"profile_ref": ProfileRef(**ref)}), labels=labels)

    def _record_refusal(self, jobs: int) -> None:
        with session(self.settings.database_location) as db:
            refusals.record(db, int(time.time()) // 60, jobs)

    def queue_position(self, view: JobView) -> int | None:
        """About how many jobs will start before this one, itself included: those waiting in queues served before
        or with it (counted at most a second ago). None for a job held back or due later."""
        if view.state_type in FINAL or view.state == HELD:
            return None
        if view.spec.get("run_at") or view.spec.get("runAt"):
            return None
        counts = self.waiting.value or {}
        rank = PRIORITIES.index(view.priority) if view.priority in PRIORITIES else 1
        return max(sum(counts.get(p, 0) for p in PRIORITIES[: rank + 1]), 1)

    async def estimated_duration_ms(self, job_type: str, spec: JobSpec | dict[str, Any]) -> int:
        """How long a job like this runs: the mean of the last 20 completed jobs of its type, else of any type
        (seeded from Prefect once, then kept current by :meth:`note_duration`: no Prefect call per submission),
        else a guess from the request itself, so a fresh stack's first job gets a number too."""
        for key in (job_type, ALL_TYPES):
            recent = [t for d in self._durations.values() for t in d][-20:] if key == ALL_TYPES else list(self._durations.get(key, ()))
            if recent:
                return int(1000 * sum(recent) / len(recent))
            if key not in self._estimates:
                self._estimates[key] = Refreshed(lambda key=key: self._mean_duration_ms(key), every=30.0, every_if_none=2.0)
            known = await self._estimates[key].peek()
            if known is not None:
                return known
        return request_estimate_ms(spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec))

    def note_duration(self, job_type: str, seconds: float) -> None:
        """A job of this type completed after running ``seconds``."""
        self._durations.setdefault(job_type, deque(maxlen=20)).append(seconds)

    async def _mean_duration_ms(self, job_type: str) -> int | None:
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=["sojourn"] if job_type == ALL_TYPES else ["sojourn", f"type:{job_type}"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=20,
        )
        times = [(r.end_time - r.start_time).total_seconds() for r in runs if r.start_time and r.end_time]
        return int(1000 * sum(times) / len(times)) if times else None

    async def release(self, job_ids: list[str]) -> None:
        """Held jobs may start now."""
        if await self.ledger.release(job_ids):
            self.dispatcher.wake()
        for job_id in job_ids:
            self.live.drop(job_id)

    # ------------------------------------------------------------------ read
    @staticmethod
    def not_found(job_id: str) -> ServiceError:
        return ServiceError(404, "JOB_NOT_FOUND", f"Job with ID '{job_id}' not found", {"jobId": job_id})

    @staticmethod
    def owns(principal: Principal, owner: str) -> bool:
        return principal.is_admin or owner == principal.name

    async def row(self, job_id: str, principal: Principal | None) -> Job:
        """The job's ledger row, if this principal may see it (else 404: never reveal another tenant's job exists).
        ``None``: no principal, the caller holds a permission for this job (a signed link, :mod:`sojourn.signed_links`)."""
        row = await self.ledger.get(job_id) if len(job_id) <= 64 else None
        if row is None or (principal is not None and not self.owns(principal, row.owner)):
            raise self.not_found(job_id)
        if self.retention.may_have_expired(row.created_at):  # rare: only jobs about to be swept read Prefect here
            view = self._final.get(job_id) or await self.read(row, with_progress=False)
            if self.retention.expired(view):
                self.forget(job_id, row.owner)
                raise self.not_found(job_id)
        return row

    async def get(self, job_id: str, principal: Principal, *, with_progress: bool = True) -> JobView:
        view = await self._get(job_id, principal, with_progress=with_progress)
        if self.retention.expired(view):  # past its time; the sweep deletes it soon, if it has not yet
            self.forget(job_id, view.owner)
            raise self.not_found(job_id)
        return view

    async def _get(self, job_id: str, principal: Principal, *, with_progress: bool) -> JobView:
        cached = self._final.get(job_id)
        if cached is not None and self.owns(principal, cached.owner):
            self._final.move_to_end(job_id)
            self.reads["memory"] += 1
            return cached
        live = self.live.view(job_id)
        if live is not None and self.owns(principal, live.owner):
            self.reads["memory"] += 1
            if live.final:  # it ended (an event said so): read its manifest once, then keep it with the final ones
                await self.complete(live)
                self._remember_final(live)
                self.live.forget(job_id)
            return live
        self.reads["prefect"] += 1
        token = self.live.token()
        view = await self.read(await self.row(job_id, principal), with_progress=with_progress)
        if view.final:
            self._remember_final(view)
        elif with_progress:
            self.live.put_view(view, token)
        return view

    def forget(self, job_id: str, owner: str | None = None) -> None:
        """Hold nothing of this job in memory any more (it was deleted)."""
        self._final.pop(job_id, None)
        self.live.drop(job_id, owner)

    async def read(self, row: Job, run: FlowRun | None = None, *, with_progress: bool = True) -> JobView:
        """The job now: its row joined with its flow run (read unless given), with manifest, error and progress."""
        if run is None and row.flow_run_id and row.cancel_requested_at is None:
            try:
                run = await self.client.read_flow_run(UUID(row.flow_run_id))
            except ObjectNotFound:
                run = None  # deleted from Prefect: what the ledger knows is all there is
        return await self.complete(JobView.of(row, run), with_progress=with_progress)

    async def complete(self, view: JobView, *, with_progress: bool = True) -> JobView:
        if view.final and view.dispatched:
            view.manifest = await self.store.read_manifest(view.id)
            if view.manifest and view.manifest.error and view.state_type != StateType.COMPLETED:
                view.error = view.manifest.error
            if view.manifest and view.manifest.status == "completed":
                total = len(view.manifest.steps) or 1
                view.progress = {"currentStep": "Done", "stepsCompleted": total, "totalSteps": total, "percentage": 100}
        elif with_progress and view.state_type in (StateType.RUNNING, StateType.CANCELLING) and view.flow_run_id:
            view.progress = await self._progress(UUID(view.flow_run_id))
        return view

    def _remember_final(self, view: JobView) -> None:
        self._final[view.id] = view
        self._final.move_to_end(view.id)
        while len(self._final) > self._final_max:
            self._final.popitem(last=False)

    async def _progress(self, flow_run_id: UUID) -> dict[str, Any] | None:
        arts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["progress"])),
            limit=1,
        )
        if not arts:
            return None
        data = arts[0].data
        return parse_progress(arts[0].description, float(data) if isinstance(data, (int, float, str)) else None)

    async def views_of_runs(self, runs: list[FlowRun]) -> list[JobView]:
        """Views of Sojourn flow runs (a page of a list): one ledger read for all of them."""
        rows = await self.ledger.get_many(i for r in runs if (i := job_id_of(r)))
        by_job = {job_id_of(r): r for r in runs}
        # Runs whose job is not in the ledger were started some other way: not jobs of this API.
        return await self._assemble([rows[i] for r in runs if (i := job_id_of(r)) in rows], {str(r.id): r for r in by_job.values()})

    async def read_many(self, rows: list[Job]) -> list[JobView]:
        """Views of many jobs (a page of a list, a batch): from memory where the event stream keeps them, and
        one Prefect read per 200 of the others, not one per job."""
        known = {r.id: v for r in rows if (v := self._final.get(r.id) or self.live.view(r.id)) is not None}
        wanted = [UUID(r.flow_run_id) for r in rows if r.flow_run_id and r.cancel_requested_at is None and r.id not in known]
        token = self.live.token()
        runs: dict[str, FlowRun] = {}
        for i in range(0, len(wanted), PAGE):
            page = await self.client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=wanted[i : i + PAGE])), limit=PAGE)
            runs.update({str(r.id): r for r in page})
        return await self._assemble(rows, runs, known, token)

    async def _assemble(self, rows: list[Job], runs: dict[str, FlowRun], known: dict[str, JobView] | None = None,
                        token: tuple[int, int] | None = None) -> list[JobView]:
        out = []
        for row in rows:
            view = self._final.get(row.id)
            if view is not None:
                out.append(view)
                continue
            view = (known or {}).get(row.id)
            if view is None or view.final:  # not known, or it just ended (an event said so): read what it shows
                view = await self.complete(view or JobView.of(row, runs.get(row.flow_run_id or "")), with_progress=False)
                if view.final:
                    self._remember_final(view)
                    self.live.forget(row.id)
                elif token is not None:
                    self.live.put_view(view, token)  # the next read of it comes from memory
            out.append(view)
        return out

    async def list(
        self,
        principal: Principal,
        *,
        status: list[str] | None = None,
        priority: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        sort: FlowRunSort = FlowRunSort.EXPECTED_START_TIME_DESC,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[JobView], int]:
        """Jobs whose runs exist (from Prefect) and, newest first, those still waiting in the ledger for theirs."""
        scope = ALL if principal.is_admin else principal.name
        query = (tuple(status or ()), priority, created_from, created_to, sort, limit, offset)
        hit = self.live.listing(scope, query)
        if hit is not None:
            self.reads["memory"] += 1
            return hit  # type: ignore[no-any-return]
        newest_first = sort in DESCENDING
        if not status and sort in (FlowRunSort.EXPECTED_START_TIME_DESC, FlowRunSort.EXPECTED_START_TIME_ASC):
            # In acceptance order: a page of the ledger, its jobs' states from memory where known.
            self.reads["memory"] += 1
            token = self.live.token()
            rows, total = await self.ledger.page(owner=principal.owner_filter, priority=priority, created_from=created_from,
                                                 created_to=created_to, newest_first=newest_first, limit=limit, offset=offset)
            result = (await self.read_many(rows), total)
            self.live.put_listing(scope, query, result, token)
            return result
        self.reads["prefect"] += 1
        token = self.live.token()
        # Jobs not yet dispatched are the newest (the dispatcher takes them in order): first when newest
        # first, last otherwise.
        _, waiting = await self.ledger.undispatched(
            owner=principal.owner_filter, statuses=status, priority=priority, created_from=created_from, created_to=created_to,
            newest_first=newest_first, limit=0, offset=0,
        )
        tags = ["sojourn"] if principal.is_admin else ["sojourn", owner_tag(principal.name)]
        if priority:
            tags.append(f"priority:{priority}")
        flt = FlowRunFilter(tags=FlowRunFilterTags(all_=tags))
        if status:
            types = [t for s in status for t in STATE_TYPES_FOR_STATUS.get(s, [])]
            flt.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=types))
        if created_from or created_to:
            flt.expected_start_time = FlowRunFilterExpectedStartTime(after_=created_from, before_=created_to)
        if newest_first:
            ledger_part = (offset, min(limit, max(waiting - offset, 0)))
            run_part = (max(offset - waiting, 0), limit - ledger_part[1])
        else:
            run_part = (offset, limit)
            ledger_part = (0, 0)  # set once the runs' total is known
        runs, ran = await asyncio.gather(
            self.client.read_flow_runs(flow_run_filter=flt, sort=sort, limit=run_part[1], offset=run_part[0]) if run_part[1] else _empty(),
            self.client.count_flow_runs(flow_run_filter=flt),
        )
        if not newest_first:
            start = max(offset - ran, 0)
            ledger_part = (start, max(limit - len(runs), 0))
        rows: list[Job] = []
        if ledger_part[1] and waiting:
            rows, _ = await self.ledger.undispatched(
                owner=principal.owner_filter, statuses=status, priority=priority, created_from=created_from, created_to=created_to,
                newest_first=newest_first, limit=ledger_part[1], offset=ledger_part[0],
            )
        run_views = await self.views_of_runs(runs)
        row_views = [JobView.of(r, None) for r in rows]
        views = row_views + run_views if newest_first else run_views + row_views
        result = (views, ran + waiting)
        self.live.put_listing(scope, query, result, token)
        return result

    # ------------------------------------------------------------------ change
    async def cancel(self, job_id: str, principal: Principal, *, wait: float = 5.0) -> JobView:
        row = await self.row(job_id, principal)
        if row.flow_run_id is None and not row.rejected and row.cancel_requested_at is None:
            if await self.ledger.cancel_undispatched(job_id):
                self.dispatcher.wake()  # its run is created Cancelled, so the Prefect UI shows it too
                self.live.drop(job_id, row.owner)
                return await self.get(job_id, principal)
            row = await self.row(job_id, principal)  # dispatched meanwhile: cancel its run
        view = await self.read(row, with_progress=False)
        if view.final:
            raise ServiceError(409, "JOB_ALREADY_FINISHED", f"Job '{job_id}' already ended {view.status}; it cannot be cancelled.", {"jobId": job_id, "status": view.status})
        assert view.flow_run_id is not None
        queue = self.hub.subscribe(job_id)
        try:
            if view.state_type in (StateType.SCHEDULED, StateType.PAUSED):
                from prefect.states import Cancelled

                await self.client.set_flow_run_state(UUID(view.flow_run_id), Cancelled(message="Cancelled by request before it started."), force=True)
            else:
                await self.client.set_flow_run_state(UUID(view.flow_run_id), Cancelling(message="Cancellation requested."), force=True)
                self.live.drop(job_id, row.owner)
                await self._wait_final(row, queue, wait)
        finally:
            self.hub.unsubscribe(job_id, queue)
            self.live.drop(job_id, row.owner)
        return await self.get(job_id, principal)

    async def retry(self, job_id: str, principal: Principal) -> JobView:
        view = await self.get(job_id, principal, with_progress=False)
        if not view.final:
            raise ServiceError(409, "JOB_ALREADY_PROCESSING", f"Job '{job_id}' is still {view.status}; only a finished job can be retried.", {"jobId": job_id, "status": view.status})
        spec = JobSpec.model_validate(view.spec)
        labels = {k: v for k, v in view.labels.items() if k in ("type",)}
        return await self.submit(spec, principal, dialect=view.dialect, labels={**labels, "retry-of": job_id})

    async def logs(self, job_id: str, principal: Principal, limit: int = 200) -> list[dict[str, Any]]:
        row = await self.row(job_id, principal)
        if row.flow_run_id is None:
            return []
        logs = await self.client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(row.flow_run_id)])), limit=limit, sort=LogSort.TIMESTAMP_ASC)
        return [{"timestamp": entry.timestamp, "level": entry.level, "message": entry.message} for entry in logs]

    # ------------------------------------------------------------------ wait
    async def wait(self, job_id: str, principal: Principal, timeout: float) -> JobView:
        """Until the job is final or ``timeout`` passes, driven by Prefect events."""
        known = self._final.get(job_id) or self.live.view(job_id)
        if known is not None and self.owns(principal, known.owner):
            if known.final:
                return await self.get(job_id, principal)
            row = Job(id=job_id, owner=known.owner, dialect=known.dialect, spec="{}")  # what waiting needs of it
        else:
            row = await self.row(job_id, principal)
        queue = self.hub.subscribe(job_id)
        try:
            await self._wait_final(row, queue, timeout)
        finally:
            self.hub.unsubscribe(job_id, queue)
        return await self.get(job_id, principal)

    async def _is_final(self, row: Job) -> bool:
        known = self._final.get(row.id) or self.live.view(row.id)
        if known is not None:  # kept current by the event stream: no need to ask
            return known.final
        # Read it once and keep it: the waiter's next checks, and the reads after, come from memory.
        (view,) = await self.read_many([await self.ledger.get(row.id) or row])
        return view.final

    async def _wait_final(self, row: Job, queue: asyncio.Queue[dict[str, Any]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # Look once after subscribing: the job may have ended in between.
        if await self._is_final(row):
            return
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=min(left, 10))
            except asyncio.TimeoutError:
                # The event stream can drop; confirm with one read before waiting on.
                if await self._is_final(row):
                    return
                continue
            if item["event"] in FINAL_EVENTS:
                return

    # ------------------------------------------------------------------ outputs
    async def artifact(self, job_id: str, name: str, principal: Principal | None) -> tuple[ArtifactRecord, bytes]:
        await self.row(job_id, principal)
        manifest = await self.store.read_manifest(job_id)
        record = next((a for a in (manifest.artifacts if manifest else []) if a.name == name), None)
        if record is None:
            raise ServiceError(404, "ARTIFACT_NOT_FOUND", f"Job '{job_id}' has no artifact '{name}'", {"jobId": job_id, "name": name})
        return record, await self.store.read_bytes(record.path)

    async def delete_artifact(self, artifact_id: str, principal: Principal) -> None:
        """Remove one stored output and its manifest entry (the job itself stays)."""
        record, _ = await self.artifact_by_id(artifact_id, principal)
        job_id = artifact_id.rpartition("_")[0]
        manifest = await self.store.read_manifest(job_id)
        if manifest is not None:
            manifest.artifacts = [a for a in manifest.artifacts if a.id != artifact_id]
            await self.store.write_manifest(manifest)
        await self.store.delete(record.path)
        self._final.pop(job_id, None)

    async def artifact_by_id(self, artifact_id: str, principal: Principal) -> tuple[ArtifactRecord, bytes]:
        job_id, _, _index = artifact_id.rpartition("_")
        not_found = ServiceError(404, "SCREENSHOT_NOT_FOUND", f"Screenshot with ID '{artifact_id}' not found", {"screenshotId": artifact_id})
        try:
            await self.row(job_id, principal)
        except ServiceError:
            raise not_found from None
        manifest = await self.store.read_manifest(job_id)
        record = next((a for a in (manifest.artifacts if manifest else []) if a.id == artifact_id), None)
        if record is None:
            raise not_found
        return record, await self.store.read_bytes(record.path)


async def _empty() -> list[FlowRun]:
    return []

