"""A principal's job and execution, or fastlane's 404 with the message and operation of the route asking."""

from __future__ import annotations

from sojourn.services.fastlane import FastlaneService, LookupFailed
from sojourn.services.principals import Principal
from sojourn.store.fastlane import FastlaneExecution, FastlaneJob


def find_job(svc: FastlaneService, principal: Principal, task_id: str, job_id: str, operation: str) -> FastlaneJob:
    """The job, or fastlane's 404: the job routes (get: operation ``get_task`` as fastlane names it, stop,
    retry) say "Job not found in task."; the execution routes name the task and the job."""
    job = svc.job(principal, task_id, job_id)
    if job is None:
        message = "Job not found in task." if operation in ("get_task", "stop_job", "retry_job") else f"Task ({task_id}) or Job ({job_id}) not found."
        raise LookupFailed(404, message, operation)
    return job


async def find_execution(svc: FastlaneService, principal: Principal, task_id: str, job_id: str, execution_id: str,
                         operation: str) -> tuple[FastlaneJob, FastlaneExecution]:
    """The job and its execution brought up to date, or fastlane's 404."""
    job = find_job(svc, principal, task_id, job_id, operation)
    ex = svc.execution(job, execution_id)
    if ex is None:
        job_word = "Job" if operation == "stop_job_execution" else "job"  # fastlane's two spellings
        raise LookupFailed(404, f"Job Execution ({execution_id}) not found in {job_word} ({job_id}).", operation)
    return job, await svc.refresh(ex)
