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
