"""A job's side of profiles (:mod:`sojourn.services.profiles`): start from a saved state, leave the new one behind.

The job carries a reference (profile id and version), never the state: the state is read here, encrypted, from the
artifact store and decrypted with the server's secret (workers share SOJOURN_SECRET_KEY with the API), and given to
Playwright as the context's ``storage_state``. A job that saves leaves its context's state, encrypted, for the API
to apply when it handles the job's end.
"""

from __future__ import annotations

import json
from typing import Any

from sojourn.blocks.artifact_store import ArtifactStore
from sojourn.job_errors import ErrorCode, JobError
from sojourn.local_secrets import fernet
from sojourn.profile_paths import current_path, save_path, snapshot_path
from sojourn.settings import get_settings
from sojourn.spec import ProfileRef


async def _read_state(store: ArtifactStore, path: str, gone: str) -> dict[str, Any]:
    try:
        sealed = await store.read_bytes(path)
    except FileNotFoundError:
        raise JobError(ErrorCode.INVALID_INPUT, gone) from None
    return json.loads(fernet(get_settings()).decrypt(sealed))  # type: ignore[no-any-return]


async def load_state(store: ArtifactStore, ref: ProfileRef) -> dict[str, Any]:
    """The state of the version the job was accepted with."""
    return await _read_state(store, snapshot_path(ref.id, ref.version), "the job's profile was deleted before the job started")


async def load_current_state(store: ArtifactStore, profile_id: str) -> dict[str, Any]:
    """The profile's current state (scrape projects name a profile, not a version: their jobs read its latest)."""
    return await _read_state(store, current_path(profile_id), "the project's profile was deleted")


async def leave_state(store: ArtifactStore, ref: ProfileRef, job_id: str, context: Any) -> None:
    try:
        state = await context.storage_state(indexed_db=True)
    except Exception:  # a browser that cannot save IndexedDB still saves cookies and localStorage
        state = await context.storage_state()
    await store.write_bytes(save_path(ref.id, job_id), fernet(get_settings()).encrypt(json.dumps(state).encode()))
