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
- ``fastlane-hooks`` (:func:`deliver`): the webhook outbox, with fastlane's body, per-hook headers and retries,
  5, 10, 20 … s apart.

Their database reads and writes run in threads, off the API's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update
from sqlmodel import col, select

from sojourn.browser.url_policy import check_host
from sojourn.services.fastlane.cron import next_firing
from sojourn.services.fastlane.service import FastlaneService, iso
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.fastlane import FastlaneExecution, FastlaneHookDelivery, FastlaneJob

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
    """One round: the due hooks, sent side by side; how many."""
    if svc.http is None:
        svc.http = httpx.AsyncClient(timeout=svc.settings.fastlane_webhook_timeout, follow_redirects=False)
    rows = await asyncio.to_thread(_claim, svc)
    if rows:
        await asyncio.gather(*(_send(svc, svc.http, r) for r in rows))
    return len(rows)


def _claim(svc: FastlaneService, limit: int = 20) -> list[FastlaneHookDelivery]:
    now = utcnow()
    lease = now + timedelta(seconds=60)
    out = []
    with session(svc.db) as db:
        due = list(db.exec(select(FastlaneHookDelivery).where(FastlaneHookDelivery.status == "pending", col(FastlaneHookDelivery.next_attempt_at) <= now)
                           .order_by(col(FastlaneHookDelivery.next_attempt_at)).limit(limit)))
        for row in due:
            r = db.execute(update(FastlaneHookDelivery).where(col(FastlaneHookDelivery.id) == row.id, col(FastlaneHookDelivery.status) == "pending",
                                                              col(FastlaneHookDelivery.next_attempt_at) == row.next_attempt_at)
                           .values(next_attempt_at=lease))
            if r.rowcount == 1:  # type: ignore[attr-defined]
                out.append(row)
        db.commit()
    return out


async def _send(svc: FastlaneService, http: httpx.AsyncClient, row: FastlaneHookDelivery) -> None:
    attempt = row.attempts + 1
    headers = {"Content-Type": "application/json", **{str(k): str(v) for k, v in json.loads(row.headers or "{}").items()}}
    code: int | None = None
    error: str | None = None
    decision = await check_host(urlsplit(row.url).hostname or "")
    if not decision.allowed:
        error = f"blocked by the URL policy: {decision.reason}"
        attempt = row.retries + 1  # no point in trying again
    else:
        try:
            response = await http.post(row.url, content=row.payload.encode(), headers=headers)
            code = response.status_code
            if code > 399:
                error = f"receiver answered {code}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    await asyncio.to_thread(_settle, svc, row, attempt, code, error)


def _settle(svc: FastlaneService, row: FastlaneHookDelivery, attempt: int, code: int | None, error: str | None) -> None:
    _record(svc, row, attempt, code, error)
    with session(svc.db) as db:
        r = db.get(FastlaneHookDelivery, row.id)
        if r is None:
            return
        r.attempts, r.last_status_code, r.last_error = attempt, code, error
        if error is None:
            r.status = "delivered"
        elif attempt > r.retries:
            r.status = "failed"
        else:
            r.next_attempt_at = utcnow() + timedelta(seconds=5 * 2 ** (attempt - 1))  # 5, 10, 20 … s
        db.add(r)
        db.commit()


def _record(svc: FastlaneService, row: FastlaneHookDelivery, attempt: int, code: int | None, error: str | None) -> None:
    """``webhookDispatch`` in the execution's metadata: one entry per attempt. Deliveries of one execution settle
    side by side, in this process and others: the append is a compare-and-set on the metadata as it was read,
    tried again when another append got in first, so no entry is lost."""
    entry = {"timestamp": iso(utcnow()), "url": row.url, "event": row.event, "attempt": attempt, "statusCode": code, "error": error}
    for _ in range(50):
        with session(svc.db) as db:
            ex = db.get(FastlaneExecution, row.execution_id)
            if ex is None:
                return
            before = ex.metadata_json
            meta = json.loads(before or "{}")
            meta.setdefault("webhookDispatch", []).append(entry)
            done = db.execute(update(FastlaneExecution).where(col(FastlaneExecution.id) == ex.id, col(FastlaneExecution.metadata_json) == before)
                              .values(metadata_json=json.dumps(meta)))
            db.commit()
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return
    log.warning("fastlane hooks: could not record attempt %d of %s on %s", attempt, row.event, row.execution_id)
