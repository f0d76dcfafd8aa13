"""Saved job requests of the native API."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from sojourn.store.clock import utcnow


class Template(SQLModel, table=True):
    """A saved job request with `{variable}` placeholders, owned by one principal."""

    __tablename__ = "templates"

    id: str = Field(primary_key=True)
    owner: str = Field(index=True)
    name: str
    description: str = ""
    type: str
    default_input: str = Field(description="JSON of the job input, with {variable} placeholders")
    variables: str = Field(default="[]", description="JSON list of variable names")
    priority: str = "normal"
    options: str = Field(default="{}", description="JSON of the job options")
    created_at: datetime = Field(default_factory=utcnow)
