"""The browse flow: a JobSpec in, a manifest of stored captures out.

Plain Python::

    import asyncio
    from sojourn.flows import browse
    manifest = asyncio.run(browse({"steps": [{"url": "http://127.0.0.1:8080/"}],
                                   "capture": ["screenshot", "pdf"]}))

Captures land under ``jobs/<job id>/`` in the artifact store with a
``manifest.json``; the job id is the flow run's ``job:`` tag (the API's job
ledger sets it), or the flow run id when the flow is called directly.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff
from pydantic import ValidationError

from sojourn import cancellation
from sojourn.blocks.artifact_store import ArtifactStore, Manifest
from sojourn.browser.egress import JobPolicy
from sojourn.browser.pool import get_pool
from sojourn.browser.session import JobSession
from sojourn.job_errors import ErrorCode, JobError
from sojourn.job_identity import current_job_id
from sojourn.progress import Progress
from sojourn.settings import get_settings
from sojourn.spec import JobSpec, spec_errors
from sojourn.tags import tag_values
from sojourn.tasks.capture import capture
from sojourn.tasks.failure_snapshot import snapshot_failure
from sojourn.tasks.profile_state import leave_state, load_state
from sojourn.tasks.job import JobRun
from sojourn.tasks.step import run_step, step_label
from sojourn.ui import publish_to_ui


@flow(name="browse", persist_result=False, log_prints=False, validate_parameters=False)
async def browse(spec: JobSpec | dict[str, Any]) -> Any:
    """Visit the spec's pages, run its actions, store its captures; return the manifest."""
    spec = as_spec(spec)
    job_id = current_job_id()
    store = ArtifactStore.from_settings()
    if spec.cache_ttl:
        earlier = await cached_job.with_options(
            # Per owner: a cached result never crosses tenants.
            cache_key_fn=lambda _ctx, _params: f"sojourn-job-{_owner()}-{spec.fingerprint()}",
            cache_expiration=timedelta(seconds=spec.cache_ttl),
            result_storage=await store.as_result_storage(),
            result_serializer="json",
            persist_result=True,
        )(job_id, spec)
        if earlier["job_id"] == job_id:
            return earlier
        get_run_logger().info("cache hit: reusing the result of job %s", earlier["job_id"])
        reused = Manifest.model_validate(earlier)
        reused.cached_from = reused.cached_from or reused.job_id
        reused.job_id = job_id
        await store.write_manifest(reused)
        return reused.model_dump(mode="json")
    outcome = await cancellation.guarded(str(flow_run.get_id()), execute_surviving_crashes(job_id, spec, store))
    if not isinstance(outcome, Manifest):
        return outcome  # Cancelled, or AwaitingRetry when the worker hands the job back
    return outcome.model_dump(mode="json")


def as_spec(value: JobSpec | dict[str, Any]) -> JobSpec:
    """The flow's own parameter check (Prefect's is off: it built a pydantic model per run).
    A spec that does not validate fails the run with INVALID_INPUT naming the field."""
    if isinstance(value, JobSpec):
        return value
    try:
        return JobSpec.model_validate(value)
    except ValidationError as exc:
        first = spec_errors(exc)[0]
        raise JobError(ErrorCode.INVALID_INPUT, f"Invalid field `{first['field']}`: {first['message']}") from None


def _owner() -> str:
    owners = sorted(tag_values(flow_run.get_tags() or [], "owner"))
    return hashlib.sha256(",".join(owners).encode()).hexdigest()[:16]


@task(name="job", cache_policy=NO_CACHE)
async def cached_job(job_id: str, spec: JobSpec) -> dict[str, Any]:
    """The whole job as one cacheable unit, for ``cache_ttl`` (the flow sets the cache key)."""
    manifest = await execute_surviving_crashes(job_id, spec, ArtifactStore.from_settings())
    return manifest.model_dump(mode="json")


async def execute_surviving_crashes(job_id: str, spec: JobSpec, store: ArtifactStore) -> Manifest:
    """A browser that dies under a job (OOM, a renderer crash, a kill) is not the job's fault:
    the pool relaunches it and the job runs once more from the start."""
    try:
        return await execute(job_id, spec, store)
    except BrowserCrashed as exc:
        get_run_logger().warning("the browser crashed during the job (%s); running it again in a fresh browser", exc)
        return await execute(job_id, spec, store)


class BrowserCrashed(JobError):
    pass


async def execute(job_id: str, spec: JobSpec, store: ArtifactStore) -> Manifest:
    logger = get_run_logger()
    settings = get_settings()
    pool = get_pool()
    manifest = Manifest(
        job_id=job_id, status="failed", kind=spec.kind, browser=spec.browser,
        spec_sha256=spec.fingerprint(), started_at=datetime.now(timezone.utc),
    )
    run = JobRun(job_id, spec, store)
    final_work = 1 if (spec.capture.any or spec.extract) else 0
    progress = Progress(job_id, total=len(spec.steps) + final_work)
    step_task = run_step.with_options(
        retries=spec.retries,
        retry_delay_seconds=exponential_backoff(spec.retry_delay) if spec.retry_delay else 0,
    )
    handle = None
    snapshot: dict[str, str] | None = None
    policy = JobPolicy(job_id=job_id, url_allow=tuple(spec.url_allow), hosts=dict(spec.hosts))
    try:
        pool.require(spec.browser)
        progress.start(step_label(0, spec.steps[0]) if spec.steps else "Starting")
        async with asyncio.timeout(spec.effective_timeout):
            har = spec.capture.har_options
            saved_state = {"storage_state": await load_state(store, spec.profile_ref)} if spec.profile_ref else {}
            async with pool.context(
                spec.browser, video=spec.capture.video, trace=spec.capture.trace, har=har.content if har else None, policy=policy,
                **context_options(spec), **saved_state,
            ) as handle:
                run.session = JobSession(handle.context, handle.page, step_timeout=settings.default_step_timeout, policy=policy, headers=spec.headers)
                if spec.cookies:
                    await handle.context.add_cookies(playwright_cookies(spec))
                try:
                    for index, step in enumerate(spec.steps):
                        if index:
                            await progress.update(done=index, current=step_label(index, step))
                        run.steps.append(await step_task(run, index, step))
                    if final_work:
                        await progress.update(done=len(spec.steps), current="Capturing")
                        await capture(run)
                    if spec.save_profile and spec.profile_ref:
                        await leave_state(store, spec.profile_ref, job_id, handle.context)
                except Exception:
                    if spec.capture.on_failure and not _browser_died(handle):  # the page as it was, while it is open
                        snapshot = await snapshot_failure(run, handle.page, min(len(run.steps), len(spec.steps) - 1))
                    raise
        manifest.status = "completed"
        logger.info("job %s completed: %d artifacts", job_id, len(run.artifacts))
    except asyncio.CancelledError:
        manifest.status = "cancelled"
        raise
    except TimeoutError:
        err = JobError(ErrorCode.TIMEOUT, f"job did not finish within {spec.effective_timeout:g} s")
        manifest.error = err.to_dict()
        raise err from None
    except Exception as exc:
        err = exc if isinstance(exc, JobError) else JobError(ErrorCode.BROWSER_ERROR, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        if _browser_died(handle):
            err = BrowserCrashed(ErrorCode.BROWSER_ERROR, f"the browser crashed: {err.message}", step=err.step, action=err.action)
        if snapshot:
            err.details["failureSnapshot"] = snapshot
        manifest.error = err.to_dict()
        if err is exc:
            raise
        raise err from exc
    finally:
        await _store_recordings(run, handle)
        for blocked in policy.blocked:
            logger.warning("blocked by the URL policy: %s (%s)", blocked["url"], blocked["reason"])
        manifest.blocked_requests = policy.blocked
        manifest.steps = run.steps
        manifest.artifacts = run.artifacts
        manifest.data = run.data
        session = run.session
        if session is not None:
            if spec.capture.alerts:
                manifest.messages = session.alerts
            if spec.capture.console:
                manifest.console = session.console
        await close_out(store, manifest, progress)
    return manifest


async def close_out(store: ArtifactStore, manifest: Manifest, progress: Progress) -> None:
    """The end of every job: store the manifest, show it in the Prefect UI, settle the progress."""
    manifest.finished_at = datetime.now(timezone.utc)
    # Independent round trips, at once: they are most of a short job's tail.
    final_progress = progress.update(done=progress.total, current="Done", final=True) if manifest.status == "completed" else progress.flush()
    await asyncio.gather(store.write_manifest(manifest), publish_to_ui(manifest, store), final_progress)


def _browser_died(handle: Any) -> bool:
    browser = getattr(getattr(handle, "context", None), "browser", None)
    return browser is not None and not browser.is_connected()


async def _store_recordings(run: JobRun, handle: Any) -> None:
    """Video, trace and HAR exist only once the context is closed."""
    if handle is None:
        return
    last = len(run.spec.steps) - 1
    if handle.video_path and handle.video_path.exists():
        await run.save(kind="video", name="video.webm", data=handle.video_path.read_bytes(), content_type="video/webm", step=last)
        handle.video_path.unlink(missing_ok=True)
    if handle.trace_path and handle.trace_path.exists():
        await run.save(kind="trace", name="trace.zip", data=handle.trace_path.read_bytes(), content_type="application/zip", step=last)
        handle.trace_path.unlink(missing_ok=True)
    if handle.har_path and handle.har_path.exists():
        zipped = handle.har_path.suffix == ".zip"
        await run.save(kind="har", name="network.har.zip" if zipped else "network.har", data=handle.har_path.read_bytes(),
                       content_type="application/zip" if zipped else "application/json", step=last)
        handle.har_path.unlink(missing_ok=True)


def context_options(spec: JobSpec) -> dict[str, Any]:
    opts: dict[str, Any] = {"viewport": {"width": spec.viewport.width, "height": spec.viewport.height}}
    if spec.user_agent:
        opts["user_agent"] = spec.user_agent
    if spec.locale:
        opts["locale"] = spec.locale
    if spec.timezone:
        opts["timezone_id"] = spec.timezone
    if spec.headers:
        opts["extra_http_headers"] = spec.headers
    pdf = spec.capture.pdf_options
    if pdf is not None and not pdf.js:
        opts["java_script_enabled"] = False
    return opts


def playwright_cookies(spec: JobSpec) -> list[dict[str, Any]]:
    """Cookies without a domain or URL belong to the first step's host."""
    first = spec.steps[0].url if spec.steps else None
    out = []
    for c in spec.cookies:
        cookie: dict[str, Any] = {"name": c.name, "value": c.value, "httpOnly": c.http_only, "secure": c.secure}
        if c.url:
            cookie["url"] = c.url
        elif c.domain:
            cookie["domain"] = c.domain
            cookie["path"] = c.path
        elif first:
            parts = urlsplit(first)
            cookie["domain"] = parts.hostname
            cookie["path"] = c.path
        if c.expires is not None:
            cookie["expires"] = c.expires
        if c.same_site:
            cookie["sameSite"] = c.same_site
        out.append(cookie)
    return out
