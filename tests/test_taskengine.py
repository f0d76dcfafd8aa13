"""The Task Engine dialect at /taskengine, over HTTP against the real stack (API + worker + Prefect + Chromium)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hashlib
import hmac
import json

import httpx
import pytest

from tests.helpers import Receiver

UNAUTHORISED = {"result": "Unauthorised request."}
JOB_KEYS = ["id", "client", "workflow", "priority", "position", "parameters", "created_at", "updated_at", "queue_state", "failed", "run_at"]


class TE:
    """Clients of the Task Engine API for the admin and two tenants."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.base = stack.base + "/taskengine"
        self.a, self.b = f"te-a-{uuid.uuid4().hex[:6]}", f"te-b-{uuid.uuid4().hex[:6]}"
        with stack.client() as admin:
            self.keys = {}
            for name in (self.a, self.b):
                r = admin.post("/api/v1/keys", json={"name": name, "principal": name})
                assert r.status_code == 201, r.text
                self.keys[name] = r.json()["key"]

    def http(self, client: str | None = None, key: str | None = None) -> httpx.Client:
        headers = {}
        if client is not None:
            headers["client"] = client
            headers["api-key"] = key if key is not None else self.keys[client]
        elif key is not None:
            headers["api-key"] = key
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"client": "admin", "api-key": self.stack.admin_key}, timeout=30)

    def setting(self, name: str, value) -> None:
        with self.admin() as http:
            r = http.post("/settings", json={"name": name, "setting": value})
            assert r.status_code == 200, r.text

    def submit(self, http: httpx.Client, workflow: str, parameters: dict, **job) -> int:
        r = http.post("/job", json={"client": http.headers.get("client"), "job": {"workflow": workflow, **job}, "parameters": parameters})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["result"] == "accepted" and isinstance(body["id"], int)
        return body["id"]

    def wait(self, http: httpx.Client, job_id: int, states=("completed",), timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = http.get(f"/jobs/{job_id}")
            assert r.status_code == 200, r.text
            job = r.json()
            if job["queue_state"] in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} is still {job['queue_state']} after {timeout} s"
            time.sleep(0.3)


@pytest.fixture(scope="module")
def te(stack):
    te = TE(stack)
    for name, value in (("retry_limit", 0), ("retry_delay", 0), ("schedule_interval", 1), ("max_jobs", 4), ("priority_slots", 0)):
        te.setting(name, value)
    yield te
    for name, value in (("retry_limit", 3), ("retry_delay", 5), ("schedule_interval", 60), ("max_jobs", 2), ("priority_slots", 0)):
        te.setting(name, value)


def page(site, wait_ms: int = 0) -> dict:
    """A browse job's parameters: one visit of a unique URL of the test site (its hit shows when the job ran)."""
    tag = uuid.uuid4().hex
    actions = [f"page.waitForTimeout({wait_ms})"] if wait_ms else []
    return {"steps": [{"url": site.url(f"/?t={tag}"), "actions": actions}], "content_id": tag}


def started_order(site, tags: list[str]) -> list[str]:
    hits = [h.query.get("t", [""])[0] for h in site.state.requests_to("/")]
    return sorted(tags, key=lambda t: hits.index(t) if t in hits else 10**9)


# ------------------------------------------------------------------ basics, errors, auth


def test_alive_without_auth_and_unauthorised_bodies(te):
    with httpx.Client(base_url=te.base, timeout=30) as anon:
        assert anon.get("/").json() == {"result": "alive"}
        r = anon.post("/job", json={"job": {"workflow": "screenshot"}, "parameters": {"url": "http://127.0.0.1/"}})
        assert r.status_code == 401 and r.json() == UNAUTHORISED
        assert anon.post("/push_jobs").json() == UNAUTHORISED
        assert anon.get("/health").status_code == 401
    with te.http(te.a, key="sj_wrong") as wrong:
        assert wrong.post("/job", json={"job": {"workflow": "agent"}, "parameters": {"instructions": "x"}}).json() == UNAUTHORISED
    with te.http(te.b, key=te.keys[te.a]) as someone_else:  # a key of client a naming client b
        assert someone_else.post("/push_jobs").status_code == 401
    with te.http(te.a) as tenant:  # settings are installation-wide: the admin key only
        assert tenant.post("/settings", json={"name": "max_jobs", "setting": 9}).status_code == 401


@pytest.mark.parametrize("job, parameters, field", [
    ({"workflow": "nope"}, {}, "job.workflow"),
    ({}, {}, "job.workflow"),
    ({"workflow": "screenshot"}, {"url": "ftp://x"}, "parameters.url"),
    ({"workflow": "screenshot"}, {"url": "http://127.0.0.1/", "colour": 1}, "parameters.colour"),
    ({"workflow": "browse"}, {"steps": []}, "parameters.steps"),
    ({"workflow": "agent"}, {}, "parameters.instructions"),
    ({"workflow": "screenshot", "priority": 11}, {"url": "http://127.0.0.1/"}, "job.priority"),
    ({"workflow": "screenshot", "run_at": "next week"}, {"url": "http://127.0.0.1/"}, "job.run_at"),
    ({"workflow": "template:missing"}, {}, "job.workflow"),
])
def test_bad_jobs_answer_400_naming_the_field_and_create_nothing(te, job, parameters, field):
    with te.http(te.b) as http:
        before = http.get("/jobs", params={"limit": 1000}).json()
        r = http.post("/job", json={"job": job, "parameters": parameters})
        assert r.status_code == 400, r.text
        assert r.json()["id"] is None and r.json()["error"].startswith(field), r.json()
        assert http.get("/jobs", params={"limit": 1000}).json() == before


# ------------------------------------------------------------------ every workflow, end to end


@pytest.fixture(scope="module")
def ran(te, site):
    """One job of each workflow for client a, plus one whose page cannot be reached; all ended."""
    with te.http(te.a) as http:
        ids = {
            "browse": te.submit(http, "browse", {**page(site), "capture": ["text"], "custom_data": {"k": "v"}}),
            "screenshot": te.submit(http, "screenshot", {"url": site.url("/"), "full_page": False, "content_id": "shot-1"}, priority="3"),
            "pdf": te.submit(http, "pdf", {"url": site.url("/pdf"), "format": "A4"}),
            "agent": te.submit(http, "agent", {"instructions": f"open {site.url('/')} and read the title"}),
            "failing": te.submit(http, "screenshot", {"url": "http://127.0.0.1:9/", "content_id": "unreachable"}),
        }
        jobs = {k: te.wait(http, v) for k, v in ids.items()}
    return ids, jobs


def test_every_workflow_runs_and_ends_completed(te, ran):
    ids, jobs = ran
    assert sorted(ids.values()) == list(ids.values())  # integers, increasing
    for name, job in jobs.items():
        assert list(job)[: len(JOB_KEYS) + 1] == JOB_KEYS[:5] + ["top_of_queue"] + JOB_KEYS[5:], job
        assert job["queue_state"] == "completed" and job["client"] == te.a
        assert job["failed"] is (name == "failing"), job
        assert job["created_at"].endswith("Z") and len(job["created_at"]) == 24
    assert jobs["screenshot"]["priority"] == 3 and jobs["browse"]["priority"] == 5
    assert jobs["browse"]["parameters"]["custom_data"] == {"k": "v"}
    with te.http(te.a) as http:
        shot = http.get(f"/jobs/{ids['screenshot']}").json()["result"]
        assert [f.rsplit("/", 1)[-1] for f in shot["files"]] == ["screenshot.png"]
        with httpx.Client(base_url=te.stack.base, headers={"X-API-Key": te.keys[te.a]}, timeout=30) as native:
            png = native.get(shot["files"][0].replace(te.stack.base, ""))
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        assert http.get(f"/jobs/{ids['pdf']}").json()["result"]["files"][0].endswith("page.pdf")
        assert "Home" in str(http.get(f"/jobs/{ids['agent']}").json()["result"]["data"])


def test_logs_have_the_task_engine_shape(te, ran):
    ids, _ = ran
    with te.http(te.a) as http:
        logs = http.get(f"/logs/{ids['browse']}").json()
    assert logs[0]["progname"] == "api" and '"job_created"' in logs[0]["message"]
    assert {e["progname"] for e in logs} >= {"api", "worker", "controller"}
    for e in logs:
        assert set(e) == {"id", "job_id", "task_id", "severity", "severity_description", "progname", "message", "created_at", "updated_at", "visible"}
        assert e["job_id"] == ids["browse"] and e["visible"] is True and isinstance(e["task_id"], int)
    assert logs[-1]["message"] == "job has completed successfully"
    assert [e["id"] for e in logs] == sorted(e["id"] for e in logs)


def test_list_filters(te, ran):
    ids, jobs = ran
    mine = set(ids.values())
    with te.http(te.a) as http:
        def listed(**params) -> list[int]:
            r = http.get("/jobs", params=params)
            assert r.status_code == 200, r.text
            return [j["id"] for j in r.json() if j["id"] in mine]

        assert listed() == sorted(mine, reverse=True)  # newest first, the last 10
        assert listed(asc=1) == sorted(mine)
        assert listed(limit=2) == sorted(mine, reverse=True)[:2]
        assert set(listed(state=2)) == mine and listed(state=0) == [] and listed(state=1) == []
        assert listed(failed=1) == [ids["failing"]] and listed(state=2, failed=1) == [ids["failing"]]
        assert ids["failing"] not in listed(failed=0)
        assert listed(state=0, failed=1) == []
        assert listed(search="SHOT-1") == [ids["screenshot"]]  # content_id, case-insensitive
        assert listed(search="unreachable") == [ids["failing"]]
        assert listed(job_ids=f"{ids['pdf']},{ids['agent']}") == sorted([ids["pdf"], ids["agent"]], reverse=True)
        assert listed(order_by="priority", asc=1)[0] == ids["screenshot"]
        first = jobs["browse"]["created_at"]
        assert ids["browse"] not in listed(**{"from": (datetime.fromisoformat(first.replace("Z", "+00:00")) + timedelta(milliseconds=1)).isoformat()})
        assert listed(to="2000-01-01T00:00:00.000") == []
        assert listed(client=te.a) == sorted(mine, reverse=True)
        for bad, field in (({"state": 9}, "state"), ({"order_by": "colour"}, "order_by"), ({"job_ids": "1,x"}, "job_ids"), ({"from": "soon"}, "from")):
            r = http.get("/jobs", params=bad)
            assert r.status_code == 400 and r.json()["error"].startswith(field), r.text


def test_clients_never_see_each_others_jobs(te, ran):
    ids, _ = ran
    with te.http(te.b) as b:
        assert not {j["id"] for j in b.get("/jobs", params={"limit": 1000}).json()} & set(ids.values())
        assert b.get("/jobs", params={"client": te.a}).json() == []
        r = b.get(f"/jobs/{ids['browse']}")
        assert r.status_code == 400 and "not found" in r.json()["error"]
        assert b.get(f"/logs/{ids['browse']}").status_code == 400
        assert b.put(f"/jobs/{ids['browse']}", json={"queue_state": "broken"}).status_code == 400
        assert b.post(f"/jobs/{ids['browse']}/rerun").status_code == 400
    with httpx.Client(base_url=te.base, timeout=30) as anon:  # no key: only the client named, never parameters
        assert anon.get("/jobs").json() == []
        named = anon.get("/jobs", headers={"client": te.a}, params={"limit": 1000}).json()
        assert set(ids.values()) <= {j["id"] for j in named} and all("parameters" not in j for j in named)
        one = anon.get(f"/jobs/{ids['browse']}", headers={"client": te.a}).json()
        assert one["id"] == ids["browse"] and "parameters" not in one
        assert anon.get(f"/jobs/{ids['browse']}", headers={"client": te.b}).status_code == 400
        assert anon.get(f"/jobs/{ids['browse']}").status_code == 400


# ------------------------------------------------------------------ priorities and slots


def test_priority_order_with_max_jobs_1(te, site):
    """A priority-1 job submitted last starts next; FIFO within a level; positions say so meanwhile."""
    te.setting("max_jobs", 1)
    try:
        with te.http(te.a) as http:
            blocker = te.submit(http, "browse", page(site, wait_ms=3000), priority=5)
            te.wait(http, blocker, states=("started",))
            params = {name: page(site) for name in ("low-1", "low-2", "urgent")}
            low1 = te.submit(http, "browse", params["low-1"], priority=7)
            low2 = te.submit(http, "browse", params["low-2"], priority=7)
            urgent = te.submit(http, "browse", params["urgent"], priority=1)
            queued = {j["id"]: j for j in http.get("/jobs", params={"state": 0, "client": te.a}).json()}
            assert set(queued) == {low1, low2, urgent}
            deadline = time.monotonic() + 20
            while [queued[i]["position"] for i in (urgent, low1, low2)] != [1, 2, 3]:
                assert time.monotonic() < deadline, queued
                time.sleep(0.3)
                queued = {j["id"]: j for j in http.get("/jobs", params={"state": 0}).json()}
            assert http.get(f"/jobs/{urgent}").json()["top_of_queue"] is True
            assert [j["id"] for j in http.get("/dashboard").json()["queued"]] == [urgent, low1, low2]
            for j in (blocker, low1, low2, urgent):
                te.wait(http, j)
        tags = [params[n]["content_id"] for n in ("low-1", "low-2", "urgent")]
        assert started_order(site, tags) == [tags[2], tags[0], tags[1]]
    finally:
        te.setting("max_jobs", 4)


def test_reserved_slots(te, site):
    """max_jobs 3 with 1 priority slot: two low-priority jobs run, the third waits although a slot is free,
    until a priority job takes that slot."""
    te.setting("max_jobs", 3)
    te.setting("priority_slots", 1)
    try:
        with te.http(te.a) as http:
            deadline = time.monotonic() + 20  # the controller has applied them (a job started under the old ones would run on)
            while (applied := http.get("/health").json()["slots"]["applied"]).get("priority_slots") != 1 or applied["max_jobs"] != 3:
                assert time.monotonic() < deadline, applied
                time.sleep(0.3)
            lows = [te.submit(http, "browse", page(site, wait_ms=9000), priority=8) for _ in range(3)]
            deadline, seen = time.monotonic() + 30, []
            while True:
                states = sorted(http.get(f"/jobs/{j}").json()["queue_state"] for j in lows)
                if states == ["queued", "started", "started"]:
                    break
                seen.append((states, http.get("/health").json().get("slots")))
                assert time.monotonic() < deadline, json.dumps(seen)
                time.sleep(0.3)
            time.sleep(2)  # a slot is free all this time, and stays free for low priority
            assert sorted(http.get(f"/jobs/{j}").json()["queue_state"] for j in lows) == ["queued", "started", "started"]
            health = http.get("/health").json()
            assert "jobs" in health, health
            assert health["jobs"]["max_jobs"] == 3 and health["jobs"]["priority_slots"] == 1
            urgent = te.submit(http, "browse", page(site, wait_ms=500), priority=2)
            te.wait(http, urgent, states=("started", "completed"), timeout=30)
            assert sorted(http.get(f"/jobs/{j}").json()["queue_state"] for j in lows)[0] == "queued"
            for j in (*lows, urgent):
                te.wait(http, j)
    finally:
        te.setting("priority_slots", 0)
        te.setting("max_jobs", 4)


# ------------------------------------------------------------------ run_at, semaphores, pause, broken, rerun


class Semaphore:
    """A URL that answers 503 until opened."""

    def __init__(self) -> None:
        self.open = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200 if outer.open else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gate"


def test_run_at_in_the_future_then_moved_to_now(te, site):
    later = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000")
    with te.http(te.a) as http:
        job = te.submit(http, "browse", page(site), run_at=later)
        shown = http.get(f"/jobs/{job}").json()
        assert shown["queue_state"] == "scheduled" and shown["run_at"] == later + "Z"
        assert job in [j["id"] for j in http.get("/dashboard").json()["scheduled"]]
        assert job in [j["id"] for j in http.get("/jobs", params={"state": 5}).json()]
        time.sleep(1.5)
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "scheduled"
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        r = http.put(f"/jobs/{job}", json={"client": te.a, "run_at": now})
        assert r.status_code == 200 and r.json()["result"].startswith("Performed updates: run_at="), r.text
        assert te.wait(http, job)["failed"] is False


def test_a_semaphore_closed_then_opened(te, site):
    gate = Semaphore()
    with te.http(te.a) as http:
        job = te.submit(http, "browse", page(site), semaphore_url=gate.url)
        time.sleep(3)  # the scheduler looked (every second here) and found it closed
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "scheduled"
        gate.open = True
        te.wait(http, job, timeout=60)


def test_pause_resume_break_and_rerun(te, site):
    te.setting("max_jobs", 0)  # nothing starts: jobs stay queued
    try:
        with te.http(te.a) as http:
            paused, broken = te.submit(http, "browse", page(site)), te.submit(http, "browse", page(site))
            te.wait(http, paused, states=("queued",))
            r = http.patch(f"/jobs/{paused}", json={"queue_state": "paused"})
            assert r.status_code == 200 and "queue_state=paused" in r.json()["result"], r.text
            assert http.get(f"/jobs/{paused}").json()["queue_state"] == "paused"
            assert http.put(f"/jobs/{broken}", json={"queue_state": "broken"}).status_code == 200
            assert http.get(f"/jobs/{broken}").json()["queue_state"] == "broken"
            r = http.put(f"/jobs/{broken}", json={"queue_state": "melted"})
            assert r.status_code == 400 and r.json() == {"id": broken, "error": r.json()["error"]} and r.json()["error"].startswith("queue_state")
            te.setting("max_jobs", 4)
            time.sleep(3)
            assert http.get(f"/jobs/{paused}").json()["queue_state"] == "paused"
            assert http.get(f"/jobs/{broken}").json()["queue_state"] == "broken"
            assert http.put(f"/jobs/{paused}", json={"queue_state": "queued"}).status_code == 200
            te.wait(http, paused)
            assert http.get(f"/jobs/{broken}").json()["queue_state"] == "broken"  # broken jobs never run

            slow = te.submit(http, "browse", page(site, wait_ms=3000))
            te.wait(http, slow, states=("started",))
            r = http.put(f"/jobs/{slow}", json={"queue_state": "paused"})
            assert r.status_code == 400 and "running job cannot be paused" in r.json()["error"]
            te.wait(http, slow)

            r = http.post(f"/jobs/{paused}/rerun")
            assert r.status_code == 200 and r.json()["result"] == "accepted" and r.json()["id"] > slow
            again = te.wait(http, r.json()["id"])
            assert again["parameters"] == http.get(f"/jobs/{paused}").json()["parameters"]
            assert http.get(f"/jobs/{paused}").json()["queue_state"] == "broken"
            assert http.post("/push_jobs").json() == {"result": "ok"}
    finally:
        te.setting("max_jobs", 4)


# ------------------------------------------------------------------ callbacks


def test_callbacks_are_delivered_in_order_signed_and_retried(te, site):
    hook = Receiver(fail_first=1)  # the first delivery fails: it is retried
    secret = "te-secret-" + uuid.uuid4().hex
    te.setting("callback_secret", secret)
    with te.http(te.a) as http:
        job = te.submit(http, "screenshot", {"url": site.url("/"), "content_id": "cb-1", "custom_data": {"order": 7}, "rest_endpoints": [hook.url]})
        te.wait(http, job)
        deadline = time.monotonic() + 60
        while not any(b'"status"' in body for _h, body in hook.received):
            assert time.monotonic() < deadline, f"no job callback after 60 s ({hook.calls} calls)"
            time.sleep(0.3)
        logs = http.get(f"/logs/{job}").json()
    bodies = [json.loads(body) for _h, body in hook.received]
    for headers, body in hook.received:
        assert headers["x-sojourn-signature"] == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-sojourn-event-id"].startswith("evt_")
    assert hook.calls == len(hook.received) + 1
    *tasks, end = bodies
    assert end["job_id"] == job and end["status"] == "completed" and end["workflow"] == "screenshot" and end["content_id"] == "cb-1"
    assert end["custom_data"] == {"order": 7} and end["client"] == te.a and isinstance(end["metadata"]["duration"], float)
    assert [f.rsplit("/", 1)[-1] for f in end["files"]] == ["screenshot.png"] and end["time"].endswith("Z")
    assert tasks and [t["event"] for t in tasks][:2] == ["start", "complete"]
    for t in tasks:
        assert set(t) == {"job_id", "task_id", "task_name", "workflow", "event", "content_id", "message", "time", "client"}
        assert t["job_id"] == job and t["content_id"] == "cb-1" and isinstance(t["task_id"], int)
    assert len({json.loads(b)["task_id"] for _h, b in hook.received if b'"task_id"' in b}) == len(tasks) // 2
    assert any(e["progname"] == "callback" and "delivered" in e["message"] for e in logs)


# ------------------------------------------------------------------ settings, schedules, health, dashboard


def test_settings_schedules_health_and_dashboard(te):
    with te.admin() as admin:
        r = admin.post("/settings", json={"name": "max_jobs", "setting": "5"})
        assert r.json() == {"result": "ok", "message": "max_jobs setting updated"}
        r = admin.post("/settings", json={"name": "max_jobs", "setting": "many"})
        assert r.status_code == 400 and r.json()["error"].startswith("setting"), r.text
        name = f"custom_{uuid.uuid4().hex[:6]}"
        assert admin.post("/settings", json={"name": name, "setting": "x"}).json()["message"] == f"{name} setting created"
        assert admin.get("/dashboard").json()["max_jobs"] == 5
        health = admin.get("/health").json()
        assert health["jobs"]["max_jobs"] == 5 and set(health["databases"].values()) == {"OK"}
        assert health["queues"]["te-5"]["workers"] >= 1 and set(health["tasks"]) == {"failed", "pending", "processed"}
        assert set(admin.get("/schedules").json()["schedules"]) == {"queue_scheduled_jobs"}
        assert admin.put("/scheduler", json={"schedule": "queue_scheduled_jobs", "active": False}).json() == {"result": "ok", "schedules": []}
        assert admin.get("/schedules").json()["schedules"] == {}
        assert admin.put("/scheduler", json={"schedule": "queue_scheduled_jobs", "active": True}).json()["schedules"] == ["queue_scheduled_jobs"]
        assert admin.put("/scheduler", json={"schedule": "nope", "active": True}).status_code == 400
    te.stack.stop_api()  # settings survive a restart
    te.stack.start_api()
    with te.admin() as admin:
        assert admin.get("/dashboard").json()["max_jobs"] == 5
    te.setting("max_jobs", 4)


def test_task_callbacks_arrive_live_while_the_job_runs(te, site):
    """Each task's start and end are called back as they happen (Prefect's task-run events), not at the job's end:
    the first step's callbacks arrive while a later step still waits; then the rest, in order, the job callback last."""
    hook = Receiver()
    steps = [{"url": site.url(f"/?live={uuid.uuid4().hex}")}, {"url": site.url("/"), "actions": ["page.waitForTimeout(6000)"]},
             {"url": site.url("/")}]
    with te.http(te.a) as http:
        job = te.submit(http, "browse", {"steps": steps, "content_id": "live-1", "rest_endpoints": [hook.url]})
        deadline = time.monotonic() + 90
        while not any(json.loads(b).get("event") == "complete" for _h, b in hook.received):
            assert time.monotonic() < deadline, f"no task callback after 90 s ({hook.calls} calls)"
            time.sleep(0.2)
        state_then = http.get(f"/jobs/{job}").json()["queue_state"]
        seen_then = [json.loads(b) for _h, b in hook.received]
        assert state_then == "started", (state_then, seen_then)  # the first step ended, the job has not
        assert not any("status" in b for b in seen_then) and seen_then[0]["event"] == "start" and seen_then[0]["task_id"] == 1
        te.wait(http, job)
        deadline = time.monotonic() + 60
        while not any(b'"status"' in body for _h, body in hook.received):
            assert time.monotonic() < deadline, f"no job callback after 60 s ({hook.calls} calls)"
            time.sleep(0.3)
        time.sleep(1.5)  # nothing more (no duplicate) comes after the job callback
    bodies = [json.loads(body) for _h, body in hook.received]
    *tasks, end = bodies
    assert end["status"] == "completed" and end["job_id"] == job and end["content_id"] == "live-1"
    events = [(t["task_id"], t["event"]) for t in tasks]
    assert len(events) == len(set(events)), events  # one callback per task event
    assert sorted({t for t, _ in events}) == [1, 2, 3], events
    for n in (1, 2, 3):
        assert events.index((n, "start")) < events.index((n, "complete")), events
    assert [t["task_name"] for t in tasks if t["event"] == "start"] == ["step 0", "step 1", "step 2"]
    assert len({h["x-sojourn-event-id"] for h, _b in hook.received}) == len(hook.received)


# ------------------------------------------------------------------ the scrape workflow


@pytest.fixture(scope="module")
def scrape_project(te):
    """A scrape project of client a with one catalogue target (the scrape dialect's API, with a's key)."""
    from tests.sites_scrape import CatalogSite

    with CatalogSite() as catalog, httpx.Client(base_url=te.stack.base + "/scrape/api/v1", headers={"X-API-Key": te.keys[te.a]},
                                                timeout=60) as scrape:
        r = scrape.post("/projects", json={"name": "te-scrape", "config": {"rate_limit_delay": 0}})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        r = scrape.post(f"/projects/{pid}/targets", json={"url": catalog.url("/catalog"), "item_selector": ".product",
                                                           "fields": {"name": ".name", "price": ".price"}, "next_page": "a.next"})
        assert r.status_code == 201, r.text
        yield {"id": pid, "target": r.json()["id"], "scrape": scrape}


def test_scrape_workflow(te, scrape_project):
    """A Task Engine job whose run is a scrape job of the client's project: an integer id and Task Engine states,
    callbacks whose files are the exports of its results, and the same job in the scrape API (source taskengine)."""
    hook = Receiver()
    pid, scrape = scrape_project["id"], scrape_project["scrape"]
    with te.http(te.a) as http:
        job = te.submit(http, "scrape", {"project_id": pid, "target_ids": [scrape_project["target"]], "content_id": "scr-1",
                                         "rest_endpoints": [hook.url]}, priority=2)
        done = te.wait(http, job, timeout=120)
        assert done["failed"] is False and done["workflow"] == "scrape" and done["priority"] == 2
        result = http.get(f"/jobs/{job}").json()["result"]
        sid = result["data"]["scrape_job_id"]
        assert sid.startswith("job_") and result["data"]["project_id"] == pid
        deadline = time.monotonic() + 60
        while not any(b'"status"' in body for _h, body in hook.received):
            assert time.monotonic() < deadline, f"no job callback after 60 s ({hook.calls} calls)"
            time.sleep(0.3)
        logs = http.get(f"/logs/{job}").json()
    end = json.loads(hook.received[-1][1])
    assert end["status"] == "completed" and end["workflow"] == "scrape" and end["content_id"] == "scr-1"
    assert end["files"] == result["files"] and [f.rsplit("=", 1)[-1] for f in end["files"]] == ["json", "csv"]
    assert end["message"] == end["files"][0]
    tasks = [json.loads(b) for _h, b in hook.received[:-1]]
    assert [(t["task_name"], t["event"]) for t in tasks] == [(f"target {scrape_project['target']}", "start"),
                                                            (f"target {scrape_project['target']}", "complete")]
    exported = scrape.get(end["files"][0].replace(te.stack.base + "/scrape/api/v1", ""))  # readable right when called back
    assert exported.status_code == 200, exported.text
    assert [r["data"]["name"] for r in exported.json()][:2] == ["Alpha", "Beta"] and len(exported.json()) == 11
    assert "Alpha" in scrape.get(end["files"][1].replace(te.stack.base + "/scrape/api/v1", "")).text
    seen = scrape.get(f"/jobs/{sid}").json()
    assert seen["status"] == "completed" and seen["source"] == "taskengine" and seen["project_id"] == pid
    assert seen["progress"]["total_results"] == 11
    listed = {j["id"]: j for j in scrape.get(f"/projects/{pid}/jobs").json()["items"]}
    assert listed[sid]["source"] == "taskengine" and listed[sid]["status"] == "completed"
    assert any(e["progname"] == "worker" for e in logs)


def test_scrape_workflow_scheduled_then_due_and_rerun(te, scrape_project):
    """run_at ahead holds the scrape job (scheduled; pending in the scrape API) until it is moved to now; a rerun is
    a new scrape job of the project, the original broken."""
    pid, scrape = scrape_project["id"], scrape_project["scrape"]
    later = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000")
    with te.http(te.a) as http:
        job = te.submit(http, "scrape", {"project_id": pid}, run_at=later)
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "scheduled"
        time.sleep(1.5)
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "scheduled"
        pending = [j for j in scrape.get(f"/projects/{pid}/jobs").json()["items"] if j["status"] == "pending"]
        assert len(pending) == 1 and pending[0]["source"] == "taskengine"
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        assert http.put(f"/jobs/{job}", json={"run_at": now}).status_code == 200
        assert te.wait(http, job, timeout=120)["failed"] is False
        r = http.post(f"/jobs/{job}/rerun")
        assert r.status_code == 200 and r.json()["id"] > job, r.text
        again = te.wait(http, r.json()["id"], timeout=120)
        assert again["workflow"] == "scrape" and again["failed"] is False
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "broken"
        ids = {http.get(f"/jobs/{j}").json()["result"]["data"]["scrape_job_id"] for j in (job, again["id"])}
    listed = {j["id"]: j for j in scrape.get(f"/projects/{pid}/jobs", params={"per_page": 100}).json()["items"]}
    assert len(ids) == 2 and all(listed[i]["status"] == "completed" and listed[i]["source"] == "taskengine" for i in ids)


@pytest.mark.parametrize("who, parameters, field", [
    ("a", {"project_id": "proj_nosuchproject"}, "parameters.project_id"),
    ("b", {}, "parameters.project_id"),  # client a's project, named by client b
    ("a", {"target_ids": ["tgt_nosuchtarget"]}, "parameters.target_ids.0"),
    ("a", {"target_ids": "all"}, "parameters.target_ids"),
    ("a", {"max_results": 3}, "parameters.max_results"),
])
def test_scrape_workflow_errors_name_the_field(te, scrape_project, who, parameters, field):
    client = te.a if who == "a" else te.b
    params = {"project_id": scrape_project["id"], **parameters}
    with te.http(client) as http:
        before = [j["id"] for j in http.get("/jobs", params={"limit": 1000}).json()]
        r = http.post("/job", json={"job": {"workflow": "scrape"}, "parameters": params})
        assert r.status_code == 400, r.text
        assert r.json()["id"] is None and r.json()["error"].startswith(field + ":"), r.json()
        assert [j["id"] for j in http.get("/jobs", params={"limit": 1000}).json()] == before
