"""Several machines' worth on one: two API processes and two workers sharing one Prefect server (PostgreSQL),
one facade database (PostgreSQL), Redis and an S3 artifact store (moto's S3 server). 36 jobs from the native
API (single jobs and a batch) and Tourist; one worker and one API process are killed mid-run (the kills, not
the volume, are what this proves; volume is bench/'s). Every job that
was accepted ends exactly once, completed, with one flow run, and its captures read the same from either API.

The cluster has a work pool of its own, so the session's stack never takes its jobs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests import processes
from tests.conftest import REDIS_URL, _free_port, redis_available
from tests.helpers import Receiver, png_image
from tests.postgres import drop_facade_database, fresh_facade_database
from sojourn.readiness import wait_until_up

pytestmark = pytest.mark.slow

FINAL = ("completed", "failed", "cancelled")


class Cluster:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.apis: dict[str, tuple[subprocess.Popen, str]] = {}
        self.workers: dict[str, subprocess.Popen] = {}

    def _spawn(self, what: str, name: str, extra: dict[str, str], args: tuple[str, ...] = ()) -> subprocess.Popen:
        return processes.start([sys.executable, "-m", "sojourn.cli", what, *args], env={**self.env, **extra}, log=self.tmp / f"{name}.log")

    def start_api(self, name: str, port: int | None = None) -> str:
        port = port or _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = self._spawn("api", name, {"SOJOURN_API_PORT": str(port), "SOJOURN_PUBLIC_URL": base})
        wait_until_up(f"{base}/health", timeout=60, proc=proc, what=f"API {name}")
        self.apis[name] = (proc, base)
        return base

    def start_worker(self, name: str) -> None:
        self.workers[name] = self._spawn("worker", name, {}, ("--name", f"scale-{name}"))

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)  # the process alone, as a crash does: its browser driver notices
        proc.wait(10)

    def stop(self) -> None:
        procs = [p for p, _ in self.apis.values()] + list(self.workers.values())
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            processes.stop(p, timeout=30)


@pytest.fixture()
def cluster(prefect_server, s3_server, tmp_path):
    import boto3

    if not redis_available():  # (under CI=true a missing Redis fails instead)
        pytest.skip("no Redis on this machine (CI always has one)")
    facade = fresh_facade_database("sojourn_scale")
    if facade is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    bucket = f"scale-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=bucket)
    from cryptography.fernet import Fernet

    env = os.environ.copy()
    env.update({
        "SOJOURN_HOME": str(tmp_path / "home"),
        "SOJOURN_DATABASE_URL": facade,
        "SOJOURN_REDIS_URL": REDIS_URL,
        "SOJOURN_ARTIFACTS_URL": f"s3://{bucket}/sojourn",
        "SOJOURN_S3_ENDPOINT_URL": s3_server,
        "SOJOURN_S3_ACCESS_KEY": "test",
        "SOJOURN_S3_SECRET_KEY": "test",
        "SOJOURN_S3_REGION": "us-east-1",
        "SOJOURN_SECRET_KEY": Fernet.generate_key().decode(),
        "SOJOURN_ADMIN_KEY": "sj_scale_" + uuid.uuid4().hex,
        "SOJOURN_WORK_POOL": f"scale-{uuid.uuid4().hex[:8]}",
        "SOJOURN_MAX_CONCURRENCY": "4",
        "SOJOURN_WORKER_LIMIT": "2",
        "SOJOURN_WORKER_HEARTBEAT_SECONDS": "2",
        "SOJOURN_CRASH_AFTER_SECONDS": "8",
        "SOJOURN_WORKER_SHUTDOWN_GRACE": "5",
        "SOJOURN_DISPATCH_LEASE_SECONDS": "5",
        "SOJOURN_OUTBOX_LEASE_SECONDS": "5",  # the dead API's webhooks go out again 5 s (+ their timeout) after its claim
        "SOJOURN_RATE_LIMIT": "100000/minute",
        "SOJOURN_TOURIST_AUTH": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    })
    c = Cluster(tmp_path, env)
    try:
        yield c
    finally:
        c.stop()
        drop_facade_database(facade)


def page(site, i: int) -> str:
    return site.url(f"/?scale={i}")


@pytest.mark.slow
@pytest.mark.timeout(400)  # 36 jobs on two cores, a dead worker found by its silence, a dead API's deliveries swept up
def test_two_apis_and_two_workers_lose_and_double_nothing_when_one_of_each_dies(cluster, site):
    api1 = cluster.start_api("api1")
    api2 = cluster.start_api("api2")
    cluster.start_worker("worker1")
    cluster.start_worker("worker2")
    key = cluster.env["SOJOURN_ADMIN_KEY"]
    native = {"X-API-Key": key}
    wait = ["page.waitForTimeout(1000)"]  # long enough that a kill lands mid-job
    # A webhook stored through api1: its secret is encrypted with the shared SOJOURN_SECRET_KEY, and whichever
    # API sees a job end (or sweeps up what a dead one owed) signs with it.
    receiver, secret = Receiver(), "scale-secret-" + uuid.uuid4().hex
    r = httpx.post(f"{api1}/api/v1/webhooks", headers=native, json={"url": receiver.url, "events": ["job.completed"], "secret": secret})
    assert r.status_code == 201, r.text

    # The work: 18 native jobs, a native batch of 10, 8 Tourist jobs, spread over both APIs.
    work: list[tuple[str, int]] = [("native", i) for i in range(18)] + [("batch", b) for b in range(1)] + [("tourist", i) for i in range(8)]
    random.Random(7).shuffle(work)
    accepted: dict[str, str] = {}  # job id -> dialect
    lock = threading.Lock()
    dead: set[str] = set()
    batch_ids: list[str] = []

    def submit(n: int, item: tuple[str, int]) -> None:
        kind, i = item
        for base in ([api1, api2] if n % 2 == 0 else [api2, api1]):
            if base in dead:
                continue
            try:
                with httpx.Client(base_url=base, timeout=30) as http:
                    if kind == "native":
                        r = http.post("/api/v1/jobs", headers=native, json={"type": "browse", "input": {
                            "steps": [{"url": page(site, n), "actions": wait}], "capture": ["screenshot"]}})
                        ids = [r.json()["jobId"]] if r.status_code == 202 else []
                    elif kind == "batch":
                        r = http.post("/api/v1/jobs/batch", headers=native, json={"jobs": [
                            {"type": "browse", "input": {"steps": [{"url": page(site, 1000 * (i + 1) + j), "actions": wait}], "capture": ["screenshot"]}}
                            for j in range(10)], "options": {"maxConcurrent": 3}})
                        ids = r.json()["jobIds"] if r.status_code == 202 else []
                        if ids:
                            with lock:
                                batch_ids.append(r.json()["batchId"])
                    else:
                        r = http.post("/tourist/api/v1/async-job", json={"steps": [{"url": page(site, n), "actions": wait}], "options": ["SCREENSHOT"]})
                        ids = [r.json()["id"]] if r.status_code == 200 else []
            except httpx.ConnectError:
                continue  # nothing reached that API: try the other one
            except httpx.TransportError:
                return  # sent, answer lost as the API died: the job may or may not exist; not counted as accepted
            assert ids, (r.status_code, r.text)
            with lock:
                for job_id in ids:
                    accepted[job_id] = "tourist" if kind == "tourist" else "native"
            return

    def completed_count() -> int:
        with httpx.Client(base_url=api2, headers=native, timeout=30) as http:
            return http.get("/api/v1/jobs", params={"status": "completed", "limit": 1}).json()["total"]

    def running_on(worker: str) -> list:
        import asyncio

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, WorkPoolFilter, WorkPoolFilterName
        from prefect.client.schemas.objects import StateType

        async def read() -> list:
            async with get_client() as client:
                return await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
                    work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[cluster.env["SOJOURN_WORK_POOL"]])))

        return [r for r in asyncio.run(read()) if r.infrastructure_pid == worker]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(submit, n, item) for n, item in enumerate(work[:14])]
        deadline = time.monotonic() + 120
        while (completed_count() < 6 or not running_on("scale-worker1")) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert running_on("scale-worker1"), "worker1 never ran a job"
        cluster.kill(cluster.workers["worker1"])  # jobs are running on it: they must run again elsewhere
        stranded = running_on("scale-worker1")  # still Running under a dead worker: they were mid-job
        assert stranded, "worker1's jobs all ended just before it was killed; nothing to run again"
        cluster.kill(cluster.apis["api1"][0])  # with its dispatcher's claims, event streams and clients
        dead.add(api1)
        futures += [pool.submit(submit, n, item) for n, item in enumerate(work[14:], start=14)]
        for f in futures:
            f.result()
    assert len(accepted) >= 28, len(accepted)  # a few submissions may have been cut off by the kill

    # Every accepted job ends, completed (read from the surviving API; long polls, so no busy loop).
    def final(job_id: str) -> dict:
        with httpx.Client(base_url=api2, headers=native, timeout=90) as http:
            end = time.monotonic() + 600
            while time.monotonic() < end:
                job = http.get(f"/api/v1/jobs/{job_id}", params={"wait": 60}).json()
                if job.get("status") in FINAL:
                    return job
            return job

    with ThreadPoolExecutor(16) as pool:
        ends = dict(zip(accepted, pool.map(final, accepted)))
    not_done = {j: (v.get("status"), v.get("error")) for j, v in ends.items() if v.get("status") != "completed"}
    assert not not_done, not_done

    # Exactly one flow run per job, each completed; both workers served jobs.
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    async def runs() -> list:
        out, offset = [], 0
        async with get_client() as client:
            while True:
                page_ = await client.read_flow_runs(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[cluster.env["SOJOURN_WORK_POOL"]])),
                                                    limit=200, offset=offset)
                out += page_
                if len(page_) < 200:
                    return out
                offset += 200

    all_runs = asyncio.run(runs())
    by_job: dict[str, list] = {}
    for run in all_runs:
        job_id = next(t[4:] for t in run.tags if t.startswith("job:"))
        by_job.setdefault(job_id, []).append(run)
    assert all(len(v) == 1 for v in by_job.values()), {j: len(v) for j, v in by_job.items() if len(v) != 1}
    for job_id in accepted:
        assert by_job[job_id][0].state_type.value == "COMPLETED", (job_id, by_job[job_id][0].state)
    assert "scale-worker2" in {r.infrastructure_pid for r in all_runs}  # (worker1 was seen running a job before it died)
    # SOJOURN_WORKER_LIMIT=2: a worker never ran more than two at once, even alone with the pool's 4 slots
    # (runs it took over from worker1 are left out: their start time is their first start, on worker1).
    taken_over = {str(r.id) for r in stranded}
    spans = [(r.start_time, r.end_time) for r in all_runs if r.infrastructure_pid == "scale-worker2" and str(r.id) not in taken_over]
    assert max(sum(1 for a, b in spans if a <= start < b) for start, _ in spans) <= 2

    # The jobs that were running on the killed worker ran again on the other (the reaper saw it go silent).
    again = {str(r.id): r for r in all_runs}
    for run in stranded:
        assert again[str(run.id)].infrastructure_pid == "scale-worker2" and again[str(run.id)].state_type.value == "COMPLETED"

    # Every native job's completion was delivered, signed with the secret api1 stored, once per job: a delivery repeated
    # across the kill carries the same event id, so a receiver can tell it is the same event.
    mine = {j for j, dialect in accepted.items() if dialect == "native"}  # (Tourist jobs belong to Tourist's principal)
    receiver.wait(len(mine), timeout=120)
    events: dict[str, set[str]] = {}
    for headers, body in receiver.received:
        assert headers["x-sojourn-signature"] == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        payload = json.loads(body)
        events.setdefault(payload["data"]["id"], set()).add(payload["id"])
    assert set(events) == mine and all(len(ids) == 1 for ids in events.values())

    # The batches' limit held across both APIs: never more than 3 of a batch running at once.
    with httpx.Client(base_url=api2, headers=native, timeout=30) as http:
        assert batch_ids
        for batch_id in batch_ids:
            view = http.get(f"/api/v1/jobs/batch/{batch_id}").json()
            spans = [(j["startedAt"], j["completedAt"]) for j in view["jobs"]]
            assert view["status"] == "completed" and len(spans) == 10
            for start, _ in spans:
                assert sum(1 for a, b in spans if a <= start < b) <= 3, spans

    # Captures read the same from either API (the killed one restarted on its port).
    port = int(api1.rsplit(":", 1)[1])
    api1 = cluster.start_api("api1-again", port=port)

    def screenshot(base: str, job_id: str) -> bytes:
        with httpx.Client(base_url=base, headers=native, timeout=30) as http:
            if accepted[job_id] == "tourist":
                body = http.get("/tourist/api/v1/job-status", params={"id": job_id}).json()
                assert body["status"] == "success", body
                return base64.b64decode(body["result"]["screenshot"])
            shots = http.get(f"/api/v1/jobs/{job_id}/screenshots").json()["screenshots"]
            r = http.get(f"/api/v1/screenshots/{shots[0]['id']}")
            assert r.status_code == 200
            return r.content

    def same_from_both(job_id: str) -> None:
        a, b = screenshot(api1, job_id), screenshot(api2, job_id)
        assert a == b and png_image(a).size[0] == 1280

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(same_from_both, accepted))
