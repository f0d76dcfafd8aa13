"""The Task Engine's scheduler and settings (installation-wide: changed with the admin key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from sojourn.api.dialects.taskengine.dependencies import TE, authenticate, body_admin, body_writer, reader
from sojourn.api.dialects.taskengine.error_handlers import TEError
from sojourn.api.dialects.taskengine.requests import Body
from sojourn.services.service_error import ServiceError
from sojourn.services.taskengine.config import parse_setting

router = APIRouter()


@router.get("/schedules", summary="The active schedules", dependencies=[Depends(reader)])
async def schedules(te: TE) -> dict[str, Any]:
    config = await te.config.read()
    return {"result": "ok", "schedules": await te.config.schedules(config.schedule_interval)}


# installation-wide: the admin key (the body's client)
@router.put("/scheduler", summary="Switch a schedule on or off", dependencies=[Depends(body_admin)])
async def scheduler(body: Body, te: TE) -> Any:
    name, active = body.get("schedule"), body.get("active")
    if name != "queue_scheduled_jobs":
        raise TEError(400, {"error": f"schedule: unknown schedule {name!r}; known: queue_scheduled_jobs"})
    if isinstance(active, str) and active.lower() in ("true", "false"):
        active = active.lower() == "true"
    if not isinstance(active, bool):
        raise TEError(400, {"error": f"active: expected true or false, got {active!r}"})
    await te.config.set_active(name, active)
    te.push()
    config = await te.config.read()
    return {"result": "ok", "schedules": list(await te.config.schedules(config.schedule_interval))}


# first a valid key of the client the body names
@router.post("/settings", summary="Create or update one setting", dependencies=[Depends(body_writer)])
async def put_setting(request: Request, body: Body, te: TE) -> Any:
    name = body.get("name")
    try:  # a malformed setting is a well-authenticated caller's 400, before whether it may change settings
        parse_setting(name, body.get("setting"))
    except ServiceError as exc:
        raise TEError(400, {"error": exc.message}) from None
    authenticate(request, body, admin=True)  # settings are installation-wide: the admin key only (else 401)
    created = await te.config.put(name, body.get("setting"))
    te.push()
    return {"result": "ok", "message": f"{name} setting {'created' if created else 'updated'}"}
