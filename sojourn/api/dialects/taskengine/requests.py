"""The Task Engine's request values, parsed as the Task Engine documents them: HTTP parsing, so the service gets
typed values. Each error names the field the way the Task Engine's clients read it (``job.priority: …``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Mapping
from urllib.parse import urlsplit

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from sojourn.api.dialects.taskengine.error_handlers import TEError
from sojourn.services.service_error import ServiceError


def bad(message: str) -> ServiceError:
    return ServiceError(400, "INVALID_INPUT", message)


def parse_run_at(value: Any, field: str = "run_at") -> datetime | None:
    """``yyyy-MM-ddTHH:mm:ss.fff`` in UTC (a trailing Z or an offset is fine too); None/"" for none."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise bad(f"{field}: expected a UTC date-time like 2030-09-09T14:30:00.000, got {value!r}")
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad(f"{field}: {value!r} is not a date-time in the format yyyy-MM-ddTHH:mm:ss.fff (UTC)") from None
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_priority(value: Any, field: str = "priority") -> int:
    """1 (most urgent) to 10; 5 when not given."""
    if value in (None, ""):
        return 5
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number != int(number) or not 1 <= number <= 10:
        raise bad(f"{field}: expected a whole number from 1 (most urgent) to 10, got {value!r}")
    return int(number)


def check_url(value: Any, field: str) -> str | None:
    """An http(s) URL with a host, or None for none."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")) or not urlsplit(value).hostname:
        raise bad(f"{field}: expected an http:// or https:// URL, got {value!r}")
    return value


def _checked(parse: Any, field: str) -> Any:
    """A pydantic "before" validator running one of the parsers above; its message survives as the error's."""
    def validate(value: Any) -> Any:
        try:
            return parse(value, field)
        except ServiceError as exc:
            raise ValueError(exc.message) from None
    return validate


def _first_message(exc: ValidationError) -> str:
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    return str(cause) if cause is not None else f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"


class JobChanges(BaseModel):
    """PUT/PATCH /jobs/<id>: what to change; only the fields sent change (``run_at: null`` clears the time)."""

    model_config = ConfigDict(extra="ignore")
    priority: int | None = None
    run_at: datetime | None = None
    semaphore_url: str | None = None
    sempahore_url: str | None = None  # the Task Engine's own misspelling, accepted as it accepts it
    queue_state: Any = None  # checked by the service against the job's state (its message names both)

    _priority = field_validator("priority", mode="before")(_checked(parse_priority, "priority"))
    _run_at = field_validator("run_at", mode="before")(_checked(parse_run_at, "run_at"))
    _semaphore = field_validator("semaphore_url", mode="before")(_checked(check_url, "semaphore_url"))
    _sempahore = field_validator("sempahore_url", mode="before")(_checked(check_url, "sempahore_url"))

    @classmethod
    def parse(cls, body: dict[str, Any]) -> dict[str, Any]:
        """The parsed values of the fields the body has, by name; 400 INVALID_INPUT naming the first bad one."""
        try:
            changes = cls.model_validate(body)
        except ValidationError as exc:
            raise bad(_first_message(exc)) from None
        return {name: getattr(changes, name) for name in cls.model_fields if name in changes.model_fields_set}


@dataclass(frozen=True)
class Submission:
    """POST /job: ``{"job": {workflow, priority, run_at, semaphore_url}, "parameters": {…}}``; the job's fields may
    also be given at the top level, as the later Task Engine docs show them. Checked field by field in the order
    the Task Engine reports them (the job, the parameters, the callback URLs, then the job's fields)."""

    workflow: Any
    priority: int
    run_at: datetime | None
    semaphore_url: str | None
    parameters: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "Submission":
        job = body.get("job")
        if job is None and "workflow" in body:
            job = {k: body[k] for k in ("workflow", "priority", "run_at", "semaphore_url") if k in body}
        if not isinstance(job, dict):
            raise bad("job: expected an object with the workflow, e.g. {\"workflow\": \"screenshot\"}")
        parameters = body.get("parameters", {})
        if not isinstance(parameters, dict):
            raise bad("parameters: expected an object")
        endpoints = parameters.get("rest_endpoints", [])
        if not isinstance(endpoints, list):
            raise bad("parameters.rest_endpoints: expected a list of callback URLs")
        for i, url in enumerate(endpoints):
            check_url(url, f"parameters.rest_endpoints.{i}")
        return cls(
            workflow=job.get("workflow"), priority=parse_priority(job.get("priority"), "job.priority"),
            run_at=parse_run_at(job.get("run_at"), "job.run_at"),
            semaphore_url=check_url(job.get("semaphore_url") or job.get("sempahore_url"), "job.semaphore_url"),
            parameters=parameters)


# ------------------------------------------------------------------ the body and the path


async def _json_object(request: Request, with_id: bool) -> dict[str, Any]:
    try:
        raw = await request.body()
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise TEError(400, {"id": None, "error": "body: not valid JSON"} if with_id else {"error": "body: not valid JSON"}) from None
    if not isinstance(data, dict):
        raise TEError(400, {"id": None, "error": "body: expected a JSON object"} if with_id else {"error": "body: expected a JSON object"})
    return data


async def json_body(request: Request) -> dict[str, Any]:
    """The body, a JSON object (an empty body is ``{}``)."""
    return await _json_object(request, with_id=False)


async def job_json_body(request: Request) -> dict[str, Any]:
    """``POST /job``'s body: as :func:`json_body`, its errors as ``{"id": null, "error": ...}``."""
    return await _json_object(request, with_id=True)


async def job_id(id: str) -> int:
    """The ``{id}`` of the path: a job's integer id."""
    if not (id.isascii() and id.isdigit()):  # ('³'.isdigit() is true, and int('³') fails)
        raise TEError(400, {"error": f"id: job ids are integers, got {id!r}"})
    return int(id)


Body = Annotated[dict[str, Any], Depends(json_body)]
JobBody = Annotated[dict[str, Any], Depends(job_json_body)]
JobId = Annotated[int, Depends(job_id)]


# ------------------------------------------------------------------ GET /jobs


ORDER_BY = ("id", "created_at", "updated_at", "run_at", "priority", "position")


def _integer(q: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    value = q.get(name)
    if value in (None, ""):
        return default
    if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
        raise bad(f"{name}: expected a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _flag(q: Mapping[str, str], name: str) -> bool | None:
    value = q.get(name)
    if value in (None, ""):
        return None
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise bad(f"{name}: expected 1 (true) or 0 (false), got {value!r}")


@dataclass(frozen=True)
class JobsQuery:
    """``GET /jobs``'s query. :meth:`parse` checks ``order_by`` and ``job_ids``; the filters are checked by
    :meth:`filters` only once the jobs are listed (a query for another client's jobs answers [] whatever its
    other filters say)."""

    query: Mapping[str, str]
    order_by: str
    job_ids: list[int] | None
    client: str | None  # the client the query names

    @classmethod
    def parse(cls, q: Mapping[str, str]) -> "JobsQuery":
        order_by = q.get("order_by") or "id"
        if order_by not in ORDER_BY:
            raise bad(f"order_by: expected one of {', '.join(ORDER_BY)}; got {order_by!r}")
        ids = None
        if q.get("job_ids"):
            parts = [p.strip() for p in q["job_ids"].split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise bad(f"job_ids: expected comma separated job ids, got {q['job_ids']!r}")
            ids = [int(p) for p in parts]
        return cls(q, order_by, ids, q.get("client"))

    def filters(self) -> dict[str, Any]:
        """The service's ``list`` arguments besides the client; 400 naming the first bad one."""
        q = self.query
        start = parse_run_at(q.get("from"), "from")
        end = parse_run_at(q.get("to"), "to")
        return {"limit": _integer(q, "limit", 10, 1, 1000) or 10, "order_by": self.order_by, "asc": bool(_flag(q, "asc")),
                "state": _integer(q, "state", None, 0, 6), "created_from": start, "created_to": end, "failed": _flag(q, "failed"),
                "search": q.get("search") or None, "job_ids": self.job_ids}
