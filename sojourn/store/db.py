"""The facade database: SQLite under SOJOURN_HOME by default, PostgreSQL via SOJOURN_DATABASE_URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from sojourn.settings import get_settings
from sojourn.store import schema
from sojourn.store import batches, deliveries, fastlane, jobs, keys, leases, profiles, refusals, scrape, taskengine, templates, watermarks, webhooks  # noqa: F401  (registers the tables)

T = TypeVar("T", bound=SQLModel)


_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """The process's engine for ``url``, its schema current (see :mod:`sojourn.store.schema`)."""
    engine = _engines.get(url)
    if engine is None:
        engine = new_engine(url)
        schema.ensure(engine, migrate=get_settings().database_migrate_on_start)
        engine = _engines.setdefault(url, engine)
    return engine


def forget(url: str) -> None:
    """Close the process's connections to ``url`` (before the database is dropped)."""
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def new_engine(url: str) -> Engine:
    """An engine of its own, schema unchecked (``sojourn db``, which checks or migrates it)."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(conn: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer, and a commit is one append (synchronous=NORMAL is still
    durable when a process dies; only a power cut can lose the last commits). Several processes share
    the file (API processes, the CLI), so writers wait their turn rather than fail."""
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def session(url: str) -> Session:
    return Session(engine_for(url), expire_on_commit=False)


def owned(url: str, model: type[T], row_id: str, owner: str | None) -> T | None:
    """The row, if ``owner`` may see it (None: anyone's, for the admin); else None, so the caller answers 404."""
    with session(url) as db:
        row = db.get(model, row_id)
    if row is None or (owner is not None and getattr(row, "owner") != owner):
        return None
    return row
