"""Webhooks and their delivery outbox."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow
from sojourn.store.deliveries import DeliveryColumns


class Webhook(SQLModel, table=True):
    """Where to POST job events; the secret is kept encrypted (it must be recoverable to sign)."""

    __tablename__ = "webhooks"

    id: str = Field(primary_key=True)
    owner: str = Field(index=True)
    url: str
    events: str = Field(description="comma-separated: job.completed, job.failed, job.cancelled")
    secret_encrypted: str
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(DeliveryColumns, table=True):
    """The outbox: one row per (webhook, event), made before the first attempt, so a restart loses none. Its id is
    the event id the receiver sees (X-Sojourn-Event-Id)."""

    __tablename__ = "webhook_deliveries"

    webhook_id: str = Field(index=True)
    owner: str = Field(index=True)
    event: str
    job_id: str = Field(index=True)
