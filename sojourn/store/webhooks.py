"""Webhooks and their delivery outbox."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class Webhook(SQLModel, table=True):
    """Where to POST job events; the secret is kept encrypted (it must be recoverable to sign)."""

    __tablename__ = "webhooks"

    id: str = Field(primary_key=True)
    owner: str = Field(index=True)
    url: str
    events: str = Field(description="comma-separated: job.completed, job.failed, job.cancelled")
    secret_encrypted: str
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one row per (webhook, event), made before the first attempt, so a restart loses none."""

    __tablename__ = "webhook_deliveries"

    id: str = Field(primary_key=True, description="the event id the receiver sees (X-Sojourn-Event-Id)")
    webhook_id: str = Field(index=True)
    owner: str = Field(index=True)
    event: str
    job_id: str = Field(index=True)
    payload: str
    status: str = Field(default="pending", index=True, description="pending | delivered | failed")
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
