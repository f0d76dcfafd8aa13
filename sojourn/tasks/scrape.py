"""One scrape target as one Prefect task: its pages, one after another, until a stop condition.

The task stores as it goes: each page's new items go to the artifact store
(``jobs/<job id>/scrape-<target>-p<page>.jsonl``) and the job's status file
(``jobs/<job id>/scrape.json``) is rewritten, so what was stored stays readable
if the job is cancelled mid-target. The cap (``max_results_per_target``) is
checked before each item is kept, so it is never overshot; items are
de-duplicated within the target by a hash of their fields (or ``dedupe_keys``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sojourn.blocks.artifact_store import ArtifactStore
from sojourn.browser.egress import JobPolicy
from sojourn.browser.url_policy import check_host, url_host
from sojourn.job_errors import ErrorCode, JobError
from sojourn.job_identity import emit_job_event
from sojourn.tasks.robots import Robots

STATUS_FILE = "scrape.json"
EVENT = "sojourn.job.scrape"


def page_file(target_id: str, page: int) -> str:
    return f"scrape-{target_id}-p{page:04d}.jsonl"


# Runs in the page: items and their fields by CSS or XPath; text, an attribute or HTML; one or many.
EXTRACT_JS = r"""
(args) => {
  const {itemSelector, fields} = args;
  const isX = (s) => s.startsWith('/') || s.startsWith('./') || s.startsWith('(');
  const all = (root, sel) => {
    if (isX(sel)) {
      const out = [];
      const r = document.evaluate(sel, root, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
      for (let i = 0; i < r.snapshotLength; i++) out.push(r.snapshotItem(i));
      return out;
    }
    return Array.from(root.querySelectorAll(sel));
  };
  const read = (el, f) => {
    if (f.attribute) {
      if (f.attribute === 'href' && el.href !== undefined && typeof el.href === 'string') return el.href;
      if (f.attribute === 'src' && el.src !== undefined && typeof el.src === 'string') return el.src;
      return el.getAttribute ? el.getAttribute(f.attribute) : null;
    }
    if (f.html) return el.innerHTML !== undefined ? el.innerHTML : el.textContent;
    const t = (el.innerText !== undefined ? el.innerText : el.textContent) || '';
    return t.trim();
  };
  const one = (root) => {
    const data = {};
    for (const [name, f] of Object.entries(fields)) {
      const found = f.selector ? all(root, f.selector) : [root];
      data[name] = f.multiple ? found.map((el) => read(el, f)) : (found.length ? read(found[0], f) : null);
    }
    return data;
  };
  if (!itemSelector) return null;
  return all(document, itemSelector).map(one);
}
"""

NEXT_JS = r"""
(sel) => {
  const isX = sel.startsWith('/') || sel.startsWith('./') || sel.startsWith('(');
  let el = null;
  if (isX) {
    el = document.evaluate(sel, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
  } else {
    el = document.querySelector(sel);
  }
  if (!el) return null;
  return el.href || (el.getAttribute && el.getAttribute('href')) || null;
}
"""


class ScrapeRun:
    """What one scrape job's tasks share (a plain class, so Prefect does not walk into it)."""

    def __init__(self, job_id: str, spec: dict[str, Any], store: ArtifactStore, context: Any, policy: JobPolicy,
                 page_timeout: float) -> None:
        self.job_id = job_id
        self.spec = spec
        self.store = store
        self.context = context
        self.policy = policy
        self.page_timeout = page_timeout
        self.cap = int(spec.get("max_results_per_target") or 100)
        self.delay = float(spec.get("rate_limit_delay") or 0.0)
        self.robots = Robots(context.request, page_timeout) if spec.get("respect_robots_txt") else None
        self.targets: dict[str, dict[str, Any]] = {
            t["id"]: {"status": "pending", "results_count": 0, "pages": 0, "error": None, "started_at": None,
                      "finished_at": None, "duration_seconds": None, "url": t["url"]}
            for t in spec.get("targets", [])
        }
        self.current: str | None = None
        self._lock = asyncio.Lock()
        self._last_load: dict[str, float] = {}  # domain → monotonic time of its last page load
        self._domain_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ status
    def summary(self) -> dict[str, Any]:
        done = sum(1 for t in self.targets.values() if t["status"] in ("completed", "failed", "skipped"))
        total = len(self.targets)
        return {
            "total_targets": total,
            "completed_targets": done,
            "current_target": self.current,
            "total_results": sum(t["results_count"] for t in self.targets.values()),
            "percentage": int(done / total * 100) if total else 100,
        }

    async def save_status(self) -> None:
        async with self._lock:
            body = {"job_id": self.job_id, **self.summary(), "targets": self.targets,
                    "updated_at": datetime.now(timezone.utc).isoformat()}
            await self.store.write_bytes(self.store.job_path(self.job_id, STATUS_FILE), json.dumps(body).encode())

    def emit(self, kind: str, target_id: str | None = None, **extra: Any) -> None:
        emit_job_event(self.job_id, EVENT, {"type": kind, "target_id": target_id, **self.summary(), **extra})

    # ------------------------------------------------------------------ politeness
    async def polite(self, domain: str) -> None:
        """Wait until ``rate_limit_delay`` has passed since the last page load on this domain."""
        lock = self._domain_locks.setdefault(domain, asyncio.Lock())
        async with lock:
            last = self._last_load.get(domain)
            if last is not None and self.delay > 0:
                wait = self.delay - (time.monotonic() - last)
                if wait > 0:
                    await asyncio.sleep(wait)
            self._last_load[domain] = time.monotonic()


def item_hash(data: dict[str, Any], keys: list[str] | None) -> str:
    part = {k: data.get(k) for k in keys} if keys else data
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()


def normalise_fields(fields: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    out = {}
    for name, f in (fields or {}).items():
        out[name] = {"selector": f} if isinstance(f, str) else dict(f)
    return out


def http_error(status: int, url: str) -> JobError:
    """A page answered with an HTTP error status."""
    return JobError(ErrorCode.NAVIGATION_FAILED, f"{url} answered HTTP {status}", details={"http_status": status})


def _should_retry(task: Any, task_run: Any, state: Any) -> bool:
    exc = state.data
    if isinstance(exc, JobError) and (status := (exc.details or {}).get("http_status")):
        return bool(status == 429 or status >= 500)  # a 404 fails the same way next time
    if isinstance(exc, JobError):
        return exc.code not in (ErrorCode.URL_BLOCKED, ErrorCode.INVALID_INPUT)
    return True


async def _load(run: ScrapeRun, page: Any, url: str, target: dict[str, Any]) -> int | None:
    """Navigate under the job's URL policy (checked before, and by the egress proxy for every request)."""
    decision = await check_host(url_host(url), run.policy.url_allow)
    if not decision.allowed:
        run.policy.record(url, decision.reason)
        raise JobError(ErrorCode.URL_BLOCKED, f"{url} is blocked: {decision.reason}")
    await run.polite(url_host(url) or "")
    try:
        response = await page.goto(url, wait_until="load", timeout=run.page_timeout * 1000)
    except PlaywrightTimeout:
        raise JobError(ErrorCode.TIMEOUT, f"loading {url} timed out after {run.page_timeout:g} s") from None
    except PlaywrightError as exc:
        raise JobError(ErrorCode.NAVIGATION_FAILED, f"could not load {url}: {str(exc).splitlines()[0]}") from None
    if response is not None and (reason := response.headers.get("x-sojourn-blocked")):
        raise JobError(ErrorCode.URL_BLOCKED, f"loading {url} reached {response.url}, which is blocked: {reason}")
    if response is not None and (net := response.headers.get("x-sojourn-upstream-error")):
        raise JobError(ErrorCode.NAVIGATION_FAILED, f"could not load {response.url}: {net}")
    status = response.status if response is not None else None
    if status is not None and status >= 400:
        raise http_error(status, url)
    if target.get("wait_for"):
        try:
            await page.wait_for_selector(target["wait_for"], state="attached", timeout=run.page_timeout * 1000)
        except PlaywrightTimeout:
            raise JobError(ErrorCode.TIMEOUT, f"`{target['wait_for']}` did not appear on {url} within {run.page_timeout:g} s") from None
    return status


async def _skip(run: ScrapeRun, target_id: str, why: str, started: float) -> dict[str, Any]:
    """A target whose URL robots.txt disallows: not visited, reported as skipped (the job goes on)."""
    run.targets[target_id].update(status="skipped", error=f"skipped: {why}", finished_at=datetime.now(timezone.utc).isoformat(),
                                  duration_seconds=round(time.monotonic() - started, 3))
    await run.save_status()
    run.emit("target_skipped", target_id, reason=why)
    get_run_logger().warning("[%s] Target skipped: %s", target_id, why)
    return {"target_id": target_id, "results_count": 0, "pages": 0, "skipped": True}


@task(name="scrape-target", cache_policy=NO_CACHE, retry_condition_fn=_should_retry, task_run_name="target {target_id}")
async def scrape_target(run: ScrapeRun, target_id: str, target: dict[str, Any]) -> dict[str, Any]:
    logger = get_run_logger()
    state = run.targets[target_id]
    state.update(status="running", results_count=0, pages=0, error=None, started_at=datetime.now(timezone.utc).isoformat())
    run.current = target_id
    started = time.monotonic()
    await run.save_status()
    run.emit("target_started", target_id)
    logger.info("[%s] Scraping target: %s", target_id, target["url"])
    fields = normalise_fields(target.get("fields"))
    keys = target.get("dedupe_keys") or None
    max_pages = int(target.get("max_pages") or 10)
    next_page = target.get("next_page")
    seen_urls: set[str] = set()
    seen_items: set[str] = set()
    stored = 0
    url: str | None = target["url"]
    page_no = 0
    page = await run.context.new_page()
    try:
        while url and page_no < max_pages and stored < run.cap:
            if url in seen_urls:
                logger.info("[%s] next page %s was seen already: stopping", target_id, url)
                break
            if run.robots is not None:
                allowed, why = await run.robots.check(url)
                if not allowed and page_no == 0:
                    return await _skip(run, target_id, why, started)
                if not allowed:
                    logger.warning("[%s] next page skipped: %s; stopping", target_id, why)
                    break
            seen_urls.add(url)
            page_no += 1
            await _load(run, page, url, target)
            items: list[dict[str, Any]]
            if target.get("item_selector"):
                items = await page.evaluate(EXTRACT_JS, {"itemSelector": target["item_selector"], "fields": fields}) or []
            else:
                text = await page.evaluate("() => (document.body ? document.body.innerText : '').trim()")
                items = [{"url": page.url, "title": await page.title(), "text": text}]
            lines = []
            for position, data in enumerate(items):
                if stored >= run.cap:  # the cap holds as each item is kept
                    break
                digest = item_hash(data, keys)
                if digest in seen_items:
                    continue
                seen_items.add(digest)
                stored += 1
                lines.append(json.dumps({"source_url": page.url, "page": page_no, "position": position, "hash": digest, "data": data}))
            await run.store.write_bytes(run.store.job_path(run.job_id, page_file(target_id, page_no)), ("\n".join(lines) + "\n").encode() if lines else b"")
            state.update(results_count=stored, pages=page_no)
            await run.save_status()
            run.emit("progress", target_id, results_count=stored)
            logger.info("[%s] page %d: %d items, %d new (%d stored)", target_id, page_no, len(items), len(lines), stored)
            if not items:
                logger.info("[%s] page %d is empty: stopping", target_id, page_no)
                break
            if target.get("screenshot") and page_no == 1:
                shot = await page.screenshot(full_page=True)
                await run.store.write_bytes(run.store.job_path(run.job_id, f"scrape-{target_id}.png"), shot)
            url = None
            if next_page and page_no < max_pages and stored < run.cap:
                if "{page}" in next_page:
                    url = urljoin(target["url"], next_page.replace("{page}", str(page_no + 1)))
                else:
                    url = await page.evaluate(NEXT_JS, next_page)
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            state.update(status="cancelled")
        else:
            state.update(status="failed", error=str(getattr(exc, "message", None) or exc))
            logger.error("[%s] Target failed: %s", target_id, state["error"])
        state.update(finished_at=datetime.now(timezone.utc).isoformat(), duration_seconds=round(time.monotonic() - started, 3))
        await asyncio.shield(run.save_status())
        raise
    finally:
        try:
            await page.close()
        except PlaywrightError:
            pass
    state.update(status="completed", finished_at=datetime.now(timezone.utc).isoformat(), duration_seconds=round(time.monotonic() - started, 3))
    await run.save_status()
    run.emit("target_completed", target_id, results_count=stored)
    logger.info("[%s] Target completed: %d results", target_id, stored)
    return {"target_id": target_id, "results_count": stored, "pages": page_no}
