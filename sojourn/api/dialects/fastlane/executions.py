"""fastlane's execution routes: get, stop, and (Sojourn's) a capture of the execution."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sojourn.api.dialects.fastlane.bodies import ex_url, job_url, task_url
from sojourn.api.dialects.fastlane.dependencies import MainApp, Reader, Service, Writer
from sojourn.api.dialects.fastlane.lookups import find_execution
from sojourn.api.dialects.fastlane.routing import Router
from sojourn.services.fastlane import LookupFailed, execution_dict
from sojourn.services.principals import Principal
from sojourn.services.service_error import ServiceError

router = Router()


@router.both("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}", ["GET"], summary="One execution")
async def get_execution(task_id: str, job_id: str, execution_id: str, request: Request, principal: Reader, svc: Service) -> dict[str, Any]:
    _job, ex = await find_execution(svc, principal, task_id, job_id, execution_id, "get_job_execution")
    return {"task": {"id": task_id, "url": task_url(request, task_id)}, "job": {"id": job_id, "url": job_url(request, task_id, job_id)},
            "execution": execution_dict(ex, dispatch=svc.dispatch_logs([ex.id]).get(ex.id))}


@router.both("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stop", ["POST"], summary="Stop one execution")
async def stop_execution(task_id: str, job_id: str, execution_id: str, request: Request, principal: Writer, svc: Service) -> dict[str, Any]:
    _job, ex = await find_execution(svc, principal, task_id, job_id, execution_id, "stop_job_execution")
    await svc.stop_execution(ex)
    return {"task": {"id": task_id, "url": task_url(request, task_id)}, "job": {"id": job_id, "url": job_url(request, task_id, job_id)},
            "execution": {"id": execution_id, "url": ex_url(request, ex)}}


@router.both("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/captures/{name}", ["GET"], summary="A capture of the execution (Sojourn's)")
async def capture(task_id: str, job_id: str, execution_id: str, name: str, principal: Reader, svc: Service, main: MainApp) -> Response:
    _job, ex = await find_execution(svc, principal, task_id, job_id, execution_id, "get_job_execution")
    if not ex.ledger_job_id:
        raise LookupFailed(404, f"Capture ({name}) not found in execution ({execution_id}).", "get_capture")
    try:
        record, data = await main.state.jobs.artifact(ex.ledger_job_id, name, Principal(ex.owner))
    except ServiceError:
        raise LookupFailed(404, f"Capture ({name}) not found in execution ({execution_id}).", "get_capture") from None
    return Response(data, media_type=record.content_type)
