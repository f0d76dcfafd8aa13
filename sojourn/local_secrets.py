"""Secrets the server makes for itself once and keeps under SOJOURN_HOME (mode 0600).

Several processes on one machine may start together: the first to create the
file wins and the others read it. Several machines need the value in a setting.
"""

from __future__ import annotations

import os
import secrets
from typing import Callable

from sojourn.settings import Settings


def stored_secret(settings: Settings, filename: str, make: Callable[[], str]) -> str:
    """The secret in ``SOJOURN_HOME/filename``, made with ``make()`` by the first process to get there.

    The file appears only complete: it is written under a temporary name and hard-linked into place (a link
    fails if the name exists), so a process starting at the same moment never reads it half written, which
    would give it an empty secret to sign with."""
    path = settings.home / filename
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        tmp = settings.home / f".{filename}.{os.getpid()}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process was first: its value is the one
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty: delete it, or set the secret in the environment")
    return value


def fernet_key(settings: Settings) -> bytes:
    """Sojourn's secret: SOJOURN_SECRET_KEY, else a key generated once under SOJOURN_HOME."""
    from cryptography.fernet import Fernet

    if settings.secret_key:
        return settings.secret_key.get_secret_value().encode()
    return stored_secret(settings, "secret.key", lambda: Fernet.generate_key().decode()).encode()


def fernet(settings: Settings):  # type: ignore[no-untyped-def]
    """Encrypts what must be recoverable (webhook secrets)."""
    from cryptography.fernet import Fernet

    return Fernet(fernet_key(settings))
