"""Prefect's own layout past one process (#24): two Prefect API replicas started with `--no-services` at the same
moment on a fresh PostgreSQL database, one `sojourn prefect-server services` process, Redis messaging between them;
Sojourn's API talks to one replica and its worker to the other."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from sojourn.readiness import wait_until_up
from tests import processes
from tests.conftest import _free_port, redis_available
from tests.helpers import until
from tests.postgres import drop_database, fresh_postgres_database, postgres_available, required_in_ci

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


HAPROXY = """
defaults
    mode http
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend prefect
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /api/health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def _up_servers(stats: str) -> set[str]:
    """The replicas haproxy sends to now (its CSV stats page: status UP)."""
    rows = [line.split(",") for line in httpx.get(stats, timeout=5).text.splitlines() if line and not line.startswith("#")]
    return {r[1] for r in rows if r[0] == "replicas" and r[1] not in ("BACKEND", "FRONTEND") and r[17] == "UP"}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_behind_a_balancer_jobs_end_once_with_their_captures_while_each_replica_in_turn_dies(layout, site):
    """Sojourn's API and worker reach Prefect through haproxy. Replica A is killed while jobs run, then restarted,
    then B is killed the same way: every job ends completed exactly once (one flow run), with its screenshot, and
    the API's answers agree with Prefect's."""
    exe = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if exe is None:
        required_in_ci("haproxy (make test installs it)")
        pytest.skip("no haproxy on this machine (make test installs it)")
    port, stats_port = _free_port(), _free_port()
    stats = f"http://127.0.0.1:{stats_port}/stats;csv"
    servers = "\n".join(f"    server {name} {url.removeprefix('http://').removesuffix('/api')} check" for name, url in layout.replicas.items())
    cfg = layout.tmp / "haproxy.cfg"
    cfg.write_text(HAPROXY.format(port=port, servers=servers, stats_port=stats_port))
    layout.procs["haproxy"] = processes.start([exe, "-db", "-f", str(cfg)], log=layout.tmp / "haproxy.log")
    balancer = f"http://127.0.0.1:{port}/api"
    wait_until_up(f"{balancer}/health", timeout=30, proc=layout.procs["haproxy"], what="haproxy")  # type: ignore[arg-type]
    until("haproxy sending to both replicas", lambda: _up_servers(stats) == set(layout.replicas), timeout=30)
    api_port = _free_port()
    base = f"http://127.0.0.1:{api_port}"
    env = {**layout.sojourn_env, "SOJOURN_HOME": str(layout.tmp / "home-lb"), "SOJOURN_WORK_POOL": f"ha-lb-{uuid.uuid4().hex[:8]}",
           "PREFECT_API_URL": balancer, "SOJOURN_PREFECT_API_URL": balancer}
    api = layout.spawn("api-lb", ["api"], {**env, "SOJOURN_API_PORT": str(api_port), "SOJOURN_PUBLIC_URL": base})
    wait_until_up(f"{base}/health", timeout=120, proc=api, what="the API behind haproxy")
    layout.spawn("worker-lb", ["worker"], env)
    http = httpx.Client(base_url=base, headers={"X-API-Key": layout.key}, timeout=60)

    for victim in ("prefect-a", "prefect-b"):
        jobs = []
        for i in range(3):
            r = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": site.url(f"/never?s=5&v={victim}&i={i}")}],
                                                                             "capture": ["screenshot"]}})
            assert r.status_code == 202, r.text
            jobs.append(r.json()["jobId"])
        until("a job processing", lambda: any(http.get(f"/api/v1/jobs/{j}").json()["status"] == "processing" for j in jobs), timeout=90)
        processes.kill_group(layout.procs[victim])  # type: ignore[arg-type]
        survivor = next(url for name, url in layout.replicas.items() if name != victim)
        for job_id in jobs:
            job = until(f"job {job_id} ended", lambda: (j := http.get(f"/api/v1/jobs/{job_id}").json())["status"] in ("completed", "failed", "cancelled") and j,
                        timeout=120)
            assert job["status"] == "completed", job
            runs = httpx.post(f"{survivor}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": [f"job:{job_id}"]}}}).json()
            assert [r["state_type"] for r in runs] == ["COMPLETED"], runs
            shots = http.get(f"/api/v1/jobs/{job_id}/screenshots").json()["screenshots"]
            assert len(shots) == 1 and http.get(f"/api/v1/screenshots/{shots[0]['id']}").content.startswith(b"\x89PNG")
        # the victim comes back on its port before the other one dies
        victim_port = layout.replicas[victim].rsplit(":", 1)[1].removesuffix("/api")
        layout.spawn(victim, ["prefect-server", "--no-services", "--host", "127.0.0.1", "--port", victim_port], layout.server_env)
        wait_until_up(f"{layout.replicas[victim]}/health", timeout=120, proc=layout.procs[victim], what=victim)  # type: ignore[arg-type]
        until(f"haproxy sending to {victim} again", lambda: _up_servers(stats) == set(layout.replicas), timeout=30)


@pytest.mark.slow
def test_every_prefect_process_of_the_layout_stops_when_asked(layout):
    """SIGTERM: each replica and the services process exit by themselves (not killed) within 20 s."""
    for name in ("prefect-services", "prefect-a", "prefect-b"):  # (restarted by the balancer test)
        proc = layout.procs[name]
        started = time.monotonic()
        status = processes.stop(proc, timeout=20)  # type: ignore[arg-type]
        assert status is not None, f"{name} did not stop within 20 s of SIGTERM:\n{layout.log(name)}"
        assert time.monotonic() - started < 20
