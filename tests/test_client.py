"""sojourn.client (sync and async) and the shell's `sojourn keys` / `sojourn jobs`, against the session stack (#27, first slice)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from sojourn.client import AsyncSojourn, Sojourn, SojournError
from tests import processes
from tests.helpers import until

PNG = b"\x89PNG\r\n\x1a\n"


def _key(stack) -> str:
    with Sojourn(stack.base, stack.admin_key) as admin:
        return admin.create_key("client-test")["key"]


def test_the_sync_client_runs_lists_downloads_cancels_and_raises_the_apis_errors(stack, site, tmp_path):
    with Sojourn(stack.base, _key(stack)) as sj:
        job = sj.run({"steps": [{"url": site.url("/?client=sync")}], "capture": ["screenshot"]}, timeout=120)
        assert job["status"] == "completed"
        [shot] = job["result"]["screenshots"]
        assert sj.download_screenshot(shot, tmp_path / "shot.png").read_bytes().startswith(PNG)
        assert [j["id"] for j in sj.list(page_size=1)][:1] == [job["id"]]  # newest first, a page of one at a time
        spec = {"steps": [{"url": site.url("/?client=long"), "actions": ["page.waitForTimeout(60000)"]}]}
        first = sj.create(spec)
        with pytest.raises(SojournError) as missing:
            sj.get(str(uuid.uuid4()))
        assert missing.value.status == 404 and missing.value.code == "JOB_NOT_FOUND"
        assert sj.cancel(first["jobId"])["status"] in ("cancelled", "cancelling")
        assert sj.wait(first["jobId"], timeout=60)["status"] == "cancelled"


def test_an_idempotency_key_makes_one_job_however_often_it_is_sent(stack, site):
    key = "retry-" + uuid.uuid4().hex
    spec = {"steps": [{"url": site.url("/?client=idempotent")}]}
    with Sojourn(stack.base, _key(stack)) as sj:
        ids = {sj.create(spec, idempotency_key=key)["jobId"] for _ in range(3)}
        assert len(ids) == 1
        [job_id] = ids
        assert sj.wait(job_id, timeout=120)["status"] == "completed"
        assert sum(j["id"] == job_id for j in sj.list()) == 1
    with Sojourn(stack.base, _key(stack)) as other:  # the key is per principal: another one's is another job
        assert other.create(spec, idempotency_key=key)["jobId"] != job_id
        # eight requests with one key at the same instant (raw HTTP, no client retry to hide an error): every one
        # is accepted, and all name one job (the ledger's unique id decides; the losers answer the winner's job)
        from concurrent.futures import ThreadPoolExecutor

        racing, start = "race-" + uuid.uuid4().hex, threading.Barrier(8)

        def send(_: int) -> tuple[int, str]:
            start.wait()
            r = httpx.post(f"{other.base}/jobs", json={"type": "browse", "input": spec}, timeout=30,
                           headers={"X-API-Key": other.api_key or "", "Idempotency-Key": racing})
            return r.status_code, r.json().get("jobId", r.text)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(8)))
        assert {status for status, _ in answers} == {202} and len({job for _, job in answers}) == 1, answers


def test_batches_templates_webhooks_logs_and_status_from_the_client(stack, site):
    with Sojourn(stack.base, _key(stack)) as sj:
        batch = sj.create_batch([{"type": "browse", "input": {"steps": [{"url": site.url(f"/?client=batch{i}")}], "capture": ["screenshot"]}}
                                 for i in range(2)], max_concurrent=1)
        ended = list(sj.wait_batch(batch["batchId"], timeout=120))
        assert sorted(j["id"] for j in ended) == sorted(batch["jobIds"]) and {j["status"] for j in ended} == {"completed"}
        assert sj.batch(batch["batchId"])["status"] == "completed"
        [shot] = sj.screenshots(ended[0]["id"])
        assert shot["id"].startswith(ended[0]["id"])
        deadline = time.monotonic() + 20  # the worker ships its log lines to Prefect in batches
        while not any(line["message"].startswith("screenshot: 1280x") for line in sj.logs(ended[0]["id"])):
            assert time.monotonic() < deadline, sj.logs(ended[0]["id"])
            time.sleep(0.5)

        template = sj.create_template("client-template", "browse", {"steps": [{"url": "{page}"}]}, variables=["page"])
        made = sj.execute_template(template["templateId"], {"page": site.url("/?client=template")})
        assert made["templateId"] == template["templateId"] and sj.wait(made["jobId"], timeout=120)["status"] == "completed"
        again = sj.retry(made["jobId"])
        assert again["originalJobId"] == made["jobId"] and sj.wait(again["newJobId"], timeout=120)["status"] == "completed"

        hook = sj.create_webhook(site.url("/hook"), ["job.completed"], secret="s3cret-client")
        assert hook["id"] in {h["id"] for h in sj.webhooks()}
        sj.delete_webhook(hook["id"])
        assert hook["id"] not in {h["id"] for h in sj.webhooks()}
        assert sj.status()["status"] in ("healthy", "degraded")


async def test_the_async_client_has_the_same_methods(stack, site):
    public = {n for n in dir(Sojourn) if not n.startswith("_")} - {"close"}
    assert public <= {n for n in dir(AsyncSojourn) if not n.startswith("_")}, public - set(dir(AsyncSojourn))
    async with AsyncSojourn(stack.base, _key(stack)) as sj:
        job = await sj.run({"steps": [{"url": site.url("/?client=async")}]}, timeout=120)
        assert job["status"] == "completed"
        assert [j["id"] async for j in sj.list()] == [job["id"]]
        with pytest.raises(SojournError) as missing:
            await sj.get(str(uuid.uuid4()))
        assert missing.value.code == "JOB_NOT_FOUND"


def test_keys_and_jobs_from_the_shell(stack, site, tmp_path):
    env = {**os.environ, "SOJOURN_URL": stack.base, "SOJOURN_API_KEY": stack.admin_key}

    def sojourn(*args: str, key: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sojourn.cli", *args], env={**env, **({"SOJOURN_API_KEY": key} if key else {})},
                              capture_output=True, text=True, timeout=120)

    principal = "shell-" + uuid.uuid4().hex[:6]
    made = sojourn("keys", "create", "from-the-shell", "--principal", principal)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["principal"] == principal and key["key"].startswith("sj_")
    assert key["id"] in [k["id"] for k in json.loads(sojourn("keys", "list").stdout)]
    with Sojourn(stack.base, key["key"]) as sj:
        job_id = sj.create({"steps": [{"url": site.url("/?client=shell")}]})["jobId"]
    got = sojourn("jobs", "get", job_id, "--wait", "60", key=key["key"])
    assert got.returncode == 0 and json.loads(got.stdout)["status"] == "completed", got.stdout + got.stderr
    assert [j["id"] for j in json.loads(sojourn("jobs", "list", key=key["key"]).stdout)] == [job_id]
    logs = sojourn("jobs", "logs", job_id, key=key["key"])
    assert logs.returncode == 0 and site.url("/?client=shell") in logs.stdout, logs.stdout + logs.stderr
    # a file of 20 jobs, one failing: each printed as it ends (with its line), its captures saved under OUT/<line>/,
    # a summary on stderr, exit 1 as one failed; run again, only the failed line runs (the others are done in OUT)
    lines = [{"type": "browse", "input": {"steps": [{"url": site.url(f"/?client=file{n}")}], "capture": ["screenshot"]}} for n in range(1, 21)]
    lines[6] = {"type": "browse", "input": {"steps": [{"url": site.url("/never?s=30"), "timeout": 1}]}}
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("\n".join(json.dumps(j) for j in lines) + "\n\n")
    out = tmp_path / "out"
    ran = sojourn("run", str(jobs_file), "--out", str(out), "--max-concurrent", "4", key=key["key"])
    printed = {j["line"]: j for j in map(json.loads, ran.stdout.splitlines())}
    assert ran.returncode == 1 and sorted(printed) == list(range(1, 21)), ran.stdout + ran.stderr
    assert [n for n, j in printed.items() if j["status"] != "completed"] == [7], ran.stdout
    assert "20/20 ended (1 not completed)" in ran.stderr, ran.stderr
    for n in (1, 20):
        saved = json.loads((out / str(n) / "job.json").read_text())
        assert saved["id"] == printed[n]["id"] and saved["status"] == "completed"
        (shot,) = [a["name"] for a in saved["result"]["metadata"]["artifacts"] if a["kind"] == "screenshot"]
        assert (out / str(n) / shot).read_bytes().startswith(PNG)
    assert json.loads((out / "7" / "job.json").read_text())["status"] == "failed"
    again = sojourn("run", str(jobs_file), "--out", str(out), key=key["key"])
    assert again.returncode == 1 and "19 of 20 lines completed in" in again.stderr, again.stderr
    assert [j["line"] for j in map(json.loads, again.stdout.splitlines())] == [7], again.stdout
    # Ctrl-C cancels what the run submitted and has not ended, and says so
    slow_file = tmp_path / "slow.jsonl"
    slow_file.write_text("\n".join(json.dumps({"type": "browse", "input": {"steps": [{"url": site.url(f"/never?s=30&ctrl-c={n}")}]}})
                                   for n in range(3)))
    log = tmp_path / "ctrl-c.log"
    run = processes.start([sys.executable, "-m", "sojourn.cli", "run", str(slow_file), "--max-concurrent", "1"],
                          env={**env, "SOJOURN_API_KEY": key["key"]}, log=log)
    until("the batch submitted", lambda: "batch " in log.read_text(), timeout=60)
    run.send_signal(signal.SIGINT)
    assert run.wait(30) == 130, log.read_text()
    assert "sojourn: interrupted: cancelled the 3 jobs not ended" in log.read_text(), log.read_text()
    batch_id = re.search(r"batch (\S+): 3 jobs", log.read_text()).group(1)
    with Sojourn(stack.base, key["key"]) as sj:
        slow = sj.batch(batch_id)["jobIds"]
        assert len(slow) == 3 and {sj.wait(j, timeout=30)["status"] for j in slow} == {"cancelled"}, slow
    # a scrape project's results, exported from the shell
    with httpx.Client(base_url=stack.base + "/scrape/api/v1", headers={"X-API-Key": key["key"]}, timeout=30) as scrape:
        project = scrape.post("/projects", json={"name": "from the shell", "config": {"rate_limit_delay": 0}}).json()["id"]
        assert scrape.post(f"/projects/{project}/targets", json={"url": site.url("/?client=scrape")}).status_code == 201
        scrape_job = scrape.post(f"/projects/{project}/jobs", json={}).json()["id"]
        until("the scrape job ended", lambda: scrape.get(f"/jobs/{scrape_job}").json()["status"] in ("completed", "failed"), timeout=60)
    exported = sojourn("scrape", "export", project, "--format", "jsonl", key=key["key"])
    (row,) = map(json.loads, exported.stdout.splitlines())
    assert exported.returncode == 0 and row["job_id"] == scrape_job and row["data"]["title"] == "Home", exported.stdout + exported.stderr
    rows = list(csv.DictReader(io.StringIO(sojourn("scrape", "export", project, "--job", scrape_job, key=key["key"]).stdout)))
    assert [(r["job_id"], r["title"]) for r in rows] == [(scrape_job, "Home")] and "Hello Sojourn" in rows[0]["text"], rows
    status = sojourn("status")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "healthy", status.stdout + status.stderr
    unknown = sojourn("jobs", "get", str(uuid.uuid4()))
    assert unknown.returncode == 1 and unknown.stderr.startswith("sojourn: JOB_NOT_FOUND: Job with ID"), unknown.stderr
    assert sojourn("keys", "revoke", key["id"]).returncode == 0
    refused = sojourn("jobs", "list", key=key["key"])
    assert refused.returncode == 1 and refused.stderr.strip() == "sojourn: UNAUTHORIZED: The API key is not valid.", refused.stderr


def test_answers_are_typed_a_newer_field_does_not_break_them_429s_are_waited_out_and_a_flow_can_call_sojourn(stack, site):
    from prefect import flow

    from sojourn.client import Job

    admin = Sojourn(stack.base, stack.admin_key)
    with Sojourn(stack.base, _key(stack)) as sj:
        job = sj.run({"steps": [{"url": site.url("/?client=typed")}], "capture": ["screenshot"]}, timeout=120)
        assert isinstance(job, Job) and job.status == job["status"] == "completed" and job.ended
        assert job.result is not None and job.result.screenshots == job["result"]["screenshots"] and job.result.artifacts
        # the answer a newer server would send, with a field this client has never heard of: parsed, and kept
        raw = httpx.get(f"{stack.base}/api/v1/jobs/{job.id}", headers={"X-API-Key": sj.api_key or ""}).json()
        newer = Job.model_validate({**raw, "sandboxProfile": {"name": "strict"}, "status": "completed"})
        assert newer["sandboxProfile"] == {"name": "strict"} and newer.to_dict() == {**raw, "sandboxProfile": {"name": "strict"}}
    # a key allowed 2 requests a second: the API answers 429 with Retry-After, and the client waits and goes on
    limited = admin.create_key("limited", rateLimit="2/second")["key"]
    statuses: list[int] = []
    with Sojourn(stack.base, limited) as sj:
        sj._http.event_hooks["response"].append(lambda response: statuses.append(response.status_code))
        assert [list(sj.list()) for _ in range(6)] == [[]] * 6  # (a tenant of its own: no job yet)
    assert 429 in statuses and statuses.count(200) == 6, statuses

    # a user's own Prefect flow calls Sojourn and waits for its job
    @flow
    def my_flow(url: str) -> str:
        with Sojourn(stack.base, admin.api_key) as inner:
            return inner.run({"steps": [{"url": url}]}, timeout=120).status

    assert my_flow(site.url("/?client=in-a-flow")) == "completed"
    admin.close()


class DroppingProxy:
    """A TCP proxy in front of the API that forwards each request (one per connection) and, for the first job
    creation, drops the connection instead of passing the answer back: the API made the job, the client never heard."""

    def __init__(self, upstream_port: int) -> None:
        import socket

        self.upstream_port, self.creates = upstream_port, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn) -> None:  # noqa: ANN001
        import socket

        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            lines = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"connection:")]
            length = next((int(h.split(b":", 1)[1]) for h in lines if h.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as up:
                up.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body)
                answer = b""
                while chunk := up.recv(65536):
                    answer += chunk
            if lines[0].startswith(b"POST /api/v1/jobs "):
                self.creates += 1
                if self.creates == 1:
                    return  # dropped: closed without a word
            conn.sendall(answer)

    def close(self) -> None:
        self.server.close()


def test_a_create_whose_answer_was_lost_with_the_connection_is_retried_and_makes_one_job(stack, site):
    proxy = DroppingProxy(stack.api_port)
    try:
        with Sojourn(f"http://127.0.0.1:{proxy.port}", _key(stack)) as sj:
            made = sj.create({"steps": [{"url": site.url("/?client=dropped")}]})
            assert proxy.creates == 2  # sent again after the dropped connection, under the same Idempotency-Key
            assert [j.id for j in sj.list()] == [made.job_id]  # and the API made one job
            assert sj.wait(made.job_id, timeout=120).status == "completed"
    finally:
        proxy.close()
