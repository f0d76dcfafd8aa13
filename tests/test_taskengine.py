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


def visited(site, parameters: dict) -> bool:
    """Whether the page of page()'s parameters was visited (its job ran)."""
    return any(h.query.get("t") == [parameters["content_id"]] for h in site.state.requests_to("/"))


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
        # ... but a malformed one is a well-authenticated caller's 400 with its message, not an auth failure (#25)
        r = tenant.post("/settings", json={"name": "max_jobs", "setting": "many"})
        assert r.status_code == 400 and r.json()["error"].startswith("setting"), r.text


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
        assert http.get(f"/jobs/{ids['agent']}").json()["result"]["data"] == "Home"  # the page's title, read by the agent


def test_logs_have_the_task_engine_shape(te, ran):
    ids, _ = ran
    with te.http(te.a) as http:
        logs = http.get(f"/logs/{ids['browse']}").json()
    created = json.loads(logs[0]["message"])
    assert logs[0]["progname"] == "api" and logs[0]["task_id"] == 0
    assert created["path"] == "POST /job" and created["payload"] == "job_created"
    assert created["parameters"]["client"] == te.a and created["parameters"]["job"] == {"workflow": "browse", "priority": 5}
    assert created["parameters"]["parameters"]["custom_data"] == {"k": "v"} and created["parameters"]["parameters"]["capture"] == ["text"]
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
        assert r.status_code == 400 and r.json() == {"error": f"job {ids['browse']} not found"}, r.text
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


def test_template_workflow_runs_a_saved_native_template(te, site):
    """README: workflow `template:<name>` runs a native template (POST /api/v1/templates) of the client's, its
    parameters filling the template's variables. (After the tests of `ran`'s listings: it adds a job of client a.)"""
    name, tag = f"visit-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with httpx.Client(base_url=te.stack.base, headers={"X-API-Key": te.keys[te.a]}, timeout=30) as native:
        r = native.post("/api/v1/templates", json={"name": name, "type": "browse", "variables": ["tag"],
                                                  "defaultInput": {"steps": [{"url": site.url("/?t={tag}")}], "capture": ["text"]}})
        assert r.status_code == 201, r.text
        with te.http(te.a) as http:
            job = te.submit(http, f"template:{name}", {"tag": tag, "content_id": "tpl-1"}, priority=4)
            done = te.wait(http, job)
            assert done["failed"] is False and done["workflow"] == f"template:{name}" and done["priority"] == 4
            assert done["parameters"] == {"tag": tag, "content_id": "tpl-1"}
            result = http.get(f"/jobs/{job}").json()["result"]
            assert [f.rsplit("/", 1)[-1] for f in result["files"]] == ["page.txt"] and result["error"] is None, result
            text = native.get(result["files"][0].replace(te.stack.base, ""))
            assert text.status_code == 200 and text.text.splitlines()[0] == "Hello Sojourn", text.text
            assert [h.query["t"] for h in site.state.requests_to("/") if h.query.get("t") == [tag]] == [[tag]]  # the variable filled in
            assert http.get("/jobs", params={"search": "tpl-1"}).json()[0]["id"] == job

            r = http.post("/job", json={"job": {"workflow": f"template:{name}"}, "parameters": {"content_id": "tpl-2"}})
            assert r.status_code == 400 and r.json() == {"id": None, "error": f"parameters.tag: Missing variable `tag` for template '{name}'"}, r.text
        with te.http(te.b) as other:  # another client's template is not there for b
            r = other.post("/job", json={"job": {"workflow": f"template:{name}"}, "parameters": {"tag": tag}})
            assert r.status_code == 400 and r.json() == {
                "id": None, "error": f"job.workflow: no template named {name!r} (create it with POST /api/v1/templates)"}, r.text


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
                seen.append(states)
                assert time.monotonic() < deadline, json.dumps([seen, http.get("/health").json().get("slots")])
                time.sleep(0.4)
            # A slot is free, and stays free for low priority: the controller (what hands slots out) has counted the
            # third job waiting beside the two running and left its queue at the two it runs.
            deadline = time.monotonic() + 20
            while (applied := http.get("/health").json()["slots"]["applied"]).get("waiting") != {"8": 1} or applied.get("running") != {"8": 2}:
                assert time.monotonic() < deadline, applied
                time.sleep(0.5)
            assert applied["limits"] == {str(level): 2 if level == 8 else 0 for level in range(1, 11)}, applied
            assert sorted(http.get(f"/jobs/{j}").json()["queue_state"] for j in lows) == ["queued", "started", "started"]
            health = http.get("/health").json()
            assert health["jobs"]["max_jobs"] == 3 and health["jobs"]["priority_slots"] == 1
            assert health["jobs"]["queued"] == 1 and health["jobs"]["started"] + health["jobs"]["pending"] == 2, health["jobs"]
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
    """A URL that answers 503 until opened, and counts how often the scheduler asked."""

    def __init__(self) -> None:
        self.open = False
        self.asked = 0
        self.changed = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200 if outer.open else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with outer.changed:
                    outer.asked += 1
                    outer.changed.notify_all()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gate"

    def wait_asked(self, n: int, timeout: float = 30) -> None:
        """Until the scheduler has asked n times in all. A pass asks each held job's semaphore in job order and
        finishes with one job before asking the next one's, so an ask means the pass decided on every job held before
        this one; the (n+1)th ask means the pass of the nth ended (everything it decided is written)."""
        with self.changed:
            self.changed.wait_for(lambda: self.asked >= n, timeout)
            assert self.asked >= n, f"the semaphore was asked {self.asked} times of {n} in {timeout} s"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def scheduler_passes(te: TE, http: httpx.Client, site, n: int = 2) -> None:
    """Evidence that the queue_scheduled_jobs schedule looked at every job held so far, and acted on what it saw: a
    probe job (made now, so after them) held by a closed semaphore is asked n times; then the probe is set broken."""
    gate = Semaphore()
    try:
        probe = te.submit(http, "browse", page(site), semaphore_url=gate.url)
        gate.wait_asked(n)
        assert http.put(f"/jobs/{probe}", json={"queue_state": "broken"}).status_code == 200
    finally:
        gate.close()


def test_run_at_in_the_future_then_moved_to_now(te, site):
    later = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000")
    with te.http(te.a) as http:
        job = te.submit(http, "browse", page(site), run_at=later)
        shown = http.get(f"/jobs/{job}").json()
        assert shown["queue_state"] == "scheduled" and shown["run_at"] == later + "Z"
        assert job in [j["id"] for j in http.get("/dashboard").json()["scheduled"]]
        assert job in [j["id"] for j in http.get("/jobs", params={"state": 5}).json()]
        scheduler_passes(te, http, site)  # the scheduler looked at it since (every second here) and left it held
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "scheduled"
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        r = http.put(f"/jobs/{job}", json={"client": te.a, "run_at": now})
        assert r.status_code == 200 and r.json()["result"].startswith("Performed updates: run_at="), r.text
        assert te.wait(http, job)["failed"] is False


def test_a_semaphore_closed_then_opened(te, site):
    gate = Semaphore()
    with te.http(te.a) as http:
        job = te.submit(http, "browse", page(site), semaphore_url=gate.url)
        gate.wait_asked(2)  # the scheduler looked (every second here), found it closed, and its pass has ended
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "scheduled"
        gate.open = True
        te.wait(http, job, timeout=60)
    gate.close()


def test_pause_resume_break_and_rerun(te, site):
    te.setting("max_jobs", 0)  # nothing starts: jobs stay queued
    try:
        with te.http(te.a) as http:
            held = {name: page(site) for name in ("paused", "broken")}
            paused, broken = te.submit(http, "browse", held["paused"]), te.submit(http, "browse", held["broken"])
            te.wait(http, paused, states=("queued",))
            r = http.patch(f"/jobs/{paused}", json={"queue_state": "paused"})
            assert r.status_code == 200 and r.json() == {"id": paused, "result": "Performed updates: queue_state=paused"}, r.text
            assert http.get(f"/jobs/{paused}").json()["queue_state"] == "paused"
            r = http.put(f"/jobs/{broken}", json={"queue_state": "broken"})
            assert r.status_code == 200 and r.json() == {"id": broken, "result": "Performed updates: queue_state=broken"}, r.text
            assert http.get(f"/jobs/{broken}").json()["queue_state"] == "broken"
            r = http.put(f"/jobs/{broken}", json={"queue_state": "melted"})
            assert r.status_code == 400 and r.json() == {
                "id": broken, "error": "queue_state: expected paused or broken (or queued to resume a paused job), got 'melted'"}, r.text
            te.setting("max_jobs", 4)

            # a job made after them, in the same queue, starts and ends: the slots were there and the queue was served
            slow = te.submit(http, "browse", page(site, wait_ms=3000))
            te.wait(http, slow, states=("started",))
            r = http.put(f"/jobs/{slow}", json={"queue_state": "paused"})
            assert r.status_code == 400 and r.json() == {
                "id": slow, "error": f"queue_state: job {slow} is started; a running job cannot be paused (set it broken to stop it)"}, r.text
            te.wait(http, slow)
            assert http.get(f"/jobs/{paused}").json()["queue_state"] == "paused"  # ... and passed over the paused one
            assert http.get(f"/jobs/{broken}").json()["queue_state"] == "broken"
            assert not visited(site, held["paused"]) and not visited(site, held["broken"])

            assert http.put(f"/jobs/{paused}", json={"queue_state": "queued"}).status_code == 200
            te.wait(http, paused)
            assert http.get(f"/jobs/{broken}").json()["queue_state"] == "broken"  # broken jobs never run
            assert visited(site, held["paused"]) and not visited(site, held["broken"])

            r = http.post(f"/jobs/{paused}/rerun")
            assert r.status_code == 200 and r.json()["result"] == "accepted" and r.json()["id"] > slow
            again = te.wait(http, r.json()["id"])
            assert again["parameters"] == http.get(f"/jobs/{paused}").json()["parameters"]
            assert http.get(f"/jobs/{paused}").json()["queue_state"] == "broken"
            assert http.post("/push_jobs").json() == {"result": "ok"}
    finally:
        te.setting("max_jobs", 4)


# ------------------------------------------------------------------ callbacks


def callbacks_settled(http: httpx.Client, job: int, timeout: float = 60) -> list[dict]:
    """The job's log once its job callback is delivered and none of its callbacks is pending (GET /logs shows each
    delivery). Callbacks are written once each (a stable key per task start/end and job end), so from then on no
    further delivery of this job can come."""
    deadline = time.monotonic() + timeout
    while True:
        logs = http.get(f"/logs/{job}").json()
        sent = [e["message"] for e in logs if e["progname"] == "callback"]
        if any(m.startswith("job callback") and m.endswith(": delivered") for m in sent) and not any(": pending" in m for m in sent):
            return logs
        assert time.monotonic() < deadline, f"callbacks of job {job} not settled after {timeout} s: {sent}"
        time.sleep(0.5)


def test_callbacks_are_delivered_in_order_signed_and_retried(te, site):
    hook = Receiver(fail_first=1)  # the first delivery fails: it is retried
    secret = "te-secret-" + uuid.uuid4().hex
    te.setting("callback_secret", secret)
    with te.http(te.a) as http:
        job = te.submit(http, "screenshot", {"url": site.url("/"), "content_id": "cb-1", "custom_data": {"order": 7}, "rest_endpoints": [hook.url]})
        te.wait(http, job)
        logs = callbacks_settled(http, job)
    bodies = [json.loads(body) for _h, body in hook.received]
    for headers, body in hook.received:
        assert headers["x-sojourn-signature"] == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-sojourn-event-id"].startswith("evt_")
    assert hook.calls == len(hook.received) + 1
    assert len({h["x-sojourn-event-id"] for h, _b in hook.received}) == len(hook.received)  # each once
    *tasks, end = bodies
    # the documented sequence: each task's start then its end, in the order they ran (the step, then the capture),
    # the job callback last; the refused first one was retried in its place
    assert [(t["task_id"], t["task_name"], t["event"], t["message"]) for t in tasks] == [
        (1, "step 0", "start", "'step 0' started"), (1, "step 0", "complete", "'step 0' completed successfully"),
        (2, "capture", "start", "'capture' started"), (2, "capture", "complete", "'capture' completed successfully"),
    ], tasks
    for t in tasks:
        assert set(t) == {"job_id", "task_id", "task_name", "workflow", "event", "content_id", "message", "time", "client"}
        assert t["job_id"] == job and t["content_id"] == "cb-1" and t["workflow"] == "screenshot" and t["client"] == te.a
        assert t["time"].endswith("Z") and len(t["time"]) == 24
    assert [t["time"] for t in tasks] == sorted(t["time"] for t in tasks)
    assert set(end) == {"job_id", "status", "workflow", "content_id", "message", "files", "metadata", "custom_data", "time", "client"}
    assert end["job_id"] == job and end["status"] == "completed" and end["workflow"] == "screenshot" and end["content_id"] == "cb-1"
    assert end["custom_data"] == {"order": 7} and end["client"] == te.a and isinstance(end["metadata"]["duration"], float)
    assert [f.rsplit("/", 1)[-1] for f in end["files"]] == ["screenshot.png"] and end["message"] == end["files"][0]
    assert end["time"].endswith("Z") and end["time"] >= tasks[-1]["time"]
    delivered = sorted(e["message"] for e in logs if e["progname"] == "callback")
    assert delivered == sorted([f"task callback ({t['event']} of {t['task_name']}) to {hook.url}: delivered" for t in tasks]
                               + [f"job callback (completed) to {hook.url}: delivered"]), delivered


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
            time.sleep(0.25)
        state_then = http.get(f"/jobs/{job}").json()["queue_state"]
        seen_then = [json.loads(b) for _h, b in hook.received]
        assert state_then == "started", (state_then, seen_then)  # the first step ended, the job has not
        assert not any("status" in b for b in seen_then) and seen_then[0]["event"] == "start" and seen_then[0]["task_id"] == 1
        te.wait(http, job)
        callbacks_settled(http, job)  # every callback owed is delivered: no more (no duplicate) can come
    bodies = [json.loads(body) for _h, body in hook.received]
    *tasks, end = bodies
    assert end["status"] == "completed" and end["job_id"] == job and end["content_id"] == "live-1"
    # the full sequence, one callback per task event: each step's start then its end, step after step, the job last
    assert [(t["task_id"], t["task_name"], t["event"]) for t in tasks] == [
        (n + 1, f"step {n}", event) for n in range(3) for event in ("start", "complete")], tasks
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
        logs = callbacks_settled(http, job)
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


def test_scrape_workflow_scheduled_then_due_and_rerun(te, scrape_project, site):
    """run_at ahead holds the scrape job (scheduled; pending in the scrape API) until it is moved to now; a rerun is
    a new scrape job of the project, the original broken."""
    pid, scrape = scrape_project["id"], scrape_project["scrape"]
    later = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000")
    with te.http(te.a) as http:
        job = te.submit(http, "scrape", {"project_id": pid}, run_at=later)
        assert http.get(f"/jobs/{job}").json()["queue_state"] == "scheduled"
        scheduler_passes(te, http, site)  # the scheduler looked at it since and left it held
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
