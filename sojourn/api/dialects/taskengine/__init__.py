"""The Task Engine dialect at /taskengine: integer jobs, priorities, run_at, semaphores, settings.

Paths, bodies and status codes as the Task Engine documents them
(shared/seeds/task-engine-api.md); errors as ``{"error": "..."}`` (``{"id": null,
"error": ...}`` from ``POST /job``), each message naming the field. HTTP only:
the Task Engine's semantics are in :mod:`sojourn.services.taskengine`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sojourn.api.auth import presented_key
from sojourn.api.dialects.taskengine.workflows import WORKFLOWS, scrape_parameters, to_spec
from sojourn.services.errors import ServiceError
from sojourn.services.principals import Principal
from sojourn.services.taskengine import SEVERITIES, VERSION, TaskEngine, TEJob, parse_priority, parse_run_at, check_url
from sojourn.services.taskengine.service import STATES
from sojourn.settings import Settings

UNAUTHORISED = {"result": "Unauthorised request."}
TENANT_SCOPES = frozenset({"jobs:read", "jobs:write"})


class TEError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def iso(dt: datetime | None) -> str | None:
    """Task Engine times: UTC with milliseconds and a Z."""
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def render(job: TEJob, *, parameters: bool, single: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": job.id,
        "client": job.row.client,
        "workflow": job.row.workflow,
        "priority": job.row.priority,
        "position": job.position,
    }
    if single:
        out["top_of_queue"] = job.state == "queued" and job.position == 1
    if parameters:
        out["parameters"] = job.parameters
    out.update({
        "created_at": iso(job.view.created_at),
        "updated_at": iso(job.updated_at),
        "queue_state": job.state,
        "failed": job.failed,
        "run_at": iso(job.run_at),
    })
    return out


def create_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(title="Sojourn: Task Engine API", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
                  description="The Task Engine job API (integer jobs, priorities, run_at, semaphores, settings), served by Sojourn.")

    # ------------------------------------------------------------------ errors
    @app.exception_handler(TEError)
    async def _te(_r: Request, exc: TEError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(ServiceError)
    async def _service(_r: Request, exc: ServiceError) -> JSONResponse:
        status = 400 if exc.status in (404, 409, 422) else exc.status
        return JSONResponse({"error": exc.message}, status_code=status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return JSONResponse({"error": f"{where}: {first.get('msg')}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    def result_of(job: TEJob) -> dict[str, Any]:
        m = job.view.manifest
        if job.row.workflow == "scrape":  # its results are the scrape job's, read through the scrape API
            data: Any = {"scrape_job_id": job.view.external_id, "project_id": job.parameters.get("project_id")}
        else:
            data = (m.answer if m.answer is not None else m.data) if m else None
        return {"files": te().files(job), "data": data, "error": job.view.error}

    def te() -> TaskEngine:
        return main.state.taskengine  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ auth
    def key_of(request: Request) -> str | None:
        return request.headers.get("api-key") or request.headers.get("x-auth-key") or presented_key(request)

    def authenticate(request: Request, body: dict[str, Any] | None = None, write: bool = True, admin: bool = False) -> Principal:
        """``client`` + ``api-key``: the key must be valid and belong to the client it names (the admin key may
        name any client). Without a ``client`` the key's own principal is the client."""
        key = key_of(request)
        principal = main.state.auth.lookup(key) if key else None
        if principal is None or not principal.can("jobs:write" if write else "jobs:read") or (admin and not principal.is_admin):
            raise TEError(401, UNAUTHORISED)
        client = request.headers.get("client") or (body or {}).get("client")
        if client is not None and not isinstance(client, str):
            raise TEError(401, UNAUTHORISED)
        if not client or client == principal.name:
            return principal
        if principal.is_admin:
            return Principal(client, TENANT_SCOPES)
        raise TEError(401, UNAUTHORISED)

    def viewer(request: Request) -> tuple[str | None, bool]:
        """For the endpoints readable without a key: whose jobs may be shown (None: everyone's, for the admin)
        and whether their parameters may be. Without a key only the ``client`` named is shown, without parameters."""
        if key_of(request):
            principal = authenticate(request, write=False)
            return (None if principal.is_admin else principal.name), True
        return (request.headers.get("client") or request.query_params.get("client") or ""), False

    async def body_of(request: Request, with_id: bool = False) -> dict[str, Any]:
        try:
            raw = await request.body()
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise TEError(400, {"id": None, "error": "body: not valid JSON"} if with_id else {"error": "body: not valid JSON"}) from None
        if not isinstance(data, dict):
            raise TEError(400, {"id": None, "error": "body: expected a JSON object"} if with_id else {"error": "body: expected a JSON object"})
        return data

    def job_id(value: str) -> int:
        if not (value.isascii() and value.isdigit()):  # ('³'.isdigit() is true, and int('³') fails)
            raise TEError(400, {"error": f"id: job ids are integers, got {value!r}"})
        return int(value)

    # ------------------------------------------------------------------ status
    @app.get("/", summary="Is the Task Engine reachable (no authentication)")
    async def alive() -> dict[str, str]:
        return {"result": "alive"}

    @app.get("/health", summary="Databases, queues and job counts")
    async def health(request: Request) -> Any:
        principal = authenticate(request, write=False)
        try:
            return await te().health(None if principal.is_admin else principal.name)
        except ServiceError:
            raise
        except Exception as exc:
            return JSONResponse({"error": f"health check failed: {exc}"}, status_code=500)

    @app.get("/dashboard", summary="Started, queued and scheduled jobs; max_jobs and priority_slots")
    async def dashboard(request: Request) -> dict[str, Any]:
        client = request.headers.get("client") or None
        if key_of(request):
            principal = authenticate(request, write=False)
            client = client if principal.is_admin else principal.name
        data = await te().dashboard(client)
        for key in ("started", "queued", "scheduled"):
            data[key] = [render(j, parameters=False) for j in data[key]]
        return data

    @app.get("/workflows", summary="The workflows a job may name (Sojourn's addition)")
    async def workflows() -> dict[str, Any]:
        return {"workflows": WORKFLOWS}

    # ------------------------------------------------------------------ jobs
    @app.post("/job", summary="Submit a job")
    async def submit(request: Request) -> Any:
        body = await body_of(request, with_id=True)
        principal = authenticate(request, body)
        try:
            job = body.get("job")
            if job is None and "workflow" in body:
                job = {k: body[k] for k in ("workflow", "priority", "run_at", "semaphore_url") if k in body}
            if not isinstance(job, dict):
                raise ServiceError(400, "INVALID_INPUT", "job: expected an object with the workflow, e.g. {\"workflow\": \"screenshot\"}")
            parameters = body.get("parameters", {})
            if not isinstance(parameters, dict):
                raise ServiceError(400, "INVALID_INPUT", "parameters: expected an object")
            endpoints = parameters.get("rest_endpoints", [])
            if not isinstance(endpoints, list):
                raise ServiceError(400, "INVALID_INPUT", "parameters.rest_endpoints: expected a list of callback URLs")
            for i, url in enumerate(endpoints):
                check_url(url, f"parameters.rest_endpoints.{i}")
            priority = parse_priority(job.get("priority"), "job.priority")
            run_at = parse_run_at(job.get("run_at"), "job.run_at")
            semaphore = check_url(job.get("semaphore_url") or job.get("sempahore_url"), "job.semaphore_url")
            if job.get("workflow") == "scrape":
                project_id, target_ids = scrape_parameters(parameters)
                seq = await te().submit_scrape(principal, parameters=parameters, project_id=project_id, target_ids=target_ids,
                                               priority=priority, run_at=run_at, semaphore_url=semaphore)
            else:
                spec = to_spec(settings, principal.name, job.get("workflow"), parameters)
                seq = await te().submit(principal, workflow=job["workflow"], spec=spec, parameters=parameters, priority=priority,
                                        run_at=run_at, semaphore_url=semaphore)
        except ServiceError as exc:
            if exc.status >= 500:
                return JSONResponse("Unable to create job request", status_code=500)
            return JSONResponse({"id": None, "error": exc.message}, status_code=400 if exc.status in (404, 409, 422) else exc.status)
        return {"id": seq, "result": "accepted"}

    @app.get("/jobs", summary="Jobs, newest first; filters as the Task Engine documents them")
    async def list_jobs(request: Request) -> Any:
        client, show = viewer(request)
        q = request.query_params

        def integer(name: str, default: int | None, low: int, high: int) -> int | None:
            value = q.get(name)
            if value in (None, ""):
                return default
            if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
                raise TEError(400, {"error": f"{name}: expected a whole number from {low} to {high}, got {value!r}"})
            return int(value)

        def flag(name: str) -> bool | None:
            value = q.get(name)
            if value in (None, ""):
                return None
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise TEError(400, {"error": f"{name}: expected 1 (true) or 0 (false), got {value!r}"})

        order_by = q.get("order_by") or "id"
        if order_by not in ("id", "created_at", "updated_at", "run_at", "priority", "position"):
            raise TEError(400, {"error": f"order_by: expected one of id, created_at, updated_at, run_at, priority, position; got {order_by!r}"})
        ids = None
        if q.get("job_ids"):
            parts = [p.strip() for p in q["job_ids"].split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise TEError(400, {"error": f"job_ids: expected comma separated job ids, got {q['job_ids']!r}"})
            ids = [int(p) for p in parts]
        named = q.get("client")
        if named and client is not None and named != client:
            return []  # another client's jobs: invisible
        if client is None and named:
            client = named  # the admin filtering by client
        if client == "":
            return []
        try:
            start = parse_run_at(q.get("from"), "from")
            end = parse_run_at(q.get("to"), "to")
        except ServiceError as exc:
            raise TEError(400, {"error": exc.message}) from None
        jobs = await te().list(client, limit=integer("limit", 10, 1, 1000) or 10, order_by=order_by, asc=bool(flag("asc")),
                               state=integer("state", None, 0, 6), created_from=start, created_to=end, failed=flag("failed"),
                               search=q.get("search") or None, job_ids=ids)
        return [render(j, parameters=show) for j in jobs]

    async def visible_job(request: Request, seq: int) -> tuple[TEJob, bool]:
        client, show = viewer(request)
        if client == "":
            raise TEError(400, {"error": f"job {seq} not found"})
        return await te().get(seq, client), show

    @app.get("/jobs/{id}", summary="One job")
    async def get_job(id: str, request: Request) -> Any:
        job, show = await visible_job(request, job_id(id))
        out = render(job, parameters=show, single=True)
        if show and job.view.final:
            out["result"] = result_of(job)  # Sojourn's addition: where the outputs are
        return out

    async def update(id: str, request: Request) -> Any:
        seq = job_id(id)
        body = await body_of(request)
        principal = authenticate(request, body)
        try:
            done = await te().update(seq, principal, {k: v for k, v in body.items() if k != "client"})
        except ServiceError as exc:
            return JSONResponse({"id": seq, "error": exc.message}, status_code=400 if exc.status < 500 else exc.status)
        return {"id": seq, "result": f"Performed updates: {', '.join(done)}"}

    app.put("/jobs/{id}", summary="Update queue_state, run_at, priority or semaphore_url")(update)
    app.patch("/jobs/{id}", summary="The same as PUT (the later Task Engine docs' verb)")(update)

    @app.post("/jobs/{id}/rerun", summary="Run a job again with the same parameters (the original becomes broken)")
    async def rerun(id: str, request: Request) -> Any:
        seq = job_id(id)
        principal = authenticate(request)
        job = await te().get(seq, None if principal.is_admin else principal.name)
        spec = None if job.row.workflow == "scrape" else to_spec(settings, job.row.client, job.row.workflow, job.parameters)
        new = await te().rerun(seq, principal, spec)
        return {"id": new, "result": "accepted"}

    @app.post("/push_jobs", summary="Let queued jobs take free slots now")
    async def push_jobs(request: Request) -> Any:
        authenticate(request)
        te().push()
        return {"result": "ok"}

    # ------------------------------------------------------------------ logs
    @app.get("/logs/{id}", summary="The job's log lines")
    async def logs(id: str, request: Request) -> Any:
        job, _show = await visible_job(request, job_id(id))
        entries = await te().logs(job)
        return [{
            "id": e["id"], "job_id": e["job_id"], "task_id": e["task_id"], "severity": e["severity"],
            "severity_description": SEVERITIES[e["severity"]], "progname": e["progname"], "message": e["message"],
            "created_at": iso(e["created_at"]), "updated_at": iso(e["created_at"]), "visible": e["visible"],
        } for e in entries]

    # ------------------------------------------------------------------ scheduler and settings
    @app.get("/schedules", summary="The active schedules")
    async def schedules(request: Request) -> dict[str, Any]:
        authenticate(request, write=False)
        config = await te().config.read()
        return {"result": "ok", "schedules": await te().config.schedules(config.schedule_interval)}

    @app.put("/scheduler", summary="Switch a schedule on or off")
    async def scheduler(request: Request) -> Any:
        body = await body_of(request)
        authenticate(request, body, admin=True)  # installation-wide: the admin key
        name, active = body.get("schedule"), body.get("active")
        if name != "queue_scheduled_jobs":
            raise TEError(400, {"error": f"schedule: unknown schedule {name!r}; known: queue_scheduled_jobs"})
        if isinstance(active, str) and active.lower() in ("true", "false"):
            active = active.lower() == "true"
        if not isinstance(active, bool):
            raise TEError(400, {"error": f"active: expected true or false, got {active!r}"})
        await te().config.set_active(name, active)
        te().push()
        config = await te().config.read()
        return {"result": "ok", "schedules": list(await te().config.schedules(config.schedule_interval))}

    @app.post("/settings", summary="Create or update one setting")
    async def put_setting(request: Request) -> Any:
        body = await body_of(request)
        authenticate(request, body, admin=True)  # installation-wide: the admin key
        name = body.get("name")
        try:
            created = await te().config.put(name, body.get("setting"))
        except ServiceError as exc:
            raise TEError(400, {"error": exc.message}) from None
        te().push()
        return {"result": "ok", "message": f"{name} setting {'created' if created else 'updated'}"}

    return app


__all__ = ["create_app", "STATES", "VERSION"]
