"""Native dialect, analytics and monitoring: system status and job statistics."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from sojourn.services.principals import Principal
from sojourn.api.dialects.native.jobs import reader, time_range
from sojourn.services.stats import Stats

router = APIRouter(prefix="/api/v1", tags=["system"])


def stats(request: Request) -> Stats:
    return request.app.state.stats


@router.get("/system/status", summary="Queue, workers and recent performance (a tenant sees its own jobs' figures); "
            "for the admin also the background services: where each runs, its last run and last error")
async def system_status(request: Request, principal: Principal = Depends(reader), st: Stats = Depends(stats)) -> dict[str, Any]:
    services = {"services": await request.app.state.runner.status()} if principal.is_admin else {}
    try:
        counts, workers, performance = await asyncio.wait_for(
            asyncio.gather(st.counts(principal), st.workers(), st.performance(principal)), timeout=10
        )
    except Exception as exc:
        return {"status": "unhealthy", "reason": f"the scheduler (Prefect) did not answer: {type(exc).__name__}", "queue": None, "workers": None,
                "performance": None, **services}
    return {
        "status": "healthy" if workers["total"] else "degraded",
        **({} if workers["total"] else {"reason": "no worker is online: jobs wait until one starts"}),
        "queue": counts,
        "workers": workers,
        "performance": performance,
        **services,
    }


@router.get("/analytics/jobs", summary="Job statistics for a period (default: the last 30 days)")
async def job_statistics(
    from_: str | None = Query(None, alias="from", description="ISO date or date-time"),
    to: str | None = Query(None, description="ISO date (inclusive) or date-time"),
    principal: Principal = Depends(reader),
    st: Stats = Depends(stats),
) -> dict[str, Any]:
    start, end = time_range(from_, to)
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(days=30)
    return await st.analytics(principal, start, end)
