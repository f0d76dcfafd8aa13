"""Prefect's own layout past one process (#24): two Prefect API replicas started with `--no-services` at the same
moment on a fresh PostgreSQL database, one `sojourn prefect-server services` process, Redis messaging between them;
Sojourn's API talks to one replica and its worker to the other."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from sojourn.deployments.balancer import haproxy_config
from sojourn.readiness import wait_until_up
from tests import processes
from tests.conftest import _free_port, redis_available
from tests.helpers import Receiver, until
from tests.postgres import drop_database, drop_facade_database, fresh_facade_database, fresh_postgres_database, postgres_available, required_in_ci

REDIS_DB = 6  # Prefect's keys have no prefix: a database of their own (the rate-limit tests use 0)


def _flush_redis() -> None:
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()


class Layout:
    def __init__(self, tmp: Path, prefect_db: str) -> None:
        self.tmp = tmp
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SOJOURN_"))}
        self.server_env = {**base, "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db, "SOJOURN_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
                           "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.key = "sj_ha_" + uuid.uuid4().hex
        self.sojourn_env = {**base, "SOJOURN_HOME": str(tmp / "home"), "SOJOURN_ADMIN_KEY": self.key, "SOJOURN_ALLOW_LOOPBACK": "true",
                            "SOJOURN_WORK_POOL": f"ha-{uuid.uuid4().hex[:8]}", "SOJOURN_WORKER_HEARTBEAT_SECONDS": "2",
                            "SOJOURN_WORKER_SHUTDOWN_GRACE": "3"}
        self.procs: dict[str, object] = {}
        self.replicas: dict[str, str] = {}
        self.api = ""

    def spawn(self, name: str, args: list[str], env: dict[str, str]):  # noqa: ANN201
        proc = processes.start([sys.executable, "-m", "sojourn.cli", *args], env=env, log=self.tmp / f"{name}.log")
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    if not postgres_available() or not redis_available():
        pytest.skip("needs PostgreSQL and Redis (CI always has both)")
    prefect_db = fresh_postgres_database(prefix=f"sojourn_ha_{uuid.uuid4().hex[:6]}")
    _flush_redis()
    lay = Layout(tmp_path_factory.mktemp("ha"), prefect_db)
    try:
        # Both replicas at the same instant on the fresh database: one migrates it, the other waits for the lock.
        for name in ("prefect-a", "prefect-b"):
            port = _free_port()
            lay.replicas[name] = f"http://127.0.0.1:{port}/api"
            lay.spawn(name, ["prefect-server", "--no-services", "--host", "127.0.0.1", "--port", str(port)], lay.server_env)
        lay.spawn("prefect-services", ["prefect-server", "services"], lay.server_env)
        for name, url in lay.replicas.items():
            wait_until_up(f"{url}/health", timeout=120, proc=lay.procs[name], what=f"{name}:\n{lay.log(name)}")
        a, b = lay.replicas["prefect-a"], lay.replicas["prefect-b"]
        api_port = _free_port()
        lay.api = f"http://127.0.0.1:{api_port}"
        api = lay.spawn("api", ["api"], {**lay.sojourn_env, "PREFECT_API_URL": a, "SOJOURN_PREFECT_API_URL": a,
                                         "SOJOURN_API_PORT": str(api_port), "SOJOURN_PUBLIC_URL": lay.api})
        wait_until_up(f"{lay.api}/health", timeout=120, proc=api, what="the API")  # bootstraps the pool and deployments
        lay.spawn("worker", ["worker"], {**lay.sojourn_env, "PREFECT_API_URL": b, "SOJOURN_PREFECT_API_URL": b})
        yield lay
    finally:
        for proc in lay.procs.values():
            processes.stop(proc, timeout=30)  # type: ignore[arg-type]
        drop_database(prefect_db)
        _flush_redis()


def _reads(admin: httpx.Client) -> dict[str, float]:
    text = admin.get("/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'^sojourn_api_reads_total\{source="(\w+)"\} ([0-9.]+)$', text, re.M)}


@pytest.mark.slow
def test_a_job_accepted_through_one_replica_runs_on_a_worker_of_the_other_and_its_end_reaches_the_api_at_once(layout, site):
    """The worker proposes the run's states to replica B; the API follows the event stream of replica A. Only Redis
    messaging carries B's events to A: once Prefect says the run completed, the API answers the job from what its
    event stream told it, without asking Prefect (with Prefect's in-memory broker it had to ask)."""
    admin = httpx.Client(base_url=layout.api, headers={"X-API-Key": layout.key}, timeout=30)
    r = admin.post("/api/v1/keys", json={"name": "ha"})  # a tenant with no webhook: no sweep ever reads its jobs
    assert r.status_code == 201, r.text
    http = httpx.Client(base_url=layout.api, headers={"X-API-Key": r.json()["key"]}, timeout=30)
    r = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": site.url("/?ha")}], "capture": ["screenshot"]}})
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]

    def run_on(url: str) -> dict | None:
        runs = httpx.post(f"{url}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": [f"job:{job_id}"]}}}).json()
        return runs[0] if runs else None

    # Watched in Prefect, not through the API: the API's first read of the job must be the one checked.
    until(f"job {job_id}'s run completed", lambda: (run_on(layout.replicas["prefect-b"]) or {}).get("state_type") == "COMPLETED", timeout=90)
    assert run_on(layout.replicas["prefect-a"])["id"] == run_on(layout.replicas["prefect-b"])["id"]  # one run, either replica
    time.sleep(1)  # the final event's way through Redis takes milliseconds
    before = _reads(admin)
    job = http.get(f"/api/v1/jobs/{job_id}").json()
    after = _reads(admin)
    assert job["status"] == "completed", job
    assert after["memory"] == before["memory"] + 1 and after["prefect"] == before["prefect"], (before, after)
    shots = http.get(f"/api/v1/jobs/{job_id}/screenshots").json()["screenshots"]
    shot = http.get(f"/api/v1/screenshots/{shots[0]['id']}")
    assert shot.status_code == 200 and shot.content.startswith(b"\x89PNG")


def _up_servers(stats: str) -> set[str]:
    """The replicas haproxy sends to now (its CSV stats page: status UP)."""
    rows = [line.split(",") for line in httpx.get(stats, timeout=5).text.splitlines() if line and not line.startswith("#")]
    return {r[1] for r in rows if r[0] == "replicas" and r[1] not in ("BACKEND", "FRONTEND") and r[17] == "UP"}


class Cluster:
    """Sojourn as README "Scaling out" deploys it on this layout: the facade database on PostgreSQL migrated once
    (`sojourn db upgrade`), two API processes and two workers, every one of them talking to Prefect through the
    balancer, artifacts on S3 (moto's server)."""

    def __init__(self, layout: Layout, balancer: str, facade: str, s3: str) -> None:
        import boto3
        from cryptography.fernet import Fernet

        bucket = f"ha-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=s3, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=bucket)
        self.layout = layout
        self.env = {**layout.sojourn_env, "SOJOURN_HOME": str(layout.tmp / "home-lb"), "SOJOURN_WORK_POOL": f"ha-lb-{uuid.uuid4().hex[:8]}",
                    "PREFECT_API_URL": balancer, "SOJOURN_PREFECT_API_URL": balancer, "SOJOURN_DATABASE_URL": facade,
                    "SOJOURN_DATABASE_MIGRATE_ON_START": "false", "SOJOURN_ARTIFACTS_URL": f"s3://{bucket}/sojourn",
                    "SOJOURN_S3_ENDPOINT_URL": s3, "SOJOURN_S3_ACCESS_KEY": "test", "SOJOURN_S3_SECRET_KEY": "test",
                    "SOJOURN_S3_REGION": "us-east-1", "SOJOURN_SECRET_KEY": Fernet.generate_key().decode(),
                    "SOJOURN_MAX_CONCURRENCY": "4", "SOJOURN_RATE_LIMIT": "100000/minute", "SOJOURN_OUTBOX_LEASE_SECONDS": "10",
                    "SOJOURN_SERVICE_LEASE_SECONDS": "5"}
        self.apis: list[str] = []
        self.serving: list[str] = []  # the APIs clients use now (one is left out while it is dead)

    def start(self) -> None:
        done = subprocess.run([sys.executable, "-m", "sojourn.cli", "db", "upgrade"], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        procs = {}
        for name in ("api-1", "api-2"):  # at the same instant, as an orchestrator starts replicas
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            procs[base] = self.layout.spawn(name, ["api"], {**self.env, "SOJOURN_API_PORT": str(port), "SOJOURN_PUBLIC_URL": base})
            self.apis.append(base)
        for base, proc in procs.items():
            wait_until_up(f"{base}/health", timeout=120, proc=proc, what=f"the API at {base}")
        self.serving = list(self.apis)
        for name in ("worker-1", "worker-2"):
            self.layout.spawn(name, ["worker", "--name", f"ha-{name}"], self.env)

    def client(self, i: int, prefix: str = "", **headers: str) -> httpx.Client:
        key = self.env["SOJOURN_ADMIN_KEY"]
        return httpx.Client(base_url=self.serving[i % len(self.serving)] + prefix, headers={"X-API-Key": key, "Authorization": f"Bearer {key}", **headers},
                            timeout=60)

    def holder_of(self, service: str) -> str | None:
        """The name (api-1, api-2) of the API process that runs a cluster service now."""
        with self.client(0) as http:
            held_by = next(s["heldBy"] for s in http.get("/api/v1/system/status").json()["services"] if s["name"] == service)
        found = re.match(r".*-(\d+)-[0-9a-f]{6}$", held_by or "")
        pids = {self.layout.procs[name].pid: name for name in ("api-1", "api-2")}  # type: ignore[attr-defined]
        return pids.get(int(found.group(1))) if found else None

    def restart(self, name: str) -> None:
        base = self.apis[int(name[-1]) - 1]
        proc = self.layout.spawn(name, ["api"], {**self.env, "SOJOURN_API_PORT": base.rsplit(":", 1)[1], "SOJOURN_PUBLIC_URL": base})
        wait_until_up(f"{base}/health", timeout=120, proc=proc, what=f"{name} again")
        self.serving = list(self.apis)


FINAL = ("completed", "failed", "cancelled")


def next_minute(t: datetime) -> datetime:
    """The first whole minute at or after ``t``."""
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + timedelta(minutes=1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_behind_a_balancer_every_dialect_s_jobs_end_once_while_each_prefect_replica_and_the_services_process_die(layout, site, s3_server):
    """Everything of Sojourn reaches Prefect through haproxy. Each round submits a mix (native jobs, a fastlane job
    with a hook, a Task Engine job with run_at, a scrape job) through both APIs and kills a Prefect API replica
    while they run, then restarts it; then the Prefect services process is dead for 20 s around a firing of a
    `* * * * *` fastlane cron, and the Sojourn API holding the cron's lease is killed at the same moment. Every job ends
    completed exactly once (one flow run each, all of them shown through the balancer), with its screenshot
    readable from either API, every hook arrives once, and the cron fires once a minute throughout, the minute
    without Prefect's scheduler included (runs on the minute, one per firing)."""
    exe = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if exe is None:
        required_in_ci("haproxy (make test installs it)")
        pytest.skip("no haproxy on this machine (make test installs it)")
    facade = fresh_facade_database("sojourn_ha")
    assert facade is not None  # (the layout fixture skipped already without PostgreSQL)
    for name in ("api", "worker"):  # the first test's pair: this cluster replaces them (two cores)
        processes.stop(layout.procs.pop(name), timeout=30)  # type: ignore[arg-type]
    port, stats_port = _free_port(), _free_port()
    stats = f"http://127.0.0.1:{stats_port}/stats;csv"
    cfg = layout.tmp / "haproxy.cfg"
    cfg.write_text(haproxy_config(f"127.0.0.1:{port}", {name: url.removeprefix("http://").removesuffix("/api") for name, url in layout.replicas.items()},
                                  stats=f"127.0.0.1:{stats_port}"))
    layout.procs["haproxy"] = processes.start([exe, "-db", "-f", str(cfg)], log=layout.tmp / "haproxy.log")
    balancer = f"http://127.0.0.1:{port}/api"
    wait_until_up(f"{balancer}/health", timeout=30, proc=layout.procs["haproxy"], what="haproxy")  # type: ignore[arg-type]
    until("haproxy sending to both replicas", lambda: _up_servers(stats) == set(layout.replicas), timeout=30)
    hooks = Receiver()
    try:
        cluster = Cluster(layout, balancer, facade, s3_server)
        cluster.start()
        with cluster.client(0, "/taskengine", client="admin") as http:  # the Task Engine's scheduler: every second, not minute
            assert http.post("/settings", json={"name": "schedule_interval", "setting": 1}).status_code == 200
        fl = cluster.client(0, "/fastlane")
        cron = fl.post("/tasks/ha-cron", json={"image": "chromium", "command": f"text {site.url('/hello')}", "cron": "* * * * *"})
        assert cron.status_code == 200, cron.text
        cron, cron_made = cron.json(), datetime.now(timezone.utc)
        native: list[tuple[int, str]] = []
        fastlane: list[tuple[int, str]] = []
        taskengine: list[tuple[int, int]] = []
        scrape: list[tuple[int, str]] = []

        def submit(r: int, tag: str) -> None:
            for i in (r, r + 1):  # one through each API
                with cluster.client(i) as http:
                    body = {"type": "browse", "input": {"steps": [{"url": site.url(f"/never?s=5&{tag}={i}")}], "capture": ["screenshot"]}}
                    got = http.post("/api/v1/jobs", json=body)
                    assert got.status_code == 202, got.text
                    native.append((i, got.json()["jobId"]))
            with cluster.client(r, "/fastlane") as http:
                got = http.post(f"/tasks/ha-{tag}", json={"image": "chromium", "command": f"text {site.url('/never?s=4')}",
                                                          "webhooks": {"finishes": [{"url": hooks.url}]}})
                assert got.status_code == 200, got.text
                fastlane.append((r, got.json()["executionUrl"]))
            with cluster.client(r + 1, "/taskengine", client="ha") as http:
                run_at = (datetime.now(timezone.utc) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                got = http.post("/job", json={"client": "ha", "job": {"workflow": "browse", "run_at": run_at},
                                              "parameters": {"steps": [{"url": site.url(f"/?{tag}=te")}]}})
                assert got.status_code == 200 and got.json()["result"] == "accepted", got.text
                taskengine.append((r + 1, got.json()["id"]))
            with cluster.client(r, "/scrape/api/v1") as http:
                project = http.post("/projects", json={"name": f"ha {tag}", "config": {"rate_limit_delay": 0}})
                assert project.status_code == 201, project.text
                pid = project.json()["id"]
                assert http.post(f"/projects/{pid}/targets", json={"url": site.url(f"/?{tag}=scrape")}).status_code == 201
                got = http.post(f"/projects/{pid}/jobs", json={})
                assert got.status_code == 201, got.text
                scrape.append((r, got.json()["id"]))

        def all_ended() -> bool:
            ends = []
            for i, job_id in native:
                with cluster.client(i + 1) as http:  # read through the other API
                    ends.append(http.get(f"/api/v1/jobs/{job_id}").json()["status"] in FINAL)
            for i, url in fastlane:
                with cluster.client(i + 1) as http:
                    ends.append(http.get(url).json()["execution"]["status"] in ("done", "failed", "timedout", "expired"))
            for i, seq in taskengine:
                with cluster.client(i + 1, "/taskengine", client="ha") as http:
                    ends.append(http.get(f"/jobs/{seq}").json()["queue_state"] in ("completed", "broken"))
            for i, job_id in scrape:
                with cluster.client(i + 1, "/scrape/api/v1") as http:
                    ends.append(http.get(f"/jobs/{job_id}").json()["status"] in FINAL)
            return all(ends)

        for r, victim in enumerate(("prefect-a", "prefect-b")):
            submit(r, victim)
            with cluster.client(r) as http:
                until("a job processing", lambda: any(http.get(f"/api/v1/jobs/{j}").json()["status"] == "processing" for _, j in native[-2:]),
                      timeout=90)
            processes.kill_group(layout.procs[victim])  # type: ignore[arg-type]
            until(f"every job ended with {victim} dead", all_ended, timeout=180, every=2)
            victim_port = layout.replicas[victim].rsplit(":", 1)[1].removesuffix("/api")
            layout.spawn(victim, ["prefect-server", "--no-services", "--host", "127.0.0.1", "--port", victim_port], layout.server_env)
            wait_until_up(f"{layout.replicas[victim]}/health", timeout=120, proc=layout.procs[victim], what=victim)  # type: ignore[arg-type]
            until(f"haproxy sending to {victim} again", lambda: _up_servers(stats) == set(layout.replicas), timeout=30)

        # Prefect's services process (its scheduler, event persister, ...) is dead for 20 s around the cron's second
        # firing (or a later one, if the rounds took long): jobs go on, and that firing happens once all the same.
        outage = next_minute(cron_made + timedelta(seconds=61))
        while outage - timedelta(seconds=10) < datetime.now(timezone.utc):
            outage += timedelta(minutes=1)
        holder = until("one API holding the cron service", lambda: cluster.holder_of("fastlane-cron"), timeout=30)
        hooks.wait(len(fastlane), timeout=60)  # (no hook in flight when an API dies: one cut off mid-send would be sent again)
        time.sleep((outage - timedelta(seconds=10) - datetime.now(timezone.utc)).total_seconds())
        processes.kill_group(layout.procs["prefect-services"])  # type: ignore[arg-type]
        # and the Sojourn API firing the cron dies too: the other takes the cron over within its 5 s lease
        processes.kill_group(layout.procs[holder])  # type: ignore[arg-type]
        cluster.serving = [base for name, base in zip(("api-1", "api-2"), cluster.apis) if name != holder]
        submit(2, "services")
        time.sleep(max(0.0, (outage + timedelta(seconds=10) - datetime.now(timezone.utc)).total_seconds()))
        layout.spawn("prefect-services", ["prefect-server", "services"], layout.server_env)
        cluster.restart(holder)
        until("every job ended", all_ended, timeout=180, every=2)
        job = until("the cron's firing during the outage done", lambda: (j := fl.get(cron["jobUrl"]).json()["job"])["executionCount"] >= 2 and any(
            e["status"] in ("done", "failed") and e["startedAt"] and datetime.fromisoformat(e["startedAt"]) >= outage.replace(tzinfo=None)
            for e in j["executions"]) and j,
            timeout=120, every=2)
        assert fl.post(cron["jobUrl"] + "stop/").status_code == 200

        # every job completed, read through the API that did not take it
        for i, job_id in native:
            with cluster.client(i + 1) as http:
                assert http.get(f"/api/v1/jobs/{job_id}").json()["status"] == "completed"
                shots = http.get(f"/api/v1/jobs/{job_id}/screenshots").json()["screenshots"]
                assert len(shots) == 1 and http.get(f"/api/v1/screenshots/{shots[0]['id']}").content.startswith(b"\x89PNG")
        executions = []
        for i, url in fastlane:
            with cluster.client(i + 1) as http:
                ex = http.get(url).json()["execution"]
                assert ex["status"] == "done" and "late" in ex["log"], ex
                executions.append(ex["executionId"])
        for i, seq in taskengine:
            with cluster.client(i + 1, "/taskengine", client="ha") as http:
                te = http.get(f"/jobs/{seq}").json()
                assert te["queue_state"] == "completed" and te["failed"] is False, te
        for i, job_id in scrape:
            with cluster.client(i + 1, "/scrape/api/v1") as http:
                sj = http.get(f"/jobs/{job_id}").json()
                assert sj["status"] == "completed" and sj["progress"]["total_results"] == 1, sj
        # each fastlane hook once (any duplicate would have arrived within the outbox lease)
        time.sleep(3)
        delivered = [json.loads(body)["executionId"] for _h, body in hooks.received]
        assert sorted(delivered) == sorted(executions), delivered
        # the cron: done on each firing, one run per minute, on the minute
        assert [e["status"] for e in job["executions"]] == ["done"] * len(job["executions"]), job["executions"]
        # Prefect (through the balancer, as its UI reads it): one completed flow run per job, every run of the pool
        runs = httpx.post(f"{balancer}/flow_runs/filter", json={"flow_runs": {}, "work_pools": {"name": {"any_": [cluster.env["SOJOURN_WORK_POOL"]]}},
                                                                "limit": 200}, timeout=30).json()
        per_job: dict[str, list[str]] = {}
        for run in runs:
            for tag in run["tags"]:
                if tag.startswith("job:"):
                    per_job.setdefault(tag, []).append(run["state_type"])
        assert all(states == ["COMPLETED"] for states in per_job.values()), per_job
        assert {f"job:{j}" for _, j in native} <= set(per_job)
        cron_runs = sorted(r["expected_start_time"] for r in runs if f"fastlane-job:{cron['jobId']}" in r["tags"])
        assert len(cron_runs) == len(set(r[:16] for r in cron_runs)) >= 2, cron_runs  # one run per firing
        assert all(r[17:19] == "00" for r in cron_runs), cron_runs  # on the minute
        assert outage.isoformat()[:16] in {r[:16] for r in cron_runs}, (outage, cron_runs)  # the minute Prefect's scheduler was dead
        fired = min(t for e in job["executions"] if e["startedAt"] and (t := datetime.fromisoformat(e["startedAt"])) >= outage.replace(tzinfo=None))
        assert (fired - outage.replace(tzinfo=None)).total_seconds() < 30, (fired, outage)  # on time: within the takeover bound
    finally:
        for name in ("api-1", "api-2", "worker-1", "worker-2"):
            if name in layout.procs:
                processes.stop(layout.procs.pop(name), timeout=30)  # type: ignore[arg-type]
        hooks.server.shutdown()
        drop_facade_database(facade)


@pytest.mark.slow
def test_every_prefect_process_of_the_layout_stops_when_asked(layout):
    """SIGTERM: each replica and the services process exit by themselves (not killed) within 20 s."""
    for name in ("prefect-services", "prefect-a", "prefect-b"):  # (restarted by the balancer test)
        proc = layout.procs[name]
        started = time.monotonic()
        status = processes.stop(proc, timeout=20)  # type: ignore[arg-type]
        assert status is not None, f"{name} did not stop within 20 s of SIGTERM:\n{layout.log(name)}"
        assert time.monotonic() - started < 20
