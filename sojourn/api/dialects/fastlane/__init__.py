"""The fastlane dialect at /fastlane: tasks, jobs and executions.

Clients written for fastlane work unchanged with their base URL set to ``http://HOST:8000/fastlane``:
the routes, bodies, messages and status codes of fastlane 2.2.4 (shared/reference/fastlane.md), both
trailing-slash forms, plain-text enqueue errors and ``{"error", "operation"}`` lookup errors. What runs is
a browser job (see :mod:`sojourn.services.fastlane.commands`). fastlane has no auth; here a request needs
an API key (Basic auth with the key as password, ``X-API-Key`` or Bearer) unless
``SOJOURN_FASTLANE_AUTH=false``, and a principal sees only its own tasks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any, Callable

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from sojourn.services.errors import ServiceError
from sojourn.services.fastlane import FastlaneService, InputError, LookupFailed, execution_dict, iso
from sojourn.services.fastlane.commands import redact_envs
from sojourn.services.principals import Principal
from sojourn.settings import Settings
from sojourn.store.fastlane import FastlaneExecution, FastlaneJob

OPEN = Principal("fastlane", frozenset({"jobs:read", "jobs:write"}))
VERSION = "2.2.4"
JOINER = "\n-=-\n"


def _error(status: int, error: str, operation: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "operation": operation}, status_code=status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input(_r: Request, exc: InputError) -> PlainTextResponse:
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(LookupFailed)
    async def _lookup(_r: Request, exc: LookupFailed) -> JSONResponse:
        return _error(exc.status, exc.error, exc.operation)

    @app.exception_handler(ServiceError)
    async def _service(_r: Request, exc: ServiceError) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="sojourn"'
        return _error(exc.status, exc.message, "authenticate" if exc.status in (401, 403) else "sojourn", headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), "route")


def create_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(title="Sojourn: fastlane API", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
                  description="fastlane's task/job/execution API over Sojourn browser jobs.")
    _install_errors(app)

    def svc() -> FastlaneService:
        return main.state.fastlane  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ helpers
    def route(path: str, methods: list[str], **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Both trailing-slash forms answer directly (no redirect)."""
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            app.add_api_route(path, fn, methods=methods, **kw)
            app.add_api_route(path.rstrip("/") + "/", fn, methods=methods, include_in_schema=False)
            return fn
        return deco

    def who(request: Request | WebSocket, scope: str) -> Principal:
        if not settings.fastlane_auth:
            return OPEN
        auth: Any = main.state.auth
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
            except Exception:
                raise ServiceError(401, "UNAUTHORIZED", "The Basic credentials could not be read.") from None
            principal = auth.lookup(password or user)
            if principal is None:
                raise ServiceError(401, "UNAUTHORIZED", "The API key is not valid.")
            if not principal.can(scope):
                raise ServiceError(403, "FORBIDDEN", f"This key lacks the `{scope}` scope.")
            return principal
        return auth.authenticate(request, scope)

    def base(request: Request | WebSocket) -> str:
        """This dialect's base URL as the client reached it (its host, the mount prefix)."""
        url = request.url
        return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}".rstrip("/")

    def task_url(request: Request, task_id: str) -> str:
        return f"{base(request)}/tasks/{task_id}/"

    def job_url(request: Request, task_id: str, job_id: str) -> str:
        return f"{base(request)}/tasks/{task_id}/jobs/{job_id}/"

    def ex_url(request: Request, ex: FastlaneExecution) -> str:
        return f"{base(request)}/tasks/{ex.task_id}/jobs/{ex.job_id}/executions/{ex.id}/"

    def find_job(principal: Principal, task_id: str, job_id: str, operation: str) -> FastlaneJob:
        job = svc().job(principal, task_id, job_id)
        if job is None:
            raise LookupFailed(404, f"Task ({task_id}) or Job ({job_id}) not found.", operation)
        return job

    async def find_execution(principal: Principal, task_id: str, job_id: str, execution_id: str, operation: str) -> tuple[FastlaneJob, FastlaneExecution]:
        job = find_job(principal, task_id, job_id, operation)
        ex = svc().execution(job, execution_id)
        if ex is None:
            raise LookupFailed(404, f"Job Execution ({execution_id}) not found in job ({job_id}).", operation)
        return job, await svc().refresh(ex)

    def enqueue_reply(request: Request, task_id: str, job: FastlaneJob, ex: FastlaneExecution | None, scheduled: bool) -> dict[str, Any]:
        shown = ex if ex is not None and not scheduled else None
        return {
            "taskId": task_id, "jobId": job.id,
            "executionId": shown.id if shown else None, "executionUrl": ex_url(request, shown) if shown else None,
            "queueJobId": ex.ledger_job_id if ex is not None else None,
            "jobUrl": job_url(request, task_id, job.id), "taskUrl": task_url(request, task_id),
        }

    async def read_body(request: Request) -> Any:
        raw = await request.body()  # whatever the Content-Type: curl without a header works
        try:
            return json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            raise InputError("Failed to enqueue task because JSON body could not be parsed.") from None

    def job_metadata(job: FastlaneJob, last: FastlaneExecution | None) -> dict[str, Any]:
        p = json.loads(job.payload or "{}")
        meta = {
            "retries": p.get("retries", 0), "retry_count": job.retry_count, "notify": p.get("notify") or {},
            "webhooks": p.get("webhooks") or {}, "expiration": p.get("expiration"), "timeout": p.get("timeout"),
            "envs": redact_envs(p.get("envs") or {}), "enqueued_id": last.ledger_job_id if last else None,
            "custom": p.get("custom") or {}, "cron": job.cron,
        }
        for k in ("startAt", "startIn", "additionalDNSEntries"):
            if p.get(k):
                meta[k] = p[k]
        return meta

    def text_reply(ex: FastlaneExecution, kind: str) -> Response:
        log, err = (ex.log or "", ex.error or "") if ex.final else ("", "")
        body = {"stdout": log, "stderr": err, "logs": f"{log}{JOINER}{err}"}[kind]
        return PlainTextResponse(body, headers={"Fastlane-Exit-Code": str(ex.exit_code)})

    # ------------------------------------------------------------------ system
    @route("/healthcheck", ["GET"], summary="Component status (500 when one fails)")
    async def healthcheck() -> JSONResponse:
        errors: list[dict[str, str]] = []
        db_ok = prefect_ok = True
        try:
            svc().counts(OPEN)
        except Exception as exc:
            db_ok = False
            errors.append({"source": "mongo", "message": f"facade database: {exc}"})
        try:
            await asyncio.wait_for(main.state.jobs.client.hello(), timeout=5)
        except Exception as exc:
            prefect_ok = False
            errors.append({"source": "redis", "message": f"Prefect API: {exc!r}"})
        body = {"redis": prefect_ok, "mongo": db_ok, "database": db_ok, "prefect": prefect_ok, "errors": errors}
        return JSONResponse(body, status_code=500 if errors else 200)

    app.add_api_route("/", healthcheck, methods=["GET"], include_in_schema=False)

    @route("/status", ["GET"], summary="Workers, queues, counts and scheduled jobs")
    async def status(request: Request) -> dict[str, Any]:
        principal = who(request, "jobs:read")
        counts = svc().counts(principal)
        hosts: list[dict[str, Any]] = []
        try:
            workers = await main.state.jobs.client.read_workers_for_work_pool(settings.work_pool)
            hosts = [{"host": w.name, "status": str(getattr(w.status, "value", w.status)), "lastHeartbeat": iso(w.last_heartbeat_time)}
                     for w in workers]
        except Exception:
            pass
        scheduled = sorted(counts["scheduled"], key=lambda j: j[1].timestamp() if j[1] else math.inf)
        nxt = next((at for _, at in scheduled if at is not None), None)
        return {
            "hosts": hosts,
            "containers": {"running": [{"executionId": e.id, "jobId": e.job_id, "taskId": e.task_id, "startedAt": iso(e.started_at),
                                        "url": ex_url(request, e)} for e in counts["running"]]},
            "queues": {
                "jobs": {"length": counts["waiting"]}, "monitor": {"length": 0}, "webhooks": {"length": counts["hooks"]},
                "notify": {"length": 0},
                "scheduled": {"length": len(scheduled), "nextTimeStamp": nxt.timestamp() if nxt else None,
                              "nextHumanReadableDate": iso(nxt)},
            },
            "tasks": {"count": counts["tasks"]},
            "jobs": {"count": counts["jobs"], "scheduled": [
                {"jobId": j.id, "taskId": j.task_id, "createdAt": iso(j.created_at), "lastModifiedAt": iso(j.last_modified_at),
                 "image": j.image, "command": j.command, "cron": j.cron, "nextScheduledAt": at.timestamp() if at else None,
                 "url": job_url(request, j.task_id, j.id), "stopUrl": job_url(request, j.task_id, j.id) + "stop/",
                 "task": {"id": j.task_id, "url": task_url(request, j.task_id)}} for j, at in scheduled]},
            "fastlane": {"version": VERSION, "executor": "sojourn"},
        }

    # ------------------------------------------------------------------ tasks
    def paginate(request: Request, principal: Principal, operation: str, words: list[str] | None) -> JSONResponse:
        raw = request.query_params.get("page", "1")
        try:
            page = int(raw)
            if page < 1:
                raise ValueError
        except ValueError:
            return _error(400, "Tasks pagination page param should be a positive integer.", operation)
        per_page = settings.fastlane_per_page
        rows, total = svc().tasks(principal, page, per_page, words)
        pages = max(math.ceil(total / per_page), 1)
        if page > pages:
            return _error(404, "Page not found.", operation)
        here = str(request.url.remove_query_params("page"))
        sep = "&" if "?" in here else "?"
        return JSONResponse({
            "items": [{"taskId": t.task_id, "createdAt": iso(t.created_at), "lastModifiedAt": iso(t.last_modified_at),
                       "url": task_url(request, t.task_id), "jobsCount": n} for t, n in rows],
            "total": total, "page": page, "pages": pages, "perPage": per_page,
            "hasNext": page < pages, "hasPrev": page > 1,
            "nextUrl": f"{here}{sep}page={page + 1}" if page < pages else None,
            "prevUrl": f"{here}{sep}page={page - 1}" if page > 1 else None,
        })

    @route("/tasks", ["GET"], summary="Tasks, paginated")
    async def get_tasks(request: Request) -> JSONResponse:
        return paginate(request, who(request, "jobs:read"), "get_tasks", None)

    @route("/search", ["GET"], summary="Tasks whose id has these whole words")
    async def search(request: Request) -> JSONResponse:
        principal = who(request, "jobs:read")
        query = request.query_params.get("query")
        if not query:
            return _error(400, "The query param is required.", "search_tasks")
        return paginate(request, principal, "search_tasks", query.split())

    @route("/tasks/{task_id}", ["GET"], summary="A task and its jobs")
    async def get_task(task_id: str, request: Request) -> dict[str, Any]:
        task = svc().task(who(request, "jobs:read"), task_id)
        if task is None:
            raise LookupFailed(404, "Task not found.", "get_task")
        return {"taskId": task_id, "jobs": [{"id": j.id, "createdAt": iso(j.created_at), "url": job_url(request, task_id, j.id)}
                                            for j in svc().jobs_of(task)]}

    @route("/tasks/{task_id}", ["POST"], summary="Enqueue a new job in the task (created if new)")
    async def enqueue(task_id: str, request: Request) -> dict[str, Any]:
        principal = who(request, "jobs:write")
        body = await read_body(request)
        done = await svc().enqueue(principal, task_id, body, request.client.host if request.client else None)
        return enqueue_reply(request, task_id, done.job, done.execution, done.job.scheduled)

    @route("/tasks/{task_id}/jobs/{job_id}", ["PUT"], summary="Create or update a job (UUID4 id) and reschedule it")
    async def upsert(task_id: str, job_id: str, request: Request) -> dict[str, Any]:
        principal = who(request, "jobs:write")
        if not _is_uuid4(job_id):
            raise InputError(f"The job_id {job_id} is not a valid UUID4. All job IDs must be UUID4.")
        body = await read_body(request)
        done = await svc().enqueue(principal, task_id, body, request.client.host if request.client else None, job_id=job_id)
        return enqueue_reply(request, task_id, done.job, done.execution, done.job.scheduled)

    # ------------------------------------------------------------------ jobs
    @route("/tasks/{task_id}/jobs/{job_id}", ["GET"], summary="A job and its last 20 executions, newest first")
    async def get_job(task_id: str, job_id: str, request: Request) -> dict[str, Any]:
        principal = who(request, "jobs:read")
        job = find_job(principal, task_id, job_id, "get_job")
        updated = {e.id: e for e in await svc().current(svc().executions(job, limit=20))}
        job = find_job(principal, task_id, job_id, "get_job")  # again: bringing its executions up to date may have changed it
        # Counted, then listed again: bringing an execution up to date may have made its retry (here or in another
        # process), and the list must hold every execution the count does (it listed 2 beside an executionCount of 3).
        count = svc().execution_count(job)
        executions = [e if e.final else updated.get(e.id, e) for e in svc().executions(job, limit=20)]
        return {"task": {"id": task_id, "url": task_url(request, task_id)}, "job": {
            "createdAt": iso(job.created_at), "image": job.image, "command": job.command, "lastModifiedAt": iso(job.last_modified_at),
            "taskId": task_id, "scheduled": job.scheduled, "executionCount": count,
            "requestIPAddress": job.request_ip, "metadata": job_metadata(job, executions[0] if executions else None),
            "executions": [{**execution_dict(e), "url": ex_url(request, e)} for e in executions],
        }}

    async def last_execution(request: Request, task_id: str, job_id: str) -> FastlaneExecution:
        job = find_job(who(request, "jobs:read"), task_id, job_id, "retrieve_execution_details")
        executions = svc().executions(job, limit=1)
        if not executions:
            raise LookupFailed(400, f"No executions found in job ({job_id}).", "retrieve_execution_details")
        return await svc().refresh(executions[0])

    for kind in ("stdout", "stderr", "logs"):
        def make(kind: str) -> Callable[..., Any]:
            async def job_text(task_id: str, job_id: str, request: Request) -> Response:
                return text_reply(await last_execution(request, task_id, job_id), kind)

            async def execution_text(task_id: str, job_id: str, execution_id: str, request: Request) -> Response:
                job = find_job(who(request, "jobs:read"), task_id, job_id, "retrieve_execution_details")
                ex = svc().execution(job, execution_id)
                if ex is None:
                    raise LookupFailed(400, "No executions found in job with specified arguments.", "retrieve_execution_details")
                return text_reply(await svc().refresh(ex), kind)

            route(f"/tasks/{{task_id}}/jobs/{{job_id}}/{kind}", ["GET"], summary=f"{kind} of the last execution (plain text)")(job_text)
            route(f"/tasks/{{task_id}}/jobs/{{job_id}}/executions/{{execution_id}}/{kind}", ["GET"], summary=f"{kind} of the execution")(execution_text)
            return job_text
        make(kind)

    @route("/tasks/{task_id}/jobs/{job_id}/stop", ["POST"], summary="Stop the job: its running execution, retries and schedule")
    async def stop_job(task_id: str, job_id: str, request: Request) -> dict[str, Any]:
        job = find_job(who(request, "jobs:write"), task_id, job_id, "stop_job")
        await svc().stop_job(job)
        return {"taskId": task_id, "jobId": job_id, "jobUrl": job_url(request, task_id, job_id), "taskUrl": task_url(request, task_id)}

    @route("/tasks/{task_id}/jobs/{job_id}/retry", ["POST"], summary="A new execution of the job")
    async def retry_job(task_id: str, job_id: str, request: Request) -> dict[str, Any]:
        job = find_job(who(request, "jobs:write"), task_id, job_id, "retry_job")
        ex = await svc().retry(job)
        return enqueue_reply(request, task_id, job, ex, False)

    # ------------------------------------------------------------------ executions
    @route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}", ["GET"], summary="One execution")
    async def get_execution(task_id: str, job_id: str, execution_id: str, request: Request) -> dict[str, Any]:
        _job, ex = await find_execution(who(request, "jobs:read"), task_id, job_id, execution_id, "get_job_execution")
        return {"task": {"id": task_id, "url": task_url(request, task_id)}, "job": {"id": job_id, "url": job_url(request, task_id, job_id)},
                "execution": execution_dict(ex)}

    @route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stop", ["POST"], summary="Stop one execution")
    async def stop_execution(task_id: str, job_id: str, execution_id: str, request: Request) -> dict[str, Any]:
        _job, ex = await find_execution(who(request, "jobs:write"), task_id, job_id, execution_id, "stop_job_execution")
        await svc().stop_execution(ex)
        return {"task": {"id": task_id, "url": task_url(request, task_id)}, "job": {"id": job_id, "url": job_url(request, task_id, job_id)},
                "execution": {"id": execution_id, "url": ex_url(request, ex)}}

    @route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/captures/{name}", ["GET"], summary="A capture of the execution (Sojourn's)")
    async def capture(task_id: str, job_id: str, execution_id: str, name: str, request: Request) -> Response:
        principal = who(request, "jobs:read")
        _job, ex = await find_execution(principal, task_id, job_id, execution_id, "get_job_execution")
        if not ex.ledger_job_id:
            raise LookupFailed(404, f"Capture ({name}) not found in execution ({execution_id}).", "get_capture")
        try:
            record, data = await main.state.jobs.artifact(ex.ledger_job_id, name, Principal(ex.owner))
        except ServiceError:
            raise LookupFailed(404, f"Capture ({name}) not found in execution ({execution_id}).", "get_capture") from None
        return Response(data, media_type=record.content_type)

    # ------------------------------------------------------------------ live logs
    def stream_page(ws_path: str) -> HTMLResponse:
        return HTMLResponse(STREAM_PAGE.replace("__WS_PATH__", json.dumps(ws_path)))

    @route("/tasks/{task_id}/jobs/{job_id}/stream", ["GET"], summary="A page showing the job's live log")
    async def stream_job(task_id: str, job_id: str, request: Request) -> HTMLResponse:
        find_job(who(request, "jobs:read"), task_id, job_id, "stream_job")
        return stream_page(f"{request.scope.get('root_path', '')}/tasks/{task_id}/jobs/{job_id}/ws/")

    @route("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stream", ["GET"], summary="A page showing the execution's live log")
    async def stream_execution(task_id: str, job_id: str, execution_id: str, request: Request) -> HTMLResponse:
        await find_execution(who(request, "jobs:read"), task_id, job_id, execution_id, "stream_job_execution")
        return stream_page(f"{request.scope.get('root_path', '')}/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/ws/")

    async def ws_logs(websocket: WebSocket, task_id: str, job_id: str, execution_id: str | None) -> None:
        try:
            principal = who(websocket, "jobs:read")
        except ServiceError:
            await websocket.close(code=1008, reason="unauthorized")
            return
        await websocket.accept()
        job = svc().job(principal, task_id, job_id)
        ex = None
        if job is not None:
            ex = svc().execution(job, execution_id) if execution_id else next(iter(svc().executions(job, limit=1)), None)
        if ex is None:
            await websocket.close(code=1000)
            return
        try:
            ex = await svc().refresh(ex)
            if ex.status in ("enqueued", "pulling"):
                await websocket.close(code=1010, reason="wsretry")
                return
            while not ex.final:  # running: what Sojourn knows of it is its progress; the log comes at the end
                await asyncio.sleep(1.0)
                ex = await svc().refresh(ex)
            await websocket.send_text(f"EXIT CODE: {ex.exit_code}\n")
            await websocket.send_text(ex.log or "")
            await websocket.send_text(JOINER)
            await websocket.send_text(ex.error or "")
            await websocket.close(code=1010, reason="wsdone")
        except WebSocketDisconnect:
            return

    @app.websocket("/tasks/{task_id}/jobs/{job_id}/ws")
    async def ws_job(websocket: WebSocket, task_id: str, job_id: str) -> None:
        await ws_logs(websocket, task_id, job_id, None)

    @app.websocket("/tasks/{task_id}/jobs/{job_id}/ws/")
    async def ws_job_slash(websocket: WebSocket, task_id: str, job_id: str) -> None:
        await ws_logs(websocket, task_id, job_id, None)

    @app.websocket("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/ws")
    async def ws_execution(websocket: WebSocket, task_id: str, job_id: str, execution_id: str) -> None:
        await ws_logs(websocket, task_id, job_id, execution_id)

    @app.websocket("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/ws/")
    async def ws_execution_slash(websocket: WebSocket, task_id: str, job_id: str, execution_id: str) -> None:
        await ws_logs(websocket, task_id, job_id, execution_id)

    return app


def _is_uuid4(value: str) -> bool:
    import uuid

    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


STREAM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastlane log</title>
<style>body{background:#111;color:#ddd;font:13px monospace}pre{white-space:pre-wrap}</style></head>
<body><pre id="log">connecting…</pre>
<script>
const path = __WS_PATH__;
const log = document.getElementById("log");
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
  let text = "";
  ws.onmessage = (e) => { text += e.data; log.textContent = text; };
  ws.onclose = (e) => { if (e.reason !== "wsdone") setTimeout(connect, 5000); };
}
connect();
</script></body></html>
"""
