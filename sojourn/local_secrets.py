"""Secrets the server makes for itself once and keeps under SOJOURN_HOME (mode 0600).

Several processes on one machine may start together: the first to create the
file wins and the others read it. Several machines need the value in a setting.
"""

from __future__ import annotations

import os
from typing import Callable

from sojourn.settings import Settings


def stored_secret(settings: Settings, filename: str, make: Callable[[], str]) -> str:
    path = settings.home / filename
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(make() + "\n")
    return path.read_text().strip()


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
