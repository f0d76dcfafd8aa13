"""The facade database: SQLite under SOJOURN_HOME by default, PostgreSQL via SOJOURN_DATABASE_URL."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, create_engine

from sojourn.store import batches, fastlane, jobs, keys, leases, scrape, taskengine, templates, watermarks, webhooks  # noqa: F401  (registers the tables)

T = TypeVar("T", bound=SQLModel)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _create_schema(engine)
    return engine


SCHEMA_LOCK = 0x536F6A6F75726E  # "Sojourn": the PostgreSQL advisory lock that serializes schema changes


def _create_schema(engine: Engine) -> None:
    """Create what is missing of the facade schema, one process at a time.

    API processes and workers started together on a fresh PostgreSQL database all ran ``CREATE TABLE`` at once,
    and all but one died at start (#29: duplicate key in ``pg_type``). On PostgreSQL the DDL runs under a
    transaction-level advisory lock: the others wait, then find the tables there. (SQLite serializes writers
    itself.)"""
    from sqlalchemy import text

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        SQLModel.metadata.create_all(conn)
        _add_missing_columns(conn)


def _sqlite_pragmas(conn: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer, and a commit is one append (synchronous=NORMAL is still
    durable when a process dies; only a power cut can lose the last commits). Several processes share
    the file (API processes, the CLI), so writers wait their turn rather than fail."""
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _add_missing_columns(conn: Connection) -> None:
    """Columns added since a database was made: nullable or defaulted, so ADD COLUMN is enough.

    (Enough for additive changes; a rename or a type change would need a real migration tool.)
    """
    from sqlalchemy import inspect, text

    inspector = inspect(conn)
    for table in SQLModel.metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            ddl = column.type.compile(dialect=conn.dialect)
            default = column.default.arg if column.default is not None and not callable(column.default.arg) else None
            clause = f" DEFAULT {default!r}" if isinstance(default, (int, str)) and not isinstance(default, bool) else (
                f" DEFAULT {str(default).upper()}" if isinstance(default, bool) else "")
            conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {ddl}{clause}'))


def session(url: str) -> Session:
    return Session(engine_for(url), expire_on_commit=False)


def owned(url: str, model: type[T], row_id: str, owner: str | None) -> T | None:
    """The row, if ``owner`` may see it (None: anyone's, for the admin); else None, so the caller answers 404."""
    with session(url) as db:
        row = db.get(model, row_id)
    if row is None or (owner is not None and getattr(row, "owner") != owner):
        return None
    return row
