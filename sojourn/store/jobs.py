"""The job ledger: one row per accepted job, written before the client gets its answer.

The ledger owns acceptance and ids; Prefect owns execution once the job's flow
run exists (``flow_run_id``). A row is the durable promise that the job will
run: the dispatcher (:mod:`sojourn.services.dispatcher`) turns undispatched rows
into flow runs, with the job id as Prefect's idempotency key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("dialect", "external_id", name="uq_jobs_dialect_external_id"),
        # The dispatcher's scan: undispatched jobs in acceptance order.
        Index("ix_jobs_undispatched", "flow_run_id", "seq"),
    )

    seq: int | None = Field(default=None, primary_key=True, description="increasing integer: acceptance order, and the task engine's job id")
    id: str = Field(unique=True, index=True, max_length=64, description="Sojourn's job id (what the native API and Tourist show)")
    owner: str = Field(index=True, description="the principal that submitted it; nobody else sees it")
    dialect: str = Field(description="native | tourist | ... : the API it came through")
    external_id: str | None = Field(default=None, description="the dialect's own id where it needs one (`job_…`, a UUID)")
    group_id: str | None = Field(default=None, index=True, description="what it belongs to in its dialect: a native batch, ...")
    kind: str = Field(default="browse", description="browse | agent: which flow runs it")
    spec: str = Field(description="the JobSpec, as JSON")
    priority: str = Field(default="normal", description="high | normal | low: the work queue")
    run_at: datetime | None = Field(default=None, description="not before this time")
    labels: str = Field(default="{}", description="JSON of dialect facts kept on the job (type, batch index, retry of ...)")
    created_at: datetime = Field(default_factory=utcnow, index=True, description="when it was accepted")

    held: bool = Field(default=False, description="accepted but not to be dispatched until released (batches)")
    cancel_requested_at: datetime | None = Field(default=None, description="cancelled before it was dispatched: its run is created Cancelled")

    flow_run_id: str | None = Field(default=None, description="its Prefect flow run, once created")
    dispatched_at: datetime | None = None
    claimed_by: str | None = Field(default=None, description="the dispatcher creating its flow run now")
    claimed_until: datetime | None = None
    attempts: int = Field(default=0, description="times a dispatcher tried to create its flow run")
    last_error: str | None = None
    rejected: bool = Field(default=False, description="Prefect refused to create its run, for good (see last_error)")
