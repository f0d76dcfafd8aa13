"""Scrape jobs: start, follow (also over a WebSocket), cancel, retry, read the log (:class:`~sojourn.services.scrape.jobs.ScrapeJobs`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect

from sojourn.api.dialects.scrape.dependencies import (Reader, Scrape, Writer, main_state, once_valid, reader, running, scrape_service, started,
                                                      writer)
from sojourn.api.dialects.scrape.requests import JobCreate, JobQuery, LogQuery, job_create_body
from sojourn.services.principals import Principal
from sojourn.services.scrape import ScrapeService
from sojourn.services.scrape.conventions import page_of
from sojourn.services.service_error import ServiceError

router = APIRouter(tags=["jobs"])


@router.get("/projects/{project_id}/jobs", summary="List a project's jobs")
async def list_jobs(project_id: str, q: Annotated[JobQuery, Depends()], p: Annotated[Principal, Depends(once_valid(JobQuery, reader))],
                    scrape: Annotated[ScrapeService, Depends(once_valid(JobQuery, scrape_service))]) -> dict[str, Any]:
    items, total = await scrape.jobs.list(project_id, p, page=q.page, per_page=q.per_page, status=q.status, source=q.source)
    return page_of(items, total, q.page, q.per_page)


@router.post("/projects/{project_id}/jobs", status_code=201, summary="Start a scrape job")
async def create_job(project_id: str, body: Annotated[JobCreate, Depends(job_create_body)],
                     p: Annotated[Principal, Depends(once_valid(job_create_body, writer))],
                     scrape: Annotated[ScrapeService, Depends(once_valid(job_create_body, scrape_service))]) -> dict[str, Any]:
    return await scrape.jobs.create(project_id, p, target_ids=body.target_ids, max_results=body.max_results_per_target)


# (The service before the key on these: as the dialect has always checked them.)


@router.get("/jobs/{job_id}", summary="Get a job with progress and per-target status")
async def get_job(job_id: str, scrape: Scrape, p: Reader) -> dict[str, Any]:
    return await scrape.jobs.get(job_id, p)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a running or pending job")
async def cancel_job(job_id: str, scrape: Scrape, p: Writer) -> dict[str, Any]:
    return await scrape.jobs.cancel(job_id, p)


@router.post("/jobs/{job_id}/retry", status_code=201, summary="Run a job again with the same configuration")
async def retry_job(job_id: str, scrape: Scrape, p: Writer) -> dict[str, Any]:
    return await scrape.jobs.retry(job_id, p)


@router.get("/jobs/{job_id}/logs", summary="A job's execution log")
async def job_logs(job_id: str, q: Annotated[LogQuery, Depends()],
                   scrape: Annotated[ScrapeService, Depends(once_valid(LogQuery, scrape_service))],
                   p: Annotated[Principal, Depends(once_valid(LogQuery, reader))]) -> dict[str, Any]:
    return {"logs": await scrape.jobs.logs(job_id, p, level=q.level, limit=q.limit)}


@router.websocket("/jobs/{job_id}/ws")
async def job_ws(websocket: WebSocket, job_id: str) -> None:
    """The job's progress as messages, ending when the job does; the key as ``?token=`` (browsers cannot set headers)."""
    token = websocket.query_params.get("token") or ""
    principal = main_state(websocket).auth.lookup(token) if token else None
    if principal is None or not principal.can("jobs:read"):
        await websocket.accept()  # then refused with the documented close code (a handshake refusal has none)
        await websocket.close(code=4001, reason="invalid token")
        return
    service = started(running(websocket))
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
