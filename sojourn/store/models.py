"""The facade's own tables (SQLModel). Prefect owns job state; these are what Prefect has no place for."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ApiKey(SQLModel, table=True):
    """An API key, stored as its SHA-256 only; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, description="public id, safe to show")
    principal: str = Field(index=True, description="who owns what this key creates")
    name: str = ""
    key_hash: str = Field(unique=True, index=True)
    scopes: str = Field(default="jobs:read,jobs:write", description="comma-separated")
    url_allow: str | None = Field(default=None, description="comma-separated host patterns this key may visit")
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None

    @property
    def scope_set(self) -> set[str]:
        return {s for s in self.scopes.split(",") if s}
