"""Tables of the fastlane API dialect: tasks, jobs (definitions), executions and webhook deliveries.

Every row carries its ``owner`` (the principal that made it): tenants never see each other's tasks, and
the same task id used by two tenants is two tasks. An execution is one Sojourn ledger job
(``ledger_job_id``); what fastlane shows of it (status, log, error, exit code) is kept here once final.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow
from sojourn.store.deliveries import DeliveryColumns


class FastlaneTask(SQLModel, table=True):
    __tablename__ = "fastlane_tasks"

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(index=True)
    task_id: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_modified_at: datetime = Field(default_factory=utcnow)


class FastlaneJob(SQLModel, table=True):
    """A job definition: what to run, how often to retry, when to start (once, or by cron)."""

    __tablename__ = "fastlane_jobs"

    id: str = Field(primary_key=True, description="the fastlane job id (a UUID4)")
    owner: str = Field(index=True)
    task_id: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_modified_at: datetime = Field(default_factory=utcnow)
    image: str
    command: str
    request_ip: str | None = None
    payload: str = Field(default="{}", description="the request's options as JSON: envs, metadata, retries, expiration, timeout, webhooks, notify, cron, ...")
    retry_count: int = 0
    scheduled: bool = False
    cron: str | None = None
    next_run_at: datetime | None = Field(default=None, index=True, description="the next cron firing")
    stopped: bool = False
    deployment_id: str | None = Field(default=None, description="a cron job's Prefect deployment (browse/fastlane-<id>), whose schedule makes its runs")
    url_allow: str = Field(default="[]", description="the enqueuing key's URL allow-list (JSON), for retries and cron firings")


class FastlaneExecution(SQLModel, table=True):
    """One run of a job: one Sojourn ledger job, hence one Prefect flow run."""

    __tablename__ = "fastlane_executions"

    id: str = Field(primary_key=True, description="the execution id (a UUID4)")
    job_id: str = Field(index=True)
    owner: str = Field(index=True)
    task_id: str
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    image: str
    command: str
    request_ip: str | None = None
    status: str = "enqueued"
    final: bool = Field(default=False, index=True)
    exit_code: int | None = None
    log: str | None = None
    error: str | None = None
    metadata_json: str = Field(default="{}")
    ledger_job_id: str | None = Field(default=None, index=True)
    attempt: int = 0
    stop_requested: bool = False
    run_at: datetime | None = None


class FastlaneHookDelivery(DeliveryColumns, table=True):
    """The outbox of fastlane webhooks: one row per (execution, event, hook), written when the execution ends; its
    id is derived from execution + event + hook index."""

    __tablename__ = "fastlane_hook_deliveries"

    owner: str = Field(index=True)
    execution_id: str = Field(index=True)
    job_id: str
    event: str
    headers: str = "{}"
    retries: int = 0
