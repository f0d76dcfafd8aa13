"""The running stack over HTTP: API process, worker process, Prefect server, real Chromium."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.helpers import png_image

FINAL = ("completed", "failed", "cancelled")


def submit(http: httpx.Client, steps: list, **extra) -> str:
    body = {"type": "browse", "input": {"steps": steps, **extra.pop("input", {})}, **extra}
    r = http.post("/api/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "submitted"
    return r.json()["jobId"]


def wait_for(http: httpx.Client, job_id: str, statuses=FINAL, timeout: float = 60) -> dict:
    """The job once its status is one of ``statuses``. For final statuses with the documented long poll
    (``?wait=``: the API answers when the job ends), for others by polling every 0.25 s."""
    deadline = time.monotonic() + timeout
    long_poll = set(statuses) <= set(FINAL)
    while True:
        left = deadline - time.monotonic()
        params = {"wait": max(1, min(30, int(left)))} if long_poll else None
        job = http.get(f"/api/v1/jobs/{job_id}", params=params, timeout=max(30.0, left + 15)).json()
        if job["status"] in statuses:
            return job
        if time.monotonic() >= deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
        if not long_poll:
            time.sleep(0.25)


def test_a_job_over_http_completes_and_its_screenshot_is_a_png_of_the_page(stack, site):
    with stack.client() as http:
        job_id = submit(http, [{"url": site.url("/buttons"), "actions": ["page.click('#one')"]}], input={"capture": ["screenshot"], "viewport": {"width": 900, "height": 700}})
        job = wait_for(http, job_id)
        assert job["status"] == "completed", job
        assert job["progress"]["percentage"] == 100
        shots = http.get(f"/api/v1/jobs/{job_id}/screenshots").json()
        assert shots["total"] == 1 and shots["screenshots"][0]["dimensions"] == {"width": 900, "height": 700}
        png = http.get(f"/api/v1/screenshots/{job['result']['screenshots'][0]}")
        assert png.headers["content-type"] == "image/png"
        img = png_image(png.content)
        assert img.size[0] == 900
        meta = http.get(f"/api/v1/screenshots/{job['result']['screenshots'][0]}", params={"include": "metadata"}).json()
        assert meta["base64"].startswith("data:image/png;base64,")


def test_bad_input_is_a_documented_error_naming_the_field(stack, site):
    with stack.client() as http:
        r = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": site.url("/"), "actions": ["require('fs')"]}]}})
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "INVALID_INPUT" and "input.steps.0.actions.0" in err["message"]
        assert err["path"] == "/api/v1/jobs" and err["timestamp"]
        r = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": "file:///etc/passwd"}]}})
        assert r.status_code == 422 and "input.steps.0.url" in r.json()["error"]["message"]
        assert http.get(f"/api/v1/jobs/{uuid.uuid4()}").json()["error"]["code"] == "JOB_NOT_FOUND"
    assert httpx.get(f"{stack.base}/api/v1/jobs/{uuid.uuid4()}").status_code == 401
    assert httpx.get(f"{stack.base}/api/v1/jobs/x", headers={"X-API-Key": "sj_wrong"}).status_code == 401


def test_queued_jobs_run_by_priority(stack, site):
    """Jobs queued while the pool is busy run high, normal, low; the pool runs one at a time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    async def update(**kw) -> None:
        async with get_client() as client:
            await client.update_work_pool("browsers", WorkPoolUpdate(**kw))

    # A paused pool stands for a busy one: jobs queue up, none starts.
    asyncio.run(update(is_paused=True, concurrency_limit=1))
    try:
        with stack.client() as http:
            low = submit(http, [{"url": site.url("/?low")}], priority="low")
            normal = submit(http, [{"url": site.url("/?normal")}], priority="normal")
            high = submit(http, [{"url": site.url("/?high")}], priority="high")
            time.sleep(1)
            assert all(http.get(f"/api/v1/jobs/{j}").json()["status"] == "submitted" for j in (low, normal, high))
            asyncio.run(update(is_paused=False))
            jobs = {name: wait_for(http, jid) for name, jid in (("low", low), ("normal", normal), ("high", high))}
            assert all(j["status"] == "completed" for j in jobs.values())
            order = sorted(jobs, key=lambda n: jobs[n]["startedAt"])
            assert order == ["high", "normal", "low"], {n: jobs[n]["startedAt"] for n in jobs}
            # one at a time: each started after the previous one completed
            assert jobs["normal"]["startedAt"] >= jobs["high"]["completedAt"]
            assert jobs["low"]["startedAt"] >= jobs["normal"]["completedAt"]
    finally:
        asyncio.run(update(is_paused=False, concurrency_limit=4))


def test_cancelling_a_running_job_ends_it_cancelled_and_spares_others(stack, site):
    with stack.client() as http:
        hanging = submit(http, [{"url": site.url("/never?s=30"), "timeout": 60}])
        other = submit(http, [{"url": site.url("/"), "actions": ["page.waitForTimeout(1500)"]}])
        wait_for(http, hanging, statuses=("processing",), timeout=30)
        started = time.monotonic()
        r = http.post(f"/api/v1/jobs/{hanging}/cancel")
        assert r.status_code == 200, r.text
        job = wait_for(http, hanging, statuses=("cancelled", "failed", "completed"), timeout=20)
        assert job["status"] == "cancelled"
        assert time.monotonic() - started < 20  # the page would hang for 30 s: the cancel cut it short
        assert wait_for(http, other)["status"] == "completed"
        # cancelling a finished job is an error in the documented format
        r = http.post(f"/api/v1/jobs/{hanging}/cancel")
        assert r.status_code == 409 and r.json()["error"]["code"] == "JOB_ALREADY_FINISHED"


def test_a_job_scheduled_for_later_waits_then_runs(stack, site):
    run_at = datetime.now(timezone.utc) + timedelta(seconds=6)
    with stack.client() as http:
        job_id = submit(http, [{"url": site.url("/")}], input={"runAt": run_at.isoformat()})
        while datetime.now(timezone.utc) < run_at - timedelta(seconds=0.5):  # waiting, whenever we look before its time
            assert http.get(f"/api/v1/jobs/{job_id}").json()["status"] == "submitted"
            time.sleep(0.3)
        job = wait_for(http, job_id, timeout=40)
        assert job["status"] == "completed"
        assert datetime.fromisoformat(job["startedAt"].replace("Z", "+00:00")) >= run_at - timedelta(milliseconds=200)


@pytest.mark.slow
def test_a_job_whose_worker_dies_runs_again_while_retries_remain_then_ends_worker_lost(stack, site):
    """A dead worker is not the job's fault: the job runs again on the next worker while its own retries last, and
    SOJOURN_WORKER_LOST_RERUNS (1 by default) times more. Here: 1 retry + 1 rerun = 3 runs, then WORKER_LOST; it is
    never left processing."""
    tag = uuid.uuid4().hex
    visits = lambda: [h for h in site.state.requests_to("/never") if h.query.get("t") == [tag]]  # noqa: E731
    with stack.client() as http:
        job_id = submit(http, [{"url": site.url(f"/never?s=60&t={tag}"), "timeout": 120}], options={"retryOnFailure": True, "maxRetries": 1})
        for attempt in (1, 2, 3):
            wait_for(http, job_id, statuses=("processing",), timeout=60)
            deadline = time.monotonic() + 30
            while len(visits()) < attempt and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(visits()) == attempt
            try:
                stack.kill_worker()
            finally:
                stack.start_worker()
        job = wait_for(http, job_id, statuses=("failed", "completed", "cancelled"), timeout=60)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "WORKER_LOST"
        assert len(visits()) == 3
        # the new worker serves jobs
        assert wait_for(http, submit(http, [{"url": site.url("/")}]))["status"] == "completed"


def claimed_by_worker(job_id: str, timeout: float = 20) -> None:
    """Wait until a worker has taken the job's flow run (Pending, marked with the worker's name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    async def claimed() -> None:
        async with get_client() as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])))
                if runs and runs[0].infrastructure_pid:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"no worker took job {job_id} in {timeout} s")

    asyncio.run(claimed())


def test_cancelling_a_job_that_waits_for_its_time(stack, site):
    run_at = datetime.now(timezone.utc) + timedelta(seconds=6)  # inside the worker's prefetch window
    with stack.client() as http:
        tag = uuid.uuid4().hex
        job_id = submit(http, [{"url": site.url(f"/?t={tag}")}], input={"runAt": run_at.isoformat()})
        claimed_by_worker(job_id)  # the worker has prefetched it and waits for its time
        assert http.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        job = wait_for(http, job_id, timeout=15)
        assert job["status"] == "cancelled"
        time.sleep(max(0.0, (run_at - datetime.now(timezone.utc)).total_seconds()) + 1)
        assert http.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"  # and it never ran
        assert not [h for h in site.state.requests_to("/") if h.query.get("t") == [tag]]


def test_long_poll_answers_when_the_job_finishes(stack, site):
    with stack.client() as http:
        job_id = submit(http, [{"url": site.url("/"), "actions": ["page.waitForTimeout(800)"]}])
        job = http.get(f"/api/v1/jobs/{job_id}", params={"wait": 60}, timeout=90).json()
        answered = datetime.now(timezone.utc)
        assert job["status"] == "completed"  # a poll that ran out would answer `processing`
        finished = datetime.fromisoformat(job["completedAt"].replace("Z", "+00:00"))
        assert (answered - finished).total_seconds() < 15  # answered when it finished, not when the 60 s ran out
        # a finished job answers at once, however long the wait asked for
        started = time.monotonic()
        assert http.get(f"/api/v1/jobs/{job_id}", params={"wait": 60}, timeout=90).json()["status"] == "completed"
        assert time.monotonic() - started < 15
        assert http.get(f"/api/v1/jobs/{job_id}", params={"wait": 99}).status_code == 422


@pytest.mark.slow
def test_a_stopping_worker_finishes_short_jobs_and_hands_long_ones_back(stack, site):
    """SOJOURN_WORKER_SHUTDOWN_GRACE is 5 s in the test stack."""
    short_tag, long_tag = uuid.uuid4().hex, uuid.uuid4().hex
    with stack.client() as http:
        long = submit(http, [{"url": site.url(f"/?t={long_tag}"), "actions": ["page.waitForTimeout(9000)"]}])
        wait_for(http, long, statuses=("processing",), timeout=30)
        # Short: 1.5 s of page work, so that with its start and its tail it ends well within the 5 s grace on a loaded
        # machine (3 s of work left too little: a loaded CI run handed it back), and is still running when the stop
        # is asked (it is seen processing at its start).
        short = submit(http, [{"url": site.url(f"/?t={short_tag}"), "actions": ["page.waitForTimeout(1500)"]}])
        wait_for(http, short, statuses=("processing",), timeout=30)
        asked = datetime.now(timezone.utc)
        try:
            assert stack.stop_worker() == 0
            done = http.get(f"/api/v1/jobs/{short}").json()
            assert done["status"] == "completed", done
            # it was still running when the stop was asked: it finished within the grace, not before it
            assert datetime.fromisoformat(done["completedAt"].replace("Z", "+00:00")) > asked, (done["completedAt"], asked)
            assert http.get(f"/api/v1/jobs/{long}").json()["status"] == "submitted"  # handed back, not lost
        finally:
            stack.start_worker()
        assert wait_for(http, long, timeout=60)["status"] == "completed"
    visits = [h for h in site.state.requests_to("/") if h.query.get("t") == [long_tag]]
    assert len(visits) == 2  # run again from the start by the next worker
