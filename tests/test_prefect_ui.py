"""What a person sees in the Prefect UI: a run's captures, shown and opened without a Sojourn API key."""

from __future__ import annotations

import asyncio
import os
import re

import httpx

from tests.helpers import pdf_text, png_image
from tests.test_runtime import submit, wait_for


async def _captures_artifact(job_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterTags

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])))
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[runs[0].id])))
    return next(a for a in arts if a.type == "markdown")


async def _image_widths_on(url: str) -> list[int]:
    """Open a Prefect UI page in Chromium (no Sojourn key anywhere) and return the decoded width of each image."""
    from playwright.async_api import async_playwright

    from sojourn.browser.discovery import find_browser, sandbox_args

    choice = find_browser("chromium", None)
    assert choice is not None, "no Chromium here"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=choice.executable, args=sandbox_args())
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            return await page.evaluate("() => [...document.images].filter(i => i.src.includes('/artifacts/')).map(i => i.naturalWidth)")
        finally:
            await browser.close()


def test_the_prefect_ui_shows_a_runs_screenshot_and_opens_its_captures_without_a_key(stack, site):
    with stack.client() as http:
        job = wait_for(http, submit(http, [{"url": site.url("/pdf")}], input={"capture": ["screenshot", "pdf"]}))
        assert job["status"] == "completed", job
        shot = http.get(f"/api/v1/jobs/{job['id']}/artifacts/screenshot.png").content
    artifact = asyncio.run(_captures_artifact(job["id"]))
    links = dict(re.findall(r"\[([\w.]+)\]\((http[^)]+)\)", artifact.data))
    assert set(links) >= {"screenshot.png", "page.pdf"} and stack.admin_key not in artifact.data

    with httpx.Client(timeout=30) as anonymous:  # what the browser showing the Prefect UI has: no key
        r = anonymous.get(links["screenshot.png"])
        assert r.status_code == 200 and r.content == shot
        png_image(r.content)
        r = anonymous.get(links["page.pdf"])
        assert r.status_code == 200 and "Printable heading" in pdf_text(r.content)
        # the link opens its one capture, unchanged, and nothing else
        bad = anonymous.get(links["page.pdf"].replace("page.pdf", "screenshot.png"))
        assert bad.status_code == 403 and bad.json()["error"]["code"] == "INVALID_SIGNATURE"
        assert anonymous.get(re.sub(r"expires=\d+", "expires=9999999999", links["page.pdf"])).status_code == 403
        assert anonymous.get(links["page.pdf"].split("?")[0]).status_code == 401  # unsigned: a key is needed

    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    widths = asyncio.run(_image_widths_on(f"{ui}/artifacts/artifact/{artifact.id}"))
    assert widths and all(w == 1280 for w in widths), widths  # the screenshot decoded in the page
