"""Links to one capture of one job that work without an API key until they expire (like S3 presigned URLs).

The Prefect UI shows each run's captures from links in its "Sojourn job captures" artifact. The browser
showing the UI has no Sojourn key, so those links carry their own permission: an HMAC of the job id, the
capture's name and an expiry, under a key derived from Sojourn's secret (SOJOURN_SECRET_KEY, else the key
file under SOJOURN_HOME, which the worker and API of one machine share; set SOJOURN_SECRET_KEY when they run
on several). A link opens that one capture and nothing else; it never holds an API key. With an S3 store the
worker links to S3 itself with a real presigned URL instead (:meth:`ArtifactStore.presign`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from sojourn.local_secrets import fernet_key
from sojourn.settings import Settings

# S3 presigned URLs (SigV4) live at most 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


def _key(settings: Settings) -> bytes:
    return hmac.new(fernet_key(settings), b"sojourn artifact links v1", hashlib.sha256).digest()


def signature(settings: Settings, job_id: str, name: str, expires: int) -> str:
    return hmac.new(_key(settings), f"{job_id}\n{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


def link_lifetime(settings: Settings) -> int:
    """As long as the capture itself is kept (results are deleted after SOJOURN_RESULT_RETENTION_SECONDS)."""
    return int(settings.result_retention_seconds)


def signed_url(settings: Settings, job_id: str, name: str, *, ttl: int | None = None, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + (ttl if ttl is not None else link_lifetime(settings)))
    query = urlencode({"expires": expires, "signature": signature(settings, job_id, name, expires)})
    return f"{settings.public_base}/api/v1/jobs/{job_id}/artifacts/{name}?{query}"


def verify(settings: Settings, job_id: str, name: str, expires: str, sig: str, *, now: float | None = None) -> bool:
    try:
        when = int(expires)
    except ValueError:
        return False
    if when < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature(settings, job_id, name, when), sig)
