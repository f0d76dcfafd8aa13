"""The facade database on SQLite (default) and PostgreSQL (SOJOURN_DATABASE_URL), for real."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel, select

from sojourn import settings as settings_mod
from sojourn.api.auth import KeyAuth
from sojourn.services.principals import ensure_admin_key, hash_key
from sojourn.store import schema
from sojourn.store.db import new_engine, session
from sojourn.store.keys import ApiKey
from tests.postgres import drop_facade_database, fresh_facade_database

@pytest.fixture(params=["sqlite", "postgres"])
def db_settings(request, tmp_path):
    old = settings_mod.get_settings()
    url = f"sqlite:///{tmp_path / 'facade.db'}" if request.param == "sqlite" else fresh_facade_database()
    if url is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    new = settings_mod.configure(home=tmp_path, database_url=url, admin_key=None)
    yield new
    settings_mod._current = old
    if request.param == "postgres":
        drop_facade_database(url)


def test_admin_key_is_generated_once_stored_0600_and_only_its_hash_in_the_database(db_settings):
    key, created = ensure_admin_key(db_settings)
    assert created and key.startswith("sj_")
    path = db_settings.home / "admin.key"
    assert path.read_text().strip() == key
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again, created_again = ensure_admin_key(db_settings)
    assert again == key and not created_again
    with session(db_settings.database_location) as db:
        rows = db.exec(select(ApiKey)).all()
    assert [r.key_hash for r in rows] == [hash_key(key)]
    assert all(key not in (r.key_hash + r.id + r.name) for r in rows)


def test_processes_starting_together_on_a_fresh_home_and_database_share_one_admin_key(db_settings):
    """Two services processes started together once lost one of them: both found no admin key row, both inserted
    it, one died of the duplicate key. Here eight starts are released at once on a fresh home and database: none
    fails, one of them made the key, every one has that key, and the database holds one row of its hash."""
    import threading

    start, results, errors = threading.Barrier(8), [], []

    def boot() -> None:
        start.wait()
        try:
            results.append(ensure_admin_key(db_settings))
        except Exception as exc:  # noqa: BLE001 - what a process would have died of
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    keys = {key for key, _ in results}
    assert len(results) == 8 and len(keys) == 1 and [created for _, created in results].count(True) == 1, results
    assert (db_settings.home / "admin.key").read_text().strip() in keys
    assert [p.name for p in db_settings.home.iterdir() if p.name.startswith(".admin.key")] == []  # no temporary left
    with session(db_settings.database_location) as db:
        assert [r.key_hash for r in db.exec(select(ApiKey)).all()] == [hash_key(keys.pop())]


def test_keys_authenticate_by_hash(db_settings):
    key, _ = ensure_admin_key(db_settings)
    auth = KeyAuth(db_settings)
    principal = auth.lookup(key)
    assert principal is not None and principal.is_admin
    assert auth.lookup(key + "x") is None


def test_processes_starting_together_on_a_fresh_postgresql_database_all_get_the_schema():
    """#29: processes that may migrate (one machine's default) started at the same instant on a fresh PostgreSQL
    database: all ran CREATE TABLE at once and all but one died (duplicate key in pg_type). Each here is what one
    process does at start, on its own engine and connection, released together; one migrates, the others wait."""
    import threading

    url = fresh_facade_database("sojourn_race")
    if url is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    engines = [new_engine(url) for _ in range(4)]
    start, errors = threading.Barrier(len(engines)), []

    def boot(engine) -> None:
        start.wait()
        try:
            schema.ensure(engine, migrate=True)
        except Exception as exc:  # noqa: BLE001 - what a process would have died of
            errors.append(exc)

    try:
        threads = [threading.Thread(target=boot, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert _differences(engines[0]) == []
    finally:
        for e in engines:
            e.dispose()
        drop_facade_database(url)


def _differences(engine) -> list:
    """What Alembic finds between the database and the models: [] when the migrations make exactly the models."""
    with engine.connect() as conn:
        assert schema.current(conn) == schema.head()
        return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)


def test_the_migrations_make_exactly_the_tables_the_code_uses(db_settings):
    """A model changed without a migration fails here (on SQLite and on PostgreSQL)."""
    session(db_settings.database_location).close()
    assert _differences(new_engine(db_settings.database_location)) == []


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_database_made_before_migrations_is_upgraded_in_place_with_its_rows(dialect, tmp_path):
    """#29: a facade database made by main before migrations (its DDL, as that main ran it, in tests/data), and one
    made earlier still (a table and a column added since are missing): `sojourn db upgrade` brings it to the head
    revision without losing a row (a job, a webhook and its pending delivery), and its API key still signs in."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if dialect == "sqlite" else fresh_facade_database("sojourn_old")
    if url is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    ddl = "\n".join(line for line in (Path(__file__).parent / "data" / f"facade-ee78f50.{dialect}.sql").read_text().splitlines()
                    if not line.startswith("--"))
    engine = new_engine(url)
    key = "sj_old_" + uuid.uuid4().hex
    before = settings_mod.get_settings()
    try:
        with engine.begin() as conn:
            for statement in ddl.split(";\n"):
                if statement.strip():
                    conn.exec_driver_sql(statement)
            conn.exec_driver_sql("DROP TABLE service_leases")  # added in session 7
            conn.exec_driver_sql("ALTER TABLE jobs DROP COLUMN rejected")  # added before it
            conn.execute(text("INSERT INTO jobs (id, owner, dialect, kind, spec, priority, labels, created_at, held, attempts)"
                              " VALUES ('j1', 'old-admin', 'native', 'browse', '{}', 'normal', '{}', :now, false, 0)"),
                         {"now": datetime.now(timezone.utc)})
            now = datetime.now(timezone.utc)
            conn.execute(text("INSERT INTO webhooks (id, owner, url, events, secret_encrypted, created_at)"
                              " VALUES ('wh_old', 'old-admin', 'https://receiver.test/hook', 'job.completed', 'x', :now)"), {"now": now})
            conn.execute(text("INSERT INTO webhook_deliveries (id, webhook_id, owner, event, job_id, payload, status, attempts,"
                              " next_attempt_at, created_at) VALUES ('evt_old', 'wh_old', 'old-admin', 'job.completed', 'j1', '{}',"
                              " 'pending', 0, :now, :now)"), {"now": now})
            conn.execute(ApiKey.__table__.insert().values(
                id="key_old", principal="old-admin", name="made before migrations", key_hash=hash_key(key),
                scopes="admin", created_at=datetime.now(timezone.utc)))
        env = {**os.environ, "SOJOURN_HOME": str(tmp_path / "home"), "SOJOURN_DATABASE_URL": url}
        current = subprocess.run([sys.executable, "-m", "sojourn.cli", "db", "current"], env=env, capture_output=True, text=True, timeout=60)
        assert current.returncode == 1 and current.stdout.strip() == f"schema none (this Sojourn needs {schema.head()})"
        done = subprocess.run([sys.executable, "-m", "sojourn.cli", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip().endswith(f"schema {schema.head()} (was none)"), done.stdout + done.stderr
        assert _differences(engine) == []
        settings_mod.configure(home=tmp_path / "home", database_url=url, admin_key=None)
        principal = KeyAuth(settings_mod.get_settings()).lookup(key)
        assert principal is not None and principal.name == "old-admin" and principal.is_admin
        with engine.connect() as conn:  # the job made before is there, and the column added since has its default
            assert conn.execute(text("SELECT id, owner, rejected FROM jobs")).all() == [("j1", "old-admin", False)]
            # a delivery owed before learns its webhook's URL (the outboxes' one column set)
            assert conn.execute(text("SELECT id, url, status FROM webhook_deliveries")).all() == [("evt_old", "https://receiver.test/hook", "pending")]
    finally:
        engine.dispose()
        settings_mod._current = before
        if dialect == "postgresql":
            drop_facade_database(url)
