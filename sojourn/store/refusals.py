"""Submissions refused because the queue was full, counted per minute for every API process (``/pressure``)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field, SQLModel, func, select


class QueueRefusal(SQLModel, table=True):
    """How many submissions were refused with QUEUE_FULL in one minute, by any API process."""

    __tablename__ = "queue_refusals"

    minute: int = Field(primary_key=True)  # seconds since the epoch // 60
    count: int = 0


def record(db, minute: int, n: int) -> None:  # noqa: ANN001  (a Session)
    """Add ``n`` refusals to ``minute`` (an upsert: processes refusing in the same minute add up)."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(QueueRefusal).values(minute=minute, count=n)
    db.exec(stmt.on_conflict_do_update(index_elements=["minute"], set_={"count": QueueRefusal.count + n}))  # type: ignore[arg-type]
    db.exec(QueueRefusal.__table__.delete().where(QueueRefusal.minute < minute - 60))  # type: ignore[attr-defined]  # an hour is kept
    db.commit()


def since(db, minute: int) -> int:  # noqa: ANN001
    return int(db.exec(select(func.coalesce(func.sum(QueueRefusal.count), 0)).where(QueueRefusal.minute >= minute)).one())
