"""The facade's own tables (SQLModel). Prefect owns job state; these are what Prefect has no place for."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ApiKey(SQLModel, table=True):
    """An API key, stored as its SHA-256 only; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, description="public id, safe to show")
    principal: str = Field(index=True, description="who owns what this key creates")
    name: str = ""
    key_hash: str = Field(unique=True, index=True)
    scopes: str = Field(default="jobs:read,jobs:write", description="comma-separated")
    url_allow: str | None = Field(default=None, description="comma-separated host patterns this key may visit")
    rate_limit: str | None = Field(default=None, description="e.g. '100/minute'; the server default when empty")
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None

    @property
    def scope_set(self) -> set[str]:
        return {s for s in self.scopes.split(",") if s}


class Template(SQLModel, table=True):
    """A saved job request with `{variable}` placeholders, owned by one principal."""

    __tablename__ = "templates"

    id: str = Field(primary_key=True)
    owner: str = Field(index=True)
    name: str
    description: str = ""
    type: str
    default_input: str = Field(description="JSON of the job input, with {variable} placeholders")
    variables: str = Field(default="[]", description="JSON list of variable names")
    priority: str = "normal"
    options: str = Field(default="{}", description="JSON of the job options")
    created_at: datetime = Field(default_factory=_now)


class Webhook(SQLModel, table=True):
    """Where to POST job events; the secret is kept encrypted (it must be recoverable to sign)."""

    __tablename__ = "webhooks"

    id: str = Field(primary_key=True)
    owner: str = Field(index=True)
    url: str
    events: str = Field(description="comma-separated: job.completed, job.failed, job.cancelled")
    secret_encrypted: str
    created_at: datetime = Field(default_factory=_now)


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
    next_attempt_at: datetime = Field(default_factory=_now, index=True)
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=_now)
    delivered_at: datetime | None = None


class Batch(SQLModel, table=True):
    """A batch of jobs and how many of them may run at once."""

    __tablename__ = "batches"

    id: str = Field(primary_key=True)
    owner: str = Field(index=True)
    max_concurrent: int
    job_ids: str = Field(description="JSON list, in submission order")
    settled: bool = Field(default=False, index=True, description="no job is held back any more")
    created_at: datetime = Field(default_factory=_now)


class Watermark(SQLModel, table=True):
    """How far a background sweep has got (e.g. job outcomes turned into webhook deliveries)."""

    __tablename__ = "watermarks"

    name: str = Field(primary_key=True)
    value: datetime
