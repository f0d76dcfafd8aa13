"""The answers :mod:`sojourn.client` returns: pydantic models of the native API's JSON.

Every model keeps the fields it does not know (``extra="allow"``): a newer server's additions never break an older
client, and they stay readable (``job["newField"]``, ``job.model_extra``). A model also reads like the JSON it came
from — ``job["status"]``, ``job.get("result")``, ``dict(job)``, ``{**job}`` — and :meth:`Answer.to_dict` gives that
JSON back (what the CLI prints).
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def _attribute(self, key: str) -> str | None:
        for name, field in type(self).model_fields.items():
            if (field.alias or name) == key:
                return name
        return None

    def __getitem__(self, key: str) -> Any:
        name = self._attribute(key)
        if name is not None and name in self.model_fields_set:
            return getattr(self, name)
        if self.model_extra and key in self.model_extra:
            return self.model_extra[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def keys(self) -> list[str]:
        """The JSON's keys (what the answer held): with ``__getitem__``, ``dict(answer)`` and ``{**answer}`` work."""
        known = [type(self).model_fields[n].alias or n for n in type(self).model_fields if n in self.model_fields_set]
        return known + list(self.model_extra or {})

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  (a mapping's iteration: its keys)
        return iter(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """The answer as the API sent it."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


_MISSING = object()


class ErrorBody(Answer):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class JobResult(Answer):
    type: str | None = None
    data: Any = None
    screenshots: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """Every capture (``id``, ``name``, ``kind``, ``size``, ``contentType``): names for :meth:`Sojourn.download`."""
        return list(self.metadata.get("artifacts") or [])


class Job(Answer):
    id: str
    status: str
    type: str | None = None
    priority: str | None = None
    progress: Any = None
    created_at: str | None = Field(None, alias="createdAt")
    started_at: str | None = Field(None, alias="startedAt")
    completed_at: str | None = Field(None, alias="completedAt")
    duration: int | None = None
    result: JobResult | None = None
    error: ErrorBody | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


class JobRef(Answer):
    """A job named by its id and status: the answer to a creation (``submitted``) or a cancel."""
    job_id: str = Field(alias="jobId")
    status: str
    estimated_duration: int | None = Field(None, alias="estimatedDuration")


class Retried(Answer):
    new_job_id: str = Field(alias="newJobId")
    original_job_id: str = Field(alias="originalJobId")
    status: str


class Batch(Answer):
    batch_id: str = Field(alias="batchId")
    status: str
    job_ids: list[str] = Field(default_factory=list, alias="jobIds")
    jobs: list[Job] = Field(default_factory=list)


class Screenshot(Answer):
    id: str


class Template(Answer):
    template_id: str = Field(alias="templateId")
    name: str


class Webhook(Answer):
    id: str
    url: str
    events: list[str] = Field(default_factory=list)


class Profile(Answer):
    """A saved browser session: its version and what it holds (counts and domains, never a value)."""
    name: str
    version: int
    cookies: int = 0
    domains: list[str] = Field(default_factory=list)
    origins: list[str] = Field(default_factory=list)


class ApiKey(Answer):
    """A key as the admin sees it; ``key`` (the secret) only in the answer that made it."""
    id: str
    name: str
    principal: str | None = None
    scopes: list[str] = Field(default_factory=list)
    key: str | None = None


class SystemStatus(Answer):
    status: str
