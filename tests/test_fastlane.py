"""The fastlane dialect at /fastlane, over HTTP against the real API, worker, Prefect and Chromium.

Derived from fastlane's own API and functional tests: enqueue with and without a Content-Type, a second
job in a task, startAt/startIn, PUT re-scheduling, failures with retries and their webhooks, stop and
retry, stdout/stderr/logs with the exit-code header, pagination and search, healthcheck and status,
WebSocket frames, expiration, timeout, auth and tenant isolation.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import httpx
import pytest

from tests import processes
from tests.helpers import pdf_text, png_image
from tests.test_native_api import new_key

FINAL = {"done", "failed", "timedout", "expired"}


class Pages:
    """This module's own site: pages for the browser and webhook receivers that record what they get."""

    def __init__(self) -> None:
        self.hooks: dict[str, list[tuple[dict[str, str], dict[str, Any]]]] = {}
        self.calls: dict[str, int] = {}
        self.arrived = threading.Condition()  # notified on every POST received
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", ctype: str = "text/html; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                path, _, query = self.path.partition("?")
                if path == "/host":  # what the page's request said it was for (the host map keeps the name)
                    host = self.headers.get("Host", "")
                    return self._send(200, f"<title>Host</title><p>Host: {host}</p>".encode())
                if path == "/hello":
                    return self._send(200, b"<title>Hello</title><h1>Hello fastlane</h1><p>It works.</p>")
                if path == "/whoami":  # the browser as the server saw it (User-Agent) and as the page sees itself
                    ua = self.headers.get("User-Agent", "").replace("<", "")
                    return self._send(200, (f"<title>Who</title><p id=header>Header: {ua}</p><p id=nav></p>"
                                            "<script>document.getElementById('nav').textContent = 'Navigator: ' + navigator.userAgent"
                                            "</script>").encode())
                if path == "/console-error":
                    return self._send(200, b"<title>Err</title><p>page</p><script>console.error('boom from page')</script>")
                if path == "/slow":
                    time.sleep(float(query.split("=", 1)[1]) if "=" in query else 30)
                    return self._send(200, b"<title>Slow</title><p>late</p>")
                return self._send(404, b"not here")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.path.strip("/").split("?")[0]
                with outer.arrived:
                    outer.calls[name] = outer.calls.get(name, 0) + 1
                    refuse = name.startswith("flaky") and outer.calls[name] == 1
                    if not refuse:
                        outer.hooks.setdefault(name, []).append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                    outer.arrived.notify_all()
                if refuse:
                    return self._send(500)
                return self._send(200, b"{}", "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def wait_hooks(self, name: str, n: int, timeout: float = 60) -> list[tuple[dict[str, str], dict[str, Any]]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.hooks.get(name, [])) >= n, timeout)
            got = list(self.hooks.get(name, []))
        assert len(got) >= n, f"{name}: {len(got)} deliveries of {n} after {timeout} s"
        return got


@pytest.fixture(scope="module")
def pages():
    p = Pages()
    yield p
    p.server.shutdown()


@pytest.fixture(scope="module")
def fl(stack):
    """A client of tenant A at /fastlane, as a fastlane client would be configured (base URL only)."""
    key = new_key(stack)
    with httpx.Client(base_url=stack.base + "/fastlane", headers={"X-API-Key": key}, timeout=60) as c:
        c.key = key  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def cron_job(fl, pages):
    """A job firing every minute, made by the first test so its first firing has happened by the last one."""
    r = fl.post(f"/tasks/{task_name()}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "cron": "* * * * *"})
    assert r.status_code == 200 and r.json()["executionId"] is None, r.text
    return r.json()


def wait_execution(fl: httpx.Client, url: str, statuses: set[str] = FINAL, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = fl.get(url)
        assert r.status_code == 200, r.text
        ex = r.json()["execution"]
        if ex["status"] in statuses:
            return ex
        assert time.monotonic() < deadline, f"execution still {ex['status']} after {timeout} s"
        time.sleep(0.3)


def wait_job(fl: httpx.Client, url: str, check, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = fl.get(url).json()["job"]
        if check(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {json.dumps(job)[:2000]}"
        time.sleep(0.3)


def task_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@contextmanager
def tenant(stack) -> Iterator[httpx.Client]:
    """A client of a principal of its own: /status counts (and pending deliveries) are this test's alone."""
    key = new_key(stack)
    with httpx.Client(base_url=stack.base + "/fastlane", headers={"X-API-Key": key}, timeout=60) as c:
        c.key = key  # type: ignore[attr-defined]
        yield c


def wait_hooks_settled(fl: httpx.Client, timeout: float = 60) -> None:
    """Until the caller has no webhook delivery pending (/status queues.webhooks). Deliveries are owed in the same step
    that makes an execution final, so once it reads final and none is pending, every hook it owed has been sent
    (and recorded in webhookDispatch) or given up: a receiver that got nothing by then never will."""
    deadline = time.monotonic() + timeout
    while (pending := fl.get("/status").json()["queues"]["webhooks"]["length"]) != 0:
        assert time.monotonic() < deadline, f"{pending} webhook deliveries still pending after {timeout} s"
        time.sleep(0.5)


def dispatched(fl: httpx.Client, execution_url: str) -> list[tuple[str, str, int, int | None, str | None]]:
    """An execution's webhookDispatch as (event, url, attempt, statusCode, error), in a stable order (deliveries of
    one execution are sent concurrently, so their entries' order is not part of the contract)."""
    meta = fl.get(execution_url).json()["execution"]["metadata"]
    for d in meta.get("webhookDispatch", []):
        assert set(d) == {"timestamp", "url", "event", "attempt", "statusCode", "error"} and "+" not in d["timestamp"], d
    return sorted((d["event"], d["url"], d["attempt"], d["statusCode"], d["error"]) for d in meta.get("webhookDispatch", []))


# ------------------------------------------------------------------ the core flow


def test_screenshot_job_end_to_end(fl, pages, stack, cron_job):
    task = task_name()
    # curl without a Content-Type: the JSON body is read anyway
    r = fl.post(f"/tasks/{task}/", content=json.dumps({"image": "chromium", "command": f"screenshot {pages.url('/hello')}",
                                                        "metadata": {"username": "heynemann"}}).encode())
    assert r.status_code == 200, r.text
    reply = r.json()
    assert set(reply) == {"taskId", "jobId", "executionId", "executionUrl", "queueJobId", "jobUrl", "taskUrl"}
    assert reply["taskId"] == task and reply["executionId"] and reply["queueJobId"]
    assert reply["taskUrl"] == f"{stack.base}/fastlane/tasks/{task}/"
    assert reply["jobUrl"] == f"{stack.base}/fastlane/tasks/{task}/jobs/{reply['jobId']}/"
    assert reply["executionUrl"] == f"{reply['jobUrl']}executions/{reply['executionId']}/"

    ex = wait_execution(fl, reply["executionUrl"])
    assert ex["status"] == "done", ex
    assert ex["exitCode"] == 0 and ex["image"] == "chromium" and ex["command"].startswith("screenshot ")
    assert ex["startedAt"] and ex["finishedAt"] and "+" not in ex["createdAt"] and "T" in ex["createdAt"]
    out = json.loads(ex["log"])
    assert out["steps"][0]["title"] == "Hello"
    shot = next(c for c in out["captures"] if c["kind"] == "screenshot")
    img = fl.get(shot["url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert png_image(img.content).width > 100

    # stdout / stderr / logs, job-level (the last execution) and execution-level, both slash forms
    for path in (f"{reply['jobUrl']}stdout/", f"{reply['executionUrl']}stdout", f"{reply['jobUrl']}stdout"):
        r = fl.get(path)
        assert r.status_code == 200 and r.headers["Fastlane-Exit-Code"] == "0" and r.headers["content-type"].startswith("text/plain")
        assert json.loads(r.text)["captures"]
    logs = fl.get(f"{reply['jobUrl']}logs/").text
    assert logs == ex["log"] + "\n-=-\n" + ex["error"]

    # a second job in the same task
    r2 = fl.post(f"/tasks/{task}", json={"image": "chromium:latest", "command": f"html {pages.url('/hello')}"})
    assert r2.status_code == 200 and r2.json()["jobId"] != reply["jobId"]
    t = fl.get(f"/tasks/{task}").json()
    assert t["taskId"] == task and {j["id"] for j in t["jobs"]} == {reply["jobId"], r2.json()["jobId"]}
    assert all(j["url"].endswith(f"/jobs/{j['id']}/") and j["createdAt"] for j in t["jobs"])

    job = fl.get(reply["jobUrl"]).json()
    assert job["task"] == {"id": task, "url": reply["taskUrl"]}
    j = job["job"]
    assert j["executionCount"] == 1 and j["scheduled"] is False and j["taskId"] == task and j["image"] == "chromium"
    assert j["metadata"]["custom"] == {"username": "heynemann"} and j["metadata"]["retries"] == 0
    assert j["executions"][0]["executionId"] == reply["executionId"] and j["executions"][0]["url"] == reply["executionUrl"]
    assert j["executions"][0]["log"] == ex["log"]

    # the task list: fastlane's pagination keys
    listing = fl.get("/tasks/").json()
    assert set(listing) == {"items", "total", "page", "pages", "perPage", "hasNext", "hasPrev", "nextUrl", "prevUrl"}
    assert listing["perPage"] == 10 and listing["page"] == 1 and listing["hasPrev"] is False and listing["prevUrl"] is None
    assert listing["pages"] == -(-listing["total"] // 10) and listing["hasNext"] is (listing["pages"] > 1)
    assert listing["items"][0]["taskId"] == task  # the task changed last comes first
    item = listing["items"][0]
    assert item["jobsCount"] == 2 and item["url"] == reply["taskUrl"] and item["lastModifiedAt"] >= item["createdAt"]


def test_text_command_envs_console_errors_and_redaction(fl, pages):
    task = task_name()
    r = fl.post(f"/tasks/{task}", json={
        "image": "browser", "command": "text ${PAGE}", "envs": {"PAGE": pages.url("/hello"), "API_KEY": "hunter2", "MY_PASSWORD": "x"},
    })
    assert r.status_code == 200, r.text
    ex = wait_execution(fl, r.json()["executionUrl"])
    assert ex["status"] == "done" and "Hello fastlane" in ex["log"] and "It works." in ex["log"]
    assert ex["command"] == "text ${PAGE}"  # stored and echoed verbatim
    envs = fl.get(r.json()["jobUrl"]).json()["job"]["metadata"]["envs"]
    assert envs == {"PAGE": pages.url("/hello"), "API_KEY": "***", "MY_PASSWORD": "***"}

    r = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": json.dumps({"steps": [{"url": pages.url("/console-error")}]})})
    ex = wait_execution(fl, r.json()["executionUrl"])
    assert ex["status"] == "done" and "console.error: boom from page" in ex["error"]
    assert json.loads(ex["log"])["steps"][0]["title"] == "Err"


def test_pdf_shorthand_and_a_firefox_image(fl, pages):
    """Two promises of the README and docs/fastlane.md as a user sees them: `pdf <url>` makes the page a PDF whose
    capture link serves it, and `image: firefox` runs the job on Firefox (firefox-esr here)."""
    task = task_name()
    pdf = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"pdf {pages.url('/hello')}"})
    fox = fl.post(f"/tasks/{task}", json={"image": "firefox", "command": f"text {pages.url('/whoami')}"})
    assert pdf.status_code == 200 and fox.status_code == 200, (pdf.text, fox.text)

    ex = wait_execution(fl, pdf.json()["executionUrl"])
    assert ex["status"] == "done" and ex["exitCode"] == 0 and ex["command"] == f"pdf {pages.url('/hello')}", ex
    out = json.loads(ex["log"])
    assert out["status"] == "completed" and out["steps"][0]["title"] == "Hello"
    (doc,) = [c for c in out["captures"] if c["kind"] == "pdf"]
    r = fl.get(doc["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" == doc["contentType"], r.headers
    assert r.content.startswith(b"%PDF-") and len(r.content) == doc["size"]
    text = pdf_text(r.content)
    assert "Hello fastlane" in text and "It works." in text, text

    ex = wait_execution(fl, fox.json()["executionUrl"])
    assert ex["status"] == "done" and ex["exitCode"] == 0 and ex["image"] == "firefox", ex
    seen = dict(line.split(": ", 1) for line in ex["log"].splitlines() if ": " in line)
    assert set(seen) == {"Header", "Navigator"}, ex["log"]
    assert "Firefox/" in seen["Header"] and "Chrome" not in seen["Header"], seen  # what the server saw
    assert seen["Navigator"] == seen["Header"], seen  # and what the page saw of itself


def test_enqueue_errors_as_fastlane_sends_them(fl):
    task = task_name()
    cases = [
        (b"{not json", "Failed to enqueue task because JSON body could not be parsed."),
        (json.dumps({"image": "chromium"}).encode(), "image and command must be filled in the request."),
        (json.dumps({"image": "chromium", "command": "text http://x", "startIn": "1m", "cron": "* * * * *"}).encode(),
         "Only ONE of 'startAt', 'startIn' and 'cron' should be in the request."),
    ]
    for body, message in cases:
        r = fl.post(f"/tasks/{task}/", content=body)
        assert r.status_code == 400 and r.text == message and r.headers["content-type"].startswith("text/plain"), r.text
    r = fl.put(f"/tasks/{task}/jobs/not-a-uuid/", json={"image": "chromium", "command": "text http://x"})
    assert r.status_code == 400 and r.text == "The job_id not-a-uuid is not a valid UUID4. All job IDs must be UUID4."
    r = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": "text http://x", "startIn": "soon"})
    assert r.status_code == 400 and "startIn" in r.text

    # lookups: {"error", "operation"}
    assert fl.get(f"/tasks/{task}").json() == {"error": "Task not found.", "operation": "get_task"}
    jid = str(uuid.uuid4())
    r = fl.get(f"/tasks/{task}/jobs/{jid}/")  # fastlane names the operation get_task here
    assert r.status_code == 404 and r.json() == {"error": "Job not found in task.", "operation": "get_task"}
    for action, op in (("stop", "stop_job"), ("retry", "retry_job")):
        r = fl.post(f"/tasks/{task}/jobs/{jid}/{action}/")
        assert r.status_code == 404 and r.json() == {"error": "Job not found in task.", "operation": op}
    r = fl.get(f"/tasks/{task}/jobs/{jid}/executions/{uuid.uuid4()}/")
    assert r.status_code == 404 and r.json() == {"error": f"Task ({task}) or Job ({jid}) not found.", "operation": "get_job_execution"}
    for page in ("abc", "0", "-1"):
        r = fl.get("/tasks", params={"page": page})
        assert r.status_code == 400 and r.json() == {"error": "Tasks pagination page param should be a positive integer.", "operation": "get_tasks"}
    assert fl.get("/tasks", params={"page": 99999}).status_code == 404
    r = fl.get("/search/")
    assert r.status_code == 400 and r.json()["error"] == "The query param is required."


def test_unknown_image_and_command_fail_with_readable_errors(fl):
    task = task_name()
    r = fl.post(f"/tasks/{task}", json={"image": "ubuntu:latest", "command": "ls -lah"})
    assert r.status_code == 200, r.text  # accepted, as fastlane does
    ex = wait_execution(fl, r.json()["executionUrl"], timeout=10)
    assert ex["status"] == "failed" and ex["error"].startswith("Failed to pull image ubuntu:latest")
    r = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": "ls -lah"})
    ex = wait_execution(fl, r.json()["executionUrl"], timeout=10)
    assert ex["status"] == "failed" and ex["exitCode"] == 1 and "ls: not found" in ex["error"]
    r = fl.get(r.json()["jobUrl"] + "stderr")
    assert r.headers["Fastlane-Exit-Code"] == "1" and "ls: not found" in r.text


def test_retries_make_new_executions_and_fire_hooks(stack, pages):
    task = task_name()
    failing = json.dumps({"steps": [{"url": pages.url("/hello"), "actions": ["page.waitForSelector('#absent', {timeout: 300})"]}]})
    fails_url, flaky_url = pages.url(f"/fails-{task}"), pages.url(f"/flaky-{task}")
    hooks = {
        "fails": [{"url": fails_url, "headers": {"X-Token": "abc"}}],
        "finishes": [{"url": flaky_url, "retries": 2}],  # the first delivery gets a 500, retried 5 s later
        "succeeds": [{"url": pages.url(f"/succeeds-{task}")}],
    }
    with tenant(stack) as fl:
        r = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": failing, "retries": 2, "webhooks": hooks,
                                            "metadata": {"who": "me"}})
        assert r.status_code == 200, r.text
        job = wait_job(fl, r.json()["jobUrl"], lambda j: j["executionCount"] == 3 and all(e["status"] in FINAL for e in j["executions"]), timeout=120)
        assert [e["status"] for e in job["executions"]] == ["failed"] * 3
        assert job["executions"][-1]["executionId"] == r.json()["executionId"]  # newest first
        assert job["metadata"]["retry_count"] == 2
        created = sorted(e["createdAt"] for e in job["executions"])
        assert created[0] < created[1] < created[2]
        assert all("ACTION_FAILED" in e["error"] or "TIMEOUT" in e["error"] for e in job["executions"]), job["executions"][0]["error"]

        fails = pages.wait_hooks(f"fails-{task}", 3)
        headers, body = fails[0]
        assert headers["x-token"] == "abc" and headers["content-type"] == "application/json"
        assert body["job_id"] == job["executions"][0]["url"].split("/jobs/")[1].split("/")[0]
        assert body["status"] == "failed" and body["metadata"]["custom"] == {"who": "me"} and body["exitCode"] == 1
        assert {b["executionId"] for _, b in fails} == {e["executionId"] for e in job["executions"]}
        pages.wait_hooks(f"flaky-{task}", 3, timeout=60)
        wait_hooks_settled(fl)
        assert pages.calls[f"flaky-{task}"] == 4  # one refused, retried
        assert len(pages.hooks[f"fails-{task}"]) == 3 and f"succeeds-{task}" not in pages.hooks
        # every attempt is in its own execution's webhookDispatch: the first execution's finishes hook was the
        # refused one (the second execution starts 2 s after the first ended); none lost, none elsewhere
        oldest, *later = job["executions"][::-1]
        assert dispatched(fl, oldest["url"]) == [("fails", fails_url, 1, 200, None), ("finishes", flaky_url, 1, 500, "receiver answered 500"),
                                                 ("finishes", flaky_url, 2, 200, None)]
        for e in later:
            assert dispatched(fl, e["url"]) == [("fails", fails_url, 1, 200, None), ("finishes", flaky_url, 1, 200, None)], e["executionId"]


def test_start_at_and_start_in(fl, pages):
    task = task_name()
    now = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "startAt": time.time()})
    later = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "startIn": "2s"})
    for r in (now, later):
        assert r.status_code == 200 and r.json()["executionId"] is None and r.json()["executionUrl"] is None, r.text
    jobs = []
    for r in (now, later):
        job = wait_job(fl, r.json()["jobUrl"], lambda j: j["executions"] and j["executions"][0]["status"] in FINAL)
        assert job["executionCount"] == 1 and job["executions"][0]["status"] == "done" and job["scheduled"] is False
        assert "Hello fastlane" in job["executions"][0]["log"]
        jobs.append(job)
    assert jobs[0]["metadata"]["startAt"] and jobs[1]["metadata"]["startIn"] == "2s"
    # startIn 2s: the run started 2 s or more after the job was made (as the API reports both)
    job = jobs[1]
    waited = datetime.fromisoformat(job["executions"][0]["startedAt"]) - datetime.fromisoformat(job["createdAt"])
    assert waited.total_seconds() >= 2, (job["createdAt"], job["executions"][0]["startedAt"])


def test_put_creates_then_reschedules_with_the_new_command(fl, pages):
    task, jid = task_name(), str(uuid.uuid4())
    r = fl.put(f"/tasks/{task}/jobs/{jid}", json={"image": "chromium", "command": f"text {pages.url('/nope')}", "startIn": "1h"})
    assert r.status_code == 200 and r.json()["jobId"] == jid and r.json()["executionId"] is None, r.text
    assert fl.get(f"/tasks/{task}/jobs/{jid}").json()["job"]["scheduled"] is True
    r = fl.put(f"/tasks/{task}/jobs/{jid}/", json={"image": "chromium", "command": f"text {pages.url('/hello')}"})
    assert r.status_code == 200 and r.json()["executionId"]
    ex = wait_execution(fl, r.json()["executionUrl"])
    assert ex["status"] == "done" and "Hello fastlane" in ex["log"] and ex["command"] == f"text {pages.url('/hello')}"
    job = fl.get(f"/tasks/{task}/jobs/{jid}").json()["job"]
    assert job["executionCount"] == 1 and job["scheduled"] is False and job["command"] == ex["command"]


def test_stop_retry_and_execution_stop(fl, pages):
    task = task_name()
    # retry messages
    sched = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "startIn": "1h"}).json()
    # stopped before its time (at once: its 10 s are not up), a scheduled job never runs; checked at the end, past its time
    soon_at = time.time() + 10
    soon = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "startIn": "10s"}).json()
    assert fl.post(soon["jobUrl"] + "stop/").status_code == 200
    waiting = fl.get(sched["jobUrl"]).json()["job"]  # scheduled for later: no execution until its time comes
    assert waiting["scheduled"] is True and waiting["executionCount"] == 0 and waiting["executions"] == [], waiting
    r = fl.post(sched["jobUrl"] + "retry/")  # as in fastlane, a job that never ran has nothing to retry
    assert r.status_code == 400 and r.json() == {"error": "No execution yet to retry.", "operation": "retry_job"}
    cron = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "cron": "0 0 1 1 *"}).json()
    r = fl.post(cron["jobUrl"] + "retry")
    assert r.status_code == 400 and r.json()["error"] == "No execution yet to retry."
    status = fl.get("/status/").json()
    listed = {j["jobId"]: j for j in status["jobs"]["scheduled"]}
    assert cron["jobId"] in listed and listed[cron["jobId"]]["nextScheduledAt"] and sched["jobId"] in listed
    # stop of a scheduled job (cron, and startIn): the schedule is gone
    for job in (cron, sched):
        r = fl.post(job["jobUrl"] + "stop/")
        assert r.status_code == 200 and r.json() == {"taskId": task, "jobId": job["jobId"], "jobUrl": job["jobUrl"], "taskUrl": job["taskUrl"]}
        assert fl.get(job["jobUrl"]).json()["job"]["scheduled"] is False
    assert not {cron["jobId"], sched["jobId"], soon["jobId"]} & {j["jobId"] for j in fl.get("/status").json()["jobs"]["scheduled"]}
    # stopped before its time, a scheduled job never runs: no execution appears
    stopped = fl.get(sched["jobUrl"]).json()["job"]
    assert stopped["executionCount"] == 0 and stopped["executions"] == [] and stopped["scheduled"] is False, stopped
    assert fl.post(sched["jobUrl"] + "retry/").json()["error"] == "No execution yet to retry."

    # stop of a running job: its execution fails, and no retry follows
    hooks = {"fails": [{"url": pages.url(f"/stopped-{task}")}]}
    slow = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/slow?s=30')}", "retries": 3, "timeout": 120,
                                           "webhooks": hooks}).json()
    wait_execution(fl, slow["executionUrl"], {"running"}, timeout=60)
    assert fl.post(slow["jobUrl"] + "stop").status_code == 200
    ex = wait_execution(fl, slow["executionUrl"], timeout=30)
    assert ex["status"] == "failed" and "User stopped job execution manually." in ex["error"]
    # Its `fails` hook is owed by the step that ended it, which decides on a retry (and makes it) before any hook
    # can go out: once the hook arrived, a retry would exist.
    assert pages.wait_hooks(f"stopped-{task}", 1)[0][1]["executionId"] == slow["executionId"]
    job = fl.get(slow["jobUrl"]).json()["job"]
    assert job["executionCount"] == 1 and job["metadata"]["retry_count"] == 0, job

    # execution stop, then retry makes a new execution of a finished job
    slow2 = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/slow?s=30')}", "timeout": 120}).json()
    wait_execution(fl, slow2["executionUrl"], {"running"}, timeout=60)
    r = fl.post(slow2["executionUrl"] + "stop/")
    assert r.status_code == 200 and r.json()["execution"] == {"id": slow2["executionId"], "url": slow2["executionUrl"]}
    assert wait_execution(fl, slow2["executionUrl"], timeout=30)["status"] == "failed"
    again = fl.post(slow2["jobUrl"] + "retry")
    assert again.status_code == 200 and again.json()["executionId"] not in (None, slow2["executionId"])
    assert fl.get(slow2["jobUrl"]).json()["job"]["executionCount"] == 2
    fl.post(slow2["jobUrl"] + "stop")

    time.sleep(max(0.0, soon_at + 3 - time.time()))  # past the time `soon` had (and a dispatcher round)
    gone = fl.get(soon["jobUrl"]).json()["job"]
    assert gone["executionCount"] == 0 and gone["executions"] == [] and gone["scheduled"] is False, json.dumps(gone, indent=1)


def test_timeout_and_expiration(stack, pages):
    task = task_name()
    with tenant(stack) as fl:
        hooks = {"finishes": [{"url": pages.url(f"/to-finishes-{task}")}], "fails": [{"url": pages.url(f"/to-fails-{task}")}]}
        r = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/slow?s=20')}", "timeout": 2, "webhooks": hooks})
        ex = wait_execution(fl, r.json()["executionUrl"], timeout=60)
        assert ex["status"] == "timedout" and ex["error"].startswith("Job execution timed out after 2 seconds."), ex
        assert pages.wait_hooks(f"to-finishes-{task}", 1)[0][1]["status"] == "timedout"
        wait_hooks_settled(fl)  # whatever the end owed has gone out: a `fails` hook would have arrived
        assert f"to-fails-{task}" not in pages.hooks
        assert dispatched(fl, r.json()["executionUrl"]) == [("finishes", pages.url(f"/to-finishes-{task}"), 1, 200, None)]

        ehooks = {"finishes": [{"url": pages.url(f"/exp-{task}")}], "fails": [{"url": pages.url(f"/exp-{task}")}]}
        r = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "startIn": "4s",
                                            "expiration": time.time() + 1, "webhooks": ehooks})
        job = wait_job(fl, r.json()["jobUrl"], lambda j: j["executions"] and j["executions"][0]["status"] in FINAL, timeout=30)
        ex = job["executions"][0]
        assert ex["status"] == "expired" and ex["error"].startswith("Job was supposed to be done before "), ex
        assert ex["exitCode"] is None and ex["startedAt"] is None and job["scheduled"] is False
        wait_hooks_settled(fl)  # nothing owed, nothing pending: no hook for an expired execution, now or later
        assert f"exp-{task}" not in pages.hooks and dispatched(fl, ex["url"]) == []


def test_search_and_pagination(fl):
    prefix = uuid.uuid4().hex[:6]
    for i in range(12):
        assert fl.post(f"/tasks/hello-{prefix}-{i}", json={"image": "nothing", "command": "x"}).status_code == 200
    found = fl.get("/search/", params={"query": prefix}).json()
    assert found["total"] == 12 and len(found["items"]) == 10 and found["hasNext"] and found["pages"] == 2
    nxt = fl.get(found["nextUrl"]).json()
    assert nxt["page"] == 2 and len(nxt["items"]) == 2 and nxt["hasPrev"] and nxt["prevUrl"]
    assert fl.get("/search", params={"query": prefix[:3]}).json()["total"] == 0  # whole words only
    assert fl.get("/search", params={"query": f"{prefix} 11"}).json()["total"] == 1


def test_auth_and_tenant_isolation(fl, stack, pages):
    task = task_name()
    mine = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}"}).json()
    wait_execution(fl, mine["executionUrl"])
    other = new_key(stack)
    with httpx.Client(base_url=stack.base + "/fastlane", headers={"X-API-Key": other}, timeout=30) as b:
        assert b.get(f"/tasks/{task}").status_code == 404
        assert b.get(mine["jobUrl"]).status_code == 404
        assert b.get(mine["executionUrl"]).status_code == 404
        assert b.get(mine["jobUrl"] + "stdout").status_code == 404
        assert b.post(mine["jobUrl"] + "stop").status_code == 404
        assert task not in {i["taskId"] for i in b.get("/tasks").json()["items"]}
        # the same task id in another tenant is another task
        assert b.post(f"/tasks/{task}", json={"image": "nothing", "command": "x"}).status_code == 200
        assert len(b.get(f"/tasks/{task}").json()["jobs"]) == 1
    assert len(fl.get(f"/tasks/{task}").json()["jobs"]) == 1
    r = httpx.get(f"{stack.base}/fastlane/tasks/{task}")
    assert r.status_code == 401 and r.json()["operation"] == "authenticate"
    basic = base64.b64encode(f"user:{fl.key}".encode()).decode()
    r = httpx.get(f"{stack.base}/fastlane/tasks/{task}/", headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200 and r.json()["taskId"] == task


def ws_frames(url: str) -> tuple[list[str], Any]:
    """Every frame the socket sends until it closes, and the close frame."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    frames: list[str] = []
    with connect(url) as ws:
        try:
            while True:
                frames.append(ws.recv(timeout=30))
        except ConnectionClosed as exc:
            return frames, exc.rcvd


def test_healthcheck_status_and_websocket(stack, pages):
    with tenant(stack) as fl:  # a principal of its own: the counts /status shows are this test's
        for path in ("/healthcheck", "/healthcheck/", "/"):
            r = fl.get(path)
            assert r.status_code == 200 and r.json() == {"redis": True, "mongo": True, "database": True, "prefect": True, "errors": []}, r.text
        status = fl.get("/status").json()
        assert status["tasks"] == {"count": 0} and status["jobs"] == {"count": 0, "scheduled": []} and status["containers"] == {"running": []}
        assert status["queues"] == {"jobs": {"length": 0}, "monitor": {"length": 0}, "webhooks": {"length": 0}, "notify": {"length": 0},
                                    "scheduled": {"length": 0, "nextTimeStamp": None, "nextHumanReadableDate": None}}
        assert status["fastlane"] == {"version": "2.2.4", "executor": "sojourn"}
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        assert all(set(h) == {"host", "status", "lastHeartbeat"} for h in status["hosts"]), status["hosts"]
        assert any(h["status"] == "ONLINE" and (now - datetime.fromisoformat(h["lastHeartbeat"])).total_seconds() < 120 for h in status["hosts"]), status["hosts"]

        task = task_name()
        before = time.time()
        later = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/hello')}", "startIn": "1h"}).json()
        after = time.time()
        running = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {pages.url('/slow?s=4')}"}).json()
        seen = wait_execution(fl, running["executionUrl"], {"running"} | FINAL, timeout=60)
        assert seen["status"] == "running", seen
        status = fl.get("/status/").json()
        assert status["tasks"] == {"count": 1} and status["jobs"]["count"] == 2
        assert status["containers"]["running"] == [{"executionId": running["executionId"], "jobId": running["jobId"], "taskId": task,
                                                    "startedAt": seen["startedAt"], "url": running["executionUrl"]}]
        queues = status["queues"]
        # `later` waits in the scheduled queue, not the jobs queue (it is no execution until its time)
        assert queues["jobs"] == {"length": 0} and queues["webhooks"] == {"length": 0} and queues["scheduled"]["length"] == 1
        assert before + 3600 - 1 <= queues["scheduled"]["nextTimeStamp"] <= after + 3600 + 1, (before, queues)
        shown = datetime.fromisoformat(queues["scheduled"]["nextHumanReadableDate"]).replace(tzinfo=timezone.utc)
        assert abs(shown.timestamp() - queues["scheduled"]["nextTimeStamp"]) < 0.001, queues  # the same moment, ISO in UTC
        (listed,) = status["jobs"]["scheduled"]
        # a job's time written as fastlane writes times (ISO), the queue's next as a timestamp beside its readable date
        assert listed["jobId"] == later["jobId"] and listed["nextScheduledAt"] == queues["scheduled"]["nextHumanReadableDate"] and listed["cron"] is None
        assert listed["url"] == later["jobUrl"] and listed["stopUrl"] == later["jobUrl"] + "stop/" and listed["task"] == {"id": task, "url": later["taskUrl"]}

        # a running execution: the socket follows it, then sends its end
        ws_url = running["executionUrl"].replace("http://", "ws://") + f"ws/?apiKey={fl.key}"
        frames, closed = ws_frames(ws_url)
        ex = fl.get(running["executionUrl"]).json()["execution"]
        assert ex["status"] == "done" and ex["log"] == "late", ex
        assert frames == ["EXIT CODE: 0\n", ex["log"], "\n-=-\n", ex["error"]]
        assert closed.code == 1010 and closed.reason == "wsdone"
        for url in (ws_url, running["jobUrl"].replace("http://", "ws://") + f"ws?apiKey={fl.key}"):  # a finished one; the job's last
            again, closed = ws_frames(url)
            assert again == frames and (closed.code, closed.reason) == (1010, "wsdone"), url
        page = fl.get(running["jobUrl"] + "stream/")
        assert page.status_code == 200 and "WebSocket" in page.text

        # a job waiting for its start has no execution yet: its socket closes with wsretry (the stream page reconnects)
        assert fl.get(later["jobUrl"]).json()["job"]["executions"] == []
        frames, closed = ws_frames(later["jobUrl"].replace("http://", "ws://") + f"ws?apiKey={fl.key}")
        assert frames == [] and closed.code == 1010 and closed.reason == "wsretry"
        fl.post(later["jobUrl"] + "stop")
        status = fl.get("/status").json()
        assert status["jobs"]["scheduled"] == [] and status["queues"]["scheduled"]["length"] == 0 and status["queues"]["jobs"]["length"] == 0
        assert status["containers"]["running"] == []


def test_auth_can_be_turned_off(stack):
    proc, base = stack.extra_api(SOJOURN_FASTLANE_AUTH="false")
    try:
        r = httpx.post(f"{base}/fastlane/tasks/open-{uuid.uuid4().hex[:6]}", json={"image": "nothing", "command": "x"}, timeout=30)
        assert r.status_code == 200, r.text
        assert httpx.get(r.json()["taskUrl"], timeout=30).json()["jobs"][0]["id"] == r.json()["jobId"]
    finally:
        processes.stop(proc, timeout=30)


def test_cron_is_a_prefect_schedule_firing_twice_and_stop_removes_it(fl, cron_job, prefect_server):
    """fastlane's functional test: `* * * * *` makes two executions (in 150 s there); each a run of the job's own
    Prefect deployment, one per firing; stop deletes the deployment with its schedule and the runs it made ahead."""
    with httpx.Client(base_url=prefect_server, timeout=30) as pf:
        dep = pf.get(f"/deployments/name/browse/fastlane-{cron_job['jobId']}")
        assert dep.status_code == 200, dep.text
        dep = dep.json()
        (schedule,) = dep["schedules"]
        assert schedule["schedule"]["cron"] == "* * * * *" and schedule["active"] and dep["paused"] is False
        assert dep["entrypoint"] == "sojourn.flows.browse:browse" and f"fastlane-job:{cron_job['jobId']}" in dep["tags"]
        assert dep["parameters"]["spec"]["steps"][0]["url"].endswith("/hello")

        job = wait_job(fl, cron_job["jobUrl"], lambda j: len(j["executions"]) >= 2 and all(e["status"] in FINAL for e in j["executions"][-2:]),
                       timeout=200)
        assert job["scheduled"] is True and job["metadata"]["cron"] == "* * * * *"
        first, second = job["executions"][-1], job["executions"][-2]  # newest first
        assert first["executionId"] != second["executionId"]
        assert first["status"] == second["status"] == "done" and "Hello fastlane" in first["log"] and "Hello fastlane" in second["log"]
        gap = (datetime.fromisoformat(second["startedAt"]) - datetime.fromisoformat(first["startedAt"])).total_seconds()
        assert gap >= 30, (first["startedAt"], second["startedAt"])  # a firing later, not at once (pickup varies under load)
        # each execution is one run of the deployment (the ledger job's id is the flow run's id)
        runs = {r["id"]: r for r in pf.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}, "limit": 200}).json()}
        queue_ids = [fl.get(cron_job["jobUrl"].rstrip("/") + f"/executions/{e['executionId']}/").json() for e in (first, second)]
        assert all(q["execution"]["executionId"] for q in queue_ids)
        done_runs = [r for r in runs.values() if r["state_type"] == "COMPLETED"]
        assert len(done_runs) >= 2 and all("sojourn" in r["tags"] and "dialect:fastlane" in r["tags"] for r in done_runs)
        assert len({r["expected_start_time"][:16] for r in done_runs}) == len(done_runs)  # one run per firing
        starts = sorted(datetime.fromisoformat(r["expected_start_time"]) for r in done_runs)
        assert all((b - a).total_seconds() % 60 == 0 and b > a for a, b in zip(starts, starts[1:]))  # on the minute, a minute apart or more

        r = fl.post(cron_job["jobUrl"] + "retry/")  # it ran, and it is still scheduled
        assert r.status_code == 400 and r.json() == {"error": "Can't retry a scheduled job.", "operation": "retry_job"}

        assert fl.post(cron_job["jobUrl"] + "stop").status_code == 200
        assert pf.get(f"/deployments/{dep['id']}").status_code == 404
        left = pf.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [dep["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}).json()
        assert left == []
    count = fl.get(cron_job["jobUrl"]).json()["job"]["executionCount"]
    assert cron_job["jobId"] not in {j["jobId"] for j in fl.get("/status").json()["jobs"]["scheduled"]}
    assert fl.get(cron_job["jobUrl"]).json()["job"]["scheduled"] is False and count >= 2


def test_put_changes_the_cron_schedule_in_prefect(fl, pages, prefect_server):
    task, jid = task_name(), str(uuid.uuid4())
    url = f"/tasks/{task}/jobs/{jid}"
    with httpx.Client(base_url=prefect_server, timeout=30) as pf:
        assert fl.put(url, json={"image": "chromium", "command": f"text {pages.url('/hello')}", "cron": "0 0 1 1 *"}).status_code == 200
        dep = pf.get(f"/deployments/name/browse/fastlane-{jid}").json()
        assert dep["schedules"][0]["schedule"]["cron"] == "0 0 1 1 *"
        r = fl.put(url, json={"image": "chromium", "command": f"html {pages.url('/hello')}", "cron": "30 2 * * *", "envs": {"A": "1"}})
        assert r.status_code == 200, r.text
        again = pf.get(f"/deployments/name/browse/fastlane-{jid}").json()
        assert again["id"] == dep["id"] and [s["schedule"]["cron"] for s in again["schedules"]] == ["30 2 * * *"]
        assert again["parameters"]["spec"]["capture"].get("html") is True
        listed = {j["jobId"]: j for j in fl.get("/status").json()["jobs"]["scheduled"]}
        assert datetime.fromisoformat(listed[jid]["nextScheduledAt"]).strftime("%H:%M") == "02:30"
        # no cron any more: the deployment goes
        assert fl.put(url, json={"image": "chromium", "command": f"text {pages.url('/hello')}", "startIn": "1h"}).status_code == 200
        assert pf.get(f"/deployments/{dep['id']}").status_code == 404
    fl.post(url + "/stop")


# ------------------------------------------------------------------ additionalDNSEntries

def test_dns_entries_become_the_spec_host_map():
    from sojourn.services.fastlane.commands import dns_hosts, to_spec
    from sojourn.settings import get_settings
    from sojourn.spec import JobSpec, spec_errors

    entries = [{"ip": "127.0.0.1", "hostnames": ["Made-Up.test", "api.made-up.test."]}, {"ip": "::1", "hostnames": ["six.test"]}]
    hosts = dns_hosts(entries)
    assert hosts == {"made-up.test": "127.0.0.1", "api.made-up.test": "127.0.0.1", "six.test": "::1"}
    spec = to_spec("chromium", "text http://made-up.test/", {}, None, get_settings(), hosts=hosts)
    assert spec.hosts == hosts and "hosts" in spec.model_dump(mode="json", exclude_defaults=True)
    for bad, message in [
        ({"1.2.3.4": "127.0.0.1"}, "'1.2.3.4' is not a hostname"),
        ({"bad host": "127.0.0.1"}, "'bad host' is not a hostname"),
        ({"-x.test": "127.0.0.1"}, "'-x.test' is not a hostname"),
        ({"ok.test": "localhost"}, "ok.test: 'localhost' is not an IP address"),
        ({f"h{i}.test": "10.0.0.1" for i in range(51)}, "at most 50 entries (51 given)"),
    ]:
        with pytest.raises(Exception) as caught:
            JobSpec.model_validate({"steps": [{"url": "http://ok.test/"}], "hosts": bad})
        assert spec_errors(caught.value) == [{"field": "hosts", "message": message}]
    with pytest.raises(ValueError, match="entry 0 must be"):
        dns_hosts([{"ip": "127.0.0.1"}])
    with pytest.raises(ValueError, match="must be a list"):
        dns_hosts({"ip": "127.0.0.1"})


def test_egress_proxy_maps_hosts_for_plain_http_and_tunnels(pages):
    """The proxy itself: a mapped name connects to its address (Host and the tunnel's target stay the name); the
    URL policy is checked on the address too."""
    from sojourn.browser.egress import EgressProxy, JobPolicy

    port = pages.server.server_address[1]

    async def exchange(proxy_port: int, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data

    async def tunnel(proxy_port: int, target: str) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = b""
        if b" 200 " in head.split(b"\r\n")[0]:
            writer.write(f"GET /host HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            body = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return head, body

    async def main() -> None:
        proxy = EgressProxy()
        policy = JobPolicy(job_id="dns", hosts={"made-up.test": "127.0.0.1", "meta.test": "169.254.169.254"})
        await proxy.register(policy)
        try:
            got = await exchange(policy.port, f"GET http://made-up.test:{port}/host HTTP/1.1\r\nHost: made-up.test:{port}\r\n\r\n".encode())
            assert got.startswith(b"HTTP/1.0 200") and f"Host: made-up.test:{port}".encode() in got, got
            head, body = await tunnel(policy.port, f"made-up.test:{port}")
            assert b" 200 " in head and f"Host: made-up.test:{port}".encode() in body, (head, body)
            got = await exchange(policy.port, b"GET http://meta.test/latest HTTP/1.1\r\nHost: meta.test\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 403") and b"meta.test is mapped to 169.254.169.254, link-local" in got, got
            head, _ = await tunnel(policy.port, "meta.test:443")
            assert head.startswith(b"HTTP/1.1 403"), head
            # a job allow-list applies to the name (or to the address, for IP patterns)
            listed = JobPolicy(job_id="dns2", url_allow=("other.test",), hosts={"made-up.test": "127.0.0.1"})
            assert not (await listed.check("made-up.test")).allowed
            by_ip = JobPolicy(job_id="dns3", url_allow=("127.0.0.0/8",), hosts={"made-up.test": "127.0.0.1"})
            assert (await by_ip.check("made-up.test")).address == "127.0.0.1"
            assert len(policy.blocked) == 2
        finally:
            await proxy.close()

    asyncio.run(main())


def test_dns_entries_map_hosts_for_the_browser_within_the_url_policy(fl, pages):
    port = pages.server.server_address[1]
    task = task_name()
    ok = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text http://made-up.test:{port}/host",
                                         "additionalDNSEntries": [{"ip": "127.0.0.1", "hostnames": ["made-up.test"]}]})
    meta = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": "text http://made-up.test/latest/meta-data/",
                                           "additionalDNSEntries": [{"ip": "169.254.169.254", "hostnames": ["made-up.test"]}]})
    assert ok.status_code == 200 and meta.status_code == 200, (ok.text, meta.text)
    ex = wait_execution(fl, ok.json()["executionUrl"])
    assert ex["status"] == "done" and f"Host: made-up.test:{port}" in ex["log"], ex
    ex = wait_execution(fl, meta.json()["executionUrl"])
    assert ex["status"] == "failed" and ex["error"].startswith("URL_BLOCKED:") and "169.254.169.254" in ex["error"], ex
    job = fl.get(ok.json()["jobUrl"]).json()["job"]
    assert job["metadata"]["additionalDNSEntries"] == [{"ip": "127.0.0.1", "hostnames": ["made-up.test"]}]


def test_bad_dns_entries_are_refused_at_enqueue(fl):
    for entries, message in [
        ({"ip": "127.0.0.1"}, "additionalDNSEntries: must be a list of {ip, hostnames}."),
        ([{"ip": "127.0.0.1"}], 'additionalDNSEntries: entry 0 must be {"ip": "<address>", "hostnames": ["<name>", ...]}.'),
        ([{"ip": "not-an-ip", "hostnames": ["a.test"]}], "additionalDNSEntries: a.test: 'not-an-ip' is not an IP address."),
    ]:
        r = fl.post(f"/tasks/{task_name()}", json={"image": "chromium", "command": "text http://a.test/", "additionalDNSEntries": entries})
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain") and r.text == message, r.text
