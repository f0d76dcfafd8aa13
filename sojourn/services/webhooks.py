"""Webhooks: signed POSTs of job events, delivered at least once.

Delivery is an outbox in the facade database. When a job ends, one row per
matching webhook is written (its id is the event id the receiver sees, and is
derived from webhook + job + event, so writing it twice is harmless). A
delivery service in every process that runs services claims due rows with a lease, POSTs
them, and on failure schedules the next attempt with exponential backoff (the shared outbox,
:mod:`sojourn.services.outbox`; 2xx is delivered, anything else is retried).
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
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from sojourn.services.service_error import ServiceError
from sojourn.services.outbox import Outbox, Rules, attempts_of
from sojourn.local_secrets import fernet
from sojourn.services.stale_while_revalidate import Refreshed
from sojourn.settings import Settings
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import owned, session
from sojourn.store.deliveries import DeliveryAttempt, DeliveryColumns
from sojourn.store.webhooks import Webhook, WebhookDelivery

log = logging.getLogger(__name__)

EVENTS = ("job.completed", "job.failed", "job.cancelled")
_NAMESPACE = uuid.UUID("5f0c2f0e-55a4-4d3b-9c3e-50a0b7f0c0de")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(row: DeliveryColumns, secret: str | None, user_agent: str, **extra: str) -> dict[str, str]:
    """The headers of a Sojourn-signed POST of an outbox row (native webhooks, Task Engine callbacks): its stable
    event id to deduplicate on, when and which attempt, and the HMAC of the body when there is a secret."""
    headers = {"Content-Type": "application/json", "User-Agent": user_agent, **extra, "X-Sojourn-Event-Id": row.id,
               "X-Sojourn-Timestamp": str(int(utcnow().timestamp())), "X-Sojourn-Attempt": str(row.attempts + 1)}
    if secret:
        headers["X-Sojourn-Signature"] = sign(secret, row.payload.encode())
    return headers


def event_id(webhook_id: str, job_id: str, event: str) -> str:
    return "evt_" + uuid.uuid5(_NAMESPACE, f"{webhook_id}/{job_id}/{event}").hex


def delivery_rules(settings: Settings) -> Rules[WebhookDelivery]:
    """2xx is delivered; anything else is tried again, SOJOURN_WEBHOOK_MAX_ATTEMPTS times in all,
    SOJOURN_WEBHOOK_RETRY_SECONDS doubling (at most 10 minutes) apart."""
    return Rules(kind="webhook", lease=settings.outbox_lease_seconds, model=WebhookDelivery, timeout=settings.webhook_timeout,
                 max_attempts=lambda _row: settings.webhook_max_attempts, first_delay=settings.webhook_retry_seconds)


class WebhookService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.box = fernet(settings)
        self.woken = asyncio.Event()
        self.outbox: Outbox[WebhookDelivery] = Outbox(settings.database_location, delivery_rules(settings))
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

    def deliveries_with_attempts(self, webhook_id: str, owner: str | None, limit: int = 100) -> tuple[list[WebhookDelivery], dict[str, list[DeliveryAttempt]]]:
        """The delivery log, and each delivery's attempts in the order made."""
        rows = self.deliveries(webhook_id, owner, limit)
        attempts: dict[str, list[DeliveryAttempt]] = {}
        for a in attempts_of(self.settings.database_location, "webhook", [r.id for r in rows]):
            attempts.setdefault(a.delivery_id, []).append(a)
        return rows, attempts

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
                    db.add(WebhookDelivery(id=eid, webhook_id=hook.id, owner=owner, event=event, job_id=job_id, url=hook.url,
                                           payload=json.dumps(payload, default=str)))
                    db.commit()
                made += 1
            except IntegrityError:
                pass  # already owed (another API process, or the sweep, got here first)
        if made:
            self.woken.set()
        return made

    # -------------------------------------------------------------- delivery (the ``webhooks`` service)
    async def close(self) -> None:
        await self.outbox.close()

    async def dispatch_due(self) -> int:
        rows = await self.outbox.claim()
        if rows:
            await asyncio.gather(*(self._deliver(r) for r in rows))
        return len(rows)

    async def _deliver(self, row: WebhookDelivery) -> None:
        hook = await asyncio.to_thread(self._hook, row.webhook_id)
        if hook is None:  # deleted since: nothing to deliver to
            await self.outbox.fail(row, "webhook deleted")
            return
        secret = self.box.decrypt(hook.secret_encrypted.encode()).decode()
        headers = signed_headers(row, secret, "Sojourn-Webhooks/1", **{"X-Sojourn-Event": row.event})
        await self.outbox.send(row, row.payload.encode(), headers)

    def _hook(self, webhook_id: str) -> Webhook | None:
        with session(self.settings.database_location) as db:
            return db.get(Webhook, webhook_id)
