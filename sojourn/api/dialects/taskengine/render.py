"""Task Engine jobs as its API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sojourn.services.taskengine import TaskEngine, TEJob


def iso(dt: datetime | None) -> str | None:
    """Task Engine times: UTC with milliseconds and a Z."""
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def render(job: TEJob, *, parameters: bool, single: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": job.id,
        "client": job.row.client,
        "workflow": job.row.workflow,
        "priority": job.row.priority,
        "position": job.position,
    }
    if single:
        out["top_of_queue"] = job.state == "queued" and job.position == 1
    if parameters:
        out["parameters"] = job.parameters
    out.update({
        "created_at": iso(job.view.created_at),
        "updated_at": iso(job.updated_at),
        "queue_state": job.state,
        "failed": job.failed,
        "run_at": iso(job.run_at),
    })
    return out


def result_of(te: TaskEngine, job: TEJob) -> dict[str, Any]:
    """A final job's outputs (Sojourn's addition to ``GET /jobs/<id>``)."""
    m = job.view.manifest
    if job.row.workflow == "scrape":  # its results are the scrape job's, read through the scrape API
        data: Any = {"scrape_job_id": job.view.external_id, "project_id": job.parameters.get("project_id")}
    else:
        data = (m.answer if m.answer is not None else m.data) if m else None
    return {"files": te.files(job), "data": data, "error": job.view.error}
