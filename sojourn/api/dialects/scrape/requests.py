"""What a scrape-jobs request may say: bodies (pydantic models), query strings (dependencies) and the checks
between fields that pydantic's types do not make.

The route's parsed input is a dependency (a query class, or a function taking the body) so that the route's
principal can be resolved after it (:func:`..dependencies.once_valid`): an invalid request is answered 422
before its key is looked at. The checks between fields (:meth:`TargetFields.extract`) run in the route, after
the key, as they always have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from sojourn.services.service_error import ServiceError
from sojourn.services.scrape.conventions import invalid

# ------------------------------------------------------------------ bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ProjectConfig(_Body):
    max_results_per_target: int | None = Field(None, ge=1, le=1000, description="results kept per target and job (default 100)")
    max_reviews_per_target: int | None = Field(None, ge=1, le=1000, description="the original's name for max_results_per_target")
    daily_job_limit: int | None = Field(None, ge=1, description="jobs per project per day (default 500)")
    rate_limit_delay: float | None = Field(None, ge=0, le=60, description="seconds between page loads on one domain (default 1.0)")
    respect_robots_txt: bool | None = Field(None, description="skip target URLs and next pages the site's robots.txt disallows for "
                                            "Sojourn (default false); a skipped target has status `skipped`")
    profile: str | None = Field(None, max_length=100, description="a saved profile (native API /api/v1/profiles) of the project's "
                                "owner: every job's browser starts from its current state (log in once, scrape members-only pages)")

    def values(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        if "max_reviews_per_target" in data:
            data.setdefault("max_results_per_target", data.pop("max_reviews_per_target"))
        return data


class ProjectCreate(_Body):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    config: ProjectConfig | None = None


class ProjectUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    config: ProjectConfig | None = None

    def changes(self) -> dict[str, Any]:
        changes = self.model_dump(exclude_unset=True)
        if self.config is not None:
            changes["config"] = self.config.values()
        return changes


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selector: str | None = Field(None, description="CSS, or XPath when it starts with / ./ or ( ; none: the item itself")
    attribute: str | None = Field(None, description="read this attribute (href and src come back absolute)")
    html: bool = Field(False, description="the inner HTML instead of the text")
    multiple: bool = Field(False, description="every match, as a list")


class TargetFields(_Body):
    name: str | None = Field(None, max_length=200)
    platform: str | None = Field(None, max_length=50)
    status: Literal["active", "paused"] | None = None
    item_selector: str | None = Field(None, min_length=1, description="one item per match; none: the page is one result (url, title, text)")
    fields: dict[str, str | FieldSpec] | None = None
    next_page: str | None = Field(None, min_length=1, description="a selector of the next link, or a URL template with {page}")
    max_pages: int | None = Field(None, ge=1, le=1000)
    wait_for: str | None = Field(None, min_length=1, description="a selector to wait for on every page before reading it")
    dedupe_keys: list[str] | None = None
    screenshot: bool | None = None

    def extract(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True)
        if self.fields is not None:
            data["fields"] = {k: (v if isinstance(v, str) else v.model_dump(exclude_defaults=True)) for k, v in self.fields.items()}
        if self.item_selector and not self.fields:
            raise invalid("fields", "an item_selector needs at least one field")
        if self.dedupe_keys and self.fields is not None:
            unknown = [k for k in self.dedupe_keys if k not in self.fields]
            if unknown:
                raise invalid("dedupe_keys", f"'{unknown[0]}' is not one of the fields")
        return data


class TargetCreate(TargetFields):
    url: str = Field(min_length=1, max_length=2048)

    def data(self) -> dict[str, Any]:
        return {**self.extract(), "url": self.url}


class TargetUpdate(TargetFields):
    url: str | None = Field(None, min_length=1, max_length=2048)

    def changes(self) -> dict[str, Any]:
        return {**self.extract(), **({"url": self.url} if self.url is not None else {})}


class BulkTargets(_Body):
    targets: list[TargetCreate] = Field(min_length=1, max_length=1000)

    def data(self) -> list[dict[str, Any]]:
        """Every target's data; the first refused names its place (``targets.{i}.field``)."""
        bodies = []
        for i, t in enumerate(self.targets):
            try:
                bodies.append(t.data())
            except ServiceError as exc:
                field = (exc.details or {}).get("field", "")
                raise invalid(f"targets.{i}.{field}", exc.message.split(": ", 1)[-1]) from None
        return bodies


class ScheduleFields(_Body):
    frequency: Literal["hourly", "daily", "weekly", "monthly"] | None = Field(None, description="or `cron`")
    time: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM in `timezone` (hourly: the minute)")
    timezone: str | None = Field(None, max_length=64, description="IANA timezone, default UTC")
    day_of_week: int | None = Field(None, ge=0, le=6, description="weekly: 0 = Monday … 6 = Sunday (default 0)")
    day_of_month: int | None = Field(None, ge=1, le=31, description="monthly: 1–31 (default 1; months without that day are skipped)")
    cron: str | None = Field(None, min_length=1, max_length=200, description="a five-field cron expression instead of a frequency")
    enabled: bool | None = None


class ScheduleCreate(ScheduleFields):
    project_id: str = Field(min_length=1, max_length=40)


class JobCreate(_Body):
    target_ids: list[str] | None = None
    max_results_per_target: int | None = Field(None, ge=1, le=1000)


# The bodies as dependencies (see the module's docstring).


async def project_create_body(body: ProjectCreate) -> ProjectCreate:
    return body


async def project_update_body(body: ProjectUpdate) -> ProjectUpdate:
    return body


async def target_create_body(body: TargetCreate) -> TargetCreate:
    return body


async def bulk_targets_body(body: BulkTargets) -> BulkTargets:
    return body


async def target_update_body(body: TargetUpdate) -> TargetUpdate:
    return body


async def job_create_body(body: JobCreate | None = None) -> JobCreate:
    return body or JobCreate()


async def schedule_create_body(body: ScheduleCreate) -> ScheduleCreate:
    return body


async def schedule_update_body(body: ScheduleFields) -> ScheduleFields:
    return body


# ------------------------------------------------------------------ query strings

PAGE = Query(1, ge=1, le=10_000_000)  # bounded: past SQL's integers a page was a 500
PER_PAGE = Query(20, ge=1, le=100)
FORMAT = Query(None, description="export instead of a page: json, jsonl or csv (streamed)")

ExportFormat = Literal["json", "jsonl", "csv"]


@dataclass
class Paging:
    page: int = PAGE
    per_page: int = PER_PAGE


@dataclass
class TargetQuery(Paging):
    status: Literal["active", "paused", "error"] | None = None


@dataclass
class JobQuery(Paging):
    status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None
    source: Literal["manual", "scheduled", "api", "retry", "taskengine"] | None = None


@dataclass
class LogQuery:
    level: Literal["info", "warning", "error"] | None = None
    limit: int = Query(100, ge=1, le=200)


@dataclass
class JobResultsQuery(Paging):
    target_id: str | None = None
    format: ExportFormat | None = FORMAT


@dataclass
class ProjectResultsQuery(Paging):
    target_id: str | None = None
    job_id: str | None = None
    sort: Literal["created_at", "-created_at"] = "created_at"
    format: ExportFormat | None = FORMAT
