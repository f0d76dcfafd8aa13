"""fastlane's job routes: get, stop, retry, and the plain-text logs (stdout, stderr, logs) of a job's last execution
and of one execution, registered together as fastlane lists them."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sojourn.api.dialects.fastlane.bodies import enqueue_reply, ex_url, job_metadata, job_url, task_url, text_reply
from sojourn.api.dialects.fastlane.dependencies import Reader, Service, Writer
from sojourn.api.dialects.fastlane.lookups import find_job
from sojourn.api.dialects.fastlane.routing import Router
from sojourn.services.fastlane import FastlaneService, LookupFailed, execution_dict, iso
from sojourn.services.principals import Principal
from sojourn.store.fastlane import FastlaneExecution

router = Router()


@router.both("/tasks/{task_id}/jobs/{job_id}", ["GET"], summary="A job and its last 20 executions, newest first")
async def get_job(task_id: str, job_id: str, request: Request, principal: Reader, svc: Service) -> dict[str, Any]:
    job = find_job(svc, principal, task_id, job_id, "get_task")
    updated = {e.id: e for e in await svc.current(svc.executions(job, limit=20))}
    job = find_job(svc, principal, task_id, job_id, "get_task")  # again: bringing its executions up to date may have changed it
    # Counted, then listed again: bringing an execution up to date may have made its retry (here or in another
    # process), and the list must hold every execution the count does (it listed 2 beside an executionCount of 3).
    count = svc.execution_count(job)
    executions = [e if e.final else updated.get(e.id, e) for e in svc.executions(job, limit=20)]
    dispatch = svc.dispatch_logs([e.id for e in executions])
    return {"task": {"id": task_id, "url": task_url(request, task_id)}, "job": {
        "createdAt": iso(job.created_at), "image": job.image, "command": job.command, "lastModifiedAt": iso(job.last_modified_at),
        "taskId": task_id, "scheduled": job.scheduled, "executionCount": count,
        "requestIPAddress": job.request_ip, "metadata": job_metadata(job, executions[0] if executions else None),
        "executions": [{**execution_dict(e, dispatch=dispatch.get(e.id)), "url": ex_url(request, e)} for e in executions],
    }}


async def last_execution(svc: FastlaneService, principal: Principal, task_id: str, job_id: str) -> FastlaneExecution:
    job = find_job(svc, principal, task_id, job_id, "retrieve_execution_details")
    executions = svc.executions(job, limit=1)
    if not executions:
        raise LookupFailed(400, f"No executions found in job ({job_id}).", "retrieve_execution_details")
    return await svc.refresh(executions[0])


def add_text_routes(kind: str) -> None:
    """``kind`` (stdout, stderr or logs) of the job's last execution and of one execution."""
    async def job_text(task_id: str, job_id: str, principal: Reader, svc: Service) -> Response:
        return text_reply(await last_execution(svc, principal, task_id, job_id), kind)

    async def execution_text(task_id: str, job_id: str, execution_id: str, principal: Reader, svc: Service) -> Response:
        job = find_job(svc, principal, task_id, job_id, "retrieve_execution_details")
        ex = svc.execution(job, execution_id)
        if ex is None:
            raise LookupFailed(400, "No executions found in job with specified arguments.", "retrieve_execution_details")
        return text_reply(await svc.refresh(ex), kind)

    router.both(f"/tasks/{{task_id}}/jobs/{{job_id}}/{kind}", ["GET"], summary=f"{kind} of the last execution (plain text)")(job_text)
    router.both(f"/tasks/{{task_id}}/jobs/{{job_id}}/executions/{{execution_id}}/{kind}", ["GET"], summary=f"{kind} of the execution")(execution_text)


for _kind in ("stdout", "stderr", "logs"):
    add_text_routes(_kind)


@router.both("/tasks/{task_id}/jobs/{job_id}/stop", ["POST"], summary="Stop the job: its running execution, retries and schedule")
async def stop_job(task_id: str, job_id: str, request: Request, principal: Writer, svc: Service) -> dict[str, Any]:
    job = find_job(svc, principal, task_id, job_id, "stop_job")
    await svc.stop_job(job)
    return {"taskId": task_id, "jobId": job_id, "jobUrl": job_url(request, task_id, job_id), "taskUrl": task_url(request, task_id)}


@router.both("/tasks/{task_id}/jobs/{job_id}/retry", ["POST"], summary="A new execution of the job")
async def retry_job(task_id: str, job_id: str, request: Request, principal: Writer, svc: Service) -> dict[str, Any]:
    job = find_job(svc, principal, task_id, job_id, "retry_job")
    ex = await svc.retry(job)
    return enqueue_reply(request, task_id, job, ex, False)
