"""Native dialect, jobs and screenshots: the browsing-agent API at /api/v1, with `browse` jobs of explicit steps.

Thin: parse the documented request, build a JobSpec, call JobService, render
the documented response.
"""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import date, datetime, time, timezone
from typing import Any, Awaitable, Callable, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sojourn import signed_links
from sojourn.services.principals import Principal
from sojourn.api.errors import invalid_input
from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService, JobView
from sojourn.spec import JobSpec


MAX_PAGE = 10_000_000  # pages of a list; any more is past every job a ledger holds

router = APIRouter(prefix="/api/v1", tags=["jobs"])


# ------------------------------------------------------------------ request models


JobType = Literal["browse", "browseWebAndReturnText", "browseWebAndReturnImage"]
Priority = Literal["high", "normal", "low"]
STATUSES = ("submitted", "processing", "completed", "failed", "cancelled")


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int | None = Field(None, gt=0, description="milliseconds the whole job may take")
    retryOnFailure: bool = Field(False, description="retry failed steps")
    maxRetries: int | None = Field(None, ge=0, description="retries per step when retryOnFailure (default 3)")


class SubmitJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: JobType
    input: dict[str, Any] = Field(description="for `browse`: a JobSpec (steps, capture, extract, ...); otherwise {provideAllValuesInPlainEnglish}")
    priority: Priority = "normal"
    options: JobOptions = Field(default_factory=JobOptions)


PLAIN_ENGLISH = "provideAllValuesInPlainEnglish"


def plain_english(body: SubmitJob) -> dict[str, Any]:
    """browseWebAndReturnText/Image: the goal in plain English, run by the agent flow."""
    extra = set(body.input) - {PLAIN_ENGLISH}
    if extra:
        raise ServiceError(422, "INVALID_INPUT", f"Invalid field `input.{sorted(extra)[0]}`: {body.type} jobs take only `input.{PLAIN_ENGLISH}`", {"field": f"input.{sorted(extra)[0]}"})
    goal = body.input.get(PLAIN_ENGLISH)
    if not isinstance(goal, str) or not goal.strip():
        raise ServiceError(422, "INVALID_INPUT", f"Invalid field `input.{PLAIN_ENGLISH}`: the instructions in plain English are required", {"field": f"input.{PLAIN_ENGLISH}"})
    data: dict[str, Any] = {"kind": "agent", "goal": goal.strip()}
    if body.type == "browseWebAndReturnImage":
        data["capture"] = {"screenshot": {"fullPage": False}}
    return data


def to_spec(body: SubmitJob) -> JobSpec:
    data = dict(body.input) if body.type == "browse" else plain_english(body)
    data["priority"] = body.priority
    if body.options.timeout:
        data["timeout"] = body.options.timeout / 1000
    if body.options.retryOnFailure:
        data["retries"] = body.options.maxRetries if body.options.maxRetries is not None else 3
    elif "retries" not in data:
        data["retries"] = 0
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        message, details = invalid_input(exc, prefix="input")
        raise ServiceError(422, "INVALID_INPUT", message, details) from None


async def accepted(svc: JobService, view: JobView, body: SubmitJob) -> dict[str, Any]:
    """The 202 body: an estimate from this type's recent history and the place in the queue (both from memory)."""
    return {"jobId": view.id, "status": "submitted", "estimatedDuration": await svc.estimated_duration_ms(body.type, view.spec),
            "queuePosition": svc.queue_position(view)}


def time_range(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """`from`/`to` query values: ISO dates or date-times (UTC unless they say); a bare `to` date is inclusive."""

    def parse(value: str | None, field: str, end_of_day: bool) -> datetime | None:
        if not value:
            return None
        try:
            if len(value) == 10:
                d = date.fromisoformat(value)
                t = time(23, 59, 59, 999999) if end_of_day else time(0)
                return datetime.combine(d, t, tzinfo=timezone.utc)
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ServiceError(422, "INVALID_INPUT", f"Invalid field `{field}`: {value!r} is not an ISO date or date-time", {"field": field}) from None
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)

    a, b = parse(start, "from", False), parse(end, "to", True)
    if a and b and a > b:
        raise ServiceError(422, "INVALID_INPUT", "Invalid field `from`: it is after `to`", {"field": "from"})
    return a, b


# ------------------------------------------------------------------ rendering


def iso(dt: Any) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def screenshot_ids(view: JobView) -> list[str]:
    if not view.manifest:
        return []
    return [a.id for a in view.manifest.artifacts if a.kind == "screenshot"]


def camel(value: Any) -> Any:
    """snake_case keys (of Sojourn's own records: steps, moves) as the spec writes them, camelCase, recursively."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), str(k)): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def is_image_answer(view: JobView) -> bool:
    m = view.manifest
    return view.status == "completed" and m is not None and m.kind == "agent" and view.tag("type") == "browseWebAndReturnImage"


async def image_data_url(svc: JobService, view: JobView) -> str | None:
    """The final screenshot of a browseWebAndReturnImage job as a data URL (the spec's `data`: "string or base64")."""
    if not is_image_answer(view):
        return None
    shots = [a for a in view.manifest.artifacts if a.kind == "screenshot"]  # type: ignore[union-attr]
    if not shots:
        return None
    try:
        data = await svc.store.read_bytes(shots[-1].path)
    except FileNotFoundError:
        return None
    return f"data:{shots[-1].content_type or 'image/png'};base64," + base64.b64encode(data).decode()


def renderer(svc: JobService) -> Callable[[JobView], Awaitable[dict[str, Any]]]:
    """render_job with what it needs read from the artifact store (the image of an image job)."""
    async def render(view: JobView) -> dict[str, Any]:
        out = render_job(view, image=await image_data_url(svc, view))
        if view.spec.get("profile"):
            out["profile"] = await profile_of(svc, view)
        return out
    return render


async def profile_of(svc: JobService, view: JobView) -> dict[str, Any]:
    """The profile a job started from and, for a job that saves, how its save went (``saved`` null: not decided yet)."""
    ref = view.spec.get("profile_ref") or {}
    out: dict[str, Any] = {"name": view.spec.get("profile"), "startedFromVersion": ref.get("version")}
    if view.spec.get("save_profile"):
        decided = await asyncio.to_thread(svc.profiles.outcome, view.id) if svc.profiles is not None else None
        if decided is not None:
            out.update(saved=decided.saved, version=decided.version)
            if decided.error:
                code, _, message = decided.error.partition(": ")
                out["error"] = {"code": code, "message": message}
        elif view.final and view.status != "completed":
            out.update(saved=False, error={"code": "PROFILE_NOT_SAVED", "message": f"the job {view.status}; only a completed job saves"})
        else:
            out["saved"] = None
    return out


def render_job(view: JobView, *, image: str | None = None) -> dict[str, Any]:
    """A job as the spec shows it. ``image``: the data URL of an image job's answer (see :func:`renderer`);
    without it `data` falls back to the screenshot id."""
    out: dict[str, Any] = {
        "id": view.id,
        "type": view.tag("type") or "browse",
        "status": view.status,
        "priority": view.tag("priority") or "normal",
        "progress": view.progress,
        "createdAt": iso(view.created_at),
        "startedAt": iso(view.started_at),
        "completedAt": iso(view.completed_at),
        "duration": view.duration_ms,
    }
    m = view.manifest
    if view.status == "completed" and m is not None and m.kind == "agent":
        shots = screenshot_ids(view)
        is_image = view.tag("type") == "browseWebAndReturnImage"
        out["result"] = {
            "type": "image" if is_image else "text",
            "data": (image or (shots[-1] if shots else None)) if is_image else m.answer,
            "screenshots": shots,
            "metadata": {
                "planner": (m.data or {}).get("planner"),
                "urlsVisited": (m.data or {}).get("urlsVisited", []),
                "stepsTaken": len((m.data or {}).get("moves", [])),
                "moves": camel((m.data or {}).get("moves", [])),
                "finalScreenshotUrl": f"/api/v1/screenshots/{shots[-1]}" if shots else None,
            },
        }
    elif view.status == "completed" and m is not None:
        shots = screenshot_ids(view)
        text = next((a for a in m.artifacts if a.kind == "text"), None)
        out["result"] = {
            "type": "mixed" if (shots and (m.data or text)) else ("image" if shots else "text"),
            "data": m.answer if m.answer is not None else m.data,
            "screenshots": shots,
            "metadata": {
                "steps": [camel(s.model_dump(mode="json")) for s in m.steps],
                "artifacts": [{"id": a.id, "name": a.name, "kind": a.kind, "size": a.size, "contentType": a.content_type} for a in m.artifacts],
                "messages": m.messages,
                "cachedFrom": m.cached_from,
            },
        }
    if view.error:
        out["error"] = view.error
    return out


def render_screenshot(rec: Any, step_names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "step": rec.step_name or step_names.get(rec.step, f"Step {rec.step}" if rec.step is not None else None),
        "timestamp": iso(rec.created_at),
        "size": rec.size,
        "dimensions": {"width": rec.width, "height": rec.height},
    }


# ------------------------------------------------------------------ routes


def jobs(request: Request) -> JobService:
    return request.app.state.jobs


def reader(request: Request) -> Principal:
    return request.app.state.auth.authenticate(request, "jobs:read")


def writer(request: Request) -> Principal:
    return request.app.state.auth.authenticate(request, "jobs:write")


@router.post("/jobs", status_code=202, summary="Submit a job (an Idempotency-Key header makes a retried submission answer the job it made)")
async def submit_job(body: SubmitJob, principal: Principal = Depends(writer), svc: JobService = Depends(jobs),
                     idempotency_key: str | None = Header(None, max_length=200, description="the same key again (same API key) answers the same job")) -> dict[str, Any]:
    spec = to_spec(body)
    if idempotency_key:
        view = await svc.submit_once(spec, principal, dialect="native", labels={"type": body.type},
                                     external_id=f"idempotency:{principal.name}:{idempotency_key}")
    else:
        view = await svc.submit(spec, principal, dialect="native", labels={"type": body.type})
    return await accepted(svc, view, body)


SORTS = {
    "createdAt": FlowRunSort.EXPECTED_START_TIME_ASC,
    "-createdAt": FlowRunSort.EXPECTED_START_TIME_DESC,
    "startedAt": FlowRunSort.START_TIME_ASC,
    "-startedAt": FlowRunSort.START_TIME_DESC,
    "-completedAt": FlowRunSort.END_TIME_DESC,
}


@router.get("/jobs", summary="List jobs (filter, sort, paginate by page/size or limit/offset)")
async def list_jobs(
    status: str | None = Query(None, description="one or more of submitted, processing, completed, failed, cancelled (comma-separated)"),
    priority: Priority | None = None,
    from_: str | None = Query(None, alias="from", description="created at or after (ISO date or date-time)"),
    to: str | None = Query(None, description="created at or before (a date means the end of that day)"),
    sort: str = Query("-createdAt", description="createdAt, -createdAt, startedAt, -startedAt, -completedAt"),
    # (bounded so that page * size and offset stay within SQL's integers: past them a read was a 500)
    page: int | None = Query(None, ge=1, le=MAX_PAGE),
    size: int | None = Query(None, ge=1, le=100),
    limit: int | None = Query(None, ge=1, le=100),
    offset: int | None = Query(None, ge=0, le=MAX_PAGE * 100),
    principal: Principal = Depends(reader),
    svc: JobService = Depends(jobs),
) -> dict[str, Any]:
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
    bad = [s for s in statuses or [] if s not in STATUSES]
    if bad:
        raise ServiceError(422, "INVALID_INPUT", f"Invalid field `status`: {bad[0]!r} is not one of {', '.join(STATUSES)}", {"field": "status"})
    if sort not in SORTS:
        raise ServiceError(422, "INVALID_INPUT", f"Invalid field `sort`: {sort!r} is not one of {', '.join(SORTS)}", {"field": "sort"})
    if (page or size) and (limit or offset is not None):
        raise ServiceError(422, "INVALID_INPUT", "Invalid field `page`: use page/size or limit/offset, not both", {"field": "page"})
    start, end = time_range(from_, to)
    if page or size:
        size = size or 20
        page = page or 1
        take, skip = size, (page - 1) * size
    else:
        take, skip = limit or 20, offset or 0
    views, total = await svc.list(
        principal, status=statuses, priority=priority, created_from=start, created_to=end, sort=SORTS[sort], limit=take, offset=skip,
    )
    render = renderer(svc)
    out: dict[str, Any] = {"jobs": [await render(v) for v in views], "total": total, "hasMore": skip + len(views) < total}
    if page:
        out.update(page=page, size=take)
    else:
        out.update(limit=take, offset=skip)
    return out


@router.post("/jobs/{job_id}/retry", status_code=202, summary="Run a finished job again as a new job")
async def retry_job(job_id: str, principal: Principal = Depends(writer), svc: JobService = Depends(jobs)) -> dict[str, Any]:
    view = await svc.retry(job_id, principal)
    return {"newJobId": view.id, "originalJobId": job_id, "status": "submitted"}


@router.get("/jobs/{job_id}", summary="Get a job's status, progress and result")
async def get_job(
    job_id: str,
    wait: float = Query(0, ge=0, le=60, description="seconds to wait for the job to finish before answering (long poll)"),
    principal: Principal = Depends(reader),
    svc: JobService = Depends(jobs),
) -> dict[str, Any]:
    view = await svc.wait(job_id, principal, wait) if wait else await svc.get(job_id, principal)
    return await renderer(svc)(view)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job")
async def cancel_job(job_id: str, principal: Principal = Depends(writer), svc: JobService = Depends(jobs)) -> dict[str, Any]:
    view = await svc.cancel(job_id, principal)
    done = view.status == "cancelled"
    return {
        "jobId": view.id,
        "status": "cancelled" if done else "cancelling",
        "message": "Job cancelled successfully" if done else "Cancellation requested; the job is stopping",
    }


@router.get("/jobs/{job_id}/screenshots", summary="List a job's screenshots")
async def list_screenshots(job_id: str, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> dict[str, Any]:
    view = await svc.get(job_id, principal, with_progress=False)
    m = view.manifest
    shots = [a for a in (m.artifacts if m else []) if a.kind == "screenshot"]
    names = {s.index: s.name or f"Step {s.index}: {s.url}" for s in (m.steps if m else [])}
    return {"screenshots": [render_screenshot(a, names) for a in shots], "total": len(shots)}


@router.get("/screenshots/{screenshot_id}", summary="Get a screenshot (PNG, or JSON with ?include=metadata)")
async def get_screenshot(screenshot_id: str, request: Request, include: str | None = None, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> Response:
    rec, data = await svc.artifact_by_id(screenshot_id, principal)
    if rec.kind != "screenshot":
        raise ServiceError(404, "SCREENSHOT_NOT_FOUND", f"Screenshot with ID '{screenshot_id}' not found", {"screenshotId": screenshot_id})
    if include == "metadata":
        return JSONResponse(
            {
                "id": rec.id,
                "metadata": render_screenshot(rec, {}),
                "url": f"/api/v1/screenshots/{rec.id}/download",
                "base64": "data:image/png;base64," + base64.b64encode(data).decode(),
            }
        )
    return Response(data, media_type="image/png")


@router.delete("/screenshots/{screenshot_id}", status_code=204, summary="Delete a screenshot")
async def delete_screenshot(screenshot_id: str, principal: Principal = Depends(writer), svc: JobService = Depends(jobs)) -> Response:
    await svc.delete_artifact(screenshot_id, principal)
    return Response(status_code=204)


@router.get("/screenshots/{screenshot_id}/download", summary="Download a screenshot")
async def download_screenshot(screenshot_id: str, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> Response:
    rec, data = await svc.artifact_by_id(screenshot_id, principal)
    return Response(data, media_type="image/png", headers={"Content-Disposition": f'attachment; filename="{rec.name}"'})


@router.get("/jobs/{job_id}/artifacts/{name}", summary="Download any capture of a job (PDF, video, HTML, ...)")
async def get_artifact(
    job_id: str, name: str, request: Request,
    expires: str | None = Query(None, description="with `signature`: a signed link (the Prefect UI's), no API key needed"),
    signature: str | None = Query(None),
    svc: JobService = Depends(jobs),
) -> Response:
    if expires is not None or signature is not None:
        if not signed_links.verify(svc.settings, job_id, name, expires or "", signature or ""):
            raise ServiceError(403, "INVALID_SIGNATURE", "This link's signature is not valid for this capture, or the link has expired.",
                               {"jobId": job_id, "name": name})
        rec, data = await svc.artifact(job_id, name, None)  # the signature is the permission
    else:
        rec, data = await svc.artifact(job_id, name, reader(request))
    return Response(data, media_type=rec.content_type)


@router.get("/jobs/{job_id}/logs", summary="A job's log lines")
async def get_logs(job_id: str, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> dict[str, Any]:
    return {"logs": await svc.logs(job_id, principal)}
