"""API keys (hashes only) and whom they act for."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class ApiKey(SQLModel, table=True):
    """An API key, stored as its SHA-256 only; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, description="public id, safe to show")
    principal: str = Field(index=True, description="who owns what this key creates")
    name: str = ""
    key_hash: str = Field(unique=True, index=True)
    scopes: str = Field(default="jobs:read,jobs:write", description="comma-separated")
    url_allow: str | None = Field(default=None, description="comma-separated host patterns this key may visit")
    rate_limit: str | None = Field(default=None, description="e.g. '100/minute'; the server default when empty")
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None

    @property
    def scope_set(self) -> set[str]:
        return {s for s in self.scopes.split(",") if s}
