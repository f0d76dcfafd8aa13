"""The browsing-agent API at /api/v1, endpoint by endpoint, over HTTP against the running stack."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.conftest import redis_available
from tests import processes
from tests.helpers import Receiver, pdf_text, png_image, until
from tests.test_runtime import submit, wait_for


def created_at(job: dict) -> datetime:
    return datetime.fromisoformat(job["createdAt"].replace("Z", "+00:00"))


def new_key(stack, **body) -> str:
    """A fresh principal's key (tenancy isolates each test's jobs)."""
    with stack.client() as admin:
        r = admin.post("/api/v1/keys", json={"name": "test", **body})
        assert r.status_code == 201, r.text
        return r.json()["key"]


def failing(site) -> list:
    """A step that fails for sure: the page never shows what the action waits for."""
    return [{"url": site.url(f"/?t={uuid.uuid4().hex}"), "actions": ["page.waitForSelector('#absent', {timeout: 300})"]}]


def flaky(site, key: str, fail: int) -> list:
    """A page that fails `fail` times, then works (the action needs what only the working page has)."""
    # The action fails at once on the busy page and never on the working one: no time limit for a loaded machine to
    # miss (a 500 ms wait for the element once failed a retried job whose page had worked).
    check = "() => { if (!document.querySelector('#attempt')) throw new Error('the page was busy'); }"
    return [{"url": site.url(f"/flaky?key={key}&fail={fail}"), "actions": [f'page.evaluate("{check}")']}]


def quick(site, tag: str = "", wait_ms: int = 0, **extra) -> list:
    actions = [f"page.waitForTimeout({wait_ms})"] if wait_ms else []
    return [{"url": site.url(f"/?t={tag or uuid.uuid4().hex}"), "actions": actions, **extra}]


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def read_sse(http: httpx.Client, job_id: str, timeout: float = 60) -> list[tuple[str, dict]]:
    """The job's SSE events, in order, up to and including `complete`."""
    events: list[tuple[str, dict]] = []
    with http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "complete":
                    break
    return events


# ------------------------------------------------------------------ jobs


def test_submit_answers_an_estimate_from_history_and_a_queue_position(stack, site):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    async def pause(flag: bool) -> None:
        async with get_client() as client:
            await client.update_work_pool("browsers", WorkPoolUpdate(is_paused=flag))

    def queue_depth() -> dict[str, float]:
        with stack.client() as admin:  # what the API counts as waiting (the count positions come from)
            text = admin.get("/metrics").text
        return {m.group(1): float(m.group(2)) for m in re.finditer(r'^sojourn_queue_depth\{priority="(\w+)"\} (\S+)$', text, re.M)}

    with stack.client(new_key(stack)) as http:
        done = wait_for(http, submit(http, quick(site, wait_ms=300)))
        assert done["status"] == "completed"
        # Positions count every tenant's waiting jobs: jobs of earlier tests on this stack leaving the queue between
        # two submissions moved the second one ahead of the first (2 then 3+1, in CI). Nothing else waits from here.
        until("the stack's queue empty", lambda: (d := queue_depth()) and not any(d.values()), timeout=90)
        asyncio.run(pause(True))
        try:
            a = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": quick(site)}}).json()
            b = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": quick(site)}}).json()
            h = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": quick(site)}, "priority": "high"}).json()
        finally:
            asyncio.run(pause(False))
        # the estimate is the recent mean run time of this type (there is history now)
        assert isinstance(a["estimatedDuration"], int) and a["estimatedDuration"] > 0
        assert (a["queuePosition"], b["queuePosition"], h["queuePosition"]) == (1, 2, 1)  # a high-priority job goes ahead
        for j in (a, b, h):
            assert wait_for(http, j["jobId"])["status"] == "completed"


def test_the_estimate_is_the_mean_run_time_of_the_completed_jobs_of_its_type(stack, site):
    """`estimatedDuration` is the mean run time of the recent completed jobs of the request's type: after one job
    it is that job's run time (startedAt to completedAt), after two their mean. A fresh API process, so that the
    history is this test's; a type no test before this one in the module runs (a new process also replays the
    last minute of events). A probe that fails at run time reads the estimate without adding to the history."""
    def image_job(goal: str) -> dict:
        return {"type": "browseWebAndReturnImage", "input": {"provideAllValuesInPlainEnglish": goal}}

    def completed_seen() -> float:
        return metric(httpx.get(f"{base}/metrics").text, "sojourn_job_duration_seconds_count", status="completed")

    proc, base = stack.extra_api()
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": new_key(stack)}, timeout=30) as http:
            ran: list[float] = []
            probes = []
            for seconds in (1, 3):
                seen = completed_seen()
                r = http.post("/api/v1/jobs", json=image_job(f"open {site.url('/')} and wait {seconds} seconds"))
                assert r.status_code == 202, r.text
                job = wait_for(http, r.json()["jobId"], timeout=90)
                assert job["status"] == "completed", job
                ran.append((at(job["completedAt"]) - at(job["startedAt"])).total_seconds())
                # the API notes the run time as the final event arrives, in the step that counts it in /metrics
                until("the job's run time was noted", lambda: completed_seen() >= seen + 1, 20, every=0.25)
                probe = http.post("/api/v1/jobs", json=image_job(f"open {site.url('/')} and dance"))
                assert probe.status_code == 202, probe.text
                probes.append(probe.json()["jobId"])
                expected = 1000 * sum(ran) / len(ran)
                assert abs(probe.json()["estimatedDuration"] - expected) <= 20, (probe.json()["estimatedDuration"], ran)
            for job_id in probes:
                assert wait_for(http, job_id)["status"] == "failed"
    finally:
        processes.stop(proc, timeout=30)


def test_an_estimate_is_always_a_number_history_or_not(stack, site):
    """The spec shows `estimatedDuration` as a number: with no history of a type (a fresh stack), it comes from all
    types' history, and with none at all from the request itself, never null."""
    from sojourn.services.jobs import request_estimate_ms
    from sojourn.spec import JobSpec

    two_pages = JobSpec.model_validate({"steps": [{"url": "http://a.test/"}, {"url": "http://b.test/"}], "capture": ["screenshot"]})
    assert request_estimate_ms(two_pages) == 3000  # a second a page, a second for the capture
    assert request_estimate_ms(JobSpec.model_validate({"kind": "agent", "goal": "open a.test", "timeout": 2})) == 2000  # capped by its timeout
    with stack.client(new_key(stack)) as http:
        goal = f"open {site.url('/')} and read the title"
        for body in ({"type": "browse", "input": {"steps": quick(site)}},
                     {"type": "browseWebAndReturnText", "input": {"provideAllValuesInPlainEnglish": goal}},
                     {"type": "browseWebAndReturnImage", "input": {"provideAllValuesInPlainEnglish": goal}}):
            r = http.post("/api/v1/jobs", json=body)
            assert r.status_code == 202 and isinstance(r.json()["estimatedDuration"], int) and r.json()["estimatedDuration"] > 0, r.text
            assert wait_for(http, r.json()["jobId"], timeout=90)["status"] == "completed"


def test_list_filters_sorts_and_paginates_both_ways(stack, site):
    key = new_key(stack)
    with stack.client(key) as http:
        ids = [submit(http, quick(site), priority=p) for p in ("high", "normal", "normal")]
        for j in ids:
            wait_for(http, j)
        bad = submit(http, failing(site))
        assert wait_for(http, bad)["status"] == "failed"

        page1 = http.get("/api/v1/jobs", params={"limit": 2, "offset": 0, "sort": "createdAt"}).json()
        assert page1["total"] == 4 and page1["hasMore"] is True and [j["id"] for j in page1["jobs"]] == ids[:2]
        page2 = http.get("/api/v1/jobs", params={"limit": 2, "offset": 2, "sort": "createdAt"}).json()
        assert [j["id"] for j in page2["jobs"]] == [ids[2], bad] and page2["hasMore"] is False
        by_page = http.get("/api/v1/jobs", params={"page": 2, "size": 2, "sort": "createdAt"}).json()
        assert [j["id"] for j in by_page["jobs"]] == [ids[2], bad] and by_page["page"] == 2
        newest = http.get("/api/v1/jobs").json()
        assert newest["jobs"][0]["id"] == bad  # default sort: -createdAt

        assert [j["id"] for j in http.get("/api/v1/jobs", params={"status": "failed"}).json()["jobs"]] == [bad]
        assert http.get("/api/v1/jobs", params={"status": "completed,failed"}).json()["total"] == 4
        assert [j["id"] for j in http.get("/api/v1/jobs", params={"priority": "high"}).json()["jobs"]] == [ids[0]]
        # dates from the jobs themselves, so that a run across UTC midnight still agrees
        days = sorted({created_at(j).date() for j in page1["jobs"] + page2["jobs"]})
        after = (days[-1] + timedelta(days=1)).isoformat()
        assert http.get("/api/v1/jobs", params={"from": after}).json()["total"] == 0
        assert http.get("/api/v1/jobs", params={"from": days[0].isoformat(), "to": days[-1].isoformat()}).json()["total"] == 4

        r = http.get("/api/v1/jobs", params={"status": "running"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_INPUT" and "`status`" in r.json()["error"]["message"]
        assert http.get("/api/v1/jobs", params={"sort": "-color"}).status_code == 422
        assert http.get("/api/v1/jobs", params={"limit": 1000}).status_code == 422

    # another tenant sees none of them, and cannot read one
    with stack.client(new_key(stack)) as other:
        assert other.get("/api/v1/jobs").json()["total"] == 0
        assert other.get(f"/api/v1/jobs/{ids[0]}").status_code == 404
        assert other.post(f"/api/v1/jobs/{ids[0]}/retry").status_code == 404
        assert other.post(f"/api/v1/jobs/{ids[0]}/cancel").status_code == 404


def test_options_timeout_and_retries_are_honoured(stack, site):
    with stack.client(new_key(stack)) as http:
        slow = submit(http, quick(site, wait_ms=6000), options={"timeout": 2000})
        job = wait_for(http, slow)
        assert job["status"] == "failed" and job["error"]["code"] == "TIMEOUT"

        no_retry = wait_for(http, submit(http, flaky(site, uuid.uuid4().hex, 2)))
        assert no_retry["status"] == "failed"
        key = uuid.uuid4().hex
        job = wait_for(http, submit(http, flaky(site, key, 2), input={"retryDelay": 0.1}, options={"retryOnFailure": True, "maxRetries": 3}))
        assert job["status"] == "completed", job
        assert site.state.counters[key] == 3  # failed twice, then succeeded


def test_retry_makes_a_new_job_and_a_running_job_cannot_be_retried(stack, site):
    with stack.client(new_key(stack)) as http:
        key = uuid.uuid4().hex
        failed = wait_for(http, submit(http, flaky(site, key, 1)))
        assert failed["status"] == "failed"
        r = http.post(f"/api/v1/jobs/{failed['id']}/retry")
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["originalJobId"] == failed["id"] and body["status"] == "submitted" and body["newJobId"] != failed["id"]
        retried = wait_for(http, body["newJobId"])
        assert retried["status"] == "completed", retried  # the page works the second time

        running = submit(http, quick(site, wait_ms=3000))
        wait_for(http, running, statuses=("processing",))
        r = http.post(f"/api/v1/jobs/{running}/retry")
        assert r.status_code == 409 and r.json()["error"]["code"] == "JOB_ALREADY_PROCESSING"
        wait_for(http, running)


def test_cancelling_a_plain_english_job_ends_it_cancelled(stack, site):
    with stack.client(new_key(stack)) as http:
        goal = f"open {site.url('/shop')}, then wait 30 seconds, then return the title"
        r = http.post("/api/v1/jobs", json={"type": "browseWebAndReturnText", "input": {"provideAllValuesInPlainEnglish": goal}})
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        wait_for(http, job_id, statuses=("processing",), timeout=60)
        asked = time.monotonic()
        r = http.post(f"/api/v1/jobs/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled"), r.text
        job = wait_for(http, job_id, timeout=25)  # well before its 30 s wait would have ended
        assert job["status"] == "cancelled", job
        assert time.monotonic() - asked < 25


def test_screenshots_list_get_and_delete(stack, site):
    with stack.client(new_key(stack)) as http:
        job = wait_for(http, submit(http, quick(site), input={"capture": ["screenshot"]}))
        sid = job["result"]["screenshots"][0]
        listing = http.get(f"/api/v1/jobs/{job['id']}/screenshots").json()
        shot = listing["screenshots"][0]
        assert listing["total"] == 1 and shot["id"] == sid and shot["name"].endswith(".png")
        assert shot["size"] > 0 and shot["timestamp"] and shot["step"] and shot["dimensions"]["width"] == 1280
        png_image(http.get(f"/api/v1/screenshots/{sid}").content)
        meta = http.get(f"/api/v1/screenshots/{sid}", params={"include": "metadata"}).json()
        assert meta["url"] == f"/api/v1/screenshots/{sid}/download" and meta["metadata"]["size"] == shot["size"]

        assert http.delete(f"/api/v1/screenshots/{sid}").status_code == 204
        gone = http.get(f"/api/v1/screenshots/{sid}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "SCREENSHOT_NOT_FOUND"
        assert http.get(f"/api/v1/jobs/{job['id']}/screenshots").json()["total"] == 0
        assert http.get(f"/api/v1/jobs/{job['id']}").json()["result"]["screenshots"] == []
        assert http.delete(f"/api/v1/screenshots/{sid}").status_code == 404


def test_a_steps_screenshot_true_saves_a_named_full_page_screenshot_of_that_step(stack, site):
    with stack.client(new_key(stack)) as http:
        steps = [{"url": site.url("/")}, {"url": site.url("/long"), "name": "Open the long page", "screenshot": True}]
        job = wait_for(http, submit(http, steps))
        assert job["status"] == "completed", job
        listing = http.get(f"/api/v1/jobs/{job['id']}/screenshots").json()
        assert listing["total"] == 1 and [s["id"] for s in listing["screenshots"]] == job["result"]["screenshots"]  # the first step took none
        shot = listing["screenshots"][0]
        assert shot["step"] == "Open the long page" and shot["name"].startswith("step-1"), shot
        img = png_image(http.get(f"/api/v1/screenshots/{shot['id']}").content)
        # the whole of /long (3000 px tall), not the 720 px viewport: the page of the step that asked for it
        assert img.size[0] == 1280 and img.size[1] >= 3000, img.size
        assert shot["dimensions"] == {"width": img.size[0], "height": img.size[1]}


def test_every_capture_downloads_by_name_and_screenshots_by_id(stack, site):
    with stack.client(new_key(stack)) as http:
        job = wait_for(http, submit(http, [{"url": site.url("/pdf")}], input={"capture": ["screenshot", "pdf", "html", "text"]}))
        assert job["status"] == "completed", job
        listed = {a["kind"]: a for a in job["result"]["metadata"]["artifacts"]}
        step = job["result"]["metadata"]["steps"][0]  # the spec's casing, camelCase, throughout
        assert step["finalUrl"] == site.url("/pdf") and isinstance(step["durationMs"], int) and "final_url" not in step
        assert {"screenshot", "pdf", "html", "text"} <= set(listed)
        for kind, check in (
            ("pdf", lambda body: "Printable heading" in pdf_text(body)),
            ("html", lambda body: b"<h1>Printable heading</h1>" in body),
            ("text", lambda body: b"quick brown fox" in body),
            ("screenshot", lambda body: png_image(body).size[0] == 1280),
        ):
            a = listed[kind]
            r = http.get(f"/api/v1/jobs/{job['id']}/artifacts/{a['name']}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(a["contentType"]), (kind, r.status_code, r.headers)
            assert len(r.content) == a["size"] and check(r.content), kind
        missing = http.get(f"/api/v1/jobs/{job['id']}/artifacts/nothing.bin")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "ARTIFACT_NOT_FOUND"
        assert http.get(f"/api/v1/jobs/{job['id']}/artifacts/..%2F..%2Fadmin.key").status_code == 404

        sid = job["result"]["screenshots"][0]
        r = http.get(f"/api/v1/screenshots/{sid}/download")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["content-disposition"] == f'attachment; filename="{listed["screenshot"]["name"]}"'
        assert r.content == http.get(f"/api/v1/jobs/{job['id']}/artifacts/{listed['screenshot']['name']}").content
    with stack.client(new_key(stack)) as other:  # another tenant gets neither
        assert other.get(f"/api/v1/jobs/{job['id']}/artifacts/{listed['pdf']['name']}").status_code == 404
        assert other.get(f"/api/v1/screenshots/{sid}/download").status_code == 404


# ------------------------------------------------------------------ real-time


def test_sse_sends_progress_screenshot_and_complete(stack, site):
    with stack.client(new_key(stack)) as http:
        steps = [{"url": site.url(f"/?s={i}"), "actions": ["page.waitForTimeout(700)"]} for i in range(3)]
        job_id = submit(http, steps, input={"capture": ["screenshot"]})
        events = read_sse(http, job_id)
        names = [n for n, _ in events]
        assert names[-1] == "complete" and events[-1][1]["status"] == "completed"
        assert "progress" in names and "screenshot" in names, names
        progress = [d for n, d in events if n == "progress"]
        assert all("step" in d and "percentage" in d for d in progress)
        percentages = [d["percentage"] for d in progress]
        assert percentages == sorted(percentages) and percentages[-1] == 100, percentages  # never backwards, ends done
        assert len(set(percentages)) >= 2, percentages  # it moved while the stream watched
        shot = next(d for n, d in events if n == "screenshot")
        assert shot["screenshotId"] in events[-1][1]["result"]["screenshots"]

        # a late subscriber to a finished job gets `complete` at once and the stream ends
        with http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=httpx.Timeout(10, read=12)) as r:
            body = r.read().decode()  # a stream left open would time out here: its first keep-alive comes after 15 s
        assert body.startswith("event: complete") and body.count("event: ") == 1
        assert http.get(f"/api/v1/jobs/{uuid.uuid4()}/events").status_code == 404


def test_sse_sends_status_events_as_the_job_moves(stack, site):
    """A job due in a few seconds: the stream opens on its `status` (submitted), then a `status` event says it
    runs (state Running) before it completes."""
    with stack.client(new_key(stack)) as http:
        due = (datetime.now(timezone.utc) + timedelta(seconds=3)).isoformat()
        job_id = submit(http, quick(site, wait_ms=500), input={"runAt": due})
        events = read_sse(http, job_id)
        assert events[0] == ("status", {"status": "submitted"}), events[:3]
        statuses = [(i, d) for i, (n, d) in enumerate(events) if n == "status"]
        running = [i for i, d in statuses if d == {"status": "processing", "state": "Running"}]
        assert running and running[0] < len(events) - 1 and events[-1][0] == "complete", events
        assert events[-1][1]["status"] == "completed"
        order = ["submitted", "processing"]
        seen = [order.index(d["status"]) for _, d in statuses]
        assert seen == sorted(seen), statuses  # never back to submitted once it ran


def test_websocket_subscribe_follow_and_unsubscribe(stack, site):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    key = new_key(stack)
    with stack.client(key) as http:
        finished = wait_for(http, submit(http, quick(site)))
        job_id = submit(http, [{"url": site.url(f"/?s={i}"), "actions": ["page.waitForTimeout(600)"]} for i in range(3)])
        ws_url = stack.base.replace("http://", "ws://") + "/api/v1/jobs/stream"
        with connect(ws_url, additional_headers={"X-API-Key": key}, open_timeout=10) as ws:
            ws.send(json.dumps({"action": "subscribe", "jobIds": [finished["id"], job_id, str(uuid.uuid4())]}))
            got: list[dict] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv(timeout=30))
                got.append(msg)
                if msg.get("type") == "complete" and msg.get("jobId") == job_id:
                    break
            by_type = [(m["type"], m.get("jobId")) for m in got]
            assert ("complete", finished["id"]) == by_type[0]  # the late subscriber gets the current state first
            errors = [m for m in got if m["type"] == "error"]
            assert len(errors) == 1 and errors[0]["error"]["code"] == "JOB_NOT_FOUND"
            assert ("progress", job_id) in by_type
            assert got[-1]["data"]["status"] == "completed"
            ws.send(json.dumps({"action": "unsubscribe", "jobIds": [job_id]}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "unsubscribed", "jobIds": [finished["id"]]}
            ws.send("not json")
            assert json.loads(ws.recv(timeout=10))["error"]["code"] == "INVALID_INPUT"
    # a browser, which cannot set headers on a WebSocket, passes its key as ?apiKey=
    with connect(f"{ws_url}?apiKey={key}", open_timeout=10) as ws:
        ws.send(json.dumps({"action": "subscribe", "jobIds": [finished["id"]]}))
        msg = json.loads(ws.recv(timeout=10))
        assert (msg["type"], msg["jobId"], msg["data"]["status"]) == ("complete", finished["id"], "completed")
    # no key or a wrong one: the handshake itself is refused, nothing is accepted
    for url in (ws_url, f"{ws_url}?apiKey=sk_wrong"):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=10)
        assert refused.value.response.status_code == 403


# ------------------------------------------------------------------ batch


def test_batch_runs_at_most_max_concurrent_jobs_at_once(stack, site):
    with stack.client(new_key(stack)) as http:
        jobs = [{"type": "browse", "input": {"steps": quick(site, wait_ms=800)}} for _ in range(4)]
        r = http.post("/api/v1/jobs/batch", json={"jobs": jobs, "options": {"parallel": True, "maxConcurrent": 2}})
        assert r.status_code == 202, r.text
        batch = r.json()
        assert batch["status"] == "submitted" and len(batch["jobIds"]) == 4 and batch["batchId"]
        done = [wait_for(http, j, timeout=90) for j in batch["jobIds"]]
        assert all(j["status"] == "completed" for j in done)
        # never more than two running at any moment
        spans = [(j["startedAt"], j["completedAt"]) for j in done]
        for start, _ in spans:
            overlapping = sum(1 for s, e in spans if s <= start < e)
            assert overlapping <= 2, spans
        # the first two started before the last two
        assert max(s for s, _ in spans[:2]) < min(s for s, _ in spans[2:])
        view = http.get(f"/api/v1/jobs/batch/{batch['batchId']}").json()
        assert view["status"] == "completed" and view["counts"] == {"completed": 4} and view["maxConcurrent"] == 2
        assert [j["id"] for j in view["jobs"]] == batch["jobIds"]

        r = http.post("/api/v1/jobs/batch", json={"jobs": [jobs[0], {"type": "browse", "input": {"steps": []}}]})
        assert r.status_code == 422 and "jobs.1.input" in r.json()["error"]["message"]
    with stack.client(new_key(stack)) as other:
        assert other.get(f"/api/v1/jobs/batch/{batch['batchId']}").status_code == 404


def test_a_batch_with_parallel_false_runs_its_jobs_one_after_another(stack, site):
    with stack.client(new_key(stack)) as http:
        jobs = [{"type": "browse", "input": {"steps": quick(site, wait_ms=500)}} for _ in range(3)]
        r = http.post("/api/v1/jobs/batch", json={"jobs": jobs, "options": {"parallel": False}})
        assert r.status_code == 202, r.text
        assert r.json()["maxConcurrent"] == 1
        done = [wait_for(http, j, timeout=90) for j in r.json()["jobIds"]]
        assert [j["status"] for j in done] == ["completed"] * 3, done
        spans = [(at(j["startedAt"]), at(j["completedAt"])) for j in done]  # in submission order
        for (_, ended), (started, _) in zip(spans, spans[1:]):
            assert ended <= started, spans  # each starts once the one before it has ended


# ------------------------------------------------------------------ system and analytics


def test_system_status_and_analytics(stack, site):
    with stack.client(new_key(stack)) as http:
        ok = wait_for(http, submit(http, quick(site, wait_ms=200)))
        bad = wait_for(http, submit(http, failing(site)))
        assert (ok["status"], bad["status"]) == ("completed", "failed")
        status = http.get("/api/v1/system/status").json()
        assert status["status"] == "healthy"
        assert status["queue"]["completed"] == 1 and status["queue"]["failed"] == 1 and status["queue"]["pending"] == 0
        assert status["workers"]["total"] >= 1 and status["workers"]["active"] + status["workers"]["idle"] == status["workers"]["total"]
        assert status["performance"]["successRate"] == 0.5
        assert status["performance"]["averageJobDuration"] >= 200
        assert status["performance"]["throughput"] == "2 jobs/hour"

        first, last = sorted(created_at(j) for j in (ok, bad))
        stats = http.get("/api/v1/analytics/jobs", params={"from": first.date().isoformat(), "to": last.date().isoformat()}).json()
        s = stats["statistics"]
        assert stats["period"]["to"].endswith("23:59:59.999999Z")
        assert (s["totalJobs"], s["successfulJobs"], s["failedJobs"]) == (2, 1, 1)
        assert s["mostCommonErrors"] == [{"code": bad["error"]["code"], "count": 1, "percentage": 100.0}]
        # one job each in two hours when the test crosses the top of an hour: either is the peak
        assert s["peakHour"] in {f"{t.hour:02d}:00-{(t.hour + 1) % 24:02d}:00" for t in (first, last)}
        assert http.get("/api/v1/analytics/jobs", params={"from": "yesterday"}).status_code == 422


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) and (not labels or all(f'{k}="{v}"' in line for k, v in labels.items())):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def samples(text: str, name: str) -> set[float]:
    """The values of every labelled sample of one metric."""
    return {float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")}


def test_metrics_export_jobs_durations_requests_and_browser_pool(stack, site):
    before = httpx.get(f"{stack.base}/metrics").text
    with stack.client() as http:
        ok, bad = submit(http, quick(site)), submit(http, failing(site))
        assert wait_for(http, ok)["status"] == "completed" and wait_for(http, bad)["status"] == "failed"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the API counts a job when its final event arrives
            text = httpx.get(f"{stack.base}/metrics").text
            if (metric(text, "sojourn_jobs_finished_total", status="failed") > metric(before, "sojourn_jobs_finished_total", status="failed")
                    and "sojourn_browser_contexts_open{" in text):
                break
            time.sleep(0.5)
    grew = lambda name, **labels: metric(text, name, **labels) - metric(before, name, **labels)  # noqa: E731
    assert grew("sojourn_jobs_finished_total", status="completed") >= 1 and grew("sojourn_jobs_finished_total", status="failed") >= 1
    assert grew("sojourn_job_duration_seconds_count", status="completed") >= 1
    # the API's own answer times: exactly this test's two submissions
    assert grew("sojourn_api_request_seconds_count", method="POST", route="/api/v1/jobs", status="202") == 2
    assert metric(text, "sojourn_api_request_seconds_bucket", method="POST", route="/api/v1/jobs", status="202", le="60.0") >= 2
    # gauges, at values known now: the job counts (read from Prefect, at most every 5 s) have grown; nothing waits
    def scrape_until(ok, what: str) -> str:
        return until(what, lambda: (lambda t: t if ok(t) else None)(httpx.get(f"{stack.base}/metrics").text), 20, every=0.25)

    text = scrape_until(lambda t: all(metric(t, "sojourn_jobs", status=s) > metric(before, "sojourn_jobs", status=s)
                                      for s in ("completed", "failed")), "sojourn_jobs never counted the jobs")
    assert all(f'sojourn_queue_depth{{priority="{p}"}}' in text for p in ("high", "normal", "low"))
    # (the depth lags: /metrics reads it at most every 5 s, and then gets the count of the read before, see the report)
    scrape_until(lambda t: [metric(t, "sojourn_queue_depth", priority=p) for p in ("high", "normal", "low")] == [0, 0, 0],
                 "the queue depth never came back to 0 with nothing waiting")
    # the worker's own report (each heartbeat): its slots are the stack's 4; from its next report on, no job runs
    # and no browser context is open
    text = scrape_until(lambda t: (metric(t, "sojourn_workers_reporting") >= 1 and samples(t, "sojourn_worker_running_jobs") == {0.0}
                                   and samples(t, "sojourn_browser_contexts_open") == {0.0}), "the worker never reported idle")
    assert samples(text, "sojourn_worker_slots") == {4.0}, text[-2000:]
    assert len([line for line in text.splitlines() if line.startswith("sojourn_worker_slots{")]) == metric(text, "sojourn_workers_reporting")
    assert min(samples(text, "sojourn_browser_launches")) >= 1


# ------------------------------------------------------------------ templates


def test_templates_fill_variables_and_name_a_missing_one(stack, site):
    key = new_key(stack)
    with stack.client(key) as http:
        tag = uuid.uuid4().hex
        r = http.post("/api/v1/templates", json={
            "name": "Visit a page",
            "type": "browse",
            "defaultInput": {"steps": [{"url": site.url("/?t={tag}&q={query}")}], "capture": ["text"]},
            "variables": ["tag", "query"],
        })
        assert r.status_code == 201, r.text
        tid = r.json()["templateId"]
        assert r.json()["name"] == "Visit a page"
        assert [t["templateId"] for t in http.get("/api/v1/templates").json()["templates"]] == [tid]
        assert http.get(f"/api/v1/templates/{tid}").json()["variables"] == ["tag", "query"]

        r = http.post(f"/api/v1/templates/{tid}/execute", json={"variables": {"tag": tag}})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == "INVALID_INPUT" and "`query`" in err["message"] and err["details"]["missing"] == ["query"]

        r = http.post(f"/api/v1/templates/{tid}/execute", json={"variables": {"tag": tag, "query": "palma"}})
        assert r.status_code == 202 and r.json()["templateId"] == tid
        assert wait_for(http, r.json()["jobId"])["status"] == "completed"
        hits = [h for h in site.state.requests_to("/") if h.query.get("t") == [tag]]
        assert hits and hits[0].query["q"] == ["palma"]

    with stack.client(new_key(stack)) as other:
        assert other.get(f"/api/v1/templates/{tid}").status_code == 404
        assert other.post(f"/api/v1/templates/{tid}/execute", json={"variables": {}}).status_code == 404
        assert other.delete(f"/api/v1/templates/{tid}").status_code == 404
    with stack.client(key) as http:
        assert http.delete(f"/api/v1/templates/{tid}").status_code == 204
        assert http.get(f"/api/v1/templates/{tid}").json()["error"]["code"] == "TEMPLATE_NOT_FOUND"


# ------------------------------------------------------------------ webhooks


def cancel_while_running(http: httpx.Client, job_id: str) -> str:
    """Cancel a job once it runs, and wait until it has ended cancelled."""
    wait_for(http, job_id, statuses=("processing",))
    r = http.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled"), r.text
    assert wait_for(http, job_id)["status"] == "cancelled"
    return job_id


def test_webhooks_are_signed_retried_and_logged(stack, site):
    receiver = Receiver(fail_first=1)
    secret = "s3cret-" + uuid.uuid4().hex
    with stack.client(new_key(stack)) as http:
        r = http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.completed", "job.failed"], "secret": secret})
        assert r.status_code == 201, r.text
        hook = r.json()
        assert "secret" not in hook  # a secret the caller chose is never echoed
        job = wait_for(http, submit(http, quick(site)))
        receiver.wait(1)
        headers, body = receiver.received[0]
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-sojourn-signature"] == expected
        payload = json.loads(body)
        assert payload["event"] == "job.completed" and payload["data"]["id"] == job["id"] and payload["data"]["status"] == "completed"
        assert headers["x-sojourn-event-id"] == payload["id"] and headers["x-sojourn-timestamp"].isdigit()
        log = http.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        assert log[0]["status"] == "delivered" and log[0]["attempts"] == 2 and log[0]["jobId"] == job["id"]
        # each attempt, in order: refused once by the receiver, then taken
        assert [(a["attempt"], a["statusCode"], a["error"]) for a in log[0]["attemptLog"]] == [(1, 500, "receiver answered 500"), (2, 200, None)]

        # a failed job reaches the hook subscribed to job.failed, with its error
        bad = wait_for(http, submit(http, failing(site)))
        receiver.wait(2)
        payload = json.loads(receiver.received[1][1])
        assert payload["event"] == "job.failed" and payload["data"]["id"] == bad["id"]
        assert payload["data"]["status"] == "failed" and payload["data"]["error"]["code"] == bad["error"]["code"]

        # a cancelled job reaches only the hooks subscribed to job.cancelled
        on_cancel = Receiver()
        generated = http.post("/api/v1/webhooks", json={"url": on_cancel.url, "events": ["job.cancelled"]}).json()
        assert generated["secret"].startswith("whsec_")  # none given: one is generated and shown once
        cancelled = cancel_while_running(http, submit(http, quick(site, wait_ms=20000)))
        on_cancel.wait(1)
        headers, body = on_cancel.received[0]
        assert headers["x-sojourn-signature"] == "sha256=" + hmac.new(generated["secret"].encode(), body, hashlib.sha256).hexdigest()
        payload = json.loads(body)
        assert payload["event"] == "job.cancelled" and payload["data"]["id"] == cancelled and payload["data"]["status"] == "cancelled"
        assert len(receiver.received) == 2  # the first hook is not subscribed to job.cancelled
        assert all(d["jobId"] != cancelled for d in http.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"])

        # a deleted hook is gone and gets nothing more; a hook still subscribed shows the event was sent
        assert http.delete(f"/api/v1/webhooks/{generated['id']}").status_code == 204
        assert [w["id"] for w in http.get("/api/v1/webhooks").json()["webhooks"]] == [hook["id"]]
        assert http.get(f"/api/v1/webhooks/{generated['id']}/deliveries").status_code == 404
        witness = Receiver()
        http.post("/api/v1/webhooks", json={"url": witness.url, "events": ["job.cancelled", "job.completed"]})
        again = cancel_while_running(http, submit(http, quick(site, wait_ms=20000)))
        witness.wait(1)
        assert json.loads(witness.received[0][1])["data"]["id"] == again
        # A later event's delivery reaching the witness means the deliveries owed for `again` have all been sent
        # (the outbox sends one batch after another), a wrong one to the deleted hook included.
        later = wait_for(http, submit(http, quick(site)))
        witness.wait(2)
        assert json.loads(witness.received[1][1])["data"]["id"] == later["id"]
        assert len(on_cancel.received) == 1 and on_cancel.calls == 1

        r = http.post("/api/v1/webhooks", json={"url": "ftp://example.com/x"})
        assert r.status_code == 422 and "url" in r.json()["error"]["message"]
    with stack.client(new_key(stack)) as other:
        assert other.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 404
        assert other.get("/api/v1/webhooks").json()["total"] == 0


class Refusing:
    """A webhook receiver that answers 503 to every delivery and notes when each arrived, with its headers."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        self.calls: list[tuple[float, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append((time.monotonic(), {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_webhook_deliveries_back_off_and_give_up_after_max_attempts(stack, site, tmp_path):
    """SOJOURN_WEBHOOK_MAX_ATTEMPTS=4, SOJOURN_WEBHOOK_RETRY_SECONDS=0.5: a receiver that always fails gets the
    delivery 4 times, at least 0.5, 1 and 2 s apart, then the log says failed and nothing more is sent. (An API with
    its own facade database, so that only it owes this delivery.)"""
    receiver = Refusing()
    proc, base = stack.extra_api(SOJOURN_WEBHOOK_MAX_ATTEMPTS="4", SOJOURN_WEBHOOK_RETRY_SECONDS="0.5",
                                 SOJOURN_DATABASE_URL=f"sqlite:///{tmp_path / 'facade.db'}")
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": stack.admin_key}, timeout=30) as admin:
            r = admin.post("/api/v1/keys", json={"name": "hooks"})
            assert r.status_code == 201, r.text
            key = r.json()["key"]
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as http:
            hook = http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.completed"]}).json()
            job = wait_for(http, submit(http, quick(site)))
            assert job["status"] == "completed", job

            def given_up():
                log = http.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
                return log if log and log[0]["status"] == "failed" else None

            (delivery,) = until("the delivery was given up", given_up, 40, every=0.25)
            assert delivery["jobId"] == job["id"] and delivery["attempts"] == 4 and delivery["lastStatusCode"] == 503
            assert "503" in delivery["lastError"] and delivery["nextAttemptAt"] is None and delivery["deliveredAt"] is None
            calls = list(receiver.calls)  # failed is final: these are all the attempts there will be
            assert [h["x-sojourn-attempt"] for _, h in calls] == ["1", "2", "3", "4"]
            assert {h["x-sojourn-event-id"] for _, h in calls} == {delivery["id"]}  # one event, retried
            gaps = [b - a for (a, _), (b, _) in zip(calls, calls[1:])]
            for n, gap in enumerate(gaps):  # 0.5 s, doubling (the clock of the receiver, not the API's: 50 ms slack)
                assert gap >= 0.5 * 2 ** n - 0.05, gaps
    finally:
        processes.stop(proc, timeout=30)
        receiver.server.shutdown()


@pytest.mark.slow
def test_a_webhook_owed_while_the_api_was_down_is_delivered_after_it_restarts(stack, site):
    receiver = Receiver()
    key = new_key(stack)
    with stack.client(key) as http:
        http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.completed"], "secret": "x" * 16})
        job_id = submit(http, quick(site, wait_ms=4000))
        wait_for(http, job_id, statuses=("processing",))
    stack.stop_api()
    try:
        async def until_done() -> None:
            from prefect.client.orchestration import get_client
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

            async with get_client() as client:
                for _ in range(120):
                    runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])))
                    if runs and runs[0].state and runs[0].state.is_final():
                        return
                    await asyncio.sleep(0.5)

        asyncio.run(until_done())
        assert receiver.received == []  # nobody was there to send it
    finally:
        stack.start_api()
    receiver.wait(1, timeout=60)
    assert json.loads(receiver.received[0][1])["data"]["id"] == job_id


# ------------------------------------------------------------------ keys, limits, errors


def test_keys_have_scopes_are_shown_once_and_can_be_revoked(stack, site):
    with stack.client() as admin:
        r = admin.post("/api/v1/keys", json={"name": "reader", "scopes": ["jobs:read"]})
        assert r.status_code == 201
        created = r.json()
        listing = admin.get("/api/v1/keys").json()["keys"]
        row = next(k for k in listing if k["id"] == created["id"])
        assert "key" not in row and row["scopes"] == ["jobs:read"]
        assert created["key"] not in json.dumps(listing)
        assert admin.post("/api/v1/keys", json={"name": "x", "scopes": ["root"]}).status_code == 422

    with stack.client(created["key"]) as reader:
        assert reader.get("/api/v1/jobs").status_code == 200
        r = reader.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": quick(site)}})
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
        assert reader.get("/api/v1/keys").status_code == 403
    with stack.client() as admin:
        assert admin.delete(f"/api/v1/keys/{created['id']}").status_code == 204
    with stack.client(created["key"]) as reader:
        assert reader.get("/api/v1/jobs").status_code == 401
    # Bearer works as well as X-API-Key
    assert httpx.get(f"{stack.base}/api/v1/jobs", headers={"Authorization": f"Bearer {stack.admin_key}"}).status_code == 200


def test_the_admin_sees_every_tenants_jobs_batches_templates_and_webhooks(stack, site):
    tenant_key = new_key(stack)
    with stack.client(tenant_key) as tenant:
        r = tenant.post("/api/v1/jobs/batch", json={"jobs": [{"type": "browse", "input": {"steps": quick(site), "capture": ["screenshot"]}}]})
        assert r.status_code == 202, r.text
        batch_id, (job_id,) = r.json()["batchId"], r.json()["jobIds"]
        job = wait_for(tenant, job_id)
        assert job["status"] == "completed", job
        template = tenant.post("/api/v1/templates", json={"name": "t", "type": "browse", "defaultInput": {"steps": quick(site)}}).json()
        hook = tenant.post("/api/v1/webhooks", json={"url": Receiver().url, "events": ["job.failed"]}).json()
    with stack.client() as admin:
        read = admin.get(f"/api/v1/jobs/{job_id}")
        assert read.status_code == 200
        assert {k: read.json()[k] for k in ("id", "status", "result", "createdAt")} == {k: job[k] for k in ("id", "status", "result", "createdAt")}
        assert job_id in [j["id"] for j in admin.get("/api/v1/jobs", params={"limit": 100}).json()["jobs"]]  # the newest job of all
        shots = admin.get(f"/api/v1/jobs/{job_id}/screenshots").json()
        assert shots["total"] == 1 and png_image(admin.get(f"/api/v1/screenshots/{shots['screenshots'][0]['id']}").content)
        batch = admin.get(f"/api/v1/jobs/batch/{batch_id}")
        assert batch.status_code == 200 and [j["id"] for j in batch.json()["jobs"]] == [job_id]
        assert admin.get(f"/api/v1/templates/{template['templateId']}").json()["templateId"] == template["templateId"]
        assert hook["id"] in [w["id"] for w in admin.get("/api/v1/webhooks").json()["webhooks"]]
        assert admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 200
    with stack.client(new_key(stack)) as other:  # where another tenant sees none of it
        assert other.get(f"/api/v1/jobs/{job_id}").status_code == 404
        assert other.get(f"/api/v1/jobs/batch/{batch_id}").status_code == 404


def test_a_keys_url_allow_list_limits_where_its_jobs_go(stack, site):
    key = new_key(stack, urlAllowList=["localhost"])
    with stack.client(key) as http:
        r = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": site.url("/")}]}})
        assert r.status_code == 403 and r.json()["error"]["code"] == "URL_NOT_ALLOWED"
        assert "steps.0.url" in r.json()["error"]["message"]
        job = wait_for(http, submit(http, [{"url": site.url("/", host="localhost")}]))
        assert job["status"] == "completed"


def test_rate_limit_per_key_with_headers_and_429(stack):
    key = new_key(stack, rateLimit="5/minute")
    with stack.client(key) as http:
        answers = [http.get("/api/v1/jobs") for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        assert [int(r.headers["X-RateLimit-Remaining"]) for r in answers] == [4, 3, 2, 1, 0]
        assert answers[0].headers["X-RateLimit-Limit"] == "5"
        assert int(answers[0].headers["X-RateLimit-Reset"]) > time.time()
        r = http.get("/api/v1/jobs")
        assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED" and int(r.headers["Retry-After"]) >= 1
    with stack.client() as admin:  # other keys are not affected
        assert admin.get("/api/v1/jobs", params={"limit": 1}).status_code == 200


def test_rate_limits_are_shared_by_api_processes_through_redis(stack):
    if not redis_available():  # (under CI=true a missing Redis fails instead)
        pytest.skip("no Redis on 127.0.0.1:6379 on this machine")
    key = new_key(stack, rateLimit="6/minute")
    proc, second = stack.extra_api()
    try:
        codes = []
        for i in range(7):
            base = stack.base if i % 2 == 0 else second
            codes.append(httpx.get(f"{base}/api/v1/jobs", headers={"X-API-Key": key}).status_code)
        assert codes == [200] * 6 + [429]
    finally:
        processes.stop(proc, timeout=20)


def test_errors_use_the_standard_body_everywhere(stack):
    with stack.client() as http:
        for r, status, code in (
            (http.get("/api/v1/nowhere"), 404, "NOT_FOUND"),
            (http.delete("/api/v1/jobs"), 405, "METHOD_NOT_ALLOWED"),
            (http.post("/api/v1/jobs", json={"type": "fly"}), 422, "INVALID_INPUT"),
            (http.post("/api/v1/jobs", content=b"x" * 1_200_000, headers={"Content-Type": "application/json"}), 413, "PAYLOAD_TOO_LARGE"),
            (http.get(f"/api/v1/jobs/{uuid.uuid4()}"), 404, "JOB_NOT_FOUND"),
        ):
            assert r.status_code == status, (r.status_code, r.text)
            err = r.json()["error"]
            assert err["code"] == code and err["message"] and err["timestamp"] and err["path"].startswith("/api/v1/")
            assert isinstance(err["details"], dict)
    assert httpx.get(f"{stack.base}/api/docs").status_code == 200
    spec = httpx.get(f"{stack.base}/api/openapi.json").json()
    assert "/api/v1/jobs/batch" in spec["paths"] and "/api/v1/templates/{template_id}/execute" in spec["paths"]


async def service_with_room(client, room: int, site):
    """JobService in this process, against the session's Prefect server, with room for `room` more queued jobs,
    and a job spec due in an hour (it waits in the queue)."""
    from sojourn.services.events import EventHub
    from sojourn.services.jobs import JobService
    from sojourn.blocks.artifact_store import ArtifactStore
    from sojourn.settings import Settings
    from sojourn.spec import JobSpec

    svc = JobService(Settings(), client, EventHub(), ArtifactStore.from_settings())
    await svc.start()
    waiting = sum((await svc.waiting.get()).values())
    svc.settings = Settings(max_queued_jobs=waiting + room)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    return svc, JobSpec.model_validate({"steps": [{"url": site.url("/")}], "run_at": later.isoformat()})


async def test_submissions_past_the_queue_limit_answer_queue_full(prefect_server, site):
    from prefect.client.orchestration import get_client

    from sojourn.services.principals import Principal
    from sojourn.services.service_error import ServiceError

    async with get_client() as client:
        svc, spec = await service_with_room(client, 2, site)
        who = Principal("queue-test", frozenset({"jobs:write", "jobs:read"}))
        jobs = [await svc.submit(spec, who, dialect="native") for _ in range(2)]
        with pytest.raises(ServiceError) as err:
            await svc.submit(spec, who, dialect="native")
        assert err.value.status == 503 and err.value.code == "QUEUE_FULL" and err.value.headers["Retry-After"]
        for job in jobs:
            assert (await svc.cancel(job.id, who)).status == "cancelled"


async def test_a_batch_refused_halfway_leaves_no_job_behind(prefect_server, site):
    """The queue has room for the batch's first job only: none of its jobs is accepted, so nothing waits forever."""
    from prefect.client.orchestration import get_client

    from sojourn.services.principals import Principal
    from sojourn.services.batches import BatchService
    from sojourn.services.service_error import ServiceError

    async with get_client() as client:
        svc, spec = await service_with_room(client, 1, site)
        who = Principal("batch-refused-" + uuid.uuid4().hex[:8], frozenset({"jobs:write", "jobs:read"}))
        with pytest.raises(ServiceError) as err:
            await BatchService(svc).submit([(spec, {}), (spec, {}), (spec, {})], who, 1)
        assert err.value.code == "QUEUE_FULL"
        views, total = await svc.list(who)
        assert total == 0 and views == []


def test_results_are_deleted_after_the_retention_time(stack, site, tmp_path):
    """SOJOURN_RESULT_RETENTION_SECONDS: a job stays readable that long after it ended; then the sweep deletes its
    captures, its flow run and its ledger row, and every read answers not found. (An API with its own facade database,
    so that its sweep touches only the jobs of this test.)"""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    async def runs_of(job_id: str) -> list:
        async with get_client() as client:
            return await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])))

    proc, base = stack.extra_api(SOJOURN_RESULT_RETENTION_SECONDS="6", SOJOURN_DATABASE_URL=f"sqlite:///{tmp_path / 'facade.db'}")
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": stack.admin_key}, timeout=30) as http:
            job = wait_for(http, submit(http, quick(site), input={"capture": ["screenshot"]}))
            sid = job["result"]["screenshots"][0]
            assert png_image(http.get(f"/api/v1/screenshots/{sid}").content)  # readable once it has ended
            stored = stack.tmp / "home" / "artifacts" / "jobs" / job["id"]
            assert (stored / "manifest.json").exists() and len(asyncio.run(runs_of(job["id"]))) == 1
            ended = datetime.fromisoformat(job["completedAt"].replace("Z", "+00:00"))

            deadline = time.monotonic() + 40
            while http.get(f"/api/v1/jobs/{job['id']}").status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            gone = http.get(f"/api/v1/jobs/{job['id']}")
            assert (datetime.now(timezone.utc) - ended).total_seconds() >= 6  # not before its time
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "JOB_NOT_FOUND"
            assert http.get(f"/api/v1/screenshots/{sid}").status_code == 404
            deadline = time.monotonic() + 20  # the sweep deletes everything it had
            while (stored.exists() or asyncio.run(runs_of(job["id"]))) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not stored.exists() and asyncio.run(runs_of(job["id"])) == []
            assert job["id"] not in [j["id"] for j in http.get("/api/v1/jobs").json()["jobs"]]
    finally:
        processes.stop(proc, timeout=30)


def test_pressure_answers_browserless_shape_and_moves_as_jobs_are_accepted_and_refused(stack, site, tmp_path):
    """GET /pressure: the cluster's figures in browserless's shape. An API of its own (its own facade database, the
    session's Prefect and worker) with room for two more waiting jobs: the queue fills, isAvailable turns false with
    reason `full`, a third submission is refused and counted in recentlyRejected, a cancel makes room again."""
    from prefect.client.orchestration import get_client

    from sojourn.services.jobs import queued_filter

    async def waiting_in_prefect() -> int:
        async with get_client() as client:
            return await client.count_flow_runs(flow_run_filter=queued_filter())

    # nothing of earlier tests is on its way into or out of the queue (their waiting jobs are due hours from now)
    def settled() -> tuple[int] | None:
        n = asyncio.run(waiting_in_prefect())
        time.sleep(1)
        return (n,) if asyncio.run(waiting_in_prefect()) == n else None

    q0 = until("a settled queue", settled, timeout=30)[0]
    # (CPU and memory never count as overloaded here: a loaded test machine is at 100 % CPU, which is not this test's matter)
    proc, base = stack.extra_api(SOJOURN_MAX_QUEUED_JOBS=str(q0 + 2), SOJOURN_DATABASE_URL=f"sqlite:///{tmp_path / 'facade.db'}",
                                 SOJOURN_PRESSURE_MAX_CPU_PERCENT="100", SOJOURN_PRESSURE_MAX_MEMORY_PERCENT="100")
    try:
        assert httpx.get(f"{base}/pressure").status_code == 401
        with httpx.Client(base_url=base, headers={"X-API-Key": stack.admin_key}, timeout=30) as http:

            def pressure() -> dict:
                return httpx.get(f"{base}/pressure", params={"token": stack.admin_key}, timeout=30).json()["pressure"]

            p = pressure()
            assert set(p) == {"cpu", "date", "isAvailable", "maxConcurrent", "maxQueued", "memory", "message", "queued", "reason",
                              "recentlyRejected", "running"}
            assert abs(p["date"] / 1000 - time.time()) < 60 and p["maxQueued"] == q0 + 2
            assert (p["queued"], p["isAvailable"], p["reason"], p["message"], p["recentlyRejected"]) == (q0, True, "", "", 0)
            # the session's worker reports its slots and its machine's load with its heartbeat
            p = until("the worker's report", lambda: (p := pressure())["maxConcurrent"] and p["cpu"] is not None and p)
            assert p["maxConcurrent"] == 4 and 0 <= p["cpu"] <= 100 and 0 < p["memory"] <= 100, p

            running = submit(http, quick(site, wait_ms=4000))
            wait_for(http, running, statuses=("processing",))
            until("the running job counted", lambda: pressure()["running"] >= 1, timeout=10)
            wait_for(http, running)

            later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
            first = submit(http, quick(site), input={"runAt": later})
            until("one more queued", lambda: pressure()["queued"] == q0 + 1, timeout=10)
            assert pressure()["isAvailable"] is True
            second = submit(http, quick(site), input={"runAt": later})
            p = until("the queue full", lambda: (p := pressure())["queued"] == q0 + 2 and p, timeout=10)
            assert (p["isAvailable"], p["reason"]) == (False, "full") and "full" in p["message"], p
            refused = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": quick(site), "runAt": later}})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "QUEUE_FULL"
            until("the refusal counted", lambda: pressure()["recentlyRejected"] == 1, timeout=10)
            # the same figures for Prometheus
            metrics = until("the gauges", lambda: "sojourn_jobs_recently_rejected 1.0" in (m := httpx.get(f"{base}/metrics").text) and m, timeout=15)
            assert "sojourn_pressure_available 0.0" in metrics and f"sojourn_queue_limit {q0 + 2}.0" in metrics

            assert http.post(f"/api/v1/jobs/{first}/cancel").status_code == 200
            p = until("room again", lambda: (p := pressure())["queued"] == q0 + 1 and p, timeout=10)
            assert (p["isAvailable"], p["reason"], p["recentlyRejected"]) == (True, "", 1)
            assert http.post(f"/api/v1/jobs/{second}/cancel").status_code == 200
    finally:
        processes.stop(proc, timeout=30)


def test_a_failed_job_keeps_a_screenshot_and_the_html_of_the_page_it_failed_on(stack, site):
    with stack.client(new_key(stack)) as http:
        failing = [{"url": site.url("/painted"), "actions": ["page.click('#not-there', {timeout: 1000})"]}]
        job = wait_for(http, submit(http, failing))
        assert job["status"] == "failed" and job["error"]["code"] == "TIMEOUT", job  # the click waited for it in vain
        snapshot = job["error"]["details"]["failureSnapshot"]
        assert snapshot["url"] == site.url("/painted") and snapshot["html"] == "failure.html"
        shot = png_image(http.get(f"/api/v1/screenshots/{snapshot['screenshot']}").content)
        assert shot.size == (1280, 720) and shot.convert("RGB").getpixel((640, 600)) == (0xE0, 0x45, 0x2B)  # the painted page
        assert [s["id"] for s in http.get(f"/api/v1/jobs/{job['id']}/screenshots").json()["screenshots"]] == [snapshot["screenshot"]]
        page_html = http.get(f"/api/v1/jobs/{job['id']}/artifacts/failure.html")
        assert page_html.status_code == 200 and "Painted red" in page_html.text

        # off on request: nothing kept, the error alone
        job = wait_for(http, submit(http, failing, input={"capture": {"onFailure": False}}))
        assert job["error"]["code"] == "TIMEOUT" and "failureSnapshot" not in job["error"]["details"], job
        assert http.get(f"/api/v1/jobs/{job['id']}/screenshots").json()["total"] == 0
