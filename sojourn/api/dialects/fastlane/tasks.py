"""fastlane's task routes: list, search, get, and enqueue (a new job, or PUT: a job with the client's id)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from sojourn.api.dialects.fastlane.bodies import enqueue_reply, job_url, task_url
from sojourn.api.dialects.fastlane.dependencies import DialectSettings, Reader, Service, Writer
from sojourn.api.dialects.fastlane.requests import check_job_id, parse_enqueue, parse_page, read_body, search_words
from sojourn.api.dialects.fastlane.routing import Router
from sojourn.services.fastlane import FastlaneService, LookupFailed, iso
from sojourn.services.principals import Principal
from sojourn.settings import Settings

router = Router()


def paginate(request: Request, svc: FastlaneService, settings: Settings, principal: Principal, operation: str,
             words: list[str] | None) -> JSONResponse:
    page = parse_page(request, operation)
    per_page = settings.fastlane_per_page
    rows, total = svc.tasks(principal, page, per_page, words)
    pages = max(math.ceil(total / per_page), 1)
    if page > pages:
        raise LookupFailed(404, "Page not found.", operation)
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


@router.both("/tasks", ["GET"], summary="Tasks, paginated")
async def get_tasks(request: Request, principal: Reader, svc: Service, settings: DialectSettings) -> JSONResponse:
    return paginate(request, svc, settings, principal, "get_tasks", None)


@router.both("/search", ["GET"], summary="Tasks whose id has these whole words")
async def search(request: Request, principal: Reader, svc: Service, settings: DialectSettings) -> JSONResponse:
    return paginate(request, svc, settings, principal, "search_tasks", search_words(request))


@router.both("/tasks/{task_id}", ["GET"], summary="A task and its jobs")
async def get_task(task_id: str, request: Request, principal: Reader, svc: Service) -> dict[str, Any]:
    task = svc.task(principal, task_id)
    if task is None:
        raise LookupFailed(404, "Task not found.", "get_task")
    return {"taskId": task_id, "jobs": [{"id": j.id, "createdAt": iso(j.created_at), "url": job_url(request, task_id, j.id)}
                                        for j in svc.jobs_of(task)]}


@router.both("/tasks/{task_id}", ["POST"], summary="Enqueue a new job in the task (created if new)")
async def enqueue(task_id: str, request: Request, principal: Writer, svc: Service) -> dict[str, Any]:
    body = await read_body(request)
    done = await svc.enqueue(principal, task_id, parse_enqueue(body), request.client.host if request.client else None)
    return enqueue_reply(request, task_id, done.job, done.execution, done.job.scheduled)


@router.both("/tasks/{task_id}/jobs/{job_id}", ["PUT"], summary="Create or update a job (UUID4 id) and reschedule it")
async def upsert(task_id: str, job_id: str, request: Request, principal: Writer, svc: Service) -> dict[str, Any]:
    check_job_id(job_id)
    body = await read_body(request)
    done = await svc.enqueue(principal, task_id, parse_enqueue(body), request.client.host if request.client else None, job_id=job_id)
    return enqueue_reply(request, task_id, done.job, done.execution, done.job.scheduled)
