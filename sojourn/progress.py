"""Progress a person (Prefect UI) and a client (API) can read while a job runs.

Two places, one writer: a ``sojourn.job.progress`` event for live streams (and
the API's views of running jobs), and a Prefect progress artifact on the flow
run (the UI's progress bar; its description carries the step counts in a
fixed form that :func:`parse_progress` reads back). The artifact is made only
once a job has run for ``ARTIFACT_AFTER`` seconds: a short job is over before
anyone could watch its bar, and the artifact's writes were a good part of its
Prefect cost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from prefect.artifacts import ProgressArtifact, aupdate_progress_artifact

from sojourn.job_identity import emit_job_event

log = logging.getLogger(__name__)

_DESC_RE = re.compile(r"^Step (\d+) of (\d+)(?: done)?: (.*)$", re.S)


def run_client() -> Any:
    """The flow run's own API client: a fresh client per call costs a new connection each time."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx.client if ctx is not None else None


def describe(done: int, total: int, current: str) -> str:
    return f"Step {done} of {total}: {current}"


def parse_progress(description: str | None, percentage: float | None) -> dict[str, Any] | None:
    """The API's progress object from the artifact the flow keeps up to date."""
    if not description:
        return None
    m = _DESC_RE.match(description)
    if not m:
        return None
    done, total = int(m.group(1)), int(m.group(2))
    return {
        "currentStep": m.group(3),
        "stepsCompleted": done,
        "totalSteps": total,
        "percentage": int(round(percentage if percentage is not None else (100 * done / max(total, 1)))),
    }


ARTIFACT_AFTER = 5.0  # seconds a job runs before it gets a progress artifact


class Progress:
    """Each update is an event (and, once the artifact exists, a Prefect API call): updates
    closer together than ``min_interval`` are folded into the next one (the last always goes out)."""

    def __init__(self, job_id: str, total: int, min_interval: float = 0.5, artifact_after: float = ARTIFACT_AFTER) -> None:
        self.job_id = job_id
        self.total = max(total, 1)
        self.done = 0
        self.current = "Starting"
        self.min_interval = min_interval
        self._artifact_id: Any = None
        self._last = 0.0
        self._deferred: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._created: asyncio.Task[None] | None = None
        self._creating = False
        self.artifact_after = artifact_after

    @property
    def percentage(self) -> float:
        return round(100.0 * self.done / self.total, 1)

    def start(self, current: str) -> None:
        """Announce the start; the artifact is created in the background if the job is still running later."""
        self.current = current
        self._last = time.monotonic()
        self._created = asyncio.ensure_future(self._create_later())
        self._emit()

    async def _create_later(self) -> None:
        await asyncio.sleep(self.artifact_after)
        self._creating = True
        try:
            artifact = ProgressArtifact(progress=self.percentage, description=describe(self.done, self.total, self.current))
            self._artifact_id = (await artifact.acreate(client=run_client())).id
        except Exception as exc:  # progress is best effort; the job goes on
            log.warning("could not create progress artifact: %s", exc)

    async def _settle_creation(self) -> None:
        """Before the last word: an artifact not begun is never made; one being made is waited for."""
        if self._created is None:
            return
        if not self._creating:
            self._created.cancel()
        await asyncio.gather(self._created, return_exceptions=True)

    async def update(self, *, done: int | None = None, current: str | None = None, final: bool = False) -> None:
        if done is not None:
            self.done = min(done, self.total)
        if current is not None:
            self.current = current
        wait = self.min_interval - (time.monotonic() - self._last)
        if final or wait <= 0:
            if self._deferred is not None:
                self._deferred.cancel()
                self._deferred = None
            if final:
                await self._settle_creation()
            await self._push()
        elif self._deferred is None:
            # Too soon after the last one: send the latest state once the interval has passed.
            self._deferred = asyncio.ensure_future(self._push_later(wait))

    async def flush(self) -> None:
        """Settle background work (the artifact's creation, a deferred update) before the run ends."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        await self._settle_creation()

    async def _push_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._deferred = None
        await self._push()

    async def _push(self) -> None:
        async with self._lock:  # in order: a late deferred push never overwrites the final one
            self._last = time.monotonic()
            if self._artifact_id is not None:
                try:
                    await aupdate_progress_artifact(
                        self._artifact_id, progress=self.percentage, description=describe(self.done, self.total, self.current),
                        client=run_client(),
                    )
                except Exception as exc:
                    log.warning("could not update progress artifact: %s", exc)
            self._emit()

    def _emit(self) -> None:
        emit_job_event(
            self.job_id,
            "sojourn.job.progress",
            {
                "currentStep": self.current,
                "stepsCompleted": self.done,
                "totalSteps": self.total,
                "percentage": self.percentage,
            },
        )
