"""The Tourist dialect at /tourist: Tourist clients work unchanged with their base URL set here.

Request and response bodies, defaults and status codes as Tourist documents
them (shared/seeds/tourist-dispatching-jobs.md, shared/reference/tourist.md),
errors as ``{statusCode, error, message}``. Differences a client can notice,
all on the safe side: actions are parsed, never executed (400 naming the
action); sync jobs wait in the same queue as async ones; failed async jobs
carry an ``error`` beside ``status: failed``; scopes are checked properly.
"""

from __future__ import annotations

import base64
import re
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sojourn.api.dialects.mounted import Config, main_state
from sojourn.services import visit_tokens
from sojourn.services.principals import Principal
from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService, JobView
from sojourn.browser.actions import ActionError, parse_action
from sojourn.settings import Settings
from sojourn.spec import JobSpec, PdfOptions, spec_errors

PRINCIPAL = Principal("tourist", frozenset({"jobs:read", "jobs:write"}))
NO_AUTH = "Authorization has not been provided"
OUT_OF_SCOPE = "Provided token does not allow visiting one or more of the requested URLs"


# ------------------------------------------------------------------ request models (Tourist's schema)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TouristCookie(_Strict):
    name: str
    value: str
    domain: str | None = None
    path: str = "/"
    expires: float | None = None
    httpOnly: bool = False
    secure: bool = False
    sameSite: Literal["None", "Lax", "Strict"] | None = None


class TouristStep(_Strict):
    url: str
    actions: list[str] = Field(default_factory=list)


class TouristJob(_Strict):
    browser: Literal["CHROMIUM", "FIREFOX"] = "CHROMIUM"
    steps: list[TouristStep] = Field(min_length=1)
    cookies: list[TouristCookie] = Field(default_factory=list)
    options: list[Literal["RECORD", "SCREENSHOT", "PDF", "READ_ALERTS"]] = Field(default_factory=list)
    pdf: PdfOptions | None = None


class IssueToken(_Strict):
    scope: str = Field(min_length=1)
    validity: int = Field(604800, gt=0)
    strict: bool = False


# ------------------------------------------------------------------ errors


class TouristError(Exception):
    def __init__(self, status: int, message: str, error: str | None = None, extra: dict[str, Any] | None = None) -> None:
        self.status, self.message = status, message
        self.error = error or HTTPStatus(status).phrase
        self.extra = extra or {}


def _body(status: int, error: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "error": error, "message": message, **(extra or {})}


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(TouristError)
    async def _tourist(_r: Request, exc: TouristError) -> JSONResponse:
        return JSONResponse(_body(exc.status, exc.error, exc.message, exc.extra), status_code=exc.status)

    @app.exception_handler(ServiceError)
    async def _api(_r: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(_body(exc.status, HTTPStatus(exc.status).phrase, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        where = "/".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(_body(400, "Bad Request", f"{where}: {first.get('msg')}"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail)), status_code=exc.status_code)


# ------------------------------------------------------------------ translation


def to_spec(job: TouristJob) -> JobSpec:
    for i, step in enumerate(job.steps):
        for j, action in enumerate(step.actions):
            try:
                parse_action(action)
            except ActionError as exc:
                raise TouristError(400, f"body/steps/{i}/actions/{j}: {exc}") from None
    capture: dict[str, Any] = {}
    if "SCREENSHOT" in job.options:
        capture["screenshot"] = {"fullPage": True}
    if "RECORD" in job.options:
        capture["video"] = True
    if "PDF" in job.options:
        capture["pdf"] = (job.pdf or PdfOptions()).model_dump()
    elif job.pdf is not None:
        raise TouristError(400, "body/pdf: pdf options need the PDF option")
    if "READ_ALERTS" in job.options:
        capture["alerts"] = True
    data = {
        "browser": job.browser.lower(),
        "steps": [{"url": s.url, "actions": s.actions} for s in job.steps],
        "cookies": [c.model_dump(exclude_none=True) for c in job.cookies],
        "capture": capture,
    }
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        first = spec_errors(exc)[0]
        raise TouristError(400, f"body/{first['field'].replace('.', '/')}: {first['message']}") from None


def requested_urls(steps: list[dict[str, Any]]) -> list[str]:
    """Every URL a job asks for: its step URLs and the URLs of goto actions."""
    urls = []
    for step in steps:
        urls.append(step.get("url", ""))
        for action in step.get("actions", []):
            try:
                parsed = parse_action(action)
            except ActionError:
                continue
            if parsed.target == "page" and parsed.method == "goto":
                urls.append(parsed.args[0])
    return urls


# ------------------------------------------------------------------ dependencies


async def jobs_of(request: Request) -> JobService:
    return main_state(request).jobs  # type: ignore[no-any-return]


Jobs = Annotated[JobService, Depends(jobs_of)]


def authorize(request: Request, settings: Settings, urls: list[str]) -> None:
    """With ``tourist_auth``: a visit token (``Authorization: Bearer``) whose scope covers every URL."""
    if not settings.tourist_auth:
        return
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        raise TouristError(401, NO_AUTH, "Unauthorized")
    try:
        token = visit_tokens.visit_token(settings, header[7:].strip())
    except visit_tokens.TokenError:
        raise TouristError(403, OUT_OF_SCOPE, "Forbidden") from None
    if not all(visit_tokens.covers(token, u) for u in urls):
        raise TouristError(403, OUT_OF_SCOPE, "Forbidden")


async def results(svc: JobService, view: JobView, spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    m = view.manifest
    if m is None:
        return out
    store = svc.store
    for kind, key in (("screenshot", "screenshot"), ("video", "video"), ("pdf", "pdf")):
        rec = next((a for a in m.artifacts if a.kind == kind and a.name.startswith(("screenshot.", "video.", "page."))), None)
        if rec is not None:
            out[key] = base64.b64encode(await store.read_bytes(rec.path)).decode()
    if spec.get("capture", {}).get("alerts"):
        out["messages"] = m.messages or []
    return out


# ------------------------------------------------------------------ routes


router = APIRouter()


@router.post("/api/v1/async-job", summary="Schedule a job; answers at once with its id")
async def async_job(job: TouristJob, request: Request, svc: Jobs, settings: Config) -> dict[str, Any]:
    authorize(request, settings, requested_urls([s.model_dump() for s in job.steps]))
    spec = to_spec(job)
    view = await svc.submit(spec, PRINCIPAL, dialect="tourist")
    return {"status": "scheduled", "id": view.id}


@router.post("/api/v1/sync-job", summary="Run a job and answer with its results")
async def sync_job(job: TouristJob, request: Request, svc: Jobs, settings: Config) -> dict[str, Any]:
    authorize(request, settings, requested_urls([s.model_dump() for s in job.steps]))
    spec = to_spec(job)
    submitted = await svc.submit(spec, PRINCIPAL, dialect="tourist")
    view = await svc.wait(submitted.id, PRINCIPAL, settings.sync_wait_seconds)
    if not view.final:
        raise TouristError(
            504,
            f"The job did not finish within {settings.sync_wait_seconds:g} s; it keeps running as job {submitted.id}: "
            f"read its result from /api/v1/job-status?id={submitted.id}",
            extra={"id": submitted.id},
        )
    if view.status != "completed":
        message = (view.error or {}).get("message") or "the job failed"
        raise TouristError(400, message, extra={"id": submitted.id})
    return {"status": "success", "result": await results(svc, view, view.spec)}


@router.get("/api/v1/job-status", summary="The status (and results) of an async job")
async def job_status(id: str, request: Request, svc: Jobs, settings: Config) -> dict[str, Any]:
    not_found = TouristError(404, "Job not found")
    try:
        view = await svc.get(id, PRINCIPAL)
    except ServiceError:  # unknown, another's, or deleted past SOJOURN_RESULT_RETENTION_SECONDS
        raise not_found from None
    authorize(request, settings, requested_urls(view.spec.get("steps", [])))
    if view.status == "completed":
        return {"status": "success", "result": await results(svc, view, view.spec)}
    if view.status in ("failed", "cancelled"):
        return {"status": "failed", "error": {"code": (view.error or {}).get("code"), "message": (view.error or {}).get("message")}}
    return {"status": "pending"}


@router.post("/api/v1/issue-token", summary="Mint a visit token (needs the issuer token)")
async def issue_token(body: IssueToken, request: Request, settings: Config) -> dict[str, str]:
    if not settings.tourist_auth:
        raise TouristError(404, "Authentication is disabled on this server")
    header = request.headers.get("authorization", "")
    try:
        visit_tokens.decode(settings, header[7:].strip() if header.lower().startswith("bearer ") else "", "issuer")
    except visit_tokens.TokenError:
        raise TouristError(401, "Invalid Issuer Token", "Invalid Issuer Token") from None
    if not re.match(r"^https?://", body.scope, re.I):
        raise TouristError(400, "body/scope: must be an http(s) URL")
    return {"token": visit_tokens.issue(settings, "visit", scope=body.scope, strict=body.strict, validity=body.validity)}


@router.get("/api/v1/healthcheck", summary="Runs a real visit of a page this server serves")
async def healthcheck(svc: Jobs, settings: Config) -> dict[str, str]:
    url = f"{settings.public_base}/tourist/ping"
    spec = JobSpec.model_validate({"steps": [{"url": url, "actions": ["page.waitForSelector('#pong')"]}], "priority": "high"})
    job = await svc.submit(spec, PRINCIPAL, dialect="tourist", labels={"healthcheck": ""})
    view = await svc.wait(job.id, PRINCIPAL, min(settings.sync_wait_seconds, 60))
    if view.status != "completed":
        raise TouristError(503, f"healthcheck visit did not complete ({view.status})")
    return {"status": "OK"}


@router.get("/ping", include_in_schema=False)
async def ping() -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>Sojourn</title><p id=pong>pong</p>")


# ------------------------------------------------------------------ the app


def create_tourist_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one at /tourist (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(
        title="Sojourn: Tourist API",
        description="Tourist's job API (sync-job, async-job, job-status, issue-token), served by Sojourn.",
        version="1.0.0",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    _install_errors(app)
    app.state.main, app.state.settings = main, settings
    app.include_router(router)
    return app
