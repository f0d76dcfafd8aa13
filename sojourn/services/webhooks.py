"""Webhooks: signed POSTs of job events, delivered at least once.

Delivery is an outbox in the facade database. When a job ends, one row per
matching webhook is written (its id is the event id the receiver sees, and is
derived from webhook + job + event, so writing it twice is harmless). A
delivery service in every process that runs services claims due rows with a lease, POSTs
them, and on failure schedules the next attempt with exponential backoff.
A row written before a restart is still delivered after it; a job that ended
while no API process was running is found by the outcome sweep
(:mod:`sojourn.services.outcomes`) and gets its rows then.

Signature: ``X-Sojourn-Signature: sha256=<hex HMAC-SHA256 of the raw body under
the webhook's secret>``. The secret is stored encrypted (it must be
recoverable to sign), never logged, and shown only when it was generated.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from sojourn.services.errors import ServiceError
from sojourn.browser.url_policy import check_host
from sojourn.local_secrets import fernet
from sojourn.services.refreshed import Refreshed
from sojourn.settings import Settings
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import owned, session
from sojourn.store.webhooks import Webhook, WebhookDelivery

log = logging.getLogger(__name__)

EVENTS = ("job.completed", "job.failed", "job.cancelled")
_NAMESPACE = uuid.UUID("5f0c2f0e-55a4-4d3b-9c3e-50a0b7f0c0de")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_id(webhook_id: str, job_id: str, event: str) -> str:
    return "evt_" + uuid.uuid5(_NAMESPACE, f"{webhook_id}/{job_id}/{event}").hex


class WebhookService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.box = fernet(settings)
        self.woken = asyncio.Event()
        self.http: httpx.AsyncClient | None = None
        # Owners with at least one webhook, read at most every few seconds: most jobs end with nobody to tell.
        self._owners: Refreshed[set[str]] = Refreshed(lambda: asyncio.to_thread(self._read_owners), every=5.0)

    def _read_owners(self) -> set[str]:
        with session(self.settings.database_location) as db:
            return set(db.exec(select(Webhook.owner).distinct()))

    def _owner_has_webhooks(self, owner: str) -> bool:
        with session(self.settings.database_location) as db:
            return db.exec(select(Webhook.id).where(Webhook.owner == owner).limit(1)).first() is not None

    async def has_webhooks(self, owner: str) -> bool:
        """Whether a job of ``owner`` ending is owed a delivery. A known owner answers from the cached set; an owner
        not in it is asked of the database (one indexed read), because the webhook may have been registered a moment
        ago through another API process and the cached set is only refreshed every few seconds."""
        if owner in await self._owners.get():
            return True
        if await asyncio.to_thread(self._owner_has_webhooks, owner):
            self._owners.update(lambda owners: owners | {owner})
            return True
        return False

    # -------------------------------------------------------------- registry
    def register(self, owner: str, url: str, events: list[str], secret: str | None) -> tuple[Webhook, str]:
        secret = secret or "whsec_" + secrets.token_urlsafe(24)
        row = Webhook(
            id="wh_" + secrets.token_hex(8), owner=owner, url=url, events=",".join(events),
            secret_encrypted=self.box.encrypt(secret.encode()).decode(),
        )
        with session(self.settings.database_location) as db:
            db.add(row)
            db.commit()
        self._owners.update(lambda owners: owners | {owner})
        return row, secret

    def visible(self, owner: str | None) -> list[Webhook]:
        with session(self.settings.database_location) as db:
            q = select(Webhook).order_by(Webhook.created_at)  # type: ignore[arg-type]
            if owner is not None:
                q = q.where(Webhook.owner == owner)
            return list(db.exec(q))

    def get(self, webhook_id: str, owner: str | None) -> Webhook:
        row = owned(self.settings.database_location, Webhook, webhook_id, owner)
        if row is None:
            raise ServiceError(404, "WEBHOOK_NOT_FOUND", f"Webhook with ID '{webhook_id}' not found", {"webhookId": webhook_id})
        return row

    def delete(self, webhook_id: str, owner: str | None) -> None:
        row = self.get(webhook_id, owner)
        with session(self.settings.database_location) as db:
            db.delete(db.get(Webhook, row.id))
            db.commit()

    def deliveries(self, webhook_id: str, owner: str | None, limit: int = 100) -> list[WebhookDelivery]:
        self.get(webhook_id, owner)
        with session(self.settings.database_location) as db:
            q = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id).order_by(WebhookDelivery.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
            return list(db.exec(q))

    # -------------------------------------------------------------- outbox
    def enqueue(self, owner: str, job_id: str, event: str, data: dict[str, Any], ended_at: datetime | None) -> int:
        """Owe this event to every webhook of ``owner`` that wants it (and existed when the job ended)."""
        with session(self.settings.database_location) as db:
            hooks = list(db.exec(select(Webhook).where(Webhook.owner == owner)))
        made = 0
        for hook in hooks:
            if event not in hook.events.split(","):
                continue
            if ended_at is not None and aware(hook.created_at) > ended_at:  # type: ignore[operator]
                continue
            eid = event_id(hook.id, job_id, event)
            payload = {"id": eid, "event": event, "timestamp": (ended_at or utcnow()).isoformat().replace("+00:00", "Z"), "data": data}
            try:
                with session(self.settings.database_location) as db:
                    db.add(WebhookDelivery(id=eid, webhook_id=hook.id, owner=owner, event=event, job_id=job_id, payload=json.dumps(payload, default=str)))
                    db.commit()
                made += 1
            except IntegrityError:
                pass  # already owed (another API process, or the sweep, got here first)
        if made:
            self.woken.set()
        return made

    # -------------------------------------------------------------- delivery (the ``webhooks`` service)
    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    def _claim(self, limit: int = 20) -> list[WebhookDelivery]:
        """Due rows, each leased to this process for a minute (another process skips them meanwhile)."""
        now = utcnow()
        lease = now + timedelta(seconds=60 + self.settings.webhook_timeout)
        claimed: list[WebhookDelivery] = []
        with session(self.settings.database_location) as db:
            due = list(db.exec(
                select(WebhookDelivery).where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)  # type: ignore[arg-type]
                .order_by(WebhookDelivery.next_attempt_at).limit(limit)  # type: ignore[arg-type]
            ))
            for row in due:
                result = db.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row.id, WebhookDelivery.next_attempt_at == row.next_attempt_at, WebhookDelivery.status == "pending")  # type: ignore[arg-type]
                    .values(next_attempt_at=lease)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(row)
            db.commit()
        return claimed

    async def dispatch_due(self) -> int:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=self.settings.webhook_timeout, follow_redirects=False)
        rows = self._claim()
        if rows:
            await asyncio.gather(*(self._deliver(r) for r in rows))
        return len(rows)

    async def _deliver(self, row: WebhookDelivery) -> None:
        with session(self.settings.database_location) as db:
            hook = db.get(Webhook, row.webhook_id)
        if hook is None:  # deleted since: nothing to deliver to
            self._finish(row.id, status="failed", error="webhook deleted")
            return
        secret = self.box.decrypt(hook.secret_encrypted.encode()).decode()
        body = row.payload.encode()
        attempt = row.attempts + 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Sojourn-Webhooks/1",
            "X-Sojourn-Signature": sign(secret, body),
            "X-Sojourn-Event": row.event,
            "X-Sojourn-Event-Id": row.id,
            "X-Sojourn-Timestamp": str(int(utcnow().timestamp())),
            "X-Sojourn-Attempt": str(attempt),
        }
        code: int | None = None
        error: str | None = None
        decision = await check_host(urlsplit(hook.url).hostname or "")
        if not decision.allowed:  # the same URL policy as job browsers: no deliveries into the private network
            self._finish(row.id, status="failed", attempts=attempt, error=f"blocked by the URL policy: {decision.reason}")
            return
        try:
            assert self.http is not None
            response = await self.http.post(hook.url, content=body, headers=headers)
            code = response.status_code
            if 200 <= code < 300:
                self._finish(row.id, status="delivered", code=code, attempts=attempt)
                return
            error = f"receiver answered {code}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if attempt >= self.settings.webhook_max_attempts:
            log.warning("webhook %s: giving up on %s after %d attempts (%s)", hook.id, row.id, attempt, error)
            self._finish(row.id, status="failed", code=code, attempts=attempt, error=error)
            return
        delay = min(self.settings.webhook_retry_seconds * 2 ** (attempt - 1), 600)
        self._finish(row.id, status="pending", code=code, attempts=attempt, error=error, next_at=utcnow() + timedelta(seconds=delay))

    def _finish(self, delivery_id: str, *, status: str, code: int | None = None, attempts: int | None = None,
                error: str | None = None, next_at: datetime | None = None) -> None:
        with session(self.settings.database_location) as db:
            row = db.get(WebhookDelivery, delivery_id)
            if row is None:
                return
            row.status = status
            row.last_status_code = code
            row.last_error = error
            if attempts is not None:
                row.attempts = attempts
            if status == "delivered":
                row.delivered_at = utcnow()
            if next_at is not None:
                row.next_attempt_at = next_at
            db.add(row)
            db.commit()
