"""Saved browser sessions (profiles) and what became of each job's save."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class Profile(SQLModel, table=True):
    """A principal's named browser storage state (cookies, localStorage, IndexedDB), encrypted with the server's
    secret. ``version`` goes up by one with every save; a save names the version it started from (compare-and-set)."""

    __tablename__ = "profiles"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_profiles_owner_name"),)

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(index=True, max_length=200)
    name: str = Field(max_length=100)
    version: int = 1
    state_encrypted: str
    summary: str = Field(default="{}", description="JSON: counts and domains of the state, never its values")
    saved_by_job: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ProfileSave(SQLModel, table=True):
    """The outcome of one job's ``saveProfile``: saved as ``version``, or refused (``error``). One row per job, so
    handling a job's end twice (two API processes, the sweep) decides once."""

    __tablename__ = "profile_saves"

    job_id: str = Field(primary_key=True, max_length=40)
    profile_id: str = Field(index=True, max_length=40)
    saved: bool
    version: int | None = None
    error: str | None = Field(default=None, max_length=500)
    at: datetime = Field(default_factory=utcnow)
