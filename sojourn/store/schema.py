"""Versions of the facade schema: Alembic migrations under ``store/migrations``, applied once.

``sojourn db upgrade`` (and ``sojourn bootstrap``, and ``sojourn up`` for the one-machine stack) bring the database
to this Sojourn's head revision. A process that starts on a database that is behind either migrates it itself
(``SOJOURN_DATABASE_MIGRATE_ON_START``, the default, for one machine) or refuses to start with one line naming the
command to run (replicas of a scaled-out deployment set it to false, as Prefect's replicas do with
``PREFECT_API_DATABASE_MIGRATE_ON_START``). Migrations never race: on PostgreSQL they run under an advisory
lock held for the migration's transaction, on SQLite under a lock file beside the database.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MIGRATION_LOCK = 0x536F6A6F75726E  # "Sojourn": the PostgreSQL advisory lock that serializes schema changes
UPGRADE_COMMAND = "sojourn db upgrade"


class SchemaNotReady(RuntimeError):
    """The database is not at the schema this Sojourn needs, and this process may not migrate it."""


def _config(connection: Connection | None = None):  # alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """The revision this code needs."""
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(_config()).get_heads()
    assert len(found) == 1, f"the facade migrations have {len(found)} heads: {found}"
    return found[0]


def current(conn: Connection) -> str | None:
    """The database's revision; None for an empty database or one made before migrations."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to :func:`head`, one process at a time; returns (revision before, revision after)."""
    from alembic import command

    with _migration_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        before = current(conn)
        if before != head():
            command.upgrade(_config(conn), "head")
    return before, head()


def new_revision(engine: Engine, message: str) -> str:
    """For a developer who changed a table: write the next revision, generated from the difference between the
    models and ``engine``'s database (at head); returns its path. Read it before committing it."""
    from alembic import command

    with engine.begin() as conn:
        script = command.revision(_config(conn), message=message, autogenerate=True)
    return script.path  # type: ignore[union-attr]


def ensure(engine: Engine, *, migrate: bool) -> None:
    """Return when the database is at :func:`head`; migrate it first if ``migrate``, else raise SchemaNotReady."""
    with engine.connect() as conn:
        now = current(conn)
    if now == head():
        return
    if not migrate:
        raise SchemaNotReady(
            f"the facade database ({engine.url.render_as_string(hide_password=True)}) is at schema "
            f"{now or 'none'}, this Sojourn needs {head()}: run `{UPGRADE_COMMAND}` once "
            f"(or start with SOJOURN_DATABASE_MIGRATE_ON_START=true)")
    upgrade(engine)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite: a lock file beside the database (SQLite's own locking lets two processes both find a table missing
    and both create it). PostgreSQL takes its advisory lock inside the transaction instead."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
