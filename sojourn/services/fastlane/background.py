"""The fastlane dialect's background services (registered in :mod:`sojourn.background.registry`).

- ``fastlane-events`` (:func:`on_event`): Prefect events of fastlane runs (tag ``dialect:fastlane``) → read that
  execution now, so its retry and hooks follow its end at once.
- ``fastlane-sweep`` (:func:`sweep`): every few seconds, every execution not final yet is read (nothing is lost
  to a dropped event or an API restart), and expirations are enforced.
- ``fastlane-cron`` (:func:`fire_due`): a cron job is a Prefect deployment whose schedule makes its runs
  (:mod:`.schedules`); a firing that comes due gets its run made here a few seconds ahead too, with the
  idempotency key Prefect's scheduler uses (one run per firing whoever makes it); the claim of the firing is a
  conditional update, so it fires once whatever runs it. Each run is adopted as one execution;
  ``fastlane-cron-events`` and ``fastlane-cron-sweep`` adopt the runs Prefect's scheduler made.
- ``fastlane-hooks`` (:func:`deliver`): the shared outbox (:mod:`sojourn.services.outbox`) with fastlane's body,
  per-hook headers and retries, 5, 10, 20 … s apart; a status up to 399 is delivered, as in fastlane.

Their database reads and writes run in threads, off the API's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from sojourn.services.fastlane.cron import next_firing
from sojourn.services.fastlane.service import FastlaneService
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.fastlane import FastlaneHookDelivery, FastlaneJob

log = logging.getLogger(__name__)

SWEEP_SECONDS = 3.0
CRON_AHEAD = timedelta(seconds=5)


def concerns(item: dict[str, Any]) -> bool:
    return item["event"].startswith("prefect.flow-run.") and "dialect:fastlane" in item.get("tags", ()) and bool(item.get("job_id"))


async def on_event(svc: FastlaneService, item: dict[str, Any]) -> None:
    ex = await asyncio.to_thread(svc.by_ledger_job, item["job_id"])
    if ex is not None and not ex.final:
        await svc.refresh(ex)


async def sweep(svc: FastlaneService) -> None:
    pending = await asyncio.to_thread(svc.unfinished)
    if pending:
        await svc.current(pending)


def _due(svc: FastlaneService, now: Any) -> list[FastlaneJob]:
    with session(svc.db) as db:
        return list(db.exec(select(FastlaneJob).where(
            FastlaneJob.cron != None, FastlaneJob.stopped == False, FastlaneJob.next_run_at != None,  # noqa: E711,E712
            col(FastlaneJob.next_run_at) <= now + CRON_AHEAD)))


def _claim_firing(svc: FastlaneService, job: FastlaneJob, following: Any) -> bool:
    with session(svc.db) as db:
        claimed = db.execute(update(FastlaneJob).where(col(FastlaneJob.id) == job.id, col(FastlaneJob.next_run_at) == job.next_run_at,
                                                       col(FastlaneJob.stopped) == False)  # noqa: E712
                             .values(next_run_at=following))
        db.commit()
    return claimed.rowcount == 1  # type: ignore[attr-defined]


async def fire_due(svc: FastlaneService) -> None:
    now = utcnow()
    for job in await asyncio.to_thread(_due, svc, now):
        firing = aware(job.next_run_at)
        assert firing is not None and job.cron
        following = next_firing(job.cron, max(firing, now - CRON_AHEAD))  # after a long pause: no burst of missed firings
        if await asyncio.to_thread(_claim_firing, svc, job, following):
            await svc.schedules.fire(job, firing)


async def deliver(svc: FastlaneService) -> int:
    """One round of the shared outbox: the due hooks, sent side by side, each attempt recorded as a row (read back
    as the execution's ``webhookDispatch``); how many."""
    rows = await svc.hooks.claim()
    if rows:
        await asyncio.gather(*(svc.hooks.send(r, r.payload.encode(), _headers(r)) for r in rows))
    return len(rows)


def _headers(row: FastlaneHookDelivery) -> dict[str, str]:
    return {"Content-Type": "application/json", **{str(k): str(v) for k, v in json.loads(row.headers or "{}").items()}}
