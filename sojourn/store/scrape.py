"""Tables of the Scrape-jobs API dialect: projects, targets, the dialect's view of its jobs, results, schedules.

Execution state stays where every job keeps it (the ledger and the Prefect flow run); ``ScrapeJob`` holds only
what the scrape-jobs API shows beyond it (project, source, config) and, once the job has ended and its results
were ingested, a copy of its final status so lists and filters need no Prefect read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class ScrapeProject(SQLModel, table=True):
    __tablename__ = "scrape_projects"

    id: str = Field(primary_key=True, max_length=40, description="proj_…")
    owner: str = Field(index=True)
    name: str
    description: str | None = None
    config: str = Field(default="{}", description="JSON: max_results_per_target, daily_job_limit, rate_limit_delay")
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    # The project's one open job (its claim, a compare-and-set: one running job per project, whichever API process
    # starts it); cleared when it ends, taken over when it is found ended.
    running_job: str | None = Field(default=None, max_length=40)
    running_claimed_at: datetime | None = None


class ScrapeTarget(SQLModel, table=True):
    __tablename__ = "scrape_targets"
    __table_args__ = (UniqueConstraint("project_id", "url", name="uq_scrape_targets_project_url"),)

    id: str = Field(primary_key=True, max_length=40, description="tgt_…")
    project_id: str = Field(index=True)
    owner: str = Field(index=True)
    url: str
    name: str | None = None
    platform: str = "generic"
    status: str = Field(default="active", description="active | paused | error")
    extract: str = Field(default="{}", description="JSON: item_selector, fields, next_page, max_pages, wait_for, dedupe_keys, screenshot")
    last_scraped: datetime | None = None
    results_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class ScrapeJob(SQLModel, table=True):
    __tablename__ = "scrape_jobs"
    __table_args__ = (Index("ix_scrape_jobs_project_created", "project_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40, description="job_… (the ledger's external_id)")
    job_id: str = Field(index=True, description="the Sojourn job id (ledger, flow run tag)")
    project_id: str = Field(index=True)
    owner: str = Field(index=True)
    source: str = "manual"
    schedule_id: str | None = None
    retry_of: str | None = None
    config: str = Field(default="{}", description="JSON: max_results_per_target, targets")
    status: str = Field(default="pending", index=True, description="last status seen: pending | running | completed | failed | cancelled")
    final: str | None = Field(default=None, description="JSON of the rendered final job, once ended and ingested")
    created_at: datetime = Field(default_factory=utcnow, index=True)
    ingested_at: datetime | None = None


class ScrapeResult(SQLModel, table=True):
    __tablename__ = "scrape_results"
    __table_args__ = (
        Index("ix_scrape_results_project", "project_id", "seq"),
        Index("ix_scrape_results_job", "job_id", "target_id", "seq"),
        Index("ix_scrape_results_target", "target_id", "seq"),
    )

    seq: int | None = Field(default=None, primary_key=True, description="insertion order, for stable paging")
    id: str = Field(unique=True, max_length=40, description="res_…")
    owner: str = Field(index=True)
    project_id: str
    target_id: str
    job_id: str = Field(description="job_…")
    source_url: str
    page: int
    position: int
    data: str = Field(description="JSON of the item's fields")
    created_at: datetime = Field(default_factory=utcnow)


class ScrapeSchedule(SQLModel, table=True):
    __tablename__ = "scrape_schedules"

    id: str = Field(primary_key=True, max_length=40, description="sch_…")
    project_id: str = Field(unique=True)
    owner: str = Field(index=True)
    frequency: str | None = None
    time: str | None = None
    timezone: str = "UTC"
    day_of_week: int | None = None
    day_of_month: int | None = None
    cron: str | None = None
    enabled: bool = True
    next_run: datetime | None = None
    last_run: datetime | None = None
    last_status: str | None = None
    history: str = Field(default="[]", description="JSON list of {job_id, scheduled_at, status}")
    deployment_id: str | None = Field(default=None, description="its Prefect deployment (scrape/sch_…), which carries the cron schedule")
    url_allow: str | None = Field(default=None, description="JSON: the URL allow-list of the key that made it, given to its runs")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
