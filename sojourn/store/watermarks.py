"""How far background sweeps have got."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel



class Watermark(SQLModel, table=True):
    """How far a background sweep has got (e.g. job outcomes turned into webhook deliveries)."""

    __tablename__ = "watermarks"

    name: str = Field(primary_key=True)
    value: datetime
