"""Native dialect, real-time: `WS /api/v1/jobs/stream` and `GET /api/v1/jobs/{id}/events` (SSE)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from sojourn.services.principals import Principal
from sojourn.api.dialects.native.jobs import jobs, reader, renderer
from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService
from sojourn.services.streams import Follower

router = APIRouter(prefix="/api/v1", tags=["real-time"])


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def sse_frame(message: dict[str, Any]) -> bytes:
    """The spec's SSE shapes: `progress` {step, percentage, ...}, `screenshot` {screenshotId, name}, `complete` {status, result}."""
    kind, data = message["type"], message["data"]
    if kind == "progress":
        progress = data.get("progress") or {}
        return sse("progress", {"step": progress.get("currentStep"), **progress, "status": data.get("status")})
    return sse(kind, data)


@router.get(
    "/jobs/{job_id}/events",
    summary="Server-sent events for one job: progress, screenshot, status, complete",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: str, request: Request, principal: Principal = Depends(reader), svc: JobService = Depends(jobs)) -> StreamingResponse:
    follower = Follower(svc, principal, renderer(svc))
    first = await follower.follow(job_id)  # 404 before the stream starts

    async def body() -> AsyncIterator[bytes]:
        try:
            yield sse_frame(first)
            if first["type"] == "complete":
                return
            async for message in follower.messages():
                if await request.is_disconnected():
                    return
                if message is None:
                    yield b": keep-alive\n\n"
                    continue
                yield sse_frame(message)
                if message["type"] == "complete":
                    return
        finally:
            follower.close()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.websocket("/jobs/stream")
async def job_stream(websocket: WebSocket) -> None:
    """Send `{"action": "subscribe" | "unsubscribe", "jobIds": [...]}`; receive progress, screenshot, status and complete messages.

    Authenticate with the `X-API-Key` or `Authorization: Bearer` header, or, for browsers, `?apiKey=`.
    """
    app = websocket.app
    svc: JobService = app.state.jobs
    try:
        principal = app.state.auth.authenticate(websocket, "jobs:read")
    except ServiceError as exc:
        await websocket.close(code=4401 if exc.status == 401 else 4403, reason=exc.message[:120])
        return
    await websocket.accept()
    follower = Follower(svc, principal, renderer(svc))
    async def pump() -> None:
        async for message in follower.messages():
            await websocket.send_json(message if message is not None else {"type": "ping"})

    pumping = asyncio.ensure_future(pump())
    try:
        while True:
            try:
                request = await websocket.receive_json()
            except (ValueError, KeyError):
                await websocket.send_json(error_message("INVALID_INPUT", "Messages are JSON: {\"action\": \"subscribe\", \"jobIds\": [...]}"))
                continue
            action = request.get("action") if isinstance(request, dict) else None
            ids = request.get("jobIds") if isinstance(request, dict) else None
            if action not in ("subscribe", "unsubscribe") or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                await websocket.send_json(error_message("INVALID_INPUT", "Invalid field `action`/`jobIds`: send {\"action\": \"subscribe\" | \"unsubscribe\", \"jobIds\": [\"...\"]}"))
                continue
            for job_id in ids[:500]:
                if action == "unsubscribe":
                    follower.unfollow(job_id)
                    continue
                try:
                    await websocket.send_json(await follower.follow(job_id))
                except ServiceError as exc:
                    await websocket.send_json({**error_message(exc.code, exc.message, exc.details), "jobId": job_id})
            await websocket.send_json({"type": f"{action}d", "jobIds": sorted(follower.jobs)})
    except WebSocketDisconnect:
        pass
    finally:
        pumping.cancel()
        follower.close()


def error_message(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"code": code, "message": message, "details": details or {}}}
