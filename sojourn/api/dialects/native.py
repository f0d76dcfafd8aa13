"""The native dialect: the browsing-agent API at /api/v1, with `browse` jobs of explicit steps.

Thin: parse the documented request, build a JobSpec, call JobService, render
the documented response.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sojourn.api.auth import Principal
from sojourn.api.errors import ApiError, invalid_input
from sojourn.api.jobs import JobService, JobView
from sojourn.spec import JobSpec

router = APIRouter(prefix="/api/v1", tags=["jobs"])


# ------------------------------------------------------------------ request models


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int | None = Field(None, gt=0, description="milliseconds")
    retryOnFailure: bool = False
    maxRetries: int | None = Field(None, ge=0)


class SubmitJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["browse", "browseWebAndReturnText", "browseWebAndReturnImage"]
    input: dict[str, Any] = Field(description="for `browse`: a JobSpec (steps, capture, extract, ...); otherwise {provideAllValuesInPlainEnglish}")
    priority: Literal["high", "normal", "low"] = "normal"
    options: JobOptions = Field(default_factory=JobOptions)


def to_spec(body: SubmitJob) -> JobSpec:
    if body.type != "browse":
        raise ApiError(
            422, "INVALID_INPUT",
            f"Job type `{body.type}` (plain-English jobs) is not available on this server yet; use type `browse` with explicit steps.",
            {"field": "type"},
        )
    data = dict(body.input)
    data["priority"] = body.priority
    if body.options.timeout:
        data["timeout"] = body.options.timeout / 1000
    if body.options.retryOnFailure:
        data["retries"] = body.options.maxRetries if body.options.maxRetries is not None else 3
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        message, details = invalid_input(exc, prefix="input")
        raise ApiError(422, "INVALID_INPUT", message, details) from None


# ------------------------------------------------------------------ rendering


def iso(dt: Any) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def screenshot_ids(view: JobView) -> list[str]:
    if not view.manifest:
        return []
    return [a.id for a in view.manifest.artifacts if a.kind == "screenshot"]


def render_job(view: JobView) -> dict[str, Any]:
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
    if view.status == "completed" and m is not None:
        shots = screenshot_ids(view)
        text = next((a for a in m.artifacts if a.kind == "text"), None)
        out["result"] = {
            "type": "mixed" if (shots and (m.data or text)) else ("image" if shots else "text"),
            "data": m.answer if m.answer is not None else m.data,
            "screenshots": shots,
            "metadata": {
                "steps": [s.model_dump(mode="json") for s in m.steps],
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


@router.post("/jobs", status_code=202, summary="Submit a job")
async def submit_job(body: SubmitJob, principal: Principal = Depends(writer), svc: JobService = Depends(jobs)) -> dict[str, Any]:
    spec = to_spec(body)
    run = await svc.submit(spec, principal, dialect="native", extra_tags=[f"type:{body.type}"])
    return {"jobId": str(run.id), "status": "submitted", "estimatedDuration": None, "queuePosition": None}


@router.get("/jobs/{job_id}", summary="Get a job's status, progress and result")
async def get_job(
    job_id: str,
    wait: float = Query(0, ge=0, le=60, description="seconds to wait for the job to finish before answering (long poll)"),
    principal: Principal = Depends(reader),
    svc: JobService = Depends(jobs),
) -> dict[str, Any]:
    view = await svc.wait(job_id, principal, wait) if wait else await svc.get(job_id, principal)
    return render_job(view)


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
        raise ApiError(404, "SCREENSHOT_NOT_FOUND", f"Screenshot with ID '{screenshot_id}' not found", {"screenshotId": screenshot_id})
    if include == "metadata":
        from fastapi.responses import JSONResponse

        return JSONResponse(
            {
                "id": rec.id,
                "metadata": render_screenshot(rec, {}),
                "url": f"/api/v1/screenshots/{rec.id}/download",
                "base64": "data:image/png;base64," + base64.b64encode(data).decode(),
            }
        )
    return Response(data, media_type="image/png")


@router.get("/screenshots/{screenshot_id}/download", summary="Download a screenshot")
async def download_screenshot(screenshot_id: str, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> Response:
    rec, data = await svc.artifact_by_id(screenshot_id, principal)
    return Response(data, media_type="image/png", headers={"Content-Disposition": f'attachment; filename="{rec.name}"'})


@router.get("/jobs/{job_id}/artifacts/{name}", summary="Download any capture of a job (PDF, video, HTML, ...)")
async def get_artifact(job_id: str, name: str, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> Response:
    rec, data = await svc.artifact(job_id, name, principal)
    return Response(data, media_type=rec.content_type)


@router.get("/jobs/{job_id}/logs", summary="A job's log lines")
async def get_logs(job_id: str, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> dict[str, Any]:
    return {"logs": await svc.logs(job_id, principal)}
