"""Principals and their API keys: generated once, shown once, stored as SHA-256.

Keys are 32 random bytes, so a plain SHA-256 is the right hash (as for
GitHub or Stripe tokens): there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from sojourn.settings import Settings
from sojourn.store.db import session
from sojourn.store.keys import ApiKey

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
    url_allow: tuple[str, ...] = ()
    rate_limit: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def can(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    @property
    def owner_filter(self) -> str | None:
        """Whose objects this principal may see: its own, or everyone's (None) for the admin."""
        return None if self.is_admin else self.name


def admin_key_file(settings: Settings) -> Path:
    return settings.home / "admin.key"


def known_admin_key(settings: Settings) -> str | None:
    """The admin key as a client on this machine knows it (SOJOURN_ADMIN_KEY, else the stored file); writes nothing."""
    if settings.admin_key:
        return settings.admin_key.get_secret_value()
    path = admin_key_file(settings)
    return path.read_text().strip() if path.exists() else None


def ensure_admin_key(settings: Settings) -> tuple[str, bool]:
    """The bootstrap admin key: from settings, else the stored one, else a new one (mode 0600).

    Returns (key, created_now).
    """
    created = False
    if settings.admin_key:
        key = settings.admin_key.get_secret_value()
    else:
        key, created = _stored_admin_key(admin_key_file(settings))
    digest = hash_key(key)
    # Processes of one deployment start together (#29): each may find no row and insert it; the loser of that race
    # finds the winner's row on its second look (the same key, or this process's key replaces it).
    for attempt in (1, 2):
        try:
            with session(settings.database_location) as db:
                row = db.exec(select(ApiKey).where(ApiKey.id == "admin")).first()
                if row is None:
                    db.add(ApiKey(id="admin", principal="admin", name="bootstrap admin", key_hash=digest, scopes="admin,jobs:read,jobs:write"))
                elif row.key_hash != digest:
                    row.key_hash = digest
                    row.revoked_at = None
                    db.add(row)
                db.commit()
            break
        except IntegrityError:
            if attempt == 2:
                raise
    return key, created


def _stored_admin_key(path: Path) -> tuple[str, bool]:
    """The key in ``path``, written there first (mode 0600) when there is none. Two processes starting at once on
    one home both may find no file: the file appears whole or not at all (a hard link of a written temporary
    file), so the slower one reads the faster one's key instead of an empty or half-written file."""
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text().strip(), False
    finally:
        tmp.unlink(missing_ok=True)
    return key, True


def principal_for(settings: Settings, digest: str) -> Principal | None:
    """The principal of the live (not revoked) key with this hash, if any."""
    with session(settings.database_location) as db:
        row = db.exec(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))).first()  # type: ignore[union-attr]
    return principal_of(row) if row is not None else None


def principal_of(row: ApiKey) -> Principal:
    allow = tuple(p.strip() for p in (row.url_allow or "").split(",") if p.strip())
    return Principal(row.principal, frozenset(row.scope_set), row.id, allow, row.rate_limit)


# ---------------------------------------------------------------------- key management (admin)

VALID_SCOPES = ("jobs:read", "jobs:write", "admin")


def create_key(
    settings: Settings,
    *,
    name: str,
    principal: str | None = None,
    scopes: list[str] | None = None,
    url_allow: list[str] | None = None,
    rate_limit: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key: returns the stored row (hash only) and the key itself, which is never shown again."""
    key = generate_key()
    key_id = "key_" + secrets.token_hex(8)
    row = ApiKey(
        id=key_id,
        principal=principal or key_id,
        name=name,
        key_hash=hash_key(key),
        scopes=",".join(scopes or ["jobs:read", "jobs:write"]),
        url_allow=",".join(url_allow) if url_allow else None,
        rate_limit=rate_limit,
    )
    with session(settings.database_location) as db:
        db.add(row)
        db.commit()
    return row, key


def list_keys(settings: Settings) -> list[ApiKey]:
    with session(settings.database_location) as db:
        return list(db.exec(select(ApiKey).order_by(ApiKey.created_at)))  # type: ignore[arg-type]


def revoke_key(settings: Settings, key_id: str) -> ApiKey | None:
    from datetime import datetime, timezone

    with session(settings.database_location) as db:
        row = db.get(ApiKey, key_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = datetime.now(timezone.utc)
            db.add(row)
            db.commit()
        return row
