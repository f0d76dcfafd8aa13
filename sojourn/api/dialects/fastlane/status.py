"""fastlane's system routes: healthcheck (also at the root) and status."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from sojourn.api.dialects.fastlane.bodies import VERSION, ex_url, job_url, task_url
from sojourn.api.dialects.fastlane.dependencies import OPEN, DialectSettings, MainApp, Reader, Service
from sojourn.api.dialects.fastlane.routing import Router
from sojourn.services.fastlane import iso

router = Router()


@router.both("/healthcheck", ["GET"], summary="Component status (500 when one fails)")
async def healthcheck(main: MainApp) -> JSONResponse:
    errors: list[dict[str, str]] = []
    db_ok = prefect_ok = True
    try:
        main.state.fastlane.counts(OPEN)  # the service read here: one missing is a failed component, not a crash
    except Exception as exc:
        db_ok = False
        errors.append({"source": "mongo", "message": f"facade database: {exc}"})
    try:
        await asyncio.wait_for(main.state.jobs.client.hello(), timeout=5)
    except Exception as exc:
        prefect_ok = False
        errors.append({"source": "redis", "message": f"Prefect API: {exc!r}"})
    body = {"redis": prefect_ok, "mongo": db_ok, "database": db_ok, "prefect": prefect_ok, "errors": errors}
    return JSONResponse(body, status_code=500 if errors else 200)


router.add_api_route("/", healthcheck, methods=["GET"], include_in_schema=False)


@router.both("/status", ["GET"], summary="Workers, queues, counts and scheduled jobs")
async def status(request: Request, principal: Reader, svc: Service, main: MainApp, settings: DialectSettings) -> dict[str, Any]:
    counts = svc.counts(principal)
    hosts: list[dict[str, Any]] = []
    try:
        workers = await main.state.jobs.client.read_workers_for_work_pool(settings.work_pool)
        hosts = [{"host": w.name, "status": str(getattr(w.status, "value", w.status)), "lastHeartbeat": iso(w.last_heartbeat_time)}
                 for w in workers]
    except Exception:
        pass
    scheduled = sorted(counts["scheduled"], key=lambda j: j[1].timestamp() if j[1] else math.inf)
    nxt = next((at for _, at in scheduled if at is not None), None)
    return {
        "hosts": hosts,
        "containers": {"running": [{"executionId": e.id, "jobId": e.job_id, "taskId": e.task_id, "startedAt": iso(e.started_at),
                                    "url": ex_url(request, e)} for e in counts["running"]]},
        "queues": {
            "jobs": {"length": counts["waiting"]}, "monitor": {"length": 0}, "webhooks": {"length": counts["hooks"]},
            "notify": {"length": 0},
            "scheduled": {"length": len(scheduled), "nextTimeStamp": nxt.timestamp() if nxt else None,
                          "nextHumanReadableDate": iso(nxt)},
        },
        "tasks": {"count": counts["tasks"]},
        "jobs": {"count": counts["jobs"], "scheduled": [
            {"jobId": j.id, "taskId": j.task_id, "createdAt": iso(j.created_at), "lastModifiedAt": iso(j.last_modified_at),
             "image": j.image, "command": j.command, "cron": j.cron, "nextScheduledAt": iso(at),
             "url": job_url(request, j.task_id, j.id), "stopUrl": job_url(request, j.task_id, j.id) + "stop/",
             "task": {"id": j.task_id, "url": task_url(request, j.task_id)}} for j, at in scheduled]},
        "fastlane": {"version": VERSION, "executor": "sojourn"},
    }
