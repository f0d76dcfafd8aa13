"""Task Engine callbacks: every URL in ``parameters.rest_endpoints`` hears about the job's tasks and its end.

Task callbacks are owed live: a subscriber to Prefect's task-run events (the
flows' steps are Prefect tasks; their events carry the flow run's tags, so
``dialect:taskengine`` and ``job:<id>``) writes one outbox row per (URL, task
start or end) as it happens. When the job ends (its final event, or the sweep
for ends no process saw) the end-of-job net writes whatever the live path
missed, read from Prefect's task runs, then the job callback. Each callback has
a stable key (the task run's id and start/end), so live and net never owe one
twice; tasks are numbered 1, 2, ... in ``taskengine_tasks`` as first seen.

The shared outbox (:mod:`sojourn.services.outbox`, the ``taskengine-callbacks`` service) claims due rows with a
lease and POSTs them, in order per job and URL (``ordinal``: a row waits while an earlier one of
its job is still pending), retrying with exponential backoff
(``SOJOURN_WEBHOOK_MAX_ATTEMPTS``, ``SOJOURN_WEBHOOK_RETRY_SECONDS``): at least
once, and a restart loses none. Signed like the native webhooks:
``X-Sojourn-Signature: sha256=<HMAC-SHA256 of the body>`` under the
``callback_secret`` setting (or ``SOJOURN_TASKENGINE_CALLBACK_SECRET``), with
``X-Sojourn-Event-Id`` to deduplicate on and ``X-Sojourn-Timestamp``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable
from uuid import UUID

from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import TaskRunSort
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from sojourn.services.taskengine.queues import DIALECT_TAG
from sojourn.services.outbox import Outbox, Rules
from sojourn.services.webhooks import signed_headers
from sojourn.settings import Settings
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.taskengine import TaskEngineCallback, TaskEngineJob, TaskEngineTask
from sojourn.tags import job_id_from_tags

log = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("0c4f5a52-7d1e-4a0e-9b7c-2b8f3c1e5a11")
JOB_ORDINAL = 1_000_000_000  # the job callback comes after every task callback
TASK_EVENT_PREFIX = "prefect.task-run."
ENDED_TYPES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def delivery_rules(settings: Settings) -> Rules[TaskEngineCallback]:
    """As the native webhooks: 2xx is delivered, else tried again with the same attempts and backoff."""
    return Rules(kind="taskengine", lease=settings.outbox_lease_seconds, model=TaskEngineCallback, timeout=settings.webhook_timeout, claim_limit=50,
                 max_attempts=lambda _row: settings.webhook_max_attempts, first_delay=settings.webhook_retry_seconds)


class Callbacks:
    def __init__(self, settings: Settings, engine: Any, files: Callable[[Any], list[str]]) -> None:
        self.settings = settings
        self.engine = engine  # the TaskEngine (jobs, config, rows)
        self.files = files
        self.url = settings.database_location
        self.woken = asyncio.Event()
        self.outbox: Outbox[TaskEngineCallback] = Outbox(self.url, delivery_rules(settings))

    # ------------------------------------------------------------------ owing
    async def job_ended(self, job_id: str, patient: bool = False) -> bool:
        """Owe the job's callbacks; False (patient) when its task runs have not reached Prefect's database yet."""
        rows = await self.engine.rows(select(TaskEngineJob).where(TaskEngineJob.job_id == job_id))
        _made, unsettled = await self._owe(rows, patient=patient)
        return unsettled == 0

    async def sweep_once(self) -> None:
        """Ends no API process saw (it was down, the event stream dropped): owe their callbacks now
        (the ``taskengine-callback-sweep`` service)."""
        cutoff = utcnow() - timedelta(seconds=self.settings.result_retention_seconds)
        rows = await self.engine.rows(
            select(TaskEngineJob).where(TaskEngineJob.ended_noticed == False, col(TaskEngineJob.parameters).contains("rest_endpoints"),  # noqa: E712
                                        TaskEngineJob.created_at > cutoff).order_by(col(TaskEngineJob.seq)).limit(500))
        await self._owe(rows)

    async def _owe(self, rows: list[TaskEngineJob], patient: bool = False) -> tuple[int, int]:
        """Write the callbacks of those ended; returns (rows written, jobs left for later)."""
        made = unsettled = 0
        for job in await self.engine.assemble([r for r in rows if not r.ended_noticed]):
            if job.state not in ("completed", "broken"):
                continue
            urls = [u for u in job.parameters.get("rest_endpoints") or [] if isinstance(u, str)]
            if urls:
                bodies = await self.bodies(job)
                if patient and job.view.started_at and len(bodies) == 1:
                    unsettled += 1  # it ran, but no task run is readable yet: ask again shortly
                    continue
                made += await asyncio.to_thread(self._write, job.row.seq, urls, bodies)
            job.row.ended_noticed = True
            await self.engine.save(job.row)
        if made:
            self.woken.set()
        return made, unsettled

    async def bodies(self, job: Any) -> list[tuple[str, int, dict[str, Any]]]:
        """(key, ordinal, body) of every callback the job owes, in the order they happened."""
        row, view, params = job.row, job.view, job.parameters
        common = self.common(row, params)
        out: list[tuple[str, int, dict[str, Any]]] = []
        if view.flow_run_id:
            tasks = await self.engine.jobs.client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(view.flow_run_id)])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
            for task in tasks:
                name = task.name
                n = await asyncio.to_thread(self.task_number, row.seq, str(task.id), name)
                if task.start_time:
                    out.append(self.task_body(common, row.client, str(task.id), n, name, "start", task.start_time))
                if task.state_type in (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
                    ok = task.state_type == StateType.COMPLETED
                    out.append(self.task_body(common, row.client, str(task.id), n, name, "complete" if ok else "fail",
                                              task.end_time or view.ended_at, task.state.message if task.state else None))
        files = self.files(job)
        failed = job.state != "completed" or job.failed
        duration = view.duration_ms / 1000 if view.duration_ms is not None else None
        error = (view.error or {}).get("message")
        out.append(("job", JOB_ORDINAL, {**common, "status": "failed" if failed else "completed",
                                         "message": (error or "job failed") if failed else (files[0] if files else "job has completed successfully"),
                                         "files": files, "metadata": {"duration": duration}, "custom_data": params.get("custom_data"),
                                         "time": iso(view.ended_at or utcnow()), "client": row.client}))
        return out

    @staticmethod
    def common(row: TaskEngineJob, params: dict[str, Any]) -> dict[str, Any]:
        return {"job_id": row.seq, "workflow": row.workflow, "content_id": params.get("content_id")}

    @staticmethod
    def task_body(common: dict[str, Any], client: str, task_run_id: str, n: int, name: str, event: str, at: datetime | None,
                  error: str | None = None) -> tuple[str, int, dict[str, Any]]:
        if event == "start":
            message = f"'{name}' started"
        elif event == "complete":
            message = f"'{name}' completed successfully"
        else:
            message = f"'{name}' failed: {error or ''}".strip()
        key = f"task-{task_run_id}-{'start' if event == 'start' else 'end'}"
        body = {**common, "task_id": n, "task_name": name, "event": event, "message": message, "time": iso(at or utcnow()), "client": client}
        return key, 2 * n + (0 if event == "start" else 1), body

    def task_number(self, seq: int, task_run_id: str, name: str) -> int:
        """The task's number within its job: given once, to the first process that asks (1, 2, ... in that order)."""
        for _ in range(20):
            with session(self.url) as db:
                known = db.get(TaskEngineTask, task_run_id)
                if known is not None:
                    return known.number
                top = db.exec(select(func.max(TaskEngineTask.number)).where(TaskEngineTask.seq == seq)).one()
                db.add(TaskEngineTask(task_run_id=task_run_id, seq=seq, number=int(top or 0) + 1, name=name))
                try:
                    db.commit()
                except IntegrityError:
                    db.rollback()  # another process numbered it (or took that number) meanwhile: read again
                    continue
                return int(top or 0) + 1
        raise RuntimeError(f"could not number task run {task_run_id} of job {seq}")

    def task_numbers(self, seq: int) -> dict[str, int]:
        with session(self.url) as db:
            return {t.task_run_id: t.number for t in db.exec(select(TaskEngineTask).where(TaskEngineTask.seq == seq))}

    # ------------------------------------------------------------------ live task callbacks
    async def follow_tasks(self) -> None:
        """Prefect's task-run events of Task Engine runs, as they happen: owe each task's start and end callbacks.

        One round of the ``taskengine-task-events`` service: a subscription, for as long as it lasts (the runner
        reconnects after a pause when it ends)."""
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

        flt = EventFilter(event=EventNameFilter(prefix=[TASK_EVENT_PREFIX]),
                          related=EventRelatedFilter(resources_in_roles=[(f"prefect.tag.{DIALECT_TAG}", "tag")]))
        async with get_events_subscriber(filter=flt, reconnect_on_clean_close=True) as events:
            async for event in events:
                try:
                    await self.task_event(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the end-of-job net owes it later
                    log.warning("taskengine task event %s: %r", getattr(event, "event", "?"), exc)

    async def task_event(self, event: Any) -> int:
        """One task-run event: its callbacks (an end owes the start too, should that event have been missed)."""
        if not event.event.startswith(TASK_EVENT_PREFIX):
            return 0
        tags = [r.id[len("prefect.tag."):] for r in event.related if r.role == "tag"]
        if DIALECT_TAG not in tags:
            return 0
        job_id = job_id_from_tags(tags)
        resource = event.resource
        kind = str(resource.get("prefect.state-type") or "").upper()
        if job_id is None or (kind != "RUNNING" and kind not in ENDED_TYPES):
            return 0
        found = await self.engine.rows(select(TaskEngineJob).where(TaskEngineJob.job_id == job_id))
        if not found or found[0].ended_noticed:
            return 0  # not a Task Engine job, or its callbacks were all owed at its end already (the net)
        row = found[0]
        params = json.loads(row.parameters or "{}")
        urls = [u for u in params.get("rest_endpoints") or [] if isinstance(u, str)]
        if not urls:
            return 0
        task_run_id = resource.id[len(TASK_EVENT_PREFIX):]
        name = str(resource.get("prefect.resource.name") or "task")
        n = await asyncio.to_thread(self.task_number, row.seq, task_run_id, name)
        common = self.common(row, params)
        bodies = []
        if kind == "RUNNING":
            bodies.append(self.task_body(common, row.client, task_run_id, n, name, "start", event.occurred))
        else:
            started = ((event.payload or {}).get("task_run") or {}).get("start_time")
            try:
                started_at = datetime.fromisoformat(started) if isinstance(started, str) else event.occurred
            except ValueError:
                started_at = event.occurred
            bodies.append(self.task_body(common, row.client, task_run_id, n, name, "start", started_at))
            bodies.append(self.task_body(common, row.client, task_run_id, n, name, "complete" if kind == "COMPLETED" else "fail",
                                         event.occurred, resource.get("prefect.state-message")))
        made = await asyncio.to_thread(self._write, row.seq, urls, bodies)
        if made:
            self.woken.set()
        return made

    def _write(self, seq: int, urls: list[str], bodies: list[tuple[str, int, dict[str, Any]]]) -> int:
        made = 0
        now = utcnow()
        for u, url in enumerate(urls):
            for n, (key, ordinal, body) in enumerate(bodies):
                eid = "evt_" + uuid.uuid5(_NAMESPACE, f"{seq}/{url}/{key}").hex
                try:
                    with session(self.url) as db:
                        # one per microsecond, so that claiming by time keeps the order
                        db.add(TaskEngineCallback(id=eid, seq=seq, url=url, payload=json.dumps(body, default=str), ordinal=ordinal,
                                                  next_attempt_at=now + timedelta(microseconds=u * 1000 + n)))
                        db.commit()
                    made += 1
                except IntegrityError:
                    pass  # owed already (live, another API process, or the sweep)
        return made

    # ------------------------------------------------------------------ delivering (the ``taskengine-callbacks`` service)
    async def deliver(self) -> int:
        """One round of the shared outbox, in order per job and URL: a callback waits while an earlier one of its
        job to its URL is owed, and once one to a URL fails this round, the later ones to it wait behind it."""
        rows = await self.outbox.claim()
        if not rows:
            return 0
        secret = (await self.engine.config.read()).callback_secret
        blocked: dict[str, datetime] = {}
        for row in rows:
            if row.url in blocked:
                blocked[row.url] += timedelta(microseconds=1)
                await self.outbox.postpone(row, blocked[row.url])
                continue
            behind = await asyncio.to_thread(self._earlier_pending, row)
            if behind is not None:
                await self.outbox.postpone(row, behind)
                continue
            outcome = await self.outbox.send(row, row.payload.encode(), signed_headers(row, secret, "Sojourn-TaskEngine/1"))
            if outcome.retry_at is not None:
                blocked[row.url] = outcome.retry_at
        return len(rows)

    async def close(self) -> None:
        await self.outbox.close()

    def _earlier_pending(self, row: TaskEngineCallback) -> datetime | None:
        """When to look at ``row`` again if a callback before it (same job and URL) is not delivered yet, else None."""
        if row.ordinal is None:
            return None
        with session(self.url) as db:
            earlier = db.exec(select(TaskEngineCallback).where(
                TaskEngineCallback.seq == row.seq, TaskEngineCallback.url == row.url, TaskEngineCallback.status == "pending",
                TaskEngineCallback.id != row.id, col(TaskEngineCallback.ordinal) < row.ordinal,
            ).order_by(col(TaskEngineCallback.next_attempt_at)).limit(1)).first()
        if earlier is None:
            return None
        # Right after it is due (or within 2 s, when it is leased by another process that may deliver it any moment).
        return min(aware(earlier.next_attempt_at), utcnow() + timedelta(seconds=2)) + timedelta(microseconds=1)  # type: ignore[type-var, operator]

    async def deliveries(self, seq: int) -> list[TaskEngineCallback]:
        def read() -> list[TaskEngineCallback]:
            with session(self.url) as db:
                return list(db.exec(select(TaskEngineCallback).where(TaskEngineCallback.seq == seq).order_by(col(TaskEngineCallback.next_attempt_at))))

        return await asyncio.to_thread(read)


__all__ = ["Callbacks", "aware"]
