"""What the page looked like when a job failed: ``failure.png`` and ``failure.html``, kept with the job's captures.

Taken while the failed job's page is still open (a selector that never appeared, a step's timeout, a navigation
error), one pair per failed attempt (``failure-2.png`` for a second), bounded in time and size: a viewport screenshot, the HTML cut at
``MAX_HTML_BYTES``, both within ``SNAPSHOT_SECONDS``. A snapshot that cannot be taken (the page is gone) is logged
and skipped; it never changes how the job ends. Off with ``"capture": {"onFailure": false}``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sojourn.tasks.job import JobRun

log = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 8.0
MAX_HTML_BYTES = 2 * 1024 * 1024


async def snapshot_failure(run: JobRun, page: Any, step: int | None) -> dict[str, str] | None:
    """Store the page's screenshot and HTML; what the job's error links to (``details.failureSnapshot``)."""
    try:
        return await asyncio.wait_for(_snapshot(run, page, step), timeout=SNAPSHOT_SECONDS)
    except Exception as exc:  # the page may be gone with the failure: the job's own error is what matters
        log.warning("no failure snapshot of job %s: %s", run.job_id, f"{type(exc).__name__}: {exc}".splitlines()[0])
        return None


def _attempt() -> int:
    from prefect.runtime import flow_run

    try:
        return int(flow_run.run_count or 1)
    except Exception:
        return 1


async def _snapshot(run: JobRun, page: Any, step: int | None) -> dict[str, str]:
    # One pair per failed attempt: a job retried on failure keeps each attempt's (failure-2.png, ...).
    suffix = "" if (attempt := _attempt()) <= 1 else f"-{attempt}"
    png = await page.screenshot(timeout=SNAPSHOT_SECONDS * 1000, animations="disabled")
    html = (await page.content()).encode()
    if len(html) > MAX_HTML_BYTES:
        html = html[:MAX_HTML_BYTES].decode(errors="ignore").encode() + b"\n<!-- cut by Sojourn at 2 MiB -->\n"
    shot = await run.save(kind="screenshot", name=f"failure{suffix}.png", data=png, content_type="image/png", step=step, step_name="failure")
    page_html = await run.save(kind="html", name=f"failure{suffix}.html", data=html, content_type="text/html; charset=utf-8", step=step, step_name="failure")
    return {"screenshot": shot.id, "screenshotName": shot.name, "html": page_html.name, "url": page.url}
