"""What every outbox row has, and the attempts made at it (the outbox itself: :mod:`sojourn.services.outbox`).

Three tables hold outgoing HTTP owed to someone: native webhook deliveries, Task Engine callbacks, fastlane
hook deliveries. Each adds what its dialect needs to :class:`DeliveryColumns`; every attempt at any of them is
a :class:`DeliveryAttempt` row, written with the attempt's outcome in one transaction (nothing is appended to a
JSON log, so two processes settling attempts of one job lose none).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class DeliveryColumns(SQLModel):
    """The column set of an outbox table (a mixin: each dialect's table adds its own columns)."""

    id: str = Field(primary_key=True, description="stable: the receiver's event id; writing the row twice is harmless")
    url: str
    payload: str
    status: str = Field(default="pending", index=True, description="pending | delivered | failed")
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True, description="due time; while claimed, the claim's end")
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class DeliveryAttempt(SQLModel, table=True):
    """One attempt at one outbox row: when, and what came of it."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("kind", "delivery_id", "attempt", name="uq_delivery_attempts_kind_delivery_attempt"),)

    seq: int | None = Field(default=None, primary_key=True)
    kind: str = Field(description="webhook | taskengine | fastlane: which outbox table delivery_id is in")
    delivery_id: str = Field(index=True)
    attempt: int
    at: datetime = Field(default_factory=utcnow)
    url: str
    status_code: int | None = None
    error: str | None = None
