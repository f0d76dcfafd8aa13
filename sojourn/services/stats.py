"""Figures about jobs, read from Prefect: system status, analytics, the counts /metrics exports.

Everything is derived from flow runs (Prefect owns job state), filtered by
the `sojourn` tag and, for a non-admin principal, by its owner tag, so a
tenant's figures are its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    WorkerFilter,
    WorkerFilterStatus,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from sojourn.services.principals import Principal
from sojourn.services.jobs import PAGE, flow_run_pages
from sojourn.services.ledger import Ledger
from sojourn.services.job_view import STATE_TYPES_FOR_STATUS, run_error
from sojourn.tags import owner_tag

# The API's job statuses, with "submitted" called "pending" as the spec's queue counts say.
GROUPS: dict[str, list[StateType]] = {("pending" if s == "submitted" else s): types for s, types in STATE_TYPES_FOR_STATUS.items()}
SCAN_LIMIT = 10_000


def scope_tags(principal: Principal | None) -> list[str]:
    return ["sojourn"] if principal is None or principal.is_admin else ["sojourn", owner_tag(principal.name)]


def error_code(run: FlowRun) -> str:
    return run_error(run.state_type, run.state.message if run.state else None)["code"]


def duration_ms(run: FlowRun) -> float | None:
    """Start to end, as the job's `duration` reads (Prefect's total_run_time stays 0 for some run paths)."""
    if run.start_time and run.end_time:
        return (run.end_time - run.start_time).total_seconds() * 1000
    return run.total_run_time.total_seconds() * 1000 if run.total_run_time else None


class Stats:
    def __init__(self, client: PrefectClient, work_pool: str, ledger: Ledger | None = None) -> None:
        self.client = client
        self.ledger = ledger
        self.work_pool = work_pool

    async def counts(self, principal: Principal | None) -> dict[str, int]:
        tags = scope_tags(principal)

        async def count(types: list[StateType]) -> int:
            return await self.client.count_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)))
            )

        values = await asyncio.gather(*(count(t) for t in GROUPS.values()))
        out = dict(zip(GROUPS, values))
        if self.ledger is not None:  # accepted, their runs not created yet
            _, waiting = await self.ledger.undispatched(
                owner=None if principal is None or principal.is_admin else principal.name, statuses=["submitted"], priority=None,
                created_from=None, created_to=None, newest_first=True, limit=0, offset=0,
            )
            out["pending"] += waiting
        return out

    async def scan(self, flt: FlowRunFilter, sort: FlowRunSort = FlowRunSort.EXPECTED_START_TIME_DESC) -> tuple[list[FlowRun], bool]:
        """Every run matching (up to SCAN_LIMIT); the flag says whether it stopped there."""
        runs: list[FlowRun] = []
        async for page in flow_run_pages(self.client, flt, sort):
            runs.extend(page)
            if len(runs) >= SCAN_LIMIT and len(page) == PAGE:
                return runs, True
        return runs, False

    async def workers(self) -> dict[str, int]:
        online = await self.client.read_workers_for_work_pool(
            self.work_pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
        )
        running = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["sojourn"]), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
            limit=200,
        )
        names = {w.name for w in online}
        busy = {r.infrastructure_pid for r in running if r.infrastructure_pid in names}
        return {"total": len(names), "active": len(busy), "idle": len(names) - len(busy)}

    async def performance(self, principal: Principal | None, hours: float = 24) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        runs, _ = await self.scan(
            FlowRunFilter(
                tags=FlowRunFilterTags(all_=scope_tags(principal)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=GROUPS["completed"] + GROUPS["failed"])),
                end_time=FlowRunFilterEndTime(after_=now - timedelta(hours=hours)),
            ),
            sort=FlowRunSort.END_TIME_DESC,
        )
        done = [r for r in runs if r.state_type == StateType.COMPLETED]
        times = [d for r in done if (d := duration_ms(r)) is not None]
        last_hour = sum(1 for r in runs if r.end_time and r.end_time >= now - timedelta(hours=1))
        return {
            "averageJobDuration": int(sum(times) / len(times)) if times else None,
            "successRate": round(len(done) / len(runs), 4) if runs else None,
            "throughput": f"{last_hour} jobs/hour",
            "window": f"last {hours:g} hours",
        }

    async def analytics(self, principal: Principal | None, start: datetime, end: datetime) -> dict[str, Any]:
        runs, truncated = await self.scan(
            FlowRunFilter(
                tags=FlowRunFilterTags(all_=scope_tags(principal)),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=start, before_=end),
            )
        )
        ok = [r for r in runs if r.state_type == StateType.COMPLETED]
        failed = [r for r in runs if r.state_type in GROUPS["failed"]]
        times = [d for r in ok if (d := duration_ms(r)) is not None]
        hours = Counter(r.expected_start_time.astimezone(timezone.utc).hour for r in runs if r.expected_start_time)
        peak = max(sorted(hours), key=lambda h: hours[h]) if hours else None
        errors = Counter(error_code(r) for r in failed)
        return {
            "period": {"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat().replace("+00:00", "Z")},
            "statistics": {
                "totalJobs": len(runs),
                "successfulJobs": len(ok),
                "failedJobs": len(failed),
                "cancelledJobs": sum(1 for r in runs if r.state_type == StateType.CANCELLED),
                "averageDuration": int(sum(times) / len(times)) if times else None,
                "peakHour": f"{peak:02d}:00-{(peak + 1) % 24:02d}:00" if peak is not None else None,
                "mostCommonErrors": [
                    {"code": code, "count": n, "percentage": round(100 * n / len(failed), 1)} for code, n in errors.most_common(10)
                ],
            },
            "truncated": truncated,
        }
