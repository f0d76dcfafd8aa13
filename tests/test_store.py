"""The facade database on SQLite (default) and PostgreSQL (SOJOURN_DATABASE_URL), for real."""

from __future__ import annotations

import pytest
from sqlmodel import select

from sojourn import settings as settings_mod
from sojourn.api.auth import KeyAuth
from sojourn.services.principals import ensure_admin_key, hash_key
from sojourn.store.db import session
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


def test_keys_authenticate_by_hash(db_settings):
    key, _ = ensure_admin_key(db_settings)
    auth = KeyAuth(db_settings)
    principal = auth.lookup(key)
    assert principal is not None and principal.is_admin
    assert auth.lookup(key + "x") is None


def test_processes_starting_together_on_a_fresh_postgresql_database_all_get_the_schema():
    """#29: API processes started at the same instant on a fresh PostgreSQL database each create the facade schema
    at start; all ran CREATE TABLE at once and all but one died (duplicate key in pg_type). Each here is what one
    process does at start, on its own engine and connection, released together."""
    import threading

    from sqlalchemy import create_engine, inspect
    from sqlmodel import SQLModel

    from sojourn.store.db import _create_schema

    url = fresh_facade_database("sojourn_race")
    if url is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    engines = [create_engine(url) for _ in range(4)]
    start, errors = threading.Barrier(len(engines)), []

    def boot(engine) -> None:
        start.wait()
        try:
            _create_schema(engine)
        except Exception as exc:  # noqa: BLE001 - what a process would have died of
            errors.append(exc)

    try:
        threads = [threading.Thread(target=boot, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert set(inspect(engines[0]).get_table_names()) >= set(SQLModel.metadata.tables)
    finally:
        for e in engines:
            e.dispose()
        drop_facade_database(url)
