"""Who runs each cluster-wide background service (:mod:`sojourn.background.leases`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class ServiceLease(SQLModel, table=True):
    """One row per singleton service: the process holding it runs it until ``expires_at`` unless it renews.

    The holder also writes how the service is doing on each renewal, so any API process can show it."""

    __tablename__ = "service_leases"

    name: str = Field(primary_key=True, max_length=100)
    holder: str | None = Field(default=None, max_length=200)
    expires_at: datetime
    acquired_at: datetime | None = None
    last_run_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)
    runs: int = 0
    errors: int = 0
