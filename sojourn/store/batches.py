"""Batches of jobs and how many of them may run at once."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class Batch(SQLModel, table=True):
    """A batch of jobs and how many of them may run at once."""

    __tablename__ = "batches"

    id: str = Field(primary_key=True)
    owner: str = Field(index=True)
    max_concurrent: int
    job_ids: str = Field(description="JSON list, in submission order")
    settled: bool = Field(default=False, index=True, description="no job is held back any more")
    created_at: datetime = Field(default_factory=utcnow)
