"""Faults: a browser killed mid-job, an API restarted under streaming clients, Prefect going away (jobs are still accepted)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid

import pytest

from sojourn.flows import browse
from tests.test_pool import _chromium_pids
from tests.test_runtime import submit, wait_for


async def test_a_browser_killed_mid_job_is_relaunched_and_the_job_runs_again(site, pool):
    tag = uuid.uuid4().hex
    await browse({"steps": [{"url": site.url("/")}]})  # the pool's browser is up before we look for it
    before_crashes = pool.stats.crashes
    job = asyncio.ensure_future(browse({"steps": [{"url": site.url(f"/?t={tag}"), "actions": ["page.waitForTimeout(4000)"]}]}))
    for _ in range(200):
        if [h for h in site.state.requests_to("/") if h.query.get("t") == [tag]]:
            break
        await asyncio.sleep(0.05)
    browser = next(iter(pool._current.values())).browser
    ours = {p for p in _chromium_pids() if _is_descendant(p, os.getpid())}
    assert ours, "no chromium process under this test process"
    for pid in ours:
        os.kill(pid, signal.SIGKILL)
    result = await asyncio.wait_for(job, 60)
    assert result["status"] == "completed"
    assert not browser.is_connected() and pool.stats.crashes == before_crashes + 1
    visits = [h for h in site.state.requests_to("/") if h.query.get("t") == [tag]]
    assert len(visits) == 2  # the job ran again, from its first step, in a fresh browser


def _is_descendant(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


@pytest.mark.slow
def test_restarting_the_api_loses_no_job_and_streams_resume(stack, site):
    with stack.client() as http:
        job_id = submit(http, [{"url": site.url(f"/?s={i}"), "actions": ["page.waitForTimeout(1500)"]} for i in range(4)])
        first: list[str] = []
        with http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("event: "):
                    first.append(line[7:])
                    break
        stack.stop_api()
        stack.start_api()
        # the client reconnects (as EventSource does) and is told where the job stands, then how it ends
        events: list[str] = []
        with http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
                if line.startswith("data: ") and events[-1] == "complete":
                    assert json.loads(line[6:])["status"] == "completed"
                    break
        assert first and events[-1] == "complete"
        assert wait_for(http, job_id)["status"] == "completed"


@pytest.mark.slow
def test_with_prefect_down_jobs_are_still_accepted_read_and_cancelled_and_run_when_it_is_back(stack, site, restart_prefect):
    import time
    from datetime import datetime, timedelta, timezone

    tag = uuid.uuid4().hex
    with stack.client() as http:
        running = submit(http, [{"url": site.url(f"/?t={tag}"), "actions": ["page.waitForTimeout(20000)"]}], input={"timeout": 120})
        wait_for(http, running, statuses=("processing",))
        soon = (datetime.now(timezone.utc) + timedelta(seconds=6)).isoformat()
        queued = submit(http, [{"url": site.url(f"/?t={tag}&queued=1")}], input={"runAt": soon})
        total = http.get("/api/v1/jobs", params={"limit": 1}).json()["total"]
        with restart_prefect():
            # the job ledger accepts without Prefect: at once, and the job can be read and cancelled
            t = time.monotonic()
            r = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": site.url(f"/?t={tag}&down=1")}]}})
            assert r.status_code == 202, r.text
            assert time.monotonic() - t < 2
            accepted = r.json()["jobId"]
            assert http.get(f"/api/v1/jobs/{accepted}").json()["status"] == "submitted"
            dropped = submit(http, [{"url": site.url(f"/?t={tag}&dropped=1")}])
            cancel = http.post(f"/api/v1/jobs/{dropped}/cancel")
            assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled", cancel.text
            assert http.get(f"/api/v1/jobs/{dropped}").json()["status"] == "cancelled"
        # back: what was accepted runs to the end, the cancelled job never runs
        for job_id in (running, queued, accepted):
            done = wait_for(http, job_id, timeout=120)
            assert done["status"] == "completed", (job_id, done.get("error"), done.get("result"))
        assert [h for h in site.state.requests_to("/") if h.query.get("down")]
        assert wait_for(http, dropped)["status"] == "cancelled"
        assert not [h for h in site.state.requests_to("/") if h.query.get("dropped")]
        assert http.get("/api/v1/jobs", params={"limit": 1}).json()["total"] == total + 2
        assert wait_for(http, submit(http, [{"url": site.url("/")}]))["status"] == "completed"
        # the worker still hears cancellations (Prefect's observer gave up for good after an outage)
        hanging = submit(http, [{"url": site.url(f"/?t={tag}&after=1"), "actions": ["page.waitForTimeout(30000)"]}], input={"timeout": 120})
        wait_for(http, hanging, statuses=("processing",))
        assert http.post(f"/api/v1/jobs/{hanging}/cancel").status_code == 200
        assert wait_for(http, hanging, statuses=("cancelled", "failed", "completed"), timeout=15)["status"] == "cancelled"
