"""fastlane's live logs: a page per job and per execution, and the WebSocket it reads (both slash forms)."""

from __future__ import annotations

import asyncio

from fastapi import Request, WebSocket
from fastapi.responses import HTMLResponse
from starlette.websockets import WebSocketDisconnect

from sojourn.api.dialects.fastlane.bodies import JOINER, stream_page
from sojourn.api.dialects.fastlane.dependencies import Reader, Service, WsReader
from sojourn.api.dialects.fastlane.lookups import find_execution, find_job
from sojourn.api.dialects.fastlane.routing import Router
from sojourn.services.fastlane import FastlaneService
from sojourn.services.principals import Principal

router = Router()


@router.both("/tasks/{task_id}/jobs/{job_id}/stream", ["GET"], summary="A page showing the job's live log")
async def stream_job(task_id: str, job_id: str, request: Request, principal: Reader, svc: Service) -> HTMLResponse:
    find_job(svc, principal, task_id, job_id, "stream_job")
    return stream_page(f"{request.scope.get('root_path', '')}/tasks/{task_id}/jobs/{job_id}/ws/")


@router.both("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/stream", ["GET"], summary="A page showing the execution's live log")
async def stream_execution(task_id: str, job_id: str, execution_id: str, request: Request, principal: Reader, svc: Service) -> HTMLResponse:
    await find_execution(svc, principal, task_id, job_id, execution_id, "stream_job_execution")
    return stream_page(f"{request.scope.get('root_path', '')}/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/ws/")


async def ws_logs(websocket: WebSocket, principal: Principal | None, svc: FastlaneService, task_id: str, job_id: str,
                  execution_id: str | None) -> None:
    if principal is None:  # not authenticated (see ws_reader): refused before it is accepted
        await websocket.close(code=1008, reason="unauthorized")
        return
    await websocket.accept()
    job = svc.job(principal, task_id, job_id)
    ex = None
    if job is not None:
        ex = svc.execution(job, execution_id) if execution_id else next(iter(svc.executions(job, limit=1)), None)
    if ex is None:
        # A known job with no execution yet (one scheduled for later): fastlane closes with wsretry, and the
        # stream page tries again; an unknown job or execution just closes.
        if job is not None and not execution_id:
            await websocket.close(code=1010, reason="wsretry")
        else:
            await websocket.close(code=1000)
        return
    try:
        ex = await svc.refresh(ex)
        if ex.status in ("enqueued", "pulling"):
            await websocket.close(code=1010, reason="wsretry")
            return
        while not ex.final:  # running: what Sojourn knows of it is its progress; the log comes at the end
            await asyncio.sleep(1.0)
            ex = await svc.refresh(ex)
        await websocket.send_text(f"EXIT CODE: {ex.exit_code}\n")
        await websocket.send_text(ex.log or "")
        await websocket.send_text(JOINER)
        await websocket.send_text(ex.error or "")
        await websocket.close(code=1010, reason="wsdone")
    except WebSocketDisconnect:
        return


@router.websocket("/tasks/{task_id}/jobs/{job_id}/ws")
async def ws_job(websocket: WebSocket, task_id: str, job_id: str, principal: WsReader, svc: Service) -> None:
    await ws_logs(websocket, principal, svc, task_id, job_id, None)


@router.websocket("/tasks/{task_id}/jobs/{job_id}/ws/")
async def ws_job_slash(websocket: WebSocket, task_id: str, job_id: str, principal: WsReader, svc: Service) -> None:
    await ws_logs(websocket, principal, svc, task_id, job_id, None)


@router.websocket("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/ws")
async def ws_execution(websocket: WebSocket, task_id: str, job_id: str, execution_id: str, principal: WsReader, svc: Service) -> None:
    await ws_logs(websocket, principal, svc, task_id, job_id, execution_id)


@router.websocket("/tasks/{task_id}/jobs/{job_id}/executions/{execution_id}/ws/")
async def ws_execution_slash(websocket: WebSocket, task_id: str, job_id: str, execution_id: str, principal: WsReader, svc: Service) -> None:
    await ws_logs(websocket, principal, svc, task_id, job_id, execution_id)
