"""The scrape flow: a project's targets, each read page by page into items, one Prefect task per target.

Parameters (what the scrape-jobs dialect puts in the ledger as the job's spec)::

    {"project_id": "proj_…", "job": "job_…",
     "targets": [{"id": "tgt_…", "url": "...", "item_selector": ".item", "fields": {"name": ".name"},
                  "next_page": "a.next" | "?page={page}", "max_pages": 10, "wait_for": null,
                  "dedupe_keys": null, "screenshot": false}],
     "max_results_per_target": 100, "rate_limit_delay": 1.0, "retries": 2, "retry_delay": 1.0,
     "page_timeout": 30.0, "parallel_domains": 3, "url_allow": []}

Everything goes to the artifact store under ``jobs/<job id>/`` (items per target and page, ``scrape.json``
with per-target status, ``manifest.json``): the worker needs only Prefect and the store. Targets on one
domain run one after another with ``rate_limit_delay`` between page loads; domains run in parallel. A
failing target is recorded and the job carries on; the job fails only when every target failed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from sojourn import cancellation
from sojourn.blocks.artifact_store import ArtifactStore, Manifest
from sojourn.browser.egress import JobPolicy
from sojourn.browser.pool import get_pool
from sojourn.browser.url_policy import url_host
from sojourn.job_errors import ErrorCode, JobError
from sojourn.job_identity import current_job_id
from sojourn.settings import get_settings
from sojourn.tasks.profile_state import load_current_state
from sojourn.tasks.scrape import ScrapeRun, scrape_target
from sojourn.ui import publish_to_ui


@flow(name="scrape", persist_result=False, log_prints=False, validate_parameters=False)
async def scrape(spec: dict[str, Any]) -> Any:
    """Read the targets' pages into items, stored per target in the artifact store; return the summary."""
    job_id = current_job_id()
    store = ArtifactStore.from_settings()
    outcome = await cancellation.guarded(str(flow_run.get_id()), execute(job_id, spec, store))
    return outcome


def _check(spec: Any) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("targets"), list) or not spec["targets"]:
        raise JobError(ErrorCode.INVALID_INPUT, "Invalid field `targets`: a scrape job needs at least one target")
    for i, t in enumerate(spec["targets"]):
        if not isinstance(t, dict) or not t.get("id") or not isinstance(t.get("url"), str):
            raise JobError(ErrorCode.INVALID_INPUT, f"Invalid field `targets.{i}`: each target needs an id and a url")


async def execute(job_id: str, spec: dict[str, Any], store: ArtifactStore) -> dict[str, Any]:
    logger = get_run_logger()
    _check(spec)
    settings = get_settings()
    pool = get_pool()
    manifest = Manifest(job_id=job_id, status="failed", kind="scrape", started_at=datetime.now(timezone.utc))
    policy = JobPolicy(job_id=job_id, url_allow=tuple(spec.get("url_allow") or ()))
    targets = {t["id"]: t for t in spec["targets"]}
    run: ScrapeRun | None = None
    try:
        pool.require("chromium")
        saved_state = {"storage_state": await load_current_state(store, spec["profile_id"])} if spec.get("profile_id") else {}
        async with pool.context("chromium", policy=policy, viewport={"width": 1280, "height": 800}, **saved_state) as handle:
            run = ScrapeRun(job_id, spec, store, handle.context, policy, float(spec.get("page_timeout") or settings.default_step_timeout))
            await run.save_status()
            logger.info("Job started: %d targets", len(targets))
            task = scrape_target.with_options(
                retries=int(spec.get("retries", 2)),
                retry_delay_seconds=exponential_backoff(float(spec.get("retry_delay", 1.0))) if spec.get("retry_delay", 1.0) else 0,
            )
            by_domain: OrderedDict[str, list[str]] = OrderedDict()
            for tid, t in targets.items():
                by_domain.setdefault(url_host(t["url"]) or "", []).append(tid)
            gate = asyncio.Semaphore(max(int(spec.get("parallel_domains") or 3), 1))

            async def one_domain(ids: list[str]) -> None:
                async with gate:
                    for tid in ids:
                        try:
                            await task(run, tid, targets[tid])
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:
                            state = run.targets[tid]
                            state["status"] = "failed"
                            state["error"] = state.get("error") or str(getattr(exc, "message", None) or exc)
                            await run.save_status()
                            run.emit("target_failed", tid, error=state["error"])

            await asyncio.gather(*(one_domain(ids) for ids in by_domain.values()))
            run.current = None
        failed = [tid for tid, s in run.targets.items() if s["status"] == "failed"]
        if failed and len(failed) == len(run.targets):
            err = JobError(ErrorCode.NAVIGATION_FAILED, f"every target failed; first: {run.targets[failed[0]]['error']}")
            manifest.error = err.to_dict()
            raise err
        manifest.status = "completed"
        logger.info("Job completed: %d results from %d targets (%d failed)", run.summary()["total_results"], len(targets), len(failed))
    except asyncio.CancelledError:
        manifest.status = "cancelled"
        if run is not None:
            for s in run.targets.values():
                if s["status"] in ("pending", "running"):
                    s["status"] = "cancelled"
            run.current = None
        raise
    except JobError as exc:
        manifest.error = manifest.error or exc.to_dict()
        raise
    except Exception as exc:
        err = JobError(ErrorCode.BROWSER_ERROR, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        manifest.error = err.to_dict()
        raise err from exc
    finally:
        manifest.finished_at = datetime.now(timezone.utc)
        manifest.blocked_requests = policy.blocked
        if run is not None:
            manifest.data = run.summary() | {"targets": run.targets}
        await asyncio.shield(_close_out(store, manifest, run))
    return manifest.data or {}


async def _close_out(store: ArtifactStore, manifest: Manifest, run: ScrapeRun | None) -> None:
    writes = [store.write_manifest(manifest), publish_to_ui(manifest)]
    if run is not None:
        writes.append(run.save_status())
    await asyncio.gather(*writes, return_exceptions=True)
