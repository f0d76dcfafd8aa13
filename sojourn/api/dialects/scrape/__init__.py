"""The scrape-jobs dialect at /scrape/api/v1: projects, targets, jobs, results, schedules.

Clients of the scrape-jobs API (shared/seeds/scrape-jobs-api.md; the resources it refers to as
shared/reference/scrape-jobs.md describes them) work unchanged with their base URL set to
``http://HOST:8000/scrape/api/v1``. Errors are ``{"detail", "code"}`` (plus ``field`` where one field is
at fault). HTTP only: parse, call :mod:`sojourn.services.scrape`, render.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sojourn.services.errors import ServiceError
from sojourn.services.principals import Principal
from sojourn.services.scrape import ScrapeService
from sojourn.services.scrape.catalog import Catalog
from sojourn.services.scrape.common import invalid, page_of
from sojourn.services.scrape.results import render as render_result
from sojourn.settings import Settings

PREFIX = "/api/v1"


# ------------------------------------------------------------------ request models


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ProjectConfig(_Body):
    max_results_per_target: int | None = Field(None, ge=1, le=1000, description="results kept per target and job (default 100)")
    max_reviews_per_target: int | None = Field(None, ge=1, le=1000, description="the original's name for max_results_per_target")
    daily_job_limit: int | None = Field(None, ge=1, description="jobs per project per day (default 500)")
    rate_limit_delay: float | None = Field(None, ge=0, le=60, description="seconds between page loads on one domain (default 1.0)")

    def values(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        if "max_reviews_per_target" in data:
            data.setdefault("max_results_per_target", data.pop("max_reviews_per_target"))
        return data


class ProjectCreate(_Body):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    config: ProjectConfig | None = None


class ProjectUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    config: ProjectConfig | None = None


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selector: str | None = Field(None, description="CSS, or XPath when it starts with / ./ or ( ; none: the item itself")
    attribute: str | None = Field(None, description="read this attribute (href and src come back absolute)")
    html: bool = Field(False, description="the inner HTML instead of the text")
    multiple: bool = Field(False, description="every match, as a list")


class TargetFields(_Body):
    name: str | None = Field(None, max_length=200)
    platform: str | None = Field(None, max_length=50)
    status: Literal["active", "paused"] | None = None
    item_selector: str | None = Field(None, min_length=1, description="one item per match; none: the page is one result (url, title, text)")
    fields: dict[str, str | FieldSpec] | None = None
    next_page: str | None = Field(None, min_length=1, description="a selector of the next link, or a URL template with {page}")
    max_pages: int | None = Field(None, ge=1, le=1000)
    wait_for: str | None = Field(None, min_length=1, description="a selector to wait for on every page before reading it")
    dedupe_keys: list[str] | None = None
    screenshot: bool | None = None

    def extract(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True)
        if self.fields is not None:
            data["fields"] = {k: (v if isinstance(v, str) else v.model_dump(exclude_defaults=True)) for k, v in self.fields.items()}
        if self.item_selector and not self.fields:
            raise invalid("fields", "an item_selector needs at least one field")
        if self.dedupe_keys and self.fields is not None:
            unknown = [k for k in self.dedupe_keys if k not in self.fields]
            if unknown:
                raise invalid("dedupe_keys", f"'{unknown[0]}' is not one of the fields")
        return data


class TargetCreate(TargetFields):
    url: str = Field(min_length=1, max_length=2048)


class TargetUpdate(TargetFields):
    url: str | None = Field(None, min_length=1, max_length=2048)


class BulkTargets(_Body):
    targets: list[TargetCreate] = Field(min_length=1, max_length=1000)


class ScheduleFields(_Body):
    frequency: Literal["hourly", "daily", "weekly", "monthly"] | None = Field(None, description="or `cron`")
    time: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM in `timezone` (hourly: the minute)")
    timezone: str | None = Field(None, max_length=64, description="IANA timezone, default UTC")
    day_of_week: int | None = Field(None, ge=0, le=6, description="weekly: 0 = Monday … 6 = Sunday (default 0)")
    day_of_month: int | None = Field(None, ge=1, le=31, description="monthly: 1–31 (default 1; months without that day are skipped)")
    cron: str | None = Field(None, min_length=1, max_length=200, description="a five-field cron expression instead of a frequency")
    enabled: bool | None = None


class ScheduleCreate(ScheduleFields):
    project_id: str = Field(min_length=1, max_length=40)


class JobCreate(_Body):
    target_ids: list[str] | None = None
    max_results_per_target: int | None = Field(None, ge=1, le=1000)


# ------------------------------------------------------------------ errors


def _error(status: int, code: str, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "code": code}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


HTTP_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE",
              429: "RATE_LIMITED"}


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_r: Request, exc: ServiceError) -> JSONResponse:
        code = exc.code if exc.status != 404 else "NOT_FOUND"
        return _error(exc.status, code, exc.message, (exc.details or {}).get("field"), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        # Unions (str | FieldSpec) add the member's name to the location; it is not a field of the request.
        loc = [p for p in loc if p not in ("str", "FieldSpec") and not p.startswith("function-")]
        field = ".".join(loc) or "body"
        return _error(422, "VALIDATION_ERROR", f"Invalid field `{field}`: {first.get('msg')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "ERROR")
        return _error(exc.status_code, code, "Not found" if exc.status_code == 404 else str(exc.detail))


# ------------------------------------------------------------------ the app


def create_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(
        title="Sojourn: Scrape-jobs API",
        description="Projects of targets, scraped page by page into results by Prefect flows with a real browser.",
        version="1.0.0", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
    )
    _install_errors(app)
    catalog = Catalog(settings)

    def scrape() -> ScrapeService:
        service = getattr(main.state, "scrape", None)
        if service is None:
            raise ServiceError(503, "SERVICE_UNAVAILABLE", "The scrape service is starting; try again.")
        return service

    def who(request: Request, write: bool = False) -> Principal:
        return main.state.auth.authenticate(request, "jobs:write" if write else "jobs:read")

    async def in_thread(fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    async def refresh(project_id: str) -> None:
        """The project's targets or config changed: its schedule's runs take the new snapshot."""
        service = getattr(main.state, "scrape", None)
        if service is not None:
            await service.schedules.refresh(project_id)

    Page = Query(1, ge=1, le=10_000_000)  # bounded: past SQL's integers a page was a 500
    PerPage = Query(20, ge=1, le=100)

    # -------------------------------------------------------------- projects
    @app.get(f"{PREFIX}/projects", tags=["projects"], summary="List projects")
    async def list_projects(request: Request, page: int = Page, per_page: int = PerPage) -> dict[str, Any]:
        p = who(request)
        rows, total = await in_thread(catalog.list_projects, p, page, per_page)
        return page_of([catalog.render_project(r) for r in rows], total, page, per_page)

    @app.post(f"{PREFIX}/projects", status_code=201, tags=["projects"], summary="Create a project")
    async def create_project(body: ProjectCreate, request: Request) -> dict[str, Any]:
        p = who(request, True)
        row = await in_thread(catalog.create_project, p, body.name, body.description, body.config.values() if body.config else {})
        return catalog.render_project(row, {"targets_count": 0, "results_count": 0})

    @app.get(f"{PREFIX}/projects/{{project_id}}", tags=["projects"], summary="Get a project")
    async def get_project(project_id: str, request: Request) -> dict[str, Any]:
        p = who(request)
        row = await in_thread(catalog.project, project_id, p)
        return catalog.render_project(row, await in_thread(catalog.counts, project_id))

    @app.put(f"{PREFIX}/projects/{{project_id}}", tags=["projects"], summary="Update a project (partial)")
    async def update_project(project_id: str, body: ProjectUpdate, request: Request) -> dict[str, Any]:
        p = who(request, True)
        changes = body.model_dump(exclude_unset=True)
        if body.config is not None:
            changes["config"] = body.config.values()
        row = await in_thread(catalog.update_project, project_id, p, changes)
        if body.config is not None:
            await refresh(project_id)
        return catalog.render_project(row, await in_thread(catalog.counts, project_id))

    @app.delete(f"{PREFIX}/projects/{{project_id}}", status_code=204, tags=["projects"], summary="Delete a project, its targets and results")
    async def delete_project(project_id: str, request: Request) -> Response:
        p = who(request, True)
        await in_thread(catalog.project, project_id, p)
        await scrape().schedules.project_deleted(project_id)
        await in_thread(catalog.delete_project, project_id, p)
        return Response(status_code=204)

    # -------------------------------------------------------------- targets
    @app.get(f"{PREFIX}/projects/{{project_id}}/targets", tags=["targets"], summary="List a project's targets")
    async def list_targets(project_id: str, request: Request, page: int = Page, per_page: int = PerPage,
                           status: Literal["active", "paused", "error"] | None = None) -> dict[str, Any]:
        p = who(request)
        rows, total = await in_thread(catalog.list_targets, project_id, p, page, per_page, status)
        return page_of([catalog.render_target(r) for r in rows], total, page, per_page)

    @app.post(f"{PREFIX}/projects/{{project_id}}/targets", status_code=201, tags=["targets"], summary="Add a target")
    async def create_target(project_id: str, body: TargetCreate, request: Request) -> dict[str, Any]:
        p = who(request, True)
        data = {**body.extract(), "url": body.url}
        (row,), _ = await in_thread(catalog.create_targets, project_id, p, [data])
        await refresh(project_id)
        return catalog.render_target(row)

    @app.post(f"{PREFIX}/projects/{{project_id}}/targets/bulk", status_code=201, tags=["targets"], summary="Add many targets")
    async def bulk_targets(project_id: str, body: BulkTargets, request: Request) -> dict[str, Any]:
        p = who(request, True)
        bodies = []
        for i, t in enumerate(body.targets):
            try:
                bodies.append({**t.extract(), "url": t.url})
            except ServiceError as exc:
                field = (exc.details or {}).get("field", "")
                raise invalid(f"targets.{i}.{field}", exc.message.split(": ", 1)[-1]) from None
        rows, errors = await in_thread(catalog.create_targets, project_id, p, bodies, bulk=True)
        if rows:
            await refresh(project_id)
        return {"created": len(rows), "failed": len(errors), "targets": [catalog.render_target(r) for r in rows], "errors": errors}

    @app.get(f"{PREFIX}/targets/{{target_id}}", tags=["targets"], summary="Get a target")
    async def get_target(target_id: str, request: Request) -> dict[str, Any]:
        p = who(request)
        return catalog.render_target(await in_thread(catalog.target, target_id, p))

    @app.put(f"{PREFIX}/targets/{{target_id}}", tags=["targets"], summary="Update a target (partial)")
    async def update_target(target_id: str, body: TargetUpdate, request: Request) -> dict[str, Any]:
        p = who(request, True)
        changes = {**body.extract(), **({"url": body.url} if body.url is not None else {})}
        row = await in_thread(catalog.update_target, target_id, p, changes)
        await refresh(row.project_id)
        return catalog.render_target(row)

    @app.delete(f"{PREFIX}/targets/{{target_id}}", status_code=204, tags=["targets"], summary="Delete a target")
    async def delete_target(target_id: str, request: Request) -> Response:
        p = who(request, True)
        row = await in_thread(catalog.target, target_id, p)
        await in_thread(catalog.delete_target, target_id, p)
        await refresh(row.project_id)
        return Response(status_code=204)

    # -------------------------------------------------------------- jobs
    @app.get(f"{PREFIX}/projects/{{project_id}}/jobs", tags=["jobs"], summary="List a project's jobs")
    async def list_jobs(project_id: str, request: Request, page: int = Page, per_page: int = PerPage,
                        status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None,
                        source: Literal["manual", "scheduled", "api", "retry", "taskengine"] | None = None) -> dict[str, Any]:
        p = who(request)
        items, total = await scrape().jobs.list(project_id, p, page=page, per_page=per_page, status=status, source=source)
        return page_of(items, total, page, per_page)

    @app.post(f"{PREFIX}/projects/{{project_id}}/jobs", status_code=201, tags=["jobs"], summary="Start a scrape job")
    async def create_job(project_id: str, request: Request, body: JobCreate | None = None) -> dict[str, Any]:
        p = who(request, True)
        body = body or JobCreate()
        return await scrape().jobs.create(project_id, p, target_ids=body.target_ids, max_results=body.max_results_per_target)

    @app.get(f"{PREFIX}/jobs/{{job_id}}", tags=["jobs"], summary="Get a job with progress and per-target status")
    async def get_job(job_id: str, request: Request) -> dict[str, Any]:
        return await scrape().jobs.get(job_id, who(request))

    @app.post(f"{PREFIX}/jobs/{{job_id}}/cancel", tags=["jobs"], summary="Cancel a running or pending job")
    async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
        return await scrape().jobs.cancel(job_id, who(request, True))

    @app.post(f"{PREFIX}/jobs/{{job_id}}/retry", status_code=201, tags=["jobs"], summary="Run a job again with the same configuration")
    async def retry_job(job_id: str, request: Request) -> dict[str, Any]:
        return await scrape().jobs.retry(job_id, who(request, True))

    @app.get(f"{PREFIX}/jobs/{{job_id}}/logs", tags=["jobs"], summary="A job's execution log")
    async def job_logs(job_id: str, request: Request, level: Literal["info", "warning", "error"] | None = None,
                       limit: int = Query(100, ge=1, le=200)) -> dict[str, Any]:
        return {"logs": await scrape().jobs.logs(job_id, who(request), level=level, limit=limit)}

    @app.websocket(f"{PREFIX}/jobs/{{job_id}}/ws")
    async def job_ws(websocket: WebSocket, job_id: str) -> None:
        token = websocket.query_params.get("token") or ""
        principal = main.state.auth.lookup(token) if token else None
        if principal is None or not principal.can("jobs:read"):
            await websocket.accept()  # then refused with the documented close code (a handshake refusal has none)
            await websocket.close(code=4001, reason="invalid token")
            return
        service = scrape()
        try:
            messages = service.jobs.messages(job_id, principal)
            first = await messages.__anext__()
        except ServiceError:
            await websocket.accept()
            await websocket.close(code=4004, reason="job not found")
            return
        await websocket.accept()
        try:
            await websocket.send_json(first)
            async for message in messages:
                await websocket.send_json(message)
            await websocket.close()
        except WebSocketDisconnect:
            pass
        finally:
            await messages.aclose()

    # -------------------------------------------------------------- results
    Format = Query(None, description="export instead of a page: json, jsonl or csv (streamed)")

    def export(fmt: str, columns: list[str], name: str, **kw: Any) -> StreamingResponse:
        media = {"json": "application/json", "jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}[fmt]
        return StreamingResponse(scrape().results.export(fmt, columns, **kw), media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})

    @app.get(f"{PREFIX}/jobs/{{job_id}}/results", tags=["results"], summary="A job's results, paged or exported")
    async def job_results(job_id: str, request: Request, page: int = Page, per_page: int = PerPage, target_id: str | None = None,
                          format: Literal["json", "jsonl", "csv"] | None = Format) -> Any:
        p = who(request)
        row = await in_thread(scrape().jobs.row, job_id, p)
        if format:
            targets = await in_thread(catalog.targets_of, row.project_id, json.loads(row.config).get("targets", []))
            return export(format, _columns(catalog, targets), f"results-{job_id}", job_id=job_id, target_id=target_id)
        items, total = await in_thread(scrape().results.page, job_id=job_id, target_id=target_id, page=page, per_page=per_page)
        return page_of(items, total, page, per_page)

    @app.get(f"{PREFIX}/projects/{{project_id}}/results", tags=["results"], summary="A project's results, paged or exported")
    async def project_results(project_id: str, request: Request, page: int = Page, per_page: int = PerPage, target_id: str | None = None,
                              job_id: str | None = None, sort: Literal["created_at", "-created_at"] = "created_at",
                              format: Literal["json", "jsonl", "csv"] | None = Format) -> Any:
        p = who(request)
        await in_thread(catalog.project, project_id, p)
        if format:
            targets = await in_thread(catalog.all_targets, project_id)
            return export(format, _columns(catalog, targets), f"results-{project_id}", project_id=project_id, job_id=job_id, target_id=target_id)
        items, total = await in_thread(scrape().results.page, project_id=project_id, job_id=job_id, target_id=target_id, page=page,
                                       per_page=per_page, newest_first=sort == "-created_at")
        return page_of(items, total, page, per_page)

    @app.get(f"{PREFIX}/results/{{result_id}}", tags=["results"], summary="Get one result")
    async def get_result(result_id: str, request: Request) -> dict[str, Any]:
        return render_result(await one_result(result_id, who(request)))

    @app.delete(f"{PREFIX}/results/{{result_id}}", status_code=204, tags=["results"], summary="Delete one result")
    async def delete_result(result_id: str, request: Request) -> Response:
        await one_result(result_id, who(request, True))
        await in_thread(scrape().results.delete, result_id)
        return Response(status_code=204)

    async def one_result(result_id: str, p: Principal) -> Any:
        row = await in_thread(scrape().results.one, result_id)
        if row is None or not (p.is_admin or p.name == row.owner):
            raise ServiceError(404, "NOT_FOUND", f"Result '{result_id}' not found", {"id": result_id})
        return row

    # -------------------------------------------------------------- schedules
    @app.get(f"{PREFIX}/schedules", tags=["schedules"], summary="List schedules")
    async def list_schedules(request: Request, page: int = Page, per_page: int = PerPage) -> dict[str, Any]:
        p = who(request)
        schedules = scrape().schedules
        rows, total = await in_thread(schedules.list_rows, p, page, per_page)
        return page_of([await in_thread(schedules.render, r) for r in rows], total, page, per_page)

    @app.post(f"{PREFIX}/schedules", status_code=201, tags=["schedules"], summary="Create a project's schedule (one per project)")
    async def create_schedule(body: ScheduleCreate, request: Request) -> dict[str, Any]:
        p = who(request, True)
        return await scrape().schedules.create(p, body.project_id, body.model_dump(exclude={"project_id"}))

    @app.get(f"{PREFIX}/schedules/project/{{project_id}}", tags=["schedules"], summary="Get a project's schedule")
    async def get_schedule(project_id: str, request: Request) -> dict[str, Any]:
        schedules = scrape().schedules
        return await in_thread(schedules.render, await in_thread(schedules.row, project_id, who(request)))

    @app.put(f"{PREFIX}/schedules/project/{{project_id}}", tags=["schedules"], summary="Update a project's schedule (partial)")
    async def update_schedule(project_id: str, body: ScheduleFields, request: Request) -> dict[str, Any]:
        return await scrape().schedules.update(who(request, True), project_id, body.model_dump(exclude_unset=True))

    @app.delete(f"{PREFIX}/schedules/project/{{project_id}}", status_code=204, tags=["schedules"], summary="Delete a project's schedule")
    async def delete_schedule(project_id: str, request: Request) -> Response:
        await scrape().schedules.delete(who(request, True), project_id)
        return Response(status_code=204)

    @app.post(f"{PREFIX}/schedules/project/{{project_id}}/toggle", tags=["schedules"], summary="Enable or disable a project's schedule")
    async def toggle_schedule(project_id: str, request: Request) -> dict[str, Any]:
        return await scrape().schedules.toggle(who(request, True), project_id)

    @app.post(f"{PREFIX}/schedules/project/{{project_id}}/run", status_code=201, tags=["schedules"], summary="Run a project's schedule now")
    async def run_schedule(project_id: str, request: Request) -> dict[str, Any]:
        return await scrape().schedules.run_now(who(request, True), project_id)

    return app


def _columns(catalog: Catalog, targets: list[Any]) -> list[str]:
    """CSV columns beyond the result's own: every field the targets define (url, title, text for whole pages)."""
    out: list[str] = []
    for t in targets:
        ex = catalog.extract_of(t)
        names = list((ex.get("fields") or {}).keys()) if ex.get("item_selector") else ["url", "title", "text"]
        out += [n for n in names if n not in out]
    return out
