"""Task Engine settings (``POST /settings``): stored in the facade database, read fresh where they matter,
so a change takes effect on the next job without a restart and survives one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from sojourn.services.service_error import ServiceError
from sojourn.store.clock import utcnow
from sojourn.store.db import session
from sojourn.store.taskengine import TaskEngineSchedule, TaskEngineSetting

# name → (default, type, minimum)
KNOWN: dict[str, tuple[float, type, float]] = {
    "max_jobs": (2, int, 0),
    "priority_slots": (0, int, 0),
    "priority_threshold": (5, int, 1),
    "schedule_interval": (60, float, 0.2),
    "retry_delay": (5, float, 0),
    "retry_limit": (3, int, 0),
}

SCHEDULES: dict[str, dict[str, Any]] = {
    "queue_scheduled_jobs": {
        "class": "QueueJobs",
        "queue": "scheduler",
        "description": "Enqueues scheduled jobs that have a run_at time in the past.",
    },
}


@dataclass(frozen=True)
class TaskEngineConfig:
    max_jobs: int = 2
    priority_slots: int = 0
    priority_threshold: int = 5
    schedule_interval: float = 60.0
    retry_delay: float = 5.0
    retry_limit: int = 3
    callback_secret: str | None = None


def parse_setting(name: str, value: Any) -> str:
    """The value to store; a 400 naming ``setting`` when a known setting gets something that is not a number."""
    if not isinstance(name, str) or not name.strip():
        raise ServiceError(400, "INVALID_INPUT", "name: the setting name is required")
    if value is None or isinstance(value, (dict, list)):
        raise ServiceError(400, "INVALID_INPUT", f"setting: a value is required for {name}")
    if name in KNOWN:
        _default, kind, minimum = KNOWN[name]
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (kind is int and number != int(number)):
            raise ServiceError(400, "INVALID_INPUT", f"setting: {name} must be {'a whole number' if kind is int else 'a number'}, not {value!r}")
        if number < minimum:
            raise ServiceError(400, "INVALID_INPUT", f"setting: {name} must be at least {minimum:g}")
        return str(int(number)) if kind is int else str(number)
    return str(value)


class ConfigStore:
    def __init__(self, url: str, callback_secret: str | None = None) -> None:
        self.url = url
        self.default_secret = callback_secret

    # ------------------------------------------------------------------ settings
    def read_sync(self) -> TaskEngineConfig:
        with session(self.url) as db:
            rows = {r.name: r.value for r in db.exec(select(TaskEngineSetting))}
        values: dict[str, Any] = {}
        for name, (default, kind, _min) in KNOWN.items():
            try:
                values[name] = kind(float(rows[name])) if name in rows else kind(default)
            except ValueError:
                values[name] = kind(default)
        values["callback_secret"] = rows.get("callback_secret") or self.default_secret
        return TaskEngineConfig(**values)

    async def read(self) -> TaskEngineConfig:
        return await asyncio.to_thread(self.read_sync)

    def all_sync(self) -> dict[str, str]:
        with session(self.url) as db:
            return {r.name: r.value for r in db.exec(select(TaskEngineSetting))}

    async def put(self, name: str, value: Any) -> bool:
        """Store one setting; True if it was created, False if updated."""
        stored = parse_setting(name, value)
        return await asyncio.to_thread(self._put, name.strip(), stored)

    def _put(self, name: str, value: str) -> bool:
        with session(self.url) as db:
            row = db.get(TaskEngineSetting, name)
            created = row is None
            row = row or TaskEngineSetting(name=name, value=value)
            row.value, row.updated_at = value, utcnow()
            db.add(row)
            db.commit()
        return created

    # ------------------------------------------------------------------ schedules
    def active_sync(self, name: str) -> bool:
        with session(self.url) as db:
            row = db.get(TaskEngineSchedule, name)
        return True if row is None else bool(row.active)

    async def active(self, name: str) -> bool:
        return await asyncio.to_thread(self.active_sync, name)

    async def set_active(self, name: str, active: bool) -> None:
        def write() -> None:
            with session(self.url) as db:
                row = db.get(TaskEngineSchedule, name) or TaskEngineSchedule(name=name)
                row.active, row.updated_at = active, utcnow()
                db.add(row)
                db.commit()

        await asyncio.to_thread(write)

    async def schedules(self, interval: float) -> dict[str, dict[str, Any]]:
        """The active schedules, as the Task Engine lists them."""
        out = {}
        for name, spec in SCHEDULES.items():
            if await self.active(name):
                out[name] = {"class": spec["class"], "every": [interval, {"first_in": 5}], "queue": spec["queue"], "description": spec["description"]}
        return out
