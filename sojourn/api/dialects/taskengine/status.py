"""Task Engine status: reachability, health, the dashboard, the workflows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sojourn.api.dialects.taskengine.dependencies import TE, Reader, authenticate, key_of
from sojourn.api.dialects.taskengine.render import render
from sojourn.api.dialects.taskengine.workflows import WORKFLOWS
from sojourn.services.service_error import ServiceError

router = APIRouter()


@router.get("/", summary="Is the Task Engine reachable (no authentication)")
async def alive() -> dict[str, str]:
    return {"result": "alive"}


@router.get("/health", summary="Databases, queues and job counts")
async def health(principal: Reader, te: TE) -> Any:
    try:
        return await te.health(None if principal.is_admin else principal.name)
    except ServiceError:
        raise
    except Exception as exc:
        return JSONResponse({"error": f"health check failed: {exc}"}, status_code=500)


@router.get("/dashboard", summary="Started, queued and scheduled jobs; max_jobs and priority_slots")
async def dashboard(request: Request, te: TE) -> dict[str, Any]:
    client = request.headers.get("client") or None
    if key_of(request):
        principal = authenticate(request, write=False)
        client = client if principal.is_admin else principal.name
    data = await te.dashboard(client)
    for key in ("started", "queued", "scheduled"):
        data[key] = [render(j, parameters=False) for j in data[key]]
    return data


@router.get("/workflows", summary="The workflows a job may name (Sojourn's addition)")
async def workflows() -> dict[str, Any]:
    return {"workflows": WORKFLOWS}
