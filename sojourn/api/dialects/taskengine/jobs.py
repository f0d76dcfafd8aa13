"""Task Engine jobs: submit, list, read, update, rerun, push, logs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from sojourn.api.dialects.mounted import Config
from sojourn.api.dialects.taskengine.dependencies import TE, BodyWriter, Submitter, Viewer, Writer, writer
from sojourn.api.dialects.taskengine.error_handlers import TEError
from sojourn.api.dialects.taskengine.render import iso, render, result_of
from sojourn.api.dialects.taskengine.requests import Body, JobBody, JobChanges, JobId, JobsQuery, Submission
from sojourn.api.dialects.taskengine.workflows import scrape_parameters, to_spec
from sojourn.services.service_error import ServiceError
from sojourn.services.taskengine import SEVERITIES, TaskEngine, TEJob

router = APIRouter()


@router.post("/job", summary="Submit a job")
async def submit(body: JobBody, principal: Submitter, te: TE, settings: Config) -> Any:
    try:
        job = Submission.parse(body)
        if job.workflow == "scrape":
            project_id, target_ids = scrape_parameters(job.parameters)
            seq = await te.submit_scrape(principal, parameters=job.parameters, project_id=project_id, target_ids=target_ids,
                                         priority=job.priority, run_at=job.run_at, semaphore_url=job.semaphore_url)
        else:
            spec = to_spec(settings, principal.name, job.workflow, job.parameters)
            seq = await te.submit(principal, workflow=job.workflow, spec=spec, parameters=job.parameters, priority=job.priority,
                                  run_at=job.run_at, semaphore_url=job.semaphore_url)
    except ServiceError as exc:
        if exc.status >= 500:
            return JSONResponse("Unable to create job request", status_code=500)
        return JSONResponse({"id": None, "error": exc.message}, status_code=400 if exc.status in (404, 409, 422) else exc.status)
    return {"id": seq, "result": "accepted"}


@router.get("/jobs", summary="Jobs, newest first; filters as the Task Engine documents them")
async def list_jobs(request: Request, viewer: Viewer, te: TE) -> Any:
    client, show = viewer
    query = JobsQuery.parse(request.query_params)
    if query.client and client is not None and query.client != client:
        return []  # another client's jobs: invisible
    if client is None and query.client:
        client = query.client  # the admin filtering by client
    if client == "":
        return []
    jobs = await te.list(client, **query.filters())
    return [render(j, parameters=show) for j in jobs]


async def visible_job(te: TaskEngine, viewer: tuple[str | None, bool], seq: int) -> tuple[TEJob, bool]:
    client, show = viewer
    if client == "":
        raise TEError(400, {"error": f"job {seq} not found"})
    return await te.get(seq, client), show


@router.get("/jobs/{id}", summary="One job")
async def get_job(seq: JobId, viewer: Viewer, te: TE) -> Any:
    job, show = await visible_job(te, viewer, seq)
    out = render(job, parameters=show, single=True)
    if show and job.view.final:
        out["result"] = result_of(te, job)  # Sojourn's addition: where the outputs are
    return out


async def update(seq: JobId, body: Body, principal: BodyWriter, te: TE) -> Any:
    try:
        done = await te.update(seq, principal, JobChanges.parse(body))
    except ServiceError as exc:
        return JSONResponse({"id": seq, "error": exc.message}, status_code=400 if exc.status < 500 else exc.status)
    return {"id": seq, "result": f"Performed updates: {', '.join(done)}"}


router.put("/jobs/{id}", summary="Update queue_state, run_at, priority or semaphore_url")(update)
router.patch("/jobs/{id}", summary="The same as PUT (the later Task Engine docs' verb)")(update)


@router.post("/jobs/{id}/rerun", summary="Run a job again with the same parameters (the original becomes broken)")
async def rerun(seq: JobId, principal: Writer, te: TE, settings: Config) -> Any:
    job = await te.get(seq, None if principal.is_admin else principal.name)
    spec = None if job.row.workflow == "scrape" else to_spec(settings, job.row.client, job.row.workflow, job.parameters)
    new = await te.rerun(seq, principal, spec)
    return {"id": new, "result": "accepted"}


@router.post("/push_jobs", summary="Let queued jobs take free slots now", dependencies=[Depends(writer)])
async def push_jobs(te: TE) -> Any:
    te.push()
    return {"result": "ok"}


@router.get("/logs/{id}", summary="The job's log lines")
async def logs(seq: JobId, viewer: Viewer, te: TE) -> Any:
    job, _show = await visible_job(te, viewer, seq)
    entries = await te.logs(job)
    return [{
        "id": e["id"], "job_id": e["job_id"], "task_id": e["task_id"], "severity": e["severity"],
        "severity_description": SEVERITIES[e["severity"]], "progname": e["progname"], "message": e["message"],
        "created_at": iso(e["created_at"]), "updated_at": iso(e["created_at"]), "visible": e["visible"],
    } for e in entries]
