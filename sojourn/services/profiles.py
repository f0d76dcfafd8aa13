"""Profiles: log in once, reuse the session. A principal's named browser storage state, saved by jobs.

- The state (Playwright's storage state: cookies, localStorage, IndexedDB) is stored encrypted with the server's
  secret (SOJOURN_SECRET_KEY), in the facade database, and as an encrypted snapshot per version in the artifact
  store under ``profiles/<profile id>/`` where workers read it. It is never logged, never in a job's parameters
  or the Prefect UI: a job that names a profile carries a reference (its id and version), set here from the
  principal's own profile (a reference a client sends is dropped), so another principal's profile cannot be used.
- A job with ``saveProfile`` writes its context's state, encrypted, beside the snapshot when it succeeds; when the
  job's end is handled (the ``outcomes`` service, or its sweep), the save is applied as a compare-and-set on the
  version the job started from. Two jobs that started from one version: the first saved wins, the other is
  refused with PROFILE_CONFLICT, recorded on the job; never a silent lost write. Deciding is idempotent (one
  ``profile_saves`` row per job).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select, update

from sojourn.blocks.artifact_store import ArtifactStore
from sojourn.local_secrets import fernet
from sojourn.profile_paths import current_path, profile_prefix, save_path, snapshot_path
from sojourn.services.service_error import ServiceError
from sojourn.settings import Settings
from sojourn.store.clock import utcnow
from sojourn.store.db import session
from sojourn.store.profiles import Profile, ProfileSave

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_STATE_BYTES = 5 * 1024 * 1024


def summary_of(state: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of a state: how much it holds and for whom, never a value."""
    cookies = state.get("cookies") or []
    origins = state.get("origins") or []
    return {"cookies": len(cookies), "domains": sorted({str(c.get("domain", "")).lstrip(".") for c in cookies if c.get("domain")}),
            "origins": sorted(str(o.get("origin")) for o in origins if o.get("origin"))}


def check_state(state: Any) -> dict[str, Any]:
    """A storage state in Playwright's format (``{"cookies": [...], "origins": [...]}``), else a 400 naming the field."""
    if not isinstance(state, dict):
        raise ServiceError(400, "INVALID_INPUT", "Invalid field `storageState`: an object with `cookies` and `origins`", {"field": "storageState"})
    for key in ("cookies", "origins"):
        value = state.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ServiceError(400, "INVALID_INPUT", f"Invalid field `storageState.{key}`: a list of objects", {"field": f"storageState.{key}"})
    for i, c in enumerate(state.get("cookies", [])):
        for key in ("name", "value", "domain", "path"):
            if not isinstance(c.get(key), str):
                raise ServiceError(400, "INVALID_INPUT", f"Invalid field `storageState.cookies.{i}.{key}`: a string",
                                   {"field": f"storageState.cookies.{i}.{key}"})
    if len(json.dumps(state)) > MAX_STATE_BYTES:
        raise ServiceError(400, "INVALID_INPUT", "Invalid field `storageState`: larger than 5 MiB", {"field": "storageState"})
    return {"cookies": state.get("cookies", []), "origins": state.get("origins", [])}


class ProfileService:
    def __init__(self, settings: Settings, store: ArtifactStore) -> None:
        self.settings = settings
        self.store = store
        self.box = fernet(settings)

    # -------------------------------------------------------------- the API's
    def find(self, owner: str, name: str) -> Profile | None:
        with session(self.settings.database_location) as db:
            return db.exec(select(Profile).where(Profile.owner == owner, Profile.name == name)).first()

    def get(self, owner: str, name: str) -> Profile:
        row = self.find(owner, name)
        if row is None:
            raise ServiceError(404, "PROFILE_NOT_FOUND", f"Profile '{name}' not found", {"profile": name})
        return row

    def visible(self, owner: str) -> list[Profile]:
        with session(self.settings.database_location) as db:
            return list(db.exec(select(Profile).where(Profile.owner == owner).order_by(Profile.created_at)))  # type: ignore[arg-type]

    async def create(self, owner: str, name: str, state: Any | None) -> Profile:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ServiceError(400, "INVALID_INPUT", "Invalid field `name`: 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
                               {"field": "name"})
        state = check_state(state) if state is not None else {"cookies": [], "origins": []}
        sealed = self.box.encrypt(json.dumps(state).encode()).decode()
        row = Profile(id="prof_" + secrets.token_hex(8), owner=owner, name=name, state_encrypted=sealed, summary=json.dumps(summary_of(state)))
        await self.store.write_bytes(snapshot_path(row.id, 1), sealed.encode())
        await self.store.write_bytes(current_path(row.id), sealed.encode())
        try:
            await asyncio.to_thread(self._insert, row)
        except IntegrityError:
            await self.store.delete(profile_prefix(row.id))
            raise ServiceError(409, "PROFILE_EXISTS", f"A profile named '{name}' exists already", {"profile": name}) from None
        return row

    def _insert(self, row: Profile) -> None:
        with session(self.settings.database_location) as db:
            db.add(row)
            db.commit()
            db.refresh(row)

    async def delete(self, owner: str, name: str) -> None:
        """The profile and every copy of its state: its snapshots and the saves not yet applied."""
        row = self.get(owner, name)
        await asyncio.to_thread(self._delete_row, row.id)
        try:
            await self.store.delete(profile_prefix(row.id))
        except FileNotFoundError:
            pass

    def _delete_row(self, profile_id: str) -> None:
        with session(self.settings.database_location) as db:
            row = db.get(Profile, profile_id)
            if row is not None:
                db.delete(row)
                db.commit()

    # -------------------------------------------------------------- jobs
    def reference(self, owner: str, name: str) -> dict[str, Any]:
        """What a job naming ``name`` carries: the owner's profile id and current version (404 when there is none)."""
        row = self.get(owner, name)
        return {"id": row.id, "version": row.version}

    def outcome(self, job_id: str) -> ProfileSave | None:
        with session(self.settings.database_location) as db:
            return db.get(ProfileSave, job_id)

    async def apply_save(self, job_id: str, ref: dict[str, Any]) -> ProfileSave:
        """The job ended completed with ``saveProfile``: its state becomes the profile's next version, if the profile
        is still at the version the job started from. Decided once per job."""
        decided = await asyncio.to_thread(self.outcome, job_id)
        if decided is not None:
            return decided
        pid, base = str(ref["id"]), int(ref["version"])
        try:
            sealed = (await self.store.read_bytes(save_path(pid, job_id))).decode()
        except FileNotFoundError:
            sealed = None
        outcome = await asyncio.to_thread(self._decide, job_id, pid, base, sealed)
        if outcome.saved and outcome.version:
            await self.store.write_bytes(snapshot_path(pid, outcome.version), sealed.encode())  # type: ignore[union-attr]
            await self.store.write_bytes(current_path(pid), sealed.encode())  # type: ignore[union-attr]
        try:
            await self.store.delete(save_path(pid, job_id))
        except FileNotFoundError:
            pass
        return outcome

    def _decide(self, job_id: str, profile_id: str, base: int, sealed: str | None) -> ProfileSave:
        """The compare-and-set: one conditional UPDATE (atomic on SQLite and PostgreSQL), and the job's outcome row
        in the same transaction."""
        with session(self.settings.database_location) as db:
            saved = False
            if sealed is not None:
                summary = json.dumps(summary_of(json.loads(self.box.decrypt(sealed.encode()))))
                changed = db.exec(update(Profile).where(Profile.id == profile_id, Profile.version == base).values(  # type: ignore[call-overload]
                    version=base + 1, state_encrypted=sealed, summary=summary, saved_by_job=job_id, updated_at=utcnow()))
                saved = changed.rowcount == 1
            if saved:
                outcome = ProfileSave(job_id=job_id, profile_id=profile_id, saved=True, version=base + 1)
            else:
                row = db.get(Profile, profile_id)
                error = ("PROFILE_NOT_FOUND: the profile was deleted while the job ran" if row is None
                         else "PROFILE_NOT_SAVED: the job left no state to save" if sealed is None
                         else f"PROFILE_CONFLICT: the profile changed while the job ran (it started from version {base}, the profile is "
                              f"at version {row.version}); this job's state was not saved")
                outcome = ProfileSave(job_id=job_id, profile_id=profile_id, saved=False, error=error)
            db.add(outcome)
            try:
                db.commit()
            except IntegrityError:  # another process decided this job's save at the same moment: its decision stands
                db.rollback()
                return db.get(ProfileSave, job_id)  # type: ignore[return-value]
            db.refresh(outcome)
            return outcome
