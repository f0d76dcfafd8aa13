"""API keys: generated once, shown once, stored as SHA-256; checked on every request.

Keys are 32 random bytes, so a plain SHA-256 is the right hash (as for
GitHub or Stripe tokens): there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from sqlmodel import select

from sojourn.api.errors import ApiError
from sojourn.settings import Settings
from sojourn.store.db import session
from sojourn.store.models import ApiKey

KEY_PREFIX = "sj_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_id: str = ""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def can(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes


def admin_key_file(settings: Settings) -> Path:
    return settings.home / "admin.key"


def ensure_admin_key(settings: Settings) -> tuple[str, bool]:
    """The bootstrap admin key: from settings, else the stored one, else a new one (mode 0600).

    Returns (key, created_now).
    """
    created = False
    if settings.admin_key:
        key = settings.admin_key.get_secret_value()
    else:
        path = admin_key_file(settings)
        if path.exists():
            key = path.read_text().strip()
        else:
            settings.home.mkdir(parents=True, exist_ok=True)
            key = generate_key()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key + "\n")
            created = True
    digest = hash_key(key)
    with session(settings.database_location) as db:
        row = db.exec(select(ApiKey).where(ApiKey.id == "admin")).first()
        if row is None:
            db.add(ApiKey(id="admin", principal="admin", name="bootstrap admin", key_hash=digest, scopes="admin,jobs:read,jobs:write"))
        elif row.key_hash != digest:
            row.key_hash = digest
            row.revoked_at = None
            db.add(row)
        db.commit()
    return key, created


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


class KeyAuth:
    """Looks keys up by hash; a small cache keeps the hot path off the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: dict[str, Principal] = {}

    def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if hit is not None:
            return hit
        with session(self.settings.database_location) as db:
            row = db.exec(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))).first()  # type: ignore[union-attr]
        if row is None:
            return None
        principal = Principal(row.principal, frozenset(row.scope_set), row.id)
        self._cache[digest] = principal
        return principal

    def forget(self) -> None:
        self._cache.clear()

    def authenticate(self, request: Request, scope: str) -> Principal:
        key = presented_key(request)
        if not key:
            raise ApiError(401, "UNAUTHORIZED", "An API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.")
        principal = self.lookup(key)
        if principal is None:
            raise ApiError(401, "UNAUTHORIZED", "The API key is not valid.")
        if not principal.can(scope):
            raise ApiError(403, "FORBIDDEN", f"This key lacks the `{scope}` scope.")
        return principal
