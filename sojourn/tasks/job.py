"""State one job's tasks share: the job id, its spec, its browser session, what it stored."""

from __future__ import annotations

from typing import Any

from sojourn.blocks.artifact_store import ArtifactRecord, ArtifactStore, StepRecord
from sojourn.browser.session import JobSession
from sojourn.job_identity import emit_job_event
from sojourn.spec import JobSpec


class JobRun:
    """Passed to the job's tasks (a plain class, so Prefect does not walk into it)."""

    def __init__(self, job_id: str, spec: JobSpec, store: ArtifactStore, session: JobSession | None = None) -> None:
        self.job_id = job_id
        self.spec = spec
        self.store = store
        self.session = session
        self.artifacts: list[ArtifactRecord] = []
        self.steps: list[StepRecord] = []
        self.data: dict[str, Any] | None = None
        self.answer: str | None = None

    async def save(self, *, kind: str, name: str, data: bytes, content_type: str, step: int | None = None, step_name: str | None = None) -> ArtifactRecord:
        """Store one output under ``jobs/<job id>/`` and record it for the manifest."""
        taken = {a.name for a in self.artifacts}
        if name in taken:
            stem, dot, ext = name.rpartition(".")
            n = 2
            while f"{stem}-{n}{dot}{ext}" in taken:
                n += 1
            name = f"{stem}-{n}{dot}{ext}"
        record = await self.store.put(
            self.job_id, kind=kind, name=name, data=data, content_type=content_type,
            step=step, step_name=step_name, index=len(self.artifacts),
        )
        self.artifacts.append(record)
        if kind == "screenshot":
            # Live streams (SSE/WebSocket) announce each screenshot as it lands.
            emit_job_event(self.job_id, "sojourn.job.screenshot", {"screenshotId": record.id, "name": record.name, "step": record.step_name})
        return record
