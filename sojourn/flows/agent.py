"""The agent flow: plain-English jobs (browseWebAndReturnText / browseWebAndReturnImage).

A loop of Prefect tasks, one per move: observe the page, let the planner
decide, act, and leave a named screenshot. The planner is the built-in one
(instructions made of clauses) unless a model is configured
(``SOJOURN_LLM_BASE_URL``). Same browser pool, URL policy, limits, progress,
artifacts and cancellation as every other job.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from sojourn import cancellation
from sojourn.agent.actions import perform, screenshot
from sojourn.agent.builtin import BuiltinPlanner
from sojourn.agent.llm import LLMPlanner, llm_key
from sojourn.agent.observe import observe
from sojourn.blocks.artifact_store import ArtifactStore, Manifest, StepRecord
from sojourn.browser.egress import JobPolicy
from sojourn.browser.pool import get_pool
from sojourn.browser.session import JobSession
from sojourn.job_errors import ErrorCode, JobError
from sojourn.flows.browse import _browser_died, as_spec, close_out, context_options
from sojourn.job_identity import current_job_id
from sojourn.progress import Progress
from sojourn.settings import get_settings
from sojourn.spec import JobSpec
from sojourn.tasks.failure_snapshot import snapshot_failure
from sojourn.tasks.job import JobRun


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "page"


class AgentState:
    """What the loop carries between its tasks (a plain class: Prefect does not walk into it)."""

    def __init__(self, planner: Any, want: str) -> None:
        self.planner = planner
        self.want = want
        self.history: list[dict[str, Any]] = []
        self.urls: list[str] = []
        self.answer: str | None = None
        self.done = False
        self.failures = 0


@task(name="agent step", cache_policy=NO_CACHE, task_run_name="move {n}")
async def agent_step(run: JobRun, state: AgentState, n: int, progress: Progress) -> dict[str, Any]:
    """Observe, decide, act, screenshot."""
    logger = get_run_logger()
    page = run.session.page  # type: ignore[union-attr]
    obs = await observe(page)
    if obs.url.startswith(("http://", "https://")) and (not state.urls or state.urls[-1] != obs.url):
        state.urls.append(obs.url)
    action = await state.planner.next_action(obs, state.history)
    await progress.update(done=min(n, progress.total - 1), current=action.label or action.verb)
    logger.info("move %d: %s %s", n, action.verb, action.to_dict())
    note = ""
    try:
        if action.verb == "finish":
            state.answer = action.text if action.text is not None else state.answer
            state.done = True
        elif action.verb == "read":
            state.answer = action.text
            note = f"read: {action.text}"
        elif action.verb != "screenshot":
            note = await perform(page, action, timeout_ms=get_settings().default_step_timeout * 1000)
    except JobError as exc:
        if not isinstance(state.planner, LLMPlanner) or exc.code in (ErrorCode.URL_BLOCKED,):
            raise JobError(exc.code, f"{action.clause or action.label}: {exc.message}", step=n, action=action.verb) from None
        # A model's wrong move is told back to it; it gets a few chances to correct itself.
        state.failures += 1
        note = f"error: {exc.message}"
        logger.warning("move %d failed (%s); the model is told", n, exc.message)
        if state.failures > 5:
            raise JobError(exc.code, f"the model kept making moves that fail; last: {exc.message}", step=n) from None
    if isinstance(state.planner, LLMPlanner):
        state.planner.report(note or "ok")
    label = "Final page" if state.done else (action.label or action.verb)
    if (not state.done and run.spec.capture.moves) or (state.done and state.want == "image"):
        png = await screenshot(page)
        await run.save(kind="screenshot", name=f"{n:02d}-{slug(label)}.png", data=png, content_type="image/png", step=n, step_name=label)
    record = {"move": n, **action.to_dict(), "result": note, "url": page.url}
    state.history.append(record)
    if page.url.startswith(("http://", "https://")) and state.urls[-1:] != [page.url]:
        state.urls.append(page.url)
    run.steps.append(StepRecord(index=n, url=obs.url, final_url=page.url, name=label, title=obs.title))
    return record


@flow(name="agent", persist_result=False, log_prints=False, validate_parameters=False)
async def agent(spec: JobSpec | dict[str, Any]) -> Any:
    """Reach the goal written in plain English; return the manifest (answer or final screenshot)."""
    spec = as_spec(spec)
    job_id = current_job_id()
    store = ArtifactStore.from_settings()
    outcome = await cancellation.guarded(str(flow_run.get_id()), execute(job_id, spec, store))
    if not isinstance(outcome, Manifest):
        return outcome
    return outcome.model_dump(mode="json")


async def make_planner(spec: JobSpec, want: str) -> Any:
    settings = get_settings()
    if settings.llm_base_url and settings.llm_model:
        return LLMPlanner(spec.goal or "", settings, await llm_key(settings), want=want)
    return BuiltinPlanner(spec.goal or "", want=want)


async def execute(job_id: str, spec: JobSpec, store: ArtifactStore) -> Manifest:
    logger = get_run_logger()
    settings = get_settings()
    want = "image" if spec.capture.screenshot_options is not None else "text"
    manifest = Manifest(job_id=job_id, status="failed", kind="agent", browser=spec.browser, spec_sha256=spec.fingerprint(), started_at=datetime.now(timezone.utc))
    run = JobRun(job_id, spec, store)
    policy = JobPolicy(job_id=job_id, url_allow=tuple(spec.url_allow), hosts=dict(spec.hosts))
    planner = await make_planner(spec, want)  # an instruction it cannot read fails here, before a browser opens
    state = AgentState(planner, want)
    progress = Progress(job_id, total=settings.agent_max_steps)
    if isinstance(planner, BuiltinPlanner):
        progress.total = sum(3 if c.kind == "search" else 1 for c in planner.clauses) + 1
    pool = get_pool()
    try:
        pool.require(spec.browser)
        progress.start("Starting")
        async with asyncio.timeout(spec.effective_timeout):
            async with pool.context(spec.browser, policy=policy, **context_options(spec)) as handle:
                run.session = JobSession(handle.context, handle.page, step_timeout=settings.default_step_timeout, policy=policy, headers=spec.headers)
                try:
                    for n in range(1, settings.agent_max_steps + 1):
                        await agent_step(run, state, n, progress)
                        if state.done:
                            break
                    else:
                        raise JobError(ErrorCode.TIMEOUT, f"the goal was not reached in {settings.agent_max_steps} moves (SOJOURN_AGENT_MAX_STEPS)")
                except JobError as exc:
                    if spec.capture.on_failure and not _browser_died(handle):
                        snapshot = await snapshot_failure(run, handle.page, len(run.steps) + 1)
                        if snapshot:
                            exc.details["failureSnapshot"] = snapshot
                    raise
        if want == "text" and not state.answer:
            raise JobError(ErrorCode.ACTION_FAILED, "the agent finished without an answer")
        manifest.status = "completed"
        manifest.answer = state.answer
        logger.info("agent job %s answered %r after %d moves", job_id, state.answer, len(state.history))
    except TimeoutError:
        err = JobError(ErrorCode.TIMEOUT, f"job did not finish within {spec.effective_timeout:g} s")
        manifest.error = err.to_dict()
        raise err from None
    except JobError as exc:
        manifest.error = exc.to_dict()
        raise
    finally:
        manifest.steps = run.steps
        manifest.artifacts = run.artifacts
        manifest.blocked_requests = policy.blocked
        manifest.data = {"planner": planner.name, "urlsVisited": state.urls, "moves": state.history, "goal": spec.goal}
        await close_out(store, manifest, progress)
    return manifest
