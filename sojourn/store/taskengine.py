"""Tables of the Task Engine API dialect: its settings, schedules, per-job facts and callback outbox.

A Task Engine job is a ledger job (``jobs``, its integer ``seq`` is the job id);
``taskengine_jobs`` keeps what the Task Engine says about it and can change
later (priority, run_at, semaphore, paused / broken), keyed by that seq.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow
from sojourn.store.deliveries import DeliveryColumns


class TaskEngineSetting(SQLModel, table=True):
    """``POST /settings``: one row per setting name (values kept as the client sent them, as text)."""

    __tablename__ = "taskengine_settings"

    name: str = Field(primary_key=True, max_length=200)
    value: str
    updated_at: datetime = Field(default_factory=utcnow)


class TaskEngineSchedule(SQLModel, table=True):
    """``PUT /scheduler``: schedules switched off (a missing row is an active schedule)."""

    __tablename__ = "taskengine_schedules"

    name: str = Field(primary_key=True, max_length=200)
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow)


class TaskEngineJob(SQLModel, table=True):
    """The Task Engine's facts about one ledger job."""

    __tablename__ = "taskengine_jobs"

    seq: int = Field(primary_key=True, description="the ledger's seq: the Task Engine job id")
    job_id: str = Field(unique=True, index=True, max_length=64, description="the ledger's job id")
    client: str = Field(index=True, description="the client (principal) the job belongs to")
    workflow: str
    priority: int = Field(default=5, description="1 (most urgent) .. 10")
    parameters: str = Field(default="{}", description="the parameters as submitted (JSON)")
    content_id: str | None = Field(default=None, index=True)
    run_at: datetime | None = Field(default=None, description="not queued before this time (UTC)")
    semaphore_url: str | None = Field(default=None, description="queued only once this answers 2xx/3xx")
    queue_state: str | None = Field(default=None, description="paused | broken: set over PUT/PATCH; None: follows the run")
    released: bool = Field(default=False, description="left the scheduler (run_at passed, semaphore open): its run exists or is being made")
    rerun_of: int | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    ended_noticed: bool = Field(default=False, description="its job callback is in the outbox")


class TaskEngineCallback(DeliveryColumns, table=True):
    """The callback outbox: one row per (job, URL, event), delivered at least once with retries. Its id is the
    stable event id X-Sojourn-Event-Id."""

    __tablename__ = "taskengine_callbacks"

    seq: int = Field(index=True)
    ordinal: int | None = Field(default=None, description="order within the job: task n's start 2n, its end 2n+1, the job callback last")


class TaskEngineTask(SQLModel, table=True):
    """A job's task runs numbered 1, 2, ... as they are first seen (live, or by the end-of-job net): the
    ``task_id`` of its callbacks and logs, the same whichever process saw it first."""

    __tablename__ = "taskengine_tasks"
    __table_args__ = (UniqueConstraint("seq", "number", name="uq_taskengine_tasks_seq_number"),)

    task_run_id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(index=True)
    number: int
    name: str = ""
    created_at: datetime = Field(default_factory=utcnow)
