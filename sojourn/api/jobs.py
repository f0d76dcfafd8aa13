"""JobService: the one place dialects call. Prefect owns job state; this reads it back.

A job is a flow run of a Sojourn deployment: its id is the flow run id, its
owner, dialect and priority are tags on the run, its outputs are in the
artifact store under ``jobs/<id>/``. Nothing here is copied into our own
database, so there is nothing to keep in sync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator
from uuid import UUID, uuid4

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    FlowRunFilterWorkQueueName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling, Scheduled

from sojourn.api.auth import Principal
from sojourn.api.errors import ApiError
from sojourn.api.events import EventHub
from sojourn.api.live_views import ALL, LiveViews
from sojourn.api.refreshed import Refreshed
from sojourn.blocks.artifact_store import ArtifactRecord, ArtifactStore, Manifest
from sojourn.browser.url_policy import host_allowed, url_host
from sojourn.deployments.bootstrap import bootstrap
from sojourn.errors import parse_error
from sojourn.progress import parse_progress
from sojourn.settings import Settings
from sojourn.spec import JobSpec
from sojourn.tags import owner_tag, tag_values

log = logging.getLogger(__name__)

FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}

STATUS = {
    StateType.SCHEDULED: "submitted",
    StateType.PENDING: "submitted",
    StateType.PAUSED: "submitted",
    StateType.RUNNING: "processing",
    StateType.CANCELLING: "processing",
    StateType.COMPLETED: "completed",
    StateType.FAILED: "failed",
    StateType.CRASHED: "failed",
    StateType.CANCELLED: "cancelled",
}
STATE_TYPES_FOR_STATUS: dict[str, list[StateType]] = {}
for _t, _s in STATUS.items():
    STATE_TYPES_FOR_STATUS.setdefault(_s, []).append(_t)


PRIORITIES = ["high", "normal", "low"]

# A held job is Scheduled far ahead, so no worker takes it, until it is released.
HELD = "Held"
HELD_UNTIL = datetime(2999, 1, 1, tzinfo=timezone.utc)


def _owner(run: FlowRun) -> str | None:
    return next(iter(tag_values(run.tags, "owner")), None)


PAGE = 200  # Prefect serves at most this many runs per read


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
    """Sojourn jobs waiting to start, due no later than ``before``, optionally in some priority queues."""
    flt = FlowRunFilter(
        tags=FlowRunFilterTags(all_=["sojourn"]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])),
        # Held jobs (batches) wait far in the future: they are not "in the queue".
        expected_start_time=FlowRunFilterExpectedStartTime(before_=before or datetime.now(timezone.utc) + timedelta(days=3650)),
    )
    if priorities:
        flt.work_queue_name = FlowRunFilterWorkQueueName(any_=priorities)
    return flt


def run_error(run: FlowRun) -> dict[str, Any]:
    """The error of a finished run from its state alone (the manifest, when there is one, knows better)."""
    message = run.state.message if run.state else None
    if run.state_type == StateType.CANCELLED:
        return {"code": "CANCELLED", "message": message or "cancelled", "details": {}}
    parsed = parse_error(message)
    if parsed:
        return {**parsed, "details": {}}
    if run.state_type == StateType.CRASHED:
        return {"code": "WORKER_LOST", "message": message or "the worker running this job stopped", "details": {}}
    return {"code": "BROWSER_ERROR", "message": message or "failed", "details": {}}


@dataclass
class JobView:
    id: str
    status: str
    state: str
    flow_run: FlowRun
    spec: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] | None = None
    manifest: Manifest | None = None
    error: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.flow_run.state_type in FINAL

    def advance(self, state_type: StateType, name: str, message: str | None, at: datetime) -> bool:
        """Take a state change reported by an event (not final ones: those need the manifest).

        False when the event is older than what the view already shows (events
        can arrive out of order) or the change is one this view cannot show.
        """
        current = self.flow_run.state
        if state_type in FINAL or (current is not None and current.timestamp is not None and at < current.timestamp):
            return False
        update: dict[str, Any] = {
            "state": State(type=state_type, name=name, message=message, timestamp=at),
            "state_type": state_type,
            "state_name": name,
        }
        if state_type == StateType.RUNNING and self.flow_run.start_time is None:
            update["start_time"] = at
        self.flow_run = self.flow_run.model_copy(update=update)
        self.status = STATUS.get(state_type, "submitted")
        self.state = name
        if state_type not in (StateType.RUNNING, StateType.CANCELLING):
            self.progress = None
        return True

    def tag(self, prefix: str) -> str | None:
        return next(iter(tag_values(self.flow_run.tags, prefix)), None)

    @property
    def created_at(self) -> datetime | None:
        return self.flow_run.created

    @property
    def started_at(self) -> datetime | None:
        return self.flow_run.start_time

    @property
    def completed_at(self) -> datetime | None:
        return self.flow_run.end_time if self.final else None

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.completed_at:
            return int((self.completed_at - self.started_at).total_seconds() * 1000)
        return None


class JobService:
    def __init__(self, settings: Settings, client: PrefectClient, hub: EventHub, store: ArtifactStore,
                 submit_client: PrefectClient | None = None) -> None:
        self.settings = settings
        self.client = client
        # Submissions get connections of their own: accepting a job never queues behind reads.
        self.submit_client = submit_client or client
        self.hub = hub
        self.store = store
        self.deployments: dict[str, UUID] = {}
        # A final job never changes: its view is served from memory after the first read.
        self._final: OrderedDict[str, JobView] = OrderedDict()
        self._final_max = 5000
        # Jobs still moving, and job lists, kept fresh by the event stream.
        self.live = LiveViews(hub)
        self.reads: Counter[str] = Counter()  # job and list reads by where the answer came from
        # Jobs waiting (for QUEUE_FULL): read at most once a second however many submit, counted up in between.
        self.queued_count: Refreshed[int] = Refreshed(self._count_queued, every=1.0)
        self._estimates: dict[str, Refreshed[int | None]] = {}

    async def start(self) -> None:
        boot = await bootstrap(self.settings)
        self.deployments = boot.deployments

    # ------------------------------------------------------------------ submit
    async def submit(
        self,
        spec: JobSpec,
        principal: Principal,
        *,
        dialect: str,
        extra_tags: list[str] | None = None,
        held: bool = False,
    ) -> FlowRun:
        """Queue one job. ``held`` jobs wait (state "Held") until something releases them (batches)."""
        if principal.url_allow:
            spec = self._within_allow_list(spec, principal)
        deadline = time.monotonic() + self.settings.submit_timeout  # one budget for the whole submission
        try:
            await asyncio.wait_for(self._check_queue_room(), timeout=self.settings.submit_timeout / 2)
        except ApiError:
            raise
        except Exception as exc:
            log.error("could not count queued jobs: %r", exc)
            raise self.unavailable() from None
        flow = "agent" if spec.kind == "agent" and "agent" in self.deployments else "browse"
        tags = ["sojourn", owner_tag(principal.name), f"dialect:{dialect}", f"priority:{spec.priority}", *(extra_tags or [])]
        if held:
            state = Scheduled(scheduled_time=HELD_UNTIL, name=HELD)
        else:
            state = Scheduled(scheduled_time=spec.run_at) if spec.run_at else Scheduled()
        # One key for every attempt: a retry after a lost reply cannot create a second run.
        idempotency_key = f"sojourn-submit-{uuid4()}"
        last: Exception | None = None
        for attempt in range(3):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                run = await asyncio.wait_for(
                    self.submit_client.create_flow_run_from_deployment(
                        self.deployments[flow],
                        parameters={"spec": spec.model_dump(mode="json", exclude_defaults=True)},
                        tags=tags,
                        work_queue_name=spec.priority,
                        state=state,
                        idempotency_key=idempotency_key,
                    ),
                    timeout=left,
                )
            except Exception as exc:  # unreachable, timed out, or the server's database is busy
                last = exc
                await asyncio.sleep(min(0.2 * (attempt + 1), max(deadline - time.monotonic(), 0)))
                continue
            self.queued_count.update(lambda n: n + 1)
            self.live.drop(str(run.id), principal.name)  # the owner's lists now hold one more job
            self.live.put_view(await self.view(run, with_progress=False), self.live.token())  # read it from memory
            return run
        log.error("could not create the flow run: %r", last)
        raise self.unavailable()

    @staticmethod
    def unavailable() -> ApiError:
        return ApiError(503, "SCHEDULER_UNAVAILABLE", "The job scheduler (Prefect) did not accept the job in time; it was not queued. Try again.", headers={"Retry-After": "2"})

    @staticmethod
    def _within_allow_list(spec: JobSpec, principal: Principal) -> JobSpec:
        """A key with a URL allow-list: its step URLs must match, and the job carries the list to the browser."""
        for i, step in enumerate(spec.steps):
            host = url_host(step.url)
            if not host_allowed(host, principal.url_allow):
                raise ApiError(
                    403, "URL_NOT_ALLOWED", f"Invalid field `steps.{i}.url`: host '{host}' is not in this API key's URL allow-list",
                    {"field": f"steps.{i}.url", "host": host, "allowed": list(principal.url_allow)},
                )
        return spec.model_copy(update={"url_allow": list(principal.url_allow)})

    async def _count_queued(self) -> int:
        return await self.client.count_flow_runs(flow_run_filter=queued_filter())

    async def _check_queue_room(self) -> None:
        queued = await self.queued_count.get()
        if queued >= self.settings.max_queued_jobs:
            raise ApiError(
                503, "QUEUE_FULL",
                f"The job queue is full ({queued} jobs waiting, limit {self.settings.max_queued_jobs}); try again later.",
                {"queued": queued, "limit": self.settings.max_queued_jobs}, headers={"Retry-After": "5"},
            )

    async def queue_position(self, run: FlowRun, priority: str) -> int | None:
        """1 + the jobs due no later than this one in queues served before or with it."""
        if run.expected_start_time is None:
            return None
        rank = PRIORITIES.index(priority) if priority in PRIORITIES else 1
        flt = queued_filter(before=run.expected_start_time, priorities=PRIORITIES[: rank + 1])
        return max(await self.client.count_flow_runs(flow_run_filter=flt), 1)

    async def estimated_duration_ms(self, job_type: str) -> int | None:
        """Mean run time of the last 20 completed jobs of this type (refreshed every 30 s); None with no history."""
        if job_type not in self._estimates:
            self._estimates[job_type] = Refreshed(lambda: self._mean_duration_ms(job_type), every=30.0, every_if_none=2.0)
        return await self._estimates[job_type].get()

    async def _mean_duration_ms(self, job_type: str) -> int | None:
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=["sojourn", f"type:{job_type}"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=20,
        )
        times = [(r.end_time - r.start_time).total_seconds() for r in runs if r.start_time and r.end_time]
        return int(1000 * sum(times) / len(times)) if times else None

    async def release(self, job_id: str) -> None:
        """Let a held job start now."""
        await self.client.set_flow_run_state(UUID(job_id), Scheduled(message="Released"), force=True)
        self.live.drop(job_id)

    # ------------------------------------------------------------------ read
    async def _flow_run(self, job_id: str, principal: Principal) -> FlowRun:
        try:
            fid = UUID(job_id)
        except ValueError:
            raise self.not_found(job_id) from None
        try:
            run = await self.client.read_flow_run(fid)
        except ObjectNotFound:
            raise self.not_found(job_id) from None
        if not self._owns(principal, run):
            raise self.not_found(job_id)  # never reveal another tenant's job exists
        return run

    @staticmethod
    def not_found(job_id: str) -> ApiError:
        return ApiError(404, "JOB_NOT_FOUND", f"Job with ID '{job_id}' not found", {"jobId": job_id})

    async def get(self, job_id: str, principal: Principal, *, with_progress: bool = True) -> JobView:
        cached = self._final.get(job_id)
        if cached is not None and self._owns(principal, cached.flow_run):
            self._final.move_to_end(job_id)
            self.reads["memory"] += 1
            return cached
        live = self.live.view(job_id)
        if live is not None and self._owns(principal, live.flow_run):
            self.reads["memory"] += 1
            return live
        self.reads["prefect"] += 1
        token = self.live.token()
        run = await self._flow_run(job_id, principal)
        view = await self.view(run, with_progress=with_progress)
        if view.final:
            self._remember_final(view)
        elif with_progress:
            self.live.put_view(view, token)
        return view

    def _remember_final(self, view: JobView) -> None:
        self._final[view.id] = view
        self._final.move_to_end(view.id)
        while len(self._final) > self._final_max:
            self._final.popitem(last=False)

    @staticmethod
    def _owns(principal: Principal, run: FlowRun) -> bool:
        return "sojourn" in run.tags and (principal.is_admin or owner_tag(principal.name) in run.tags)

    async def view(self, run: FlowRun, *, with_progress: bool = True) -> JobView:
        state_type = run.state_type or StateType.SCHEDULED
        view = JobView(
            id=str(run.id),
            status=STATUS.get(state_type, "submitted"),
            state=run.state_name or state_type.value.title(),
            flow_run=run,
            spec=(run.parameters or {}).get("spec", {}),
        )
        if view.final:
            view.manifest = await self.store.read_manifest(view.id)
            if state_type != StateType.COMPLETED:
                view.error = self._error(run, view.manifest)
            if view.manifest and view.manifest.status == "completed":
                total = len(view.manifest.steps) or 1
                view.progress = {"currentStep": "Done", "stepsCompleted": total, "totalSteps": total, "percentage": 100}
        elif with_progress and state_type in (StateType.RUNNING, StateType.CANCELLING):
            view.progress = await self._progress(run.id)
        return view

    def _error(self, run: FlowRun, manifest: Manifest | None) -> dict[str, Any]:
        if manifest and manifest.error:
            return manifest.error
        return run_error(run)

    async def _progress(self, flow_run_id: UUID) -> dict[str, Any] | None:
        arts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["progress"])),
            limit=1,
        )
        if not arts:
            return None
        data = arts[0].data
        return parse_progress(arts[0].description, float(data) if isinstance(data, (int, float, str)) else None)

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
        scope = ALL if principal.is_admin else principal.name
        query = (tuple(status or ()), priority, created_from, created_to, sort, limit, offset)
        hit = self.live.listing(scope, query)
        if hit is not None:
            self.reads["memory"] += 1
            return hit  # type: ignore[no-any-return]
        self.reads["prefect"] += 1
        token = self.live.token()
        tags = ["sojourn"] if principal.is_admin else ["sojourn", owner_tag(principal.name)]
        if priority:
            tags.append(f"priority:{priority}")
        flt = FlowRunFilter(tags=FlowRunFilterTags(all_=tags))
        if status:
            types = [t for s in status for t in STATE_TYPES_FOR_STATUS.get(s, [])]
            flt.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=types))
        if created_from or created_to:
            flt.expected_start_time = FlowRunFilterExpectedStartTime(after_=created_from, before_=created_to)
        runs, total = await asyncio.gather(
            self.client.read_flow_runs(flow_run_filter=flt, sort=sort, limit=limit, offset=offset),
            self.client.count_flow_runs(flow_run_filter=flt),
        )
        views = list(await asyncio.gather(*(self._cached_view(r) for r in runs)))
        self.live.put_listing(scope, query, (views, total), token)
        return views, total

    async def _cached_view(self, run: FlowRun) -> JobView:
        cached = self._final.get(str(run.id))
        if cached is not None:
            return cached
        view = await self.view(run, with_progress=False)
        if view.final:
            self._remember_final(view)
        return view

    # ------------------------------------------------------------------ change
    async def cancel(self, job_id: str, principal: Principal, *, wait: float = 5.0) -> JobView:
        run = await self._flow_run(job_id, principal)
        if run.state_type in FINAL:
            raise ApiError(409, "JOB_ALREADY_FINISHED", f"Job '{job_id}' already ended {STATUS[run.state_type]}; it cannot be cancelled.", {"jobId": job_id, "status": STATUS[run.state_type]})
        queue = self.hub.subscribe(job_id)
        try:
            if run.state_type in (StateType.SCHEDULED, StateType.PAUSED):
                await self.client.set_flow_run_state(run.id, Cancelled(message="Cancelled by request before it started."), force=True)
            else:
                await self.client.set_flow_run_state(run.id, Cancelling(message="Cancellation requested."), force=True)
                self.live.drop(job_id, _owner(run))
                await self._wait_final(run.id, queue, wait)
        finally:
            self.hub.unsubscribe(job_id, queue)
            self.live.drop(job_id, _owner(run))
        return await self.get(job_id, principal)

    async def retry(self, job_id: str, principal: Principal) -> FlowRun:
        view = await self.get(job_id, principal, with_progress=False)
        if not view.final:
            raise ApiError(409, "JOB_ALREADY_PROCESSING", f"Job '{job_id}' is still {view.status}; only a finished job can be retried.", {"jobId": job_id, "status": view.status})
        spec = JobSpec.model_validate(view.spec)
        dialect = view.tag("dialect") or "native"
        return await self.submit(spec, principal, dialect=dialect, extra_tags=[f"retry-of:{job_id}"])

    async def logs(self, job_id: str, principal: Principal, limit: int = 200) -> list[dict[str, Any]]:
        run = await self._flow_run(job_id, principal)
        logs = await self.client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=limit, sort=LogSort.TIMESTAMP_ASC)
        return [{"timestamp": entry.timestamp, "level": entry.level, "message": entry.message} for entry in logs]

    # ------------------------------------------------------------------ wait
    async def wait(self, job_id: str, principal: Principal, timeout: float) -> JobView:
        """Until the job is final or ``timeout`` passes, driven by Prefect events."""
        cached = self._final.get(job_id)
        if cached is not None and self._owns(principal, cached.flow_run):
            return cached
        run = await self._flow_run(job_id, principal)
        queue = self.hub.subscribe(job_id)
        try:
            if run.state_type not in FINAL:
                await self._wait_final(run.id, queue, timeout)
        finally:
            self.hub.unsubscribe(job_id, queue)
        return await self.get(job_id, principal)

    async def _wait_final(self, flow_run_id: UUID, queue: asyncio.Queue[dict[str, Any]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # Re-read once after subscribing: the run may have ended in between.
        run = await self.client.read_flow_run(flow_run_id)
        if run.state_type in FINAL:
            return
        final_names = {f"prefect.flow-run.{t.value.title()}" for t in FINAL}
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=min(left, 10))
            except asyncio.TimeoutError:
                # The event stream can drop; confirm with one read before waiting on.
                run = await self.client.read_flow_run(flow_run_id)
                if run.state_type in FINAL:
                    return
                continue
            if item["event"] in final_names:
                return

    # ------------------------------------------------------------------ outputs
    async def artifact(self, job_id: str, name: str, principal: Principal) -> tuple[ArtifactRecord, bytes]:
        await self._flow_run(job_id, principal)
        manifest = await self.store.read_manifest(job_id)
        record = next((a for a in (manifest.artifacts if manifest else []) if a.name == name), None)
        if record is None:
            raise ApiError(404, "ARTIFACT_NOT_FOUND", f"Job '{job_id}' has no artifact '{name}'", {"jobId": job_id, "name": name})
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
        not_found = ApiError(404, "SCREENSHOT_NOT_FOUND", f"Screenshot with ID '{artifact_id}' not found", {"screenshotId": artifact_id})
        try:
            await self._flow_run(job_id, principal)
        except ApiError:
            raise not_found from None
        manifest = await self.store.read_manifest(job_id)
        record = next((a for a in (manifest.artifacts if manifest else []) if a.id == artifact_id), None)
        if record is None:
            raise not_found
        return record, await self.store.read_bytes(record.path)

