"""fastlane's model over Sojourn's job ledger: tasks → jobs (definitions) → executions (one ledger job each).

Enqueueing a job writes its task and job rows and, unless it waits for a cron firing, its first execution:
one ledger job (``external_id`` = execution id, ``group_id`` = fastlane job id) whose flow run the
dispatcher creates, scheduled at ``startAt``/``startIn`` when given. An execution's status follows its
ledger job (read through :class:`JobService`); when it ends, the one process whose conditional update
marks it final writes its webhook deliveries (an outbox, :mod:`.hooks`) and, for a failure with retries
left, the next execution, scheduled 2, 4, 8 … s later. Event listening and a periodic sweep
(:mod:`.loops`) make sure every execution is noticed ending even when no client reads it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import delete, func, or_, update
from sqlmodel import col, select

from sojourn.job_errors import parse_error
from sojourn.services.service_error import ServiceError
from sojourn.services.fastlane import commands
from sojourn.services.fastlane.schedules import CronSchedules
from sojourn.services.jobs import JobService, NewJob
from sojourn.services.outbox import Outbox, Rules, attempts_of
from sojourn.services.principals import Principal
from sojourn.services.job_view import JobView
from sojourn.settings import Settings
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.fastlane import FastlaneExecution, FastlaneHookDelivery, FastlaneJob, FastlaneTask

log = logging.getLogger(__name__)

FINAL_STATUSES = {"done", "failed", "timedout", "expired"}
STOPPED = "User stopped job execution manually."
HOOK_EVENTS = {"done": ("succeeds", "finishes"), "failed": ("fails", "finishes"), "timedout": ("finishes",), "expired": ()}
_HOOK_NS = uuid.UUID("8a3c1f5e-2b7d-4c1a-9e0f-6d5b4a3c2f1e")


class InputError(Exception):
    """A request fastlane refuses with a plain-text 400."""


class LookupFailed(Exception):
    """fastlane's ``{"error", "operation"}`` answer."""

    def __init__(self, status: int, error: str, operation: str) -> None:
        super().__init__(error)
        self.status, self.error, self.operation = status, error, operation


def iso(dt: datetime | None) -> str | None:
    """fastlane's dates: ISO, UTC, without a zone."""
    dt = aware(dt)
    return dt.replace(tzinfo=None).isoformat() if dt is not None else None


def principal_of(owner: str, url_allow: Iterable[str] = ()) -> Principal:
    """Who background work acts as: the owner itself (never the admin), with its key's URL allow-list."""
    return Principal(owner, frozenset({"jobs:read", "jobs:write"}), url_allow=tuple(url_allow))


@dataclass
class Enqueued:
    task: FastlaneTask
    job: FastlaneJob
    execution: FastlaneExecution | None


def hook_rules(settings: Settings) -> Rules[FastlaneHookDelivery]:
    """As fastlane does: a hook is delivered unless it answers above 399 (a 3xx counts), and is tried 1 + its
    ``retries`` times, 5, 10, 20 … s apart (here never more than 10 minutes)."""
    return Rules(kind="fastlane", lease=settings.outbox_lease_seconds, model=FastlaneHookDelivery, timeout=settings.fastlane_webhook_timeout,
                 max_attempts=lambda row: row.retries + 1, first_delay=5.0, delivered=lambda code: code <= 399)


class FastlaneService:

    def __init__(self, settings: Settings, jobs: JobService) -> None:
        self.settings = settings
        self.jobs = jobs
        self.db = settings.database_location
        self.hooks_woken = asyncio.Event()  # wakes the fastlane-hooks service
        self.hooks: Outbox[FastlaneHookDelivery] = Outbox(self.db, hook_rules(settings))
        self.schedules = CronSchedules(self)

    async def close(self) -> None:
        """The hook deliveries' HTTP client (``fastlane-hooks``), when the service stops."""
        await self.hooks.close()

    def dispatch_logs(self, execution_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """``webhookDispatch`` of each execution: one entry per attempt at one of its hooks, in the order made."""
        with session(self.db) as db:
            hooks = {h.id: h for h in db.exec(select(FastlaneHookDelivery).where(col(FastlaneHookDelivery.execution_id).in_(execution_ids)))} if execution_ids else {}
        logs: dict[str, list[dict[str, Any]]] = {}
        for a in attempts_of(self.db, "fastlane", list(hooks)):
            hook = hooks[a.delivery_id]
            logs.setdefault(hook.execution_id, []).append(
                {"timestamp": iso(a.at), "url": a.url, "event": hook.event, "attempt": a.attempt, "statusCode": a.status_code, "error": a.error})
        return logs

    # ------------------------------------------------------------------ enqueue
    async def enqueue(self, principal: Principal, task_id: str, options: dict[str, Any], request_ip: str | None, job_id: str | None = None) -> Enqueued:
        """POST (``job_id`` None: a new job) or PUT (create or update that job, and reschedule it). ``options``: the
        request as the API parsed it (``api/dialects/fastlane/requests.py``); retries and timeout are capped here."""
        opts = dict(options)
        opts["retries"] = min(opts["retries"], max(self.settings.max_retries, 0))
        if opts["timeout"] is not None:
            opts["timeout"] = min(opts["timeout"], self.settings.max_job_timeout)
        run_at = opts.pop("run_at", None)
        payload = {k: v for k, v in opts.items() if k not in ("image", "command")}
        now = utcnow()
        with session(self.db) as db:
            task = db.exec(select(FastlaneTask).where(FastlaneTask.owner == principal.name, FastlaneTask.task_id == task_id)).first()
            if task is None:
                task = FastlaneTask(owner=principal.name, task_id=task_id, created_at=now, last_modified_at=now)
            task.last_modified_at = now
            db.add(task)
            job = db.get(FastlaneJob, job_id) if job_id else None
            if job is not None and (job.owner != principal.name or job.task_id != task_id):
                raise InputError(f"The job_id {job_id} is already used by another job.")
            replaced: list[FastlaneExecution] = []
            if job is None:
                job = FastlaneJob(id=job_id or str(uuid.uuid4()), owner=principal.name, task_id=task_id, created_at=now,
                                  image=opts["image"], command=opts["command"])
            else:  # an update: executions waiting for their start time are replaced by the new schedule
                replaced = list(db.exec(select(FastlaneExecution).where(
                    FastlaneExecution.job_id == job.id, FastlaneExecution.final == False,  # noqa: E712
                    FastlaneExecution.started_at == None, FastlaneExecution.status == "enqueued")))  # noqa: E711
                for ex in replaced:
                    db.delete(ex)
            job.image, job.command, job.payload = opts["image"], opts["command"], json.dumps(payload)
            job.request_ip, job.last_modified_at, job.retry_count, job.stopped = request_ip, now, 0, False
            job.url_allow = json.dumps(list(principal.url_allow))
            job.cron = opts.get("cron")
            job.scheduled = bool(job.cron or run_at)
            job.next_run_at = None
            if job.cron:
                from sojourn.services.fastlane.cron import next_firing

                job.next_run_at = next_firing(job.cron, now)
                self.schedules.check_allowed(job, principal)  # 403 URL_NOT_ALLOWED now, not at each firing
            db.add(job)
            db.commit()
            db.refresh(job)
        for ex in replaced:
            await self._cancel_ledger(ex)
        try:
            if job.cron:  # the job's Prefect deployment, with its cron as schedule (a PUT updates it)
                await self.schedules.save(job)
            elif job.deployment_id:  # a PUT that dropped the cron
                await self.schedules.remove(job)
        except ServiceError:
            raise
        except Exception as exc:  # the job is saved; the firing loop makes its deployment when it is due
            raise self.schedules.unavailable(exc) from None
        execution = None
        if not job.cron:
            execution = await self.create_execution(job, run_at=run_at)
        return Enqueued(task, job, execution)

    def spec_of(self, job: FastlaneJob, payload: dict[str, Any] | None = None) -> Any:
        """The JobSpec an execution of the job runs now; CommandError when it cannot run."""
        payload = json.loads(job.payload) if payload is None else payload
        return commands.to_spec(job.image, job.command, payload.get("envs") or {}, payload.get("timeout"), self.settings,
                                hosts=commands.dns_hosts(payload.get("additionalDNSEntries")))

    async def create_execution(self, job: FastlaneJob, *, run_at: datetime | None = None) -> FastlaneExecution:
        """A new execution of ``job``: one ledger job, or a failed execution if its image or command cannot run."""
        payload = json.loads(job.payload)
        ex = FastlaneExecution(
            id=str(uuid.uuid4()), job_id=job.id, owner=job.owner, task_id=job.task_id, image=job.image, command=job.command,
            request_ip=job.request_ip, attempt=job.retry_count, run_at=run_at, created_at=utcnow(),
        )
        try:
            spec = self.spec_of(job, payload)
        except commands.CommandError as exc:
            with session(self.db) as db:
                db.add(ex)
                db.commit()
            await self.finish(ex, "failed", exit_code=None if exc.pulling else 1, log="", error=exc.message)
            return ex
        with session(self.db) as db:
            db.add(ex)
            db.commit()
        labels = {"fastlane-task": job.task_id[:200], "fastlane-job": job.id}
        try:
            (view,) = await self.jobs.accept(
                [NewJob(spec=spec, labels=labels, external_id=ex.id, group_id=job.id, run_at=run_at)],
                principal_of(job.owner, json.loads(job.url_allow or "[]")), dialect="fastlane",
            )
        except Exception:
            with session(self.db) as db:
                row = db.get(FastlaneExecution, ex.id)
                if row is not None:
                    db.delete(row)
                    db.commit()
            raise
        ex.ledger_job_id = view.id
        with session(self.db) as db:
            db.execute(update(FastlaneExecution).where(col(FastlaneExecution.id) == ex.id).values(ledger_job_id=view.id))
            db.commit()
        return ex

    # ------------------------------------------------------------------ reads
    def task(self, principal: Principal, task_id: str) -> FastlaneTask | None:
        with session(self.db) as db:
            q = select(FastlaneTask).where(FastlaneTask.task_id == task_id)
            if not principal.is_admin:
                q = q.where(FastlaneTask.owner == principal.name)
            return db.exec(q).first()

    def tasks(self, principal: Principal, page: int, per_page: int, words: list[str] | None = None) -> tuple[list[tuple[FastlaneTask, int]], int]:
        """A page of the principal's tasks, most recently changed first, with their job counts."""
        with session(self.db) as db:
            q = select(FastlaneTask)
            if not principal.is_admin:
                q = q.where(FastlaneTask.owner == principal.name)
            rows = list(db.exec(q.order_by(col(FastlaneTask.last_modified_at).desc())))
            if words is not None:
                rows = [t for t in rows if _matches(t.task_id, words)]
            total = len(rows)
            rows = rows[(page - 1) * per_page: page * per_page]
            counts: dict[tuple[str, str], int] = {}
            if rows:
                for owner, tid, n in db.exec(
                    select(FastlaneJob.owner, FastlaneJob.task_id, func.count()).where(col(FastlaneJob.task_id).in_([t.task_id for t in rows]))
                    .group_by(FastlaneJob.owner, FastlaneJob.task_id)
                ):
                    counts[(owner, tid)] = n
            return [(t, counts.get((t.owner, t.task_id), 0)) for t in rows], total

    def jobs_of(self, task: FastlaneTask) -> list[FastlaneJob]:
        with session(self.db) as db:
            return list(db.exec(select(FastlaneJob).where(FastlaneJob.owner == task.owner, FastlaneJob.task_id == task.task_id)
                                .order_by(col(FastlaneJob.created_at).desc())))

    def job(self, principal: Principal, task_id: str, job_id: str) -> FastlaneJob | None:
        with session(self.db) as db:
            job = db.get(FastlaneJob, job_id)
        if job is None or job.task_id != task_id or not (principal.is_admin or job.owner == principal.name):
            return None
        return job

    def executions(self, job: FastlaneJob, limit: int | None = None) -> list[FastlaneExecution]:
        """The job's executions, newest first; one waiting for its start time is not one yet (see :func:`is_due`)."""
        with session(self.db) as db:
            q = (select(FastlaneExecution).where(FastlaneExecution.job_id == job.id, is_due(utcnow()))
                 .order_by(col(FastlaneExecution.created_at).desc()))
            if limit:
                q = q.limit(limit)
            return list(db.exec(q))

    def execution_count(self, job: FastlaneJob) -> int:
        with session(self.db) as db:
            return db.exec(select(func.count()).select_from(FastlaneExecution).where(FastlaneExecution.job_id == job.id, is_due(utcnow()))).one()

    def execution(self, job: FastlaneJob, execution_id: str) -> FastlaneExecution | None:
        with session(self.db) as db:
            ex = db.get(FastlaneExecution, execution_id)
        return ex if ex is not None and ex.job_id == job.id and _due(ex, utcnow()) else None

    async def current(self, executions: list[FastlaneExecution]) -> list[FastlaneExecution]:
        """The executions as they are now: those still moving are read from their ledger jobs (ending them if they ended)."""
        moving = [e for e in executions if not e.final and e.ledger_job_id]
        if not moving:
            return executions
        rows = await self.jobs.ledger.get_many(e.ledger_job_id for e in moving if e.ledger_job_id)
        views = {v.id: v for v in await self.jobs.read_many(list(rows.values()))}
        fresh = {}
        for ex in moving:
            view = views.get(ex.ledger_job_id or "")
            if view is not None:
                fresh[ex.id] = await self.follow(ex, view)
        return [fresh.get(e.id, e) for e in executions]

    async def refresh(self, ex: FastlaneExecution) -> FastlaneExecution:
        return (await self.current([ex]))[0]

    # ------------------------------------------------------------------ following a ledger job
    async def follow(self, ex: FastlaneExecution, view: JobView) -> FastlaneExecution:
        """Take what the ledger job shows into the execution; end it when the job ended."""
        if ex.final:
            return ex
        if not view.final:
            status = "running" if view.status == "processing" else ("pulling" if view.state in ("Pending",) else "enqueued")
            if status in ("enqueued", "pulling") and await self._expired(ex):
                return self._reload(ex.id) or ex
            started = view.started_at if status == "running" else None
            if status != ex.status or (started and not ex.started_at):
                with session(self.db) as db:
                    db.execute(update(FastlaneExecution).where(col(FastlaneExecution.id) == ex.id, col(FastlaneExecution.final) == False)  # noqa: E712
                               .values(status=status, started_at=started or ex.started_at))
                    db.commit()
                ex.status, ex.started_at = status, started or ex.started_at
            return ex
        log_text, error, status, exit_code = await self._outcome(ex, view)
        await self.finish(ex, status, exit_code=exit_code, log=log_text, error=error, started_at=view.started_at,
                          finished_at=view.ended_at)
        return self._reload(ex.id) or ex

    async def _outcome(self, ex: FastlaneExecution, view: JobView) -> tuple[str, str, str, int | None]:
        """stdout, stderr, status and exit code of an ended ledger job."""
        manifest = view.manifest
        console = [f"console.{c.get('type')}: {c.get('text')}" for c in (manifest.console or [] if manifest else [])
                   if c.get("type") in ("error", "assert")]
        out = ""
        if manifest is not None:
            text = manifest.artifact("text")
            if text is not None and view.status == "completed":
                try:
                    out = (await self.jobs.store.read_bytes(text.path)).decode("utf-8", "replace")
                except Exception as exc:  # the capture is gone (retention): say so rather than fail the read
                    out = f"(the page text is no longer available: {exc})"
            else:
                out = json.dumps(self._summary(ex, view), indent=2)
        if view.status == "completed":
            return out, "\n".join(console), "done", 0
        err = view.error or parse_error(view.state_message) or {}
        if view.status == "cancelled" or ex.stop_requested:
            message, status = STOPPED, "failed"
        elif err.get("code") == "TIMEOUT" and str(err.get("message", "")).startswith("job did not finish within"):  # the job's own timeout
            spec_timeout = view.spec.get("timeout") or self.settings.default_job_timeout
            message, status = f"Job execution timed out after {float(spec_timeout):g} seconds.", "timedout"
        else:
            message, status = f"{err.get('code', 'FAILED')}: {err.get('message') or view.state_message or 'the job failed'}", "failed"
        return out, "\n".join([message, *console]), status, 1

    def _summary(self, ex: FastlaneExecution, view: JobView) -> dict[str, Any]:
        """stdout of a job without text capture: what the browser saw, and links to its captures."""
        m = view.manifest
        assert m is not None
        base = f"{self.settings.public_base}/fastlane/tasks/{ex.task_id}/jobs/{ex.job_id}/executions/{ex.id}/captures"
        out: dict[str, Any] = {
            "status": m.status,
            "steps": [{"url": s.url, "finalUrl": s.final_url, "title": s.title, "status": s.status} for s in m.steps],
            "captures": [{"name": a.name, "kind": a.kind, "contentType": a.content_type, "size": a.size, "url": f"{base}/{a.name}"}
                         for a in m.artifacts if a.kind not in ("console",)],
        }
        if m.data:
            out["data"] = m.data
        return out

    def _reload(self, execution_id: str) -> FastlaneExecution | None:
        with session(self.db) as db:
            return db.get(FastlaneExecution, execution_id)

    async def _expired(self, ex: FastlaneExecution) -> bool:
        """An execution not started by its job's expiration ends ``expired`` (no hooks), and never runs."""
        with session(self.db) as db:
            job = db.get(FastlaneJob, ex.job_id)
        expiration = json.loads(job.payload).get("expiration") if job else None
        now = utcnow()
        if expiration is None or now.timestamp() <= float(expiration):
            return False
        at = datetime.utcfromtimestamp(float(expiration)).isoformat()
        message = f"Job was supposed to be done before {at}, but was started at {now.replace(tzinfo=None).isoformat()}."
        if await self.finish(ex, "expired", exit_code=None, log="", error=message, finished_at=now):
            await self._cancel_ledger(ex)
        return True

    async def _cancel_ledger(self, ex: FastlaneExecution, wait: float = 0.0) -> None:
        if not ex.ledger_job_id:
            return
        try:
            await self.jobs.cancel(ex.ledger_job_id, principal_of(ex.owner), wait=wait)
        except ServiceError:
            pass  # ended already, or gone
        except Exception as exc:
            log.warning("fastlane: could not cancel the run of execution %s: %r", ex.id, exc)

    # ------------------------------------------------------------------ the end of an execution
    async def finish(self, ex: FastlaneExecution, status: str, *, exit_code: int | None, log: str, error: str,
                     started_at: datetime | None = None, finished_at: datetime | None = None) -> bool:
        """Mark the execution final; the caller that does so (once, whatever the processes) owes its hooks and retry."""
        finished_at = finished_at or utcnow()
        with session(self.db) as db:
            result = db.execute(
                update(FastlaneExecution).where(col(FastlaneExecution.id) == ex.id, col(FastlaneExecution.final) == False)  # noqa: E712
                .values(final=True, status=status, exit_code=exit_code, log=log, error=error,
                        started_at=started_at or ex.started_at, finished_at=finished_at)
            )
            if result.rowcount == 1 and ex.run_at is not None:  # type: ignore[attr-defined]
                # Its one scheduled run has happened: in the same commit, so nobody reads it done but still scheduled.
                db.execute(update(FastlaneJob).where(col(FastlaneJob.id) == ex.job_id, col(FastlaneJob.cron).is_(None)).values(scheduled=False))
            db.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        ended = self._reload(ex.id) or ex
        with session(self.db) as db:
            job = db.get(FastlaneJob, ex.job_id)
        if job is None:
            return True
        self._owe_hooks(job, ended)
        retry = status == "failed" and not ended.stop_requested and not job.stopped and job.retry_count < json.loads(job.payload).get("retries", 0)
        with session(self.db) as db:
            row = db.get(FastlaneJob, job.id)
            if row is not None:
                if retry:
                    row.retry_count += 1
                db.add(row)
                db.commit()
                job = row
        if retry:
            delay = 2 ** job.retry_count  # 2, 4, 8 … s
            await self.create_execution(job, run_at=utcnow() + timedelta(seconds=delay))
        return True

    def _owe_hooks(self, job: FastlaneJob, ex: FastlaneExecution) -> None:
        hooks = json.loads(job.payload).get("webhooks") or {}
        events = HOOK_EVENTS.get(ex.status, ())
        if not any(hooks.get(e) for e in events):
            return
        payload = json.dumps(self.hook_body(job, ex))
        with session(self.db) as db:
            for event in events:
                for i, hook in enumerate(hooks.get(event) or []):
                    rid = uuid.uuid5(_HOOK_NS, f"{ex.id}/{event}/{i}").hex
                    if db.get(FastlaneHookDelivery, rid) is not None:
                        continue
                    db.add(FastlaneHookDelivery(
                        id=rid, owner=ex.owner, execution_id=ex.id, job_id=job.id, event=event, url=hook["url"],
                        headers=json.dumps(hook.get("headers") or {}), retries=int(hook.get("retries") or 0), payload=payload,
                    ))
            db.commit()
        self.hooks_woken.set()

    def hook_body(self, job: FastlaneJob, ex: FastlaneExecution) -> dict[str, Any]:
        """fastlane's webhook body: the execution dict with log and error, its job id, and the job's custom metadata."""
        data = execution_dict(ex)
        meta = {k: v for k, v in data["metadata"].items() if k != "webhookDispatch"}
        meta["custom"] = json.loads(job.payload).get("custom") or {}
        data["metadata"] = meta
        data["job_id"] = job.id
        return data

    # ------------------------------------------------------------------ stop and retry
    async def stop_job(self, job: FastlaneJob) -> None:
        """Stop the job: no more retries or firings (cron included), and its running or waiting executions stopped."""
        with session(self.db) as db:
            row = db.get(FastlaneJob, job.id)
            if row is not None:
                row.stopped, row.scheduled, row.next_run_at = True, False, None
                db.add(row)
                db.commit()
                db.refresh(row)
                job = row
        with session(self.db) as db:
            moving = list(db.exec(select(FastlaneExecution).where(FastlaneExecution.job_id == job.id, FastlaneExecution.final == False)))  # noqa: E712
        now = utcnow()
        for ex in moving:
            if not _due(ex, now):
                # Its time has not come: it never becomes an execution (fastlane makes none for a stopped job). The row
                # goes first, then its run: a sweep that sees the cancelled run end then finds no execution to end.
                with session(self.db) as db:
                    gone = db.execute(delete(FastlaneExecution).where(
                        col(FastlaneExecution.id) == ex.id, col(FastlaneExecution.started_at).is_(None),
                        col(FastlaneExecution.final) == False)).rowcount  # type: ignore[attr-defined]  # noqa: E712
                    db.commit()
                if gone:
                    await self._cancel_ledger(ex)
                    continue
                ex = self._reload(ex.id) or ex  # it started meanwhile: stopped as a running one
            await self.stop_execution(ex)
        if job.deployment_id:  # the cron's schedule, and the runs it had made ahead, are gone from Prefect
            try:
                await self.schedules.remove(job)
            except Exception as exc:
                raise self.schedules.unavailable(exc) from None

    async def stop_execution(self, ex: FastlaneExecution) -> FastlaneExecution:
        """Stop one execution (and with it the job's retries after it)."""
        if ex.final:
            return ex
        with session(self.db) as db:
            db.execute(update(FastlaneExecution).where(col(FastlaneExecution.id) == ex.id).values(stop_requested=True))
            db.commit()
        ex.stop_requested = True
        if not ex.ledger_job_id:
            await self.finish(ex, "failed", exit_code=None, log="", error=STOPPED)
            return self._reload(ex.id) or ex
        await self._cancel_ledger(ex, wait=10.0)
        return await self.refresh(self._reload(ex.id) or ex)

    async def retry(self, job: FastlaneJob) -> FastlaneExecution:
        if self.execution_count(job) == 0:
            raise LookupFailed(400, "No execution yet to retry.", "retry_job")
        if job.scheduled:
            raise LookupFailed(400, "Can't retry a scheduled job.", "retry_job")
        with session(self.db) as db:
            row = db.get(FastlaneJob, job.id)
            if row is not None:
                row.stopped, row.last_modified_at = False, utcnow()
                db.add(row)
                db.commit()
                job = row
        return await self.create_execution(job)

    # ------------------------------------------------------------------ background
    def unfinished(self, limit: int = 500) -> list[FastlaneExecution]:
        with session(self.db) as db:
            return list(db.exec(select(FastlaneExecution).where(FastlaneExecution.final == False)  # noqa: E712
                                .order_by(col(FastlaneExecution.created_at)).limit(limit)))

    def by_ledger_job(self, ledger_job_id: str) -> FastlaneExecution | None:
        with session(self.db) as db:
            return db.exec(select(FastlaneExecution).where(FastlaneExecution.ledger_job_id == ledger_job_id)).first()

    def counts(self, principal: Principal) -> dict[str, Any]:
        owner = None if principal.is_admin else principal.name

        def scoped(q: Any, model: Any) -> Any:
            return q if owner is None else q.where(model.owner == owner)

        with session(self.db) as db:
            tasks = db.exec(scoped(select(func.count()).select_from(FastlaneTask), FastlaneTask)).one()
            jobs = db.exec(scoped(select(func.count()).select_from(FastlaneJob), FastlaneJob)).one()
            waiting = db.exec(scoped(select(func.count()).select_from(FastlaneExecution).where(
                col(FastlaneExecution.status).in_(["enqueued", "pulling"]), FastlaneExecution.final == False, is_due(utcnow())), FastlaneExecution)).one()  # noqa: E712
            running = list(db.exec(scoped(select(FastlaneExecution).where(FastlaneExecution.status == "running", FastlaneExecution.final == False), FastlaneExecution)))  # noqa: E712
            hooks = db.exec(scoped(select(func.count()).select_from(FastlaneHookDelivery).where(FastlaneHookDelivery.status == "pending"), FastlaneHookDelivery)).one()
            scheduled = list(db.exec(scoped(select(FastlaneJob).where(FastlaneJob.scheduled == True, FastlaneJob.stopped == False), FastlaneJob)))  # noqa: E712
            pending_at = {e.job_id: e.run_at for e in db.exec(scoped(select(FastlaneExecution).where(
                FastlaneExecution.final == False, FastlaneExecution.run_at != None), FastlaneExecution))}  # noqa: E711,E712
        return {"tasks": tasks, "jobs": jobs, "waiting": waiting, "running": running, "hooks": hooks,
                "scheduled": [(j, aware(j.next_run_at) or aware(pending_at.get(j.id))) for j in scheduled]}


def is_due(now: datetime) -> Any:
    """SQL: the execution is one in fastlane's sense. A job scheduled for later (``startIn``/``startAt``) has no
    execution until its time comes; Sojourn makes its row (and ledger job) up front, and shows it from then on."""
    return or_(col(FastlaneExecution.run_at).is_(None), col(FastlaneExecution.run_at) <= now,
               col(FastlaneExecution.started_at).is_not(None), col(FastlaneExecution.final))


def _due(ex: FastlaneExecution, now: datetime) -> bool:
    """:func:`is_due` of one execution read already."""
    return ex.run_at is None or aware(ex.run_at) <= now or ex.started_at is not None or ex.final


def _matches(task_id: str, words: list[str]) -> bool:
    import re

    tokens = {t.lower() for t in re.findall(r"[A-Za-z0-9]+", task_id)}
    return all(w.lower() in tokens for w in words)


def execution_dict(ex: FastlaneExecution, *, with_output: bool = True, dispatch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """fastlane's execution dict (``JobExecution.to_dict``); ``dispatch``: its hooks' attempts
    (:meth:`FastlaneService.dispatch_logs`), after any recorded in its metadata before attempts were rows."""
    metadata = json.loads(ex.metadata_json or "{}")
    if dispatch:
        metadata["webhookDispatch"] = [*metadata.get("webhookDispatch", []), *dispatch]
    out: dict[str, Any] = {
        "executionId": ex.id,
        "createdAt": iso(ex.created_at),
        "requestIPAddress": ex.request_ip,
        "startedAt": iso(ex.started_at),
        "finishedAt": iso(ex.finished_at),
        "image": ex.image,
        "command": ex.command,
        "metadata": metadata,
        "status": ex.status,
        "exitCode": ex.exit_code,
    }
    if with_output:
        out["log"] = ex.log if ex.final else ""
        out["error"] = ex.error if ex.final else ""
    return out
