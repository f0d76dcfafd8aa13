"""SECURITY.md's promises that tests/test_security.py does not reach: outgoing calls of every dialect to denied
addresses, other tenants' streams, secrets at rest, and what a page may not do. Over HTTP against the running stack,
real Chromium."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers import Receiver, until
from tests.test_runtime import submit

METADATA_HOOK = "http://169.254.169.254/latest/hook"
REFUSED = "blocked by the URL policy: 169.254.169.254 is link-local or a cloud metadata address"


def new_key(stack, **body) -> tuple[str, str]:
    """A fresh principal (its name) and its key."""
    name = "sec-" + uuid.uuid4().hex[:8]
    with stack.client() as admin:
        r = admin.post("/api/v1/keys", json={"name": name, "principal": name, **body})
        assert r.status_code == 201, r.text
        return name, r.json()["key"]


def final_job(http: httpx.Client, job_id: str, timeout: float = 90) -> dict:
    return until(f"job {job_id} final", lambda: (j := http.get(f"/api/v1/jobs/{job_id}").json())["status"] in ("completed", "failed", "cancelled") and j, timeout)


# ------------------------------------------------------------------ outgoing calls to a denied address


def test_native_webhooks_to_a_denied_address_are_refused_and_recorded(stack, site):
    witness = Receiver()
    _, key = new_key(stack)
    with stack.client(key) as http:
        denied = http.post("/api/v1/webhooks", json={"url": METADATA_HOOK, "events": ["job.completed"], "secret": "d" * 16}).json()
        http.post("/api/v1/webhooks", json={"url": witness.url, "events": ["job.completed"], "secret": "w" * 16})
        job = final_job(http, submit(http, [{"url": site.url(f"/?hook={uuid.uuid4().hex}")}]))
        assert job["status"] == "completed", job
        witness.wait(1)  # the event went out
        settled = until("the denied delivery settled", lambda: [
            d for d in http.get(f"/api/v1/webhooks/{denied['id']}/deliveries").json()["deliveries"] if d["status"] != "pending"])
    assert [(d["jobId"], d["status"], d["attempts"]) for d in settled] == [(job["id"], "failed", 1)], settled  # never retried
    assert settled[0]["lastError"] == REFUSED


def test_fastlane_webhooks_to_a_denied_address_are_refused_and_recorded(stack, site):
    _, key = new_key(stack)
    witness = Receiver()
    task = "sec-" + uuid.uuid4().hex[:8]
    with httpx.Client(base_url=stack.base + "/fastlane", headers={"X-API-Key": key}, timeout=60) as fl:
        hooks = {"finishes": [{"url": METADATA_HOOK}, {"url": witness.url}]}
        r = fl.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {site.url('/')}", "webhooks": hooks})
        assert r.status_code == 200, r.text
        url = r.json()["executionUrl"]
        witness.wait(1, timeout=90)  # the execution finished and its hooks went out

        def dispatched():
            got = fl.get(url).json()["execution"]["metadata"].get("webhookDispatch", [])
            return len(got) >= 2 and got
        sent = until("both hook attempts recorded", dispatched)
    to_denied = [d for d in sent if d["url"] == METADATA_HOOK]
    assert [(d["attempt"], d["statusCode"], d["error"]) for d in to_denied] == [(1, None, REFUSED)], sent
    assert [d["statusCode"] for d in sent if d["url"] == witness.url] == [200]


def te_client(stack, name: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.base + "/taskengine", headers={"client": name, "api-key": key}, timeout=30)


def te_submit(http: httpx.Client, workflow: str, parameters: dict, **job) -> int:
    r = http.post("/job", json={"client": http.headers["client"], "job": {"workflow": workflow, **job}, "parameters": parameters})
    assert r.status_code == 200 and r.json()["result"] == "accepted", r.text
    return r.json()["id"]


def te_state(http: httpx.Client, job: int) -> str:
    return http.get(f"/jobs/{job}").json()["queue_state"]


def test_task_engine_callbacks_to_a_denied_address_are_refused_and_logged(stack, site):
    name, key = new_key(stack)
    with te_client(stack, name, key) as http:
        job = te_submit(http, "screenshot", {"url": site.url("/"), "content_id": "denied", "rest_endpoints": [METADATA_HOOK]})
        until("job completed", lambda: te_state(http, job) == "completed", 90)

        def settled():
            lines = [e["message"] for e in http.get(f"/logs/{job}").json() if e["progname"] == "callback"]
            return any(m.startswith("job callback") for m in lines) and not any(": pending" in m for m in lines) and lines
        lines = until("callbacks settled", settled)
    assert f"job callback (completed) to {METADATA_HOOK}: given up: {REFUSED}" in lines, lines
    assert all(m.endswith(f": given up: {REFUSED}") for m in lines), lines  # no callback of this job was delivered


def test_a_task_engine_semaphore_at_a_denied_address_is_never_asked(stack, site):
    """A semaphore URL is fetched by the scheduler: one the policy refuses is not fetched, and its job stays held."""
    asked: list[str] = []

    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Open(BaseHTTPRequestHandler):
        def log_message(self, *a):  # noqa: ANN002
            pass

        def do_GET(self):  # noqa: N802
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Open)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    open_url = f"http://127.0.0.1:{server.server_address[1]}/open"
    denied_url = f"http://169.254.169.254/gate/{uuid.uuid4().hex}"
    name, key = new_key(stack)
    try:
        with te_client(stack, name, key) as http:
            held = te_submit(http, "browse", {"steps": [{"url": site.url(f"/?held={uuid.uuid4().hex}")}]}, semaphore_url=denied_url)
            after = te_submit(http, "browse", {"steps": [{"url": site.url(f"/?after={uuid.uuid4().hex}")}]}, semaphore_url=open_url)
            # The scheduler looks at held jobs in order: the later job's release shows the earlier one was looked at.
            until("the later job completed", lambda: te_state(http, after) == "completed", 90)
            assert asked and te_state(http, held) == "scheduled"
            logs = "".join(p.read_text(errors="replace") for p in Path(stack.tmp).glob("api-*.log"))
            assert f"semaphore {denied_url} refused by the URL policy: 169.254.169.254 is link-local" in logs
            assert http.put(f"/jobs/{held}", json={"queue_state": "broken"}).status_code == 200  # leave nothing waiting
    finally:
        server.shutdown()


# ------------------------------------------------------------------ another tenant's streams


def test_another_tenants_streams_answer_not_found(stack, site):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ws_base = stack.base.replace("http://", "ws://")
    _, owner = new_key(stack)
    _, other = new_key(stack)
    task = "sec-" + uuid.uuid4().hex[:8]
    with stack.client(owner) as mine, stack.client(other) as theirs, \
            httpx.Client(base_url=stack.base + "/fastlane", headers={"X-API-Key": owner}, timeout=60) as fl_mine, \
            httpx.Client(base_url=stack.base + "/fastlane", headers={"X-API-Key": other}, timeout=60) as fl_theirs, \
            httpx.Client(base_url=stack.base + "/scrape/api/v1", headers={"Authorization": f"Bearer {owner}"}, timeout=60) as sc_mine:
        # one real job in each dialect that streams, all of the owner
        native = submit(mine, [{"url": site.url(f"/?stream={uuid.uuid4().hex}")}])
        made = fl_mine.post(f"/tasks/{task}", json={"image": "chromium", "command": f"text {site.url('/')}"})
        assert made.status_code == 200, made.text
        fl_job = made.json()["jobId"]
        pid = sc_mine.post("/projects", json={"name": "streams"}).json()["id"]
        assert sc_mine.post(f"/projects/{pid}/targets", json={"url": site.url("/")}).status_code == 201
        scraped = sc_mine.post(f"/projects/{pid}/jobs", json={})
        assert scraped.status_code == 201, scraped.text
        scrape_job = scraped.json()["id"]
        final_job(mine, native)
        until("fastlane execution done", lambda: fl_mine.get(made.json()["executionUrl"]).json()["execution"]["status"] in ("done", "failed"), 90)

        # native SSE
        r = theirs.get(f"/api/v1/jobs/{native}/events")
        assert r.status_code == 404 and r.json()["error"]["code"] == "JOB_NOT_FOUND", r.text
        with mine.stream("GET", f"/api/v1/jobs/{native}/events") as r:
            assert r.status_code == 200 and r.read().decode().startswith("event: complete")
        # native WebSocket
        for key, expected in ((other, "error"), (owner, "complete")):
            with connect(f"{ws_base}/api/v1/jobs/stream", additional_headers={"X-API-Key": key}, open_timeout=10) as ws:
                ws.send(json.dumps({"action": "subscribe", "jobIds": [native]}))
                msg = json.loads(ws.recv(timeout=20))
            assert msg["type"] == expected, msg
            if expected == "error":
                assert msg["error"]["code"] == "JOB_NOT_FOUND", msg
        # fastlane stream pages and their WebSocket
        for path in (f"/tasks/{task}/jobs/{fl_job}/stream", f"/tasks/{task}/jobs/{fl_job}/executions/{made.json()['executionId']}/stream"):
            assert fl_theirs.get(path).status_code == 404, path
            assert fl_mine.get(path).status_code == 200, path
        frames: dict[str, list] = {}
        for who, key in (("theirs", other), ("mine", owner)):
            frames[who] = []
            with connect(f"{ws_base}/fastlane/tasks/{task}/jobs/{fl_job}/ws", additional_headers={"X-API-Key": key}, open_timeout=10) as ws:
                try:
                    while True:
                        frames[who].append(ws.recv(timeout=20))
                except ConnectionClosed:
                    pass
        assert frames["theirs"] == [] and frames["mine"][0].startswith("EXIT CODE: "), frames
        # scrape's job WebSocket: its documented not-found close code
        for key, code in ((other, 4004), (owner, None)):
            with connect(f"{ws_base}/scrape/api/v1/jobs/{scrape_job}/ws?token={key}", open_timeout=10) as ws:
                if code is None:
                    assert json.loads(ws.recv(timeout=20))  # the owner gets the job's current state
                else:
                    with pytest.raises(ConnectionClosed):
                        ws.recv(timeout=20)
                    assert ws.close_code == code, ws.close_code


# ------------------------------------------------------------------ secrets at rest


def test_webhook_secrets_are_encrypted_at_rest_never_logged_and_the_key_file_is_private(stack, site):
    from cryptography.fernet import Fernet
    from sqlalchemy import create_engine, text

    home = Path(stack.env["SOJOURN_HOME"])
    secret = "at-rest-" + uuid.uuid4().hex
    receiver = Receiver()
    _, key = new_key(stack)
    with stack.client(key) as http:
        hook = http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.completed"], "secret": secret}).json()
        final_job(http, submit(http, [{"url": site.url(f"/?secret={uuid.uuid4().hex}")}]))
        receiver.wait(1)  # a delivery was signed with it, so every code path that reads it has run
    key_file = home / "secret.key"
    if stack.env.get("SOJOURN_SECRET_KEY"):  # an operator's key: nothing is generated
        fernet_key = stack.env["SOJOURN_SECRET_KEY"].encode()
    else:
        assert key_file.stat().st_mode & 0o777 == 0o600
        fernet_key = key_file.read_bytes().strip()
    tourist_secret = home / "tourist.secret"
    assert not tourist_secret.exists() or tourist_secret.stat().st_mode & 0o777 == 0o600

    url = stack.env.get("SOJOURN_DATABASE_URL") or f"sqlite:///{home / 'sojourn.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            stored = db.execute(text("SELECT secret_encrypted FROM webhooks WHERE id = :id"), {"id": hook["id"]}).scalar_one()
    finally:
        engine.dispose()
    assert secret not in stored and Fernet(fernet_key).decrypt(stored.encode()).decode() == secret
    if url.startswith("sqlite:///"):  # the database's bytes, its journal too: nowhere in clear
        db_file = Path(url.removeprefix("sqlite:///"))
        for path in db_file.parent.glob(db_file.name + "*"):
            assert secret.encode() not in path.read_bytes(), path
    for log in Path(stack.tmp).glob("*.log"):
        assert secret.encode() not in log.read_bytes(), log


def test_a_secret_made_by_several_processes_at_once_is_one_non_empty_value(tmp_path):
    """Processes starting together race to create SOJOURN_HOME's secrets: none may read a file another is still
    writing (an empty Tourist secret or Fernet key would sign with an empty key)."""
    from sojourn.local_secrets import stored_secret
    from sojourn.settings import Settings

    settings = Settings(home=tmp_path)
    for round_ in range(30):
        start = threading.Barrier(8)
        got: list[str] = []

        def make(i: int) -> str:
            time.sleep(0)  # yield between creating and writing, as a busy machine does
            return f"value-{i}-" + "x" * 4096

        def one(i: int) -> None:
            start.wait()
            got.append(stored_secret(settings, f"race-{round_}.secret", lambda: make(i)))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(got)) == 1 and got[0].startswith("value-"), (round_, {g[:10] for g in got})
        assert (tmp_path / f"race-{round_}.secret").stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------ what a page may not do


def test_page_initiated_file_view_source_chrome_and_top_level_data_navigations_are_refused(stack, site):
    targets = ["file:///etc/passwd", f"view-source:{site.url('/')}", "data:text/html,<h1>pwned</h1>", "chrome://version"]
    script = ("(async () => { const out = {}; for (const u of " + json.dumps(targets).replace('"', "'") + ") {"
              " try { await navigation.navigate(u).committed; out[u] = 'committed'; } catch (e) { out[u] = e.name; } }"
              " const p = document.createElement('pre'); p.id = 'nav'; p.textContent = JSON.stringify(out); document.body.append(p); })()")
    _, key = new_key(stack)
    with stack.client(key) as http:
        job = final_job(http, submit(http, [{"url": site.url("/"), "actions": [f'page.evaluate("{script}")']}],
                                     input={"extract": {"nav": "#nav", "h1": "h1"}, "capture": ["console"]}))
        assert job["status"] == "completed", job
        data = job["result"]["data"]
        # each navigation was aborted before it committed, and the page is still the one the job opened
        assert json.loads(data["nav"]) == {u: "AbortError" for u in targets} and data["h1"] == "Hello Sojourn", data
    manifest = Path(stack.env["SOJOURN_HOME"]) / "artifacts" / "jobs" / job["id"] / "manifest.json"
    logged = json.dumps(json.loads(manifest.read_text())["console"])  # what the browser said, as the job recorded it
    assert "Not allowed to load local resource: file:///etc/passwd" in logged
    assert "Not allowed to load local resource: view-source:" in logged
    assert "Not allowed to navigate top frame to data URL" in logged


def test_websockets_from_page_scripts_obey_the_url_policy(stack, site):
    """A page's WebSocket goes through the job's egress proxy: a key whose allow-list lacks the socket's host gets a
    closed socket, and the server never sees the connection; with the host allowed the same page connects."""
    from websockets.sync.server import serve

    connections: list[str] = []

    def handler(ws) -> None:  # noqa: ANN001
        connections.append(ws.request.path)
        ws.send("hello")

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        outcomes = {}
        for allow in (["localhost"], ["localhost", "127.0.0.0/8"]):
            marker = uuid.uuid4().hex
            script = ("new Promise(done => { const ws = new WebSocket('ws://127.0.0.1:%d/%s');"
                      " ws.onmessage = e => done('message ' + e.data); ws.onclose = e => done('closed ' + e.code); })"
                      ".then(r => { const p = document.createElement('p'); p.id = 'ws'; p.textContent = r; document.body.append(p); })") % (port, marker)
            _, key = new_key(stack, urlAllowList=allow)
            with stack.client(key) as http:
                job = final_job(http, submit(http, [{"url": site.url("/", host="localhost"), "actions": [f'page.evaluate("{script}")']}],
                                             input={"extract": {"ws": "#ws"}}))
            assert job["status"] == "completed", job
            outcomes[len(allow)] = (job["result"]["data"]["ws"], [p for p in connections if marker in p])
        server.shutdown()
    assert outcomes[1] == ("closed 1006", []), outcomes  # refused: the server never saw it
    assert outcomes[2][0] == "message hello" and len(outcomes[2][1]) == 1, outcomes
