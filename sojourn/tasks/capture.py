"""Captures taken when the job's steps are done, and structured extraction.

One task for all of a job's final captures: each is a few hundred ms of
browser work, and a task per capture would mostly add Prefect round trips.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sojourn.job_errors import ErrorCode, JobError
from sojourn.spec import ExtractRule, PdfOptions
from sojourn.tasks.job import JobRun


@task(name="capture", cache_policy=NO_CACHE, task_run_name="capture")
async def capture(run: JobRun) -> None:
    logger = get_run_logger()
    spec, session = run.spec, run.session
    assert session is not None
    page = session.page
    cap = spec.capture
    last = len(spec.steps) - 1 if spec.steps else None
    try:
        if spec.extract:
            run.data = await extract(page, spec.extract)
            await run.save(kind="extract", name="extract.json", data=json.dumps(run.data, indent=2).encode(), content_type="application/json", step=last)
        if (opts := cap.screenshot_options) is not None:
            png = await page.screenshot(full_page=opts.full_page)
            rec = await run.save(kind="screenshot", name="screenshot.png", data=png, content_type="image/png", step=last, step_name="Final page")
            logger.info("screenshot: %dx%d, %d bytes", rec.width or 0, rec.height or 0, rec.size)
        if cap.html:
            await run.save(kind="html", name="page.html", data=(await page.content()).encode(), content_type="text/html; charset=utf-8", step=last)
        if cap.text:
            text = await page.inner_text("body")
            await run.save(kind="text", name="page.txt", data=text.encode(), content_type="text/plain; charset=utf-8", step=last)
        if (pdf := cap.pdf_options) is not None:
            data = await render_pdf(page, pdf)
            rec = await run.save(kind="pdf", name="page.pdf", data=data, content_type="application/pdf", step=last)
            logger.info("pdf: %d bytes", rec.size)
    except PlaywrightError as exc:
        raise JobError(ErrorCode.BROWSER_ERROR, f"capture failed: {str(exc).splitlines()[0]}") from None


async def render_pdf(page: Page, opts: PdfOptions) -> bytes:
    """Tourist's pdf options, mapped onto Playwright's ``page.pdf``."""
    await page.emulate_media(media=opts.media)
    if opts.delay:
        await asyncio.sleep(opts.delay / 1000)
    kwargs: dict[str, Any] = {
        "landscape": opts.landscape,
        "print_background": opts.background,
        "scale": opts.scale,
    }
    if opts.size is not None:
        kwargs["width"] = _css(opts.size.width)
        kwargs["height"] = _css(opts.size.height)
    else:
        kwargs["format"] = opts.format
    if opts.margin is not None:
        if isinstance(opts.margin, (int, float, str)):
            kwargs["margin"] = {side: _css(opts.margin) for side in ("top", "right", "bottom", "left")}
        else:
            kwargs["margin"] = {k: _css(v) for k, v in opts.margin.model_dump().items() if v is not None}
    try:
        return await page.pdf(**kwargs)
    except PlaywrightError as exc:
        if "only supported for Headless Chromium" in str(exc):  # Playwright's own Firefox build cannot print
            raise JobError(ErrorCode.INVALID_INPUT, "Invalid field `capture.pdf`: this worker's Firefox (Playwright's build) cannot print; "
                                                    "use chromium, or Firefox through WebDriver BiDi (firefox-esr)") from None
        raise


def _css(value: float | str) -> str:
    return f"{value}px" if isinstance(value, (int, float)) else value


async def extract(page: Page, rules: dict[str, ExtractRule]) -> dict[str, Any]:
    """Named selectors → JSON: text (default), an attribute, or inner HTML; first match or all."""
    out: dict[str, Any] = {}
    for name, rule in rules.items():
        loc = page.locator(rule.playwright_selector)
        if rule.all:
            elements = await loc.all()
            out[name] = [await _read(e, rule) for e in elements]
        else:
            out[name] = await _read(loc.first, rule) if await loc.count() else None
    return out


async def _read(loc: Any, rule: ExtractRule) -> Any:
    if rule.attribute is None:
        return (await loc.inner_text()).strip()
    if rule.attribute == "html":
        return await loc.inner_html()
    return await loc.get_attribute(rule.attribute)
