"""Scrape jobs: ledger jobs of kind ``scrape`` (one flow run each), seen through the scrape-jobs API.

A job is accepted through :class:`JobService` like every job (``external_id`` = ``job_…``, ``group_id`` = the
project); its execution state is the flow run's. ``scrape_jobs`` keeps what the API shows beyond that
(project, source, config) and, once the job ended and its results were ingested, its final rendering.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

from sqlalchemy import func, update
from sqlmodel import col, select

from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService, JobView, NewJob
from sojourn.services.principals import Principal
from sojourn.services.scrape.catalog import Catalog
from sojourn.services.scrape.conventions import bad_request, invalid, iso, loads, new_id, not_found, sees
from sojourn.services.scrape.results import Results
from sojourn.services.job_view import FINAL_EVENTS
from sojourn.settings import Settings
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.scrape import ScrapeJob, ScrapeProject, ScrapeSchedule
from sojourn.tasks.scrape import EVENT

log = logging.getLogger(__name__)

STATUS = {"submitted": "pending", "processing": "running", "completed": "completed", "failed": "failed", "cancelled": "cancelled"}
OPEN = ("pending", "running")
SWEEPER = Principal("scrape-sweeper", frozenset({"admin"}))
LEVELS = {"info": 20, "warning": 30, "error": 40}


def level_name(level: int) -> str:
    return "error" if level >= 40 else "warning" if level >= 30 else "info"


class ScrapeJobs:
    def __init__(self, settings: Settings, svc: JobService, catalog: Catalog) -> None:
        self.settings = settings
        self.svc = svc
        self.catalog = catalog
        self.db_url = settings.database_location
        self.results = Results(self.db_url, svc.store)
        self._project_locks: dict[str, asyncio.Lock] = {}
        self._finish_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ rows
    def row(self, job_id: str, principal: Principal) -> ScrapeJob:
        with session(self.db_url) as db:
            row = db.get(ScrapeJob, job_id) if len(job_id) <= 40 else None
        if row is None or not sees(principal, row.owner):
            raise not_found("Job", job_id)
        return row

    def by_sojourn_id(self, sojourn_id: str) -> ScrapeJob | None:
        """The scrape job run as the Sojourn job ``sojourn_id`` (its Prefect flow run), if any."""
        with session(self.db_url) as db:
            return db.exec(select(ScrapeJob).where(ScrapeJob.job_id == sojourn_id)).first()

    def save(self, row: ScrapeJob, *, new: bool = False) -> None:
        """Write ``row``; an existing job deleted meanwhile (with its project) stays deleted."""
        with session(self.db_url) as db:
            if not new and db.get(ScrapeJob, row.id) is None:
                return  # deleted with its project meanwhile
            db.merge(row)
            db.commit()

    # ------------------------------------------------------------------ create
    async def create(self, project_id: str, principal: Principal, *, target_ids: list[str] | None, max_results: int | None,
                     source: str = "manual", schedule_id: str | None = None, retry_of: str | None = None,
                     priority: str | None = None, held: bool = False, dialect: str = "scrape",
                     labels: dict[str, str] | None = None, accepted: list[JobView] | None = None) -> dict[str, Any]:
        """A job of the project. For other dialects running scrape jobs as their own (the Task Engine's ``scrape``
        workflow): ``priority`` names the work queue, ``held`` keeps it for a later ``JobService.release``,
        ``dialect`` and extra ``labels`` go to the ledger, and the accepted view is appended to ``accepted``."""
        project = await asyncio.to_thread(self.catalog.project, project_id, principal)
        config = self.catalog.project_config(project)
        async with self.project_lock(project_id):
            targets = await asyncio.to_thread(self.catalog.targets_of, project_id, target_ids)
            if target_ids is not None:
                known = {t.id for t in targets}
                for i, tid in enumerate(target_ids):
                    if tid not in known:
                        raise invalid(f"target_ids.{i}", f"target '{tid}' is not a target of project '{project_id}'")
            if not targets:
                raise bad_request("NO_TARGETS", "Project has no targets" if target_ids is None else "No targets were named", project_id=project_id)
            job_id = new_id("job")
            if not await self.claim(project_id, job_id):
                raise bad_request("JOB_RUNNING", f"Another job is already running in project '{project_id}'", project_id=project_id)
            try:
                limit = self.daily_limit(config)
                if await asyncio.to_thread(self.created_today, project_id) >= limit:
                    raise bad_request("RATE_LIMITED", f"Daily job limit exceeded ({limit} jobs per day for this project)", limit=limit)
                cap = int(max_results or config["max_results_per_target"])
                spec = self.spec_for(project_id, config, targets, cap, list(principal.url_allow), job=job_id, owner=project.owner)
                labels = {**(labels or {}), "type": "scrape", "project": project_id, "source": source}
                (view,) = await self.svc.accept(
                    [NewJob(spec=spec, labels=labels, held=held, external_id=job_id, group_id=project_id, kind="scrape", priority=priority)],
                    Principal(project.owner, principal.scopes, principal.key_id, principal.url_allow) if principal.is_admin else principal,
                    dialect=dialect,
                )
            except BaseException:
                await self.release(project_id, job_id)
                raise
            if accepted is not None:
                accepted.append(view)
            row = ScrapeJob(
                id=job_id, job_id=view.id, project_id=project_id, owner=project.owner, source=source, schedule_id=schedule_id,
                retry_of=retry_of, config=json.dumps({"max_results_per_target": cap, "targets": [t.id for t in targets]}),
            )
            await asyncio.to_thread(self.save, row, new=True)
        return await self.render(row, view)

    def spec_for(self, project_id: str, config: dict[str, Any], targets: list[Any], cap: int | None, url_allow: list[str],
                 job: str | None = None, owner: str | None = None) -> dict[str, Any]:
        """The ``scrape`` flow's parameters["spec"]: the targets' definitions as they are now (a snapshot)."""
        spec = {
            "project_id": project_id, "job": job,
            "targets": [{"id": t.id, "url": t.url, **self.catalog.extract_of(t)} for t in targets],
            "max_results_per_target": int(cap or config["max_results_per_target"]), "rate_limit_delay": float(config.get("rate_limit_delay") or 0),
            "retries": self.settings.scrape_target_retries, "retry_delay": self.settings.scrape_retry_delay,
            "parallel_domains": self.settings.scrape_parallel_domains, "url_allow": list(url_allow),
            "respect_robots_txt": bool(config.get("respect_robots_txt")),
        }
        if config.get("profile") and owner is not None:
            profile = self.svc.profiles.find(owner, config["profile"]) if self.svc.profiles is not None else None
            if profile is None:
                raise invalid("config.profile", f"the project's owner has no profile named '{config['profile']}'")
            spec["profile_id"] = profile.id  # a reference: each job reads the profile's current state
        if job is None:
            spec.pop("job")
        return spec

    def project_lock(self, project_id: str) -> asyncio.Lock:
        return self._project_locks.setdefault(project_id, asyncio.Lock())

    def daily_limit(self, config: dict[str, Any]) -> int:
        return int(config.get("daily_job_limit") or self.settings.scrape_daily_job_limit)

    # ------------------------------------------------------------------ one open job per project
    async def claim(self, project_id: str, job_id: str) -> bool:
        """Make ``job_id`` (a scrape job id) the project's one open job, if it has none. Held by the database (a
        compare-and-set on the project row), so two API processes starting a job of one project at the same instant
        get one claim between them. A claim whose job has ended (or never got its row: its process died while making
        it) is taken over."""
        for _ in range(5):
            holder = await asyncio.to_thread(self._holder, project_id)
            if holder is None:
                if await self._settle_open(project_id):
                    return False  # a job started before claims were kept (an upgraded database) still runs
                if await asyncio.to_thread(self._swap, project_id, None, job_id):
                    return True
                continue  # another claim got in: look again
            name, since = holder
            if name == job_id:
                return True
            if await self._open(name, since):
                return False
            if await asyncio.to_thread(self._swap, project_id, name, job_id):
                return True
        return False

    async def _settle_open(self, project_id: str) -> bool:
        """Bring the table's statuses up to date for the project's open jobs (those that ended are finished);
        whether one is still open."""
        def open_rows() -> list[ScrapeJob]:
            with session(self.db_url) as db:
                return list(db.exec(select(ScrapeJob).where(ScrapeJob.project_id == project_id, ScrapeJob.status.in_(OPEN))).all())  # type: ignore[attr-defined]

        still_open = False
        for row in await asyncio.to_thread(open_rows):
            still_open = await self._open(row.id, None) or still_open
        return still_open

    async def release(self, project_id: str, job_id: str) -> None:
        await asyncio.to_thread(self._swap, project_id, job_id, None)

    def _holder(self, project_id: str) -> tuple[str, datetime | None] | None:
        with session(self.db_url) as db:
            project = db.get(ScrapeProject, project_id)
        if project is None or project.running_job is None:
            return None
        return project.running_job, aware(project.running_claimed_at)

    def _swap(self, project_id: str, old: str | None, new: str | None) -> bool:
        held = col(ScrapeProject.running_job).is_(None) if old is None else col(ScrapeProject.running_job) == old
        with session(self.db_url) as db:
            done = db.execute(update(ScrapeProject).where(col(ScrapeProject.id) == project_id, held)
                              .values(running_job=new, running_claimed_at=utcnow() if new else None))
            db.commit()
        return done.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    async def _open(self, job_id: str, since: datetime | None) -> bool:
        """Is this claimed job still pending or running? (One that ended is finished here, as a read would.)"""
        row = await asyncio.to_thread(self._row, job_id)
        if row is None:  # being made by another process now, or its maker died before writing it
            return since is not None and utcnow() - since < timedelta(seconds=60)
        if row.final or row.status not in OPEN:
            return False
        try:
            view = await self.svc.get(row.job_id, SWEEPER, with_progress=False)
        except ServiceError:
            row.status = "failed"
            await asyncio.to_thread(self.save, row)
            return False
        if view.final:
            await self.finish(row)
            return False
        return True

    def created_today(self, project_id: str) -> int:
        """Jobs of the project created since midnight UTC (its daily job limit counts them)."""
        start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        with session(self.db_url) as db:
            return int(db.exec(select(func.count()).select_from(ScrapeJob).where(ScrapeJob.project_id == project_id, ScrapeJob.created_at >= start)).one())

    # ------------------------------------------------------------------ read
    async def get(self, job_id: str, principal: Principal) -> dict[str, Any]:
        row = await asyncio.to_thread(self.row, job_id, principal)
        return await self.current(row)

    async def current(self, row: ScrapeJob) -> dict[str, Any]:
        if row.final:
            return loads(row.final, {})
        try:
            view = await self.svc.get(row.job_id, SWEEPER, with_progress=False)
        except ServiceError:
            raise not_found("Job", row.id) from None
        if view.final:
            return await self.finish(row, view)
        return await self.render(row, view)

    async def render(self, row: ScrapeJob, view: JobView, status_file: dict[str, Any] | None = None) -> dict[str, Any]:
        config = loads(row.config, {})
        status = STATUS.get(view.status, "pending")
        if status_file is None and view.dispatched:
            status_file = await self.results.status_file(view.id)
        per_target = (status_file or {}).get("targets") or {}
        target_status = []
        for tid in config.get("targets", []):
            t = per_target.get(tid) or {}
            state = t.get("status") or "pending"
            if status == "cancelled" and state in ("pending", "running"):
                state = "cancelled"
            entry: dict[str, Any] = {"target_id": tid, "status": state, "results_count": int(t.get("results_count") or 0)}
            if t.get("duration_seconds") is not None:
                entry["duration_seconds"] = int(round(t["duration_seconds"]))
            if t.get("error"):
                entry["error"] = t["error"]
            target_status.append(entry)
        total = len(target_status)
        done = sum(1 for t in target_status if t["status"] in ("completed", "failed", "skipped"))
        progress: dict[str, Any] = {
            "total_targets": total, "completed_targets": done,
            "total_results": sum(t["results_count"] for t in target_status),
            "percentage": 100 if status == "completed" else int(done / total * 100) if total else 0,
        }
        if status == "running":
            progress["current_target"] = (status_file or {}).get("current_target") or next(
                (t["target_id"] for t in target_status if t["status"] == "running"), None)
        out: dict[str, Any] = {
            "id": row.id, "project_id": row.project_id, "status": status, "source": row.source,
            "config": config, "progress": progress, "target_status": target_status,
            "created_at": iso(row.created_at),
        }
        if row.schedule_id:
            out["schedule_id"] = row.schedule_id
        if row.retry_of:
            out["retry_of"] = row.retry_of
        if view.started_at:
            out["started_at"] = iso(view.started_at)
        if status in ("completed", "failed") and view.ended_at:
            out["completed_at"] = iso(view.ended_at)
        if status == "cancelled":
            out["cancelled_at"] = iso(view.ended_at or utcnow())
        if view.final and view.started_at and view.ended_at:
            out["duration_seconds"] = int(round((aware(view.ended_at) - aware(view.started_at)).total_seconds()))  # type: ignore[operator]
        if status == "failed":
            err = view.error or {}
            out["error"] = {"code": err.get("code") or "FAILED", "message": err.get("message") or "the job failed"}
        return out

    async def finish(self, row: ScrapeJob, view: JobView | None = None) -> dict[str, Any]:
        """The job ended: ingest its results, keep its final rendering."""
        if row.final:
            return loads(row.final, {})
        # One finish per job at a time (the event listener, a poll, the sweep): the second finds it done, and
        # never ingests the results again while a client may already be reading them.
        async with self._finish_locks.setdefault(row.id, asyncio.Lock()):
            fresh = await asyncio.to_thread(self._row, row.id)
            if fresh is not None and fresh.final:
                row.status, row.final, row.ingested_at = fresh.status, fresh.final, fresh.ingested_at
                return loads(fresh.final, {})
            return await self._finish(row, view)

    def _row(self, job_id: str) -> ScrapeJob | None:
        with session(self.db_url) as db:
            return db.get(ScrapeJob, job_id)

    async def _finish(self, row: ScrapeJob, view: JobView | None) -> dict[str, Any]:
        view = view or await self.svc.get(row.job_id, SWEEPER, with_progress=False)
        status_file = await self.results.ingest(row)
        rendered = await self.render(row, view, status_file)
        row.status, row.final, row.ingested_at = rendered["status"], json.dumps(rendered), utcnow()
        await asyncio.to_thread(self.save, row)
        await self.release(row.project_id, row.id)
        if row.schedule_id:
            await asyncio.to_thread(self._note_schedule_run, row, rendered["status"])
        return rendered

    def _note_schedule_run(self, row: ScrapeJob, status: str) -> None:
        with session(self.db_url) as db:
            sch = db.get(ScrapeSchedule, row.schedule_id)
            if sch is None:
                return
            history = loads(sch.history, [])
            for h in history:
                if h.get("job_id") == row.id:
                    h["status"] = status = "skipped" if h.get("status") == "skipped" else status
            sch.history = json.dumps(history[-50:])
            if history and history[-1].get("job_id") == row.id:
                sch.last_status = status
            db.add(sch)
            db.commit()

    async def list(self, project_id: str, principal: Principal, *, page: int, per_page: int, status: str | None,
                   source: str | None) -> tuple[list[dict[str, Any]], int]:
        await asyncio.to_thread(self.catalog.project, project_id, principal)
        await self._settle_open(project_id)

        def read() -> tuple[list[ScrapeJob], int]:
            with session(self.db_url) as db:
                q = select(ScrapeJob).where(ScrapeJob.project_id == project_id)
                c = select(func.count()).select_from(ScrapeJob).where(ScrapeJob.project_id == project_id)
                if status:
                    q, c = q.where(ScrapeJob.status == status), c.where(ScrapeJob.status == status)
                if source:
                    q, c = q.where(ScrapeJob.source == source), c.where(ScrapeJob.source == source)
                total = db.exec(c).one()
                rows = db.exec(q.order_by(ScrapeJob.created_at.desc(), ScrapeJob.id).offset((page - 1) * per_page).limit(per_page)).all()
            return list(rows), int(total)

        rows, total = await asyncio.to_thread(read)
        return [await self.current(r) for r in rows], total

    # ------------------------------------------------------------------ change
    async def cancel(self, job_id: str, principal: Principal) -> dict[str, Any]:
        row = await asyncio.to_thread(self.row, job_id, principal)
        current = await self.current(row)
        if current["status"] not in OPEN:
            raise bad_request("CANNOT_CANCEL", f"Job '{job_id}' is {current['status']}; only a running or pending job can be cancelled", status=current["status"])
        try:
            await self.svc.cancel(row.job_id, SWEEPER, wait=20.0)
        except ServiceError as exc:
            if exc.code != "JOB_ALREADY_FINISHED":
                raise
            raise bad_request("CANNOT_CANCEL", f"Job '{job_id}' already ended; it cannot be cancelled") from None
        return await self.current(row)

    async def retry(self, job_id: str, principal: Principal) -> dict[str, Any]:
        row = await asyncio.to_thread(self.row, job_id, principal)
        config = loads(row.config, {})
        return await self.create(row.project_id, principal, target_ids=list(config.get("targets") or []) or None,
                                 max_results=config.get("max_results_per_target"), source="retry", retry_of=row.id)

    async def logs(self, job_id: str, principal: Principal, *, level: str | None, limit: int) -> list[dict[str, Any]]:
        row = await asyncio.to_thread(self.row, job_id, principal)
        try:
            entries = await self.svc.logs(row.job_id, SWEEPER, limit=200 if level else min(limit, 200))
        except ServiceError:
            return []
        out = []
        for e in entries:
            name = level_name(int(e["level"]))
            if level and name != level:
                continue
            message, target_id = str(e["message"]), None
            if message.startswith("[tgt_") and "] " in message:
                target_id, message = message[1:].split("] ", 1)
            ts = e["timestamp"]
            out.append({"timestamp": iso(ts) if isinstance(ts, datetime) else str(ts), "level": name, "message": message, "target_id": target_id})
            if len(out) >= limit:
                break
        return out

    # ------------------------------------------------------------------ live
    async def messages(self, job_id: str, principal: Principal) -> AsyncIterator[dict[str, Any]]:
        """The job's WebSocket messages, in order, until it ends: ``{type, data{job_id, status, percentage,
        current_target, results_count, ...}}``."""
        row = await asyncio.to_thread(self.row, job_id, principal)
        queue = self.svc.hub.subscribe(row.job_id)
        try:
            now = await self.current(row)
            yield self._message("progress", row, now)
            if now["status"] not in OPEN:
                yield self._message(now["status"] if now["status"] in ("completed", "failed") else "cancelled", row, now)
                return
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=10)
                except asyncio.TimeoutError:
                    now = await self.current(row)
                    if now["status"] not in OPEN:
                        yield self._message(now["status"] if now["status"] in ("completed", "failed") else "cancelled", row, now)
                        return
                    continue
                name, payload = item["event"], item.get("payload") or {}
                if name == EVENT:
                    kind = payload.get("type")
                    data = {
                        "job_id": row.id, "status": "running", "percentage": payload.get("percentage", 0),
                        "current_target": payload.get("current_target"),
                        "results_count": payload.get("total_results", 0),
                    }
                    if payload.get("target_id"):
                        data["target_id"] = payload["target_id"]
                        data["target_results_count"] = payload.get("results_count", 0)
                    if payload.get("error"):
                        data["error"] = payload["error"]
                    if kind in ("progress", "target_started", "target_completed", "target_failed", "target_skipped"):
                        yield {"type": kind, "data": data}
                elif name in FINAL_EVENTS:
                    fresh = await asyncio.to_thread(self.row, job_id, principal)
                    now = await self.current(fresh)
                    yield self._message(now["status"] if now["status"] in ("completed", "failed") else "cancelled", row, now)
                    return
        finally:
            self.svc.hub.unsubscribe(row.job_id, queue)

    @staticmethod
    def _message(kind: str, row: ScrapeJob, job: dict[str, Any]) -> dict[str, Any]:
        data = {"job_id": row.id, "status": job["status"], "percentage": job["progress"]["percentage"],
                "current_target": job["progress"].get("current_target"), "results_count": job["progress"]["total_results"]}
        if job.get("error"):
            data["error"] = job["error"]["message"]
        return {"type": kind, "data": data}

    # ------------------------------------------------------------------ background (``scrape-events``, ``scrape-sweep``)
    async def on_event(self, item: dict[str, Any]) -> None:
        """Ingest a target's results when it ends, and the job's when the job ends (its events)."""
        name = item["event"]
        if name == EVENT:
            payload = item.get("payload") or {}
            if payload.get("type") in ("target_started", "target_completed", "target_failed", "target_skipped") and item.get("job_id"):
                row = await asyncio.to_thread(self.by_sojourn_id, item["job_id"])
                if row is not None and not row.final:
                    if payload["type"] == "target_started":
                        if row.status != "running":
                            row.status = "running"
                            await asyncio.to_thread(self.save, row)
                    else:
                        await self.results.ingest(row, [payload.get("target_id")], unless_final=True)
        elif name in FINAL_EVENTS and "dialect:scrape" in (item.get("tags") or []) and item.get("job_id"):
            row = await asyncio.to_thread(self.by_sojourn_id, item["job_id"])
            if row is not None and not row.final:
                await asyncio.sleep(0.2)  # the manifest is written before the run ends; let the view catch up
                await self.finish(row)

    async def sweep_once(self) -> int:
        """Jobs that ended while no API listened (or whose event was lost): ingest them now; how many."""
        def open_rows() -> list[ScrapeJob]:
            with session(self.db_url) as db:
                return list(db.exec(select(ScrapeJob).where(ScrapeJob.final.is_(None)).order_by(ScrapeJob.created_at).limit(200)).all())  # type: ignore[union-attr]

        n = 0
        for row in await asyncio.to_thread(open_rows):
            try:
                view = await self.svc.get(row.job_id, SWEEPER, with_progress=False)
            except ServiceError:
                continue
            if view.final:
                await self.finish(row, view)
                n += 1
        return n
