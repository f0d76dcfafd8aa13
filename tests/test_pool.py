"""The browser pool's limits and recovery, each on a pool of its own (not the session's)."""

from __future__ import annotations

import asyncio
import os
import signal
import zipfile

import pytest

from sojourn.browser.pool import BrowserPool
from sojourn.settings import get_settings
from sojourn.worker.inprocess import sojourn_entrypoint
from tests.helpers import artifact_bytes, run_job


async def _visit(pool: BrowserPool, url: str) -> str:
    async with pool.context("chromium") as handle:
        await handle.page.goto(url)
        return await handle.page.title()


async def test_browsers_are_recycled_after_the_configured_number_of_jobs(site):
    pool = BrowserPool(get_settings().model_copy(update={"contexts_per_browser": 2}))
    try:
        for _ in range(5):
            assert await _visit(pool, site.url("/")) == "Home"
        assert pool.stats.launches == 3  # 2 + 2 + 1 jobs
        assert pool.stats.contexts_opened == 5 and pool.stats.contexts_open == 0
    finally:
        await pool.close()


async def test_a_crashed_browser_is_relaunched_for_the_next_job(site):
    pool = BrowserPool()
    try:
        before = _chromium_pids()
        assert await _visit(pool, site.url("/")) == "Home"
        ours = _chromium_pids() - before  # this pool's browser (tests run one at a time)
        browser = next(iter(pool._current.values())).browser
        for pid in ours:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # a renderer of the context _visit closed may exit between the two snapshots
        for _ in range(100):
            if not browser.is_connected():
                break
            await asyncio.sleep(0.05)
        assert not browser.is_connected()
        assert await _visit(pool, site.url("/buttons")) == "Buttons"
        assert pool.stats.launches == 2 and pool.stats.crashes == 1
    finally:
        await pool.close()


def _chromium_pids() -> set[int]:
    from pathlib import Path

    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat[stat.index("(") + 1 : stat.rindex(")")] in ("chromium", "chrome", "headless_shell"):
                out.add(int(entry.name))
    return out


@pytest.mark.usefixtures("pool")
async def test_trace_capture_is_a_playwright_trace_zip(site, tmp_path):
    m = await run_job({"steps": [{"url": site.url("/buttons"), "actions": ["page.click('#one')"]}], "capture": {"trace": True}})
    data = await artifact_bytes(m, "trace")
    path = tmp_path / "trace.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert any(n.endswith(".trace") for n in names) and any(n.endswith(".network") for n in names)


@pytest.mark.parametrize(
    "entrypoint, ok",
    [
        ("sojourn.flows.browse:browse", True),
        ("sojourn/flows/browse.py:browse", True),
        ("os:system", False),
        ("evil/sojourn.py:x", False),
        ("sojourn.flows.browse", False),
        ("../sojourn/flows/browse.py:browse", False),
    ],
)
def test_the_worker_loads_only_sojourn_flows(entrypoint: str, ok: bool) -> None:
    if ok:
        assert sojourn_entrypoint(entrypoint) == ("sojourn.flows.browse", "browse")
    else:
        with pytest.raises(RuntimeError):
            sojourn_entrypoint(entrypoint)
