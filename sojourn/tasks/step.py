"""A step is one Prefect task: its pre-navigation actions, the navigation, the rest.

One task per step (not per action) keeps Prefect's per-task cost (~34 ms of
server CPU, DESIGN.md) off the hot path while still giving each step its own
retries, logs and timing in the UI.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sojourn.blocks.artifact_store import StepRecord
from sojourn.job_errors import ErrorCode, JobError
from sojourn.spec import Step
from sojourn.tasks.job import JobRun

# Not worth retrying: the same input fails the same way.
_FINAL_CODES = {ErrorCode.INVALID_INPUT, ErrorCode.BROWSER_UNAVAILABLE, ErrorCode.URL_BLOCKED}


def _should_retry(task: Any, task_run: Any, state: Any) -> bool:
    exc = state.data
    if isinstance(exc, JobError):
        return exc.code not in _FINAL_CODES
    return True


def step_label(index: int, step: Step) -> str:
    return step.name or f"Visiting {step.url}"


@task(name="step", cache_policy=NO_CACHE, retry_condition_fn=_should_retry, task_run_name="step {index}")
async def run_step(run: JobRun, index: int, step: Step) -> StepRecord:
    logger = get_run_logger()
    session = run.session
    assert session is not None
    logger.info("step %d: %s (%d actions)", index, step.url, len(step.actions))
    outcome = await session.run_step(index, step.url, step.actions, wait_until=step.wait_until, timeout=step.timeout)
    label = step_label(index, step)
    for shot in session.mid_step_screenshots:
        await run.save(kind="screenshot", name=f"step-{index}.png", data=shot, content_type="image/png", step=index, step_name=label)
    session.mid_step_screenshots.clear()
    if step.screenshot:
        shot = await session.page.screenshot(full_page=True)
        await run.save(kind="screenshot", name=f"step-{index}.png", data=shot, content_type="image/png", step=index, step_name=label)
    record = StepRecord(
        index=index, name=step.name, url=step.url, final_url=outcome.final_url,
        title=outcome.title, status=outcome.status, duration_ms=outcome.duration_ms,
    )
    logger.info("step %d finished in %d ms: %s (HTTP %s)", index, outcome.duration_ms, outcome.final_url, outcome.status)
    return record
