"""Native dialect, batches: submit many jobs at once, at most `maxConcurrent` running; read the batch back."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from sojourn.services.principals import Principal
from sojourn.services.batches import BatchService
from sojourn.api.dialects.native.jobs import SubmitJob, iso, reader, renderer, to_spec, writer
from sojourn.services.service_error import ServiceError

router = APIRouter(prefix="/api/v1", tags=["batches"])


class BatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parallel: bool = Field(True, description="false runs the jobs one after another (maxConcurrent 1)")
    maxConcurrent: int | None = Field(None, ge=1, le=1000, description="at most this many of the batch's jobs run at once")


class SubmitBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[SubmitJob] = Field(min_length=1, max_length=500)
    options: BatchOptions = Field(default_factory=BatchOptions)


def batches(request: Request) -> BatchService:
    return request.app.state.batches


@router.post("/jobs/batch", status_code=202, summary="Submit several jobs as one batch")
async def submit_batch(body: SubmitBatch, principal: Principal = Depends(writer), svc: BatchService = Depends(batches)) -> dict[str, Any]:
    specs = []
    for i, job in enumerate(body.jobs):
        try:
            specs.append((to_spec(job), {"type": job.type}))
        except ServiceError as exc:  # name the job in the batch whose input is wrong
            field = f"jobs.{i}." + str(exc.details.get("field") or "input")
            raise ServiceError(exc.status, exc.code, exc.message.replace("`input", f"`jobs.{i}.input").replace("`type`", f"`jobs.{i}.type`"), {**exc.details, "field": field}) from None
    limit = 1 if not body.options.parallel else body.options.maxConcurrent
    batch, views = await svc.submit(specs, principal, limit)
    return {"batchId": batch.id, "jobIds": [v.id for v in views], "status": "submitted", "maxConcurrent": batch.max_concurrent}


@router.get("/jobs/batch/{batch_id}", summary="A batch's status and its jobs")
async def get_batch(batch_id: str, principal: Principal = Depends(reader), svc: BatchService = Depends(batches)) -> dict[str, Any]:
    batch = svc.get(batch_id, principal)
    views = await svc.jobs(batch.id)
    render = renderer(svc.svc)
    summary = svc.summary(batch, [v.status for v in views])
    return {
        "batchId": batch.id,
        "status": summary["status"],
        "counts": summary["counts"],
        "maxConcurrent": batch.max_concurrent,
        "createdAt": iso(batch.created_at),
        "jobIds": json.loads(batch.job_ids),
        "jobs": [await render(v) for v in views],
    }
