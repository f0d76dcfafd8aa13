"""Background services: one runner, leases that keep cluster services to one process, and Prefect's split
(`sojourn api --no-services` + `sojourn services`), with real processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from tests import processes
from tests.conftest import _free_port
from tests.helpers import Receiver, until
from tests.postgres import drop_facade_database, fresh_facade_database
from sojourn.readiness import wait_until_up
from sojourn.store import schema


# ------------------------------------------------------------------ the lease contract, on both databases


@pytest.fixture(params=["sqlite", "postgresql"])
def facade_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/facade.db"
        return
    url = fresh_facade_database("sojourn_leases")
    if url is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    try:
        yield url
    finally:
        drop_facade_database(url)


def test_a_cluster_service_runs_in_one_process_moves_when_its_holder_dies_and_at_once_when_it_stops(facade_url):
    from sojourn.background.leases import Leases
    from sojourn.store.db import engine_for

    async def scenario() -> None:
        names = ["sweep-a", "sweep-b"]
        a, b = Leases(facade_url, seconds=1.5, holder="a"), Leases(facade_url, seconds=1.5, holder="b")
        for leases in (a, b):
            leases.want(names)
        engine_for(facade_url)  # the schema made before the clock starts
        keep_a = asyncio.ensure_future(a.keep_forever())
        while not all(a.holds(n) for n in names):
            await asyncio.sleep(0.05)
        keep_b = asyncio.ensure_future(b.keep_forever())
        try:
            for _ in range(8):  # 4 renewals: b never gets in while a renews
                await asyncio.sleep(0.25)
                assert all(a.holds(n) for n in names) and not any(b.holds(n) for n in names)
            assert {r.holder for r in (await a.read()).values()} == {"a"}
            # a dies: it stops renewing, and keeps nothing of its state
            keep_a.cancel()
            died = time.monotonic()
            while not all(b.holds(n) for n in names):
                await asyncio.sleep(0.05)
                assert time.monotonic() - died < 1.5 + 0.5 + 0.5, "b did not take over within the lease plus one renewal"
            assert time.monotonic() - died > 0.9, "b took the services while a's leases were still valid"
            # b stops: it releases, and a newcomer takes over at its first round, not a lease later
            await b.release()
            keep_b.cancel()
            c = Leases(facade_url, seconds=60, holder="c")
            c.want(names)
            keep_c = asyncio.ensure_future(c.keep_forever())
            await asyncio.sleep(0.3)
            assert all(c.holds(n) for n in names)
            keep_c.cancel()
        finally:
            for t in (keep_a, keep_b):
                t.cancel()

    asyncio.run(scenario())


def test_the_runner_backs_off_after_errors_names_the_service_and_runs_again_on_a_wake(caplog):
    from prometheus_client import CollectorRegistry, generate_latest

    from sojourn.background.runner import Runner, Scope, Service

    async def scenario() -> None:
        calls: list[float] = []
        wake = asyncio.Event()

        async def step() -> None:
            calls.append(time.monotonic())
            if len(calls) <= 3:
                raise RuntimeError(f"receiver away ({len(calls)})")

        registry = CollectorRegistry()
        runner = Runner([Service("flaky", Scope.LOCAL, "a service that fails three times", step=step, every=0.5, wake=wake)],
                        scopes={Scope.LOCAL}, registry=registry)
        await runner.start()
        try:
            while len(calls) < 5:
                await asyncio.sleep(0.01)
            gaps = [round(b - a, 2) for a, b in zip(calls, calls[1:])]
            # after failures: half a second, doubling; after the success: the interval
            assert 0.45 <= gaps[0] < 0.9 and 0.95 <= gaps[1] < 1.5 and 1.95 <= gaps[2] < 2.6 and 0.45 <= gaps[3] < 0.9, gaps
            wake.set()  # work for it now: the next round starts at once, not when the interval is up
            await asyncio.sleep(0.15)
            assert len(calls) == 6, [round(c - calls[0], 2) for c in calls]
            status = {s["name"]: s for s in await runner.status()}["flaky"]
            assert status["errors"] == 3 and status["runs"] >= 2 and status["lastError"] == "RuntimeError: receiver away (3)"
            assert status["runsHere"] and status["scope"] == "local"
            metrics = generate_latest(registry).decode()
            assert 'sojourn_service_errors_total{service="flaky"} 3.0' in metrics
        finally:
            await runner.stop()

    with caplog.at_level("INFO", logger="sojourn.services"):
        asyncio.run(scenario())
    failures = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert failures[0].startswith("flaky failed: RuntimeError('receiver away (1)')")
    assert any("works again after 3 failed rounds" in m for m in failures)


def test_stopping_the_runner_is_bounded_though_a_round_does_not_let_go(caplog, monkeypatch):
    """A round that swallows its cancellation (a Prefect client call did, in a worker whose Prefect was gone) must
    not hold the stop: the runner gives its loops STOP_SECONDS, names the one still waiting, and goes on."""
    from sojourn.background import runner as runner_mod
    from sojourn.background.runner import Runner, Scope, Service

    monkeypatch.setattr(runner_mod, "STOP_SECONDS", 0.5)
    let_go = asyncio.Event()

    async def stubborn_round() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await let_go.wait()  # swallowed: it ends only when let go

    async def scenario() -> float:
        runner = Runner([Service("stubborn", Scope.LOCAL, "a round that ignores cancellation", step=stubborn_round, every=1)],
                        scopes={Scope.LOCAL})
        await runner.start()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await runner.stop()
        took = time.monotonic() - started
        let_go.set()  # the straggler ends here, so the test's event loop can close
        await asyncio.sleep(0.05)
        return took

    with caplog.at_level("WARNING", logger="sojourn.services"):
        took = asyncio.run(scenario())
    assert 0.45 <= took < 1.5, took
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "services: 1 task(s) still running 0.5 s after being cancelled; leaving them" in said and "stubborn_round" in said, said


# ------------------------------------------------------------------ Prefect's split, real processes


def _status(base: str, key: str) -> dict[str, dict]:
    r = httpx.get(f"{base}/api/v1/system/status", headers={"X-API-Key": key}, timeout=15)
    assert r.status_code == 200, r.text
    return {s["name"]: s for s in r.json()["services"]}


def _ts(iso: str) -> float:
    """Epoch seconds of an ISO time; one without a zone is UTC (fastlane's dates)."""
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _pid_of(holder: str | None) -> int | None:
    m = re.match(r".*-(\d+)-[0-9a-f]{6}$", holder or "")
    return int(m.group(1)) if m else None


class Split:
    """Prefect's layout on one machine: two API processes without services, two services processes, one worker,
    one facade database on PostgreSQL, the session's Prefect server (a work pool of its own)."""

    def __init__(self, tmp: Path, facade: str) -> None:
        self.tmp = tmp
        self.key = "sj_split_" + uuid.uuid4().hex
        self.env = {**os.environ, "SOJOURN_HOME": str(tmp / "home"), "SOJOURN_DATABASE_URL": facade, "SOJOURN_ADMIN_KEY": self.key,
                    "SOJOURN_WORK_POOL": f"split-{uuid.uuid4().hex[:8]}", "SOJOURN_SERVICE_LEASE_SECONDS": "3",
                    "SOJOURN_WORKER_HEARTBEAT_SECONDS": "2", "SOJOURN_RATE_LIMIT": "100000/minute", "SOJOURN_ALLOW_LOOPBACK": "true",
                    "SOJOURN_WORKER_SHUTDOWN_GRACE": "3", "SOJOURN_FASTLANE_WEBHOOK_TIMEOUT": "5"}
        self.procs: dict[str, subprocess.Popen] = {}
        self.bases: list[str] = []
        self.cron: dict = {}  # the fastlane job firing every minute
        self.worker = f"split-worker-{uuid.uuid4().hex[:6]}"

    def spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        self.procs[name] = processes.start([sys.executable, "-m", "sojourn.cli", *args], env={**self.env, **env}, log=self.tmp / f"{name}.log")
        return self.procs[name]

    def scale_out_as_the_readme_says(self) -> None:
        """#29: processes of a scaled-out deployment started together on a fresh database. Before the once-per-release
        step (`sojourn bootstrap`) they refuse, naming it; after it, all of them start at the same instant and serve."""
        self.env["SOJOURN_DATABASE_MIGRATE_ON_START"] = "false"  # replicas leave schema changes to the one step
        early = [self.spawn(f"early-{n}", "api", "--no-services", SOJOURN_API_PORT=str(_free_port())) for n in range(3)]
        early.append(self.spawn("early-worker", "worker"))
        for proc in early:
            assert proc.wait(60) == 2
        for name in ("early-0", "early-1", "early-2", "early-worker"):
            said = (self.tmp / f"{name}.log").read_text()
            assert "is at schema none, this Sojourn needs " in said and "run `sojourn db upgrade` once" in said, said
        once = subprocess.run([sys.executable, "-m", "sojourn.cli", "bootstrap"], env=self.env, capture_output=True, text=True, timeout=120)
        assert once.returncode == 0 and f" schema {schema.head()} (was none)" in once.stdout, once.stdout + once.stderr
        ports = [_free_port(), _free_port()]
        for name, port in zip(("api-a", "api-b"), ports):
            self.spawn(name, "api", "--no-services", SOJOURN_API_PORT=str(port), SOJOURN_PUBLIC_URL=f"http://127.0.0.1:{port}")
        self.spawn("services-1", "services")
        self.spawn("services-2", "services")
        self.spawn("worker", "worker", "--name", self.worker)
        for name, port in zip(("api-a", "api-b"), ports):
            wait_until_up(f"http://127.0.0.1:{port}/health", timeout=60, proc=self.procs[name], what=f"{name} (without services)")
            self.bases.append(f"http://127.0.0.1:{port}")
        for name, proc in self.procs.items():  # all of them started together, and all of them are still here
            assert name.startswith("early") or proc.poll() is None, (self.tmp / f"{name}.log").read_text()[-3000:]

    def http(self, base: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=base or self.bases[0], headers={"X-API-Key": self.key}, timeout=30)

    def status(self) -> dict[str, dict]:
        return _status(self.bases[0], self.key)

    def services_pids(self) -> set[int]:
        return {p.pid for n, p in self.procs.items() if n.startswith("services") and p.poll() is None}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            processes.stop(p, timeout=30)


@pytest.fixture(scope="module")
def split(prefect_server, site, tmp_path_factory):
    facade = fresh_facade_database("sojourn_split")
    if facade is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    cluster = Split(tmp_path_factory.mktemp("split"), facade)
    try:
        cluster.scale_out_as_the_readme_says()
        # A fastlane job firing every minute while the module runs (the takeover test kills the holder of its firing).
        with httpx.Client(base_url=cluster.bases[0] + "/fastlane", headers={"X-API-Key": cluster.key}, timeout=30) as fl:
            r = fl.post(f"/tasks/split-cron-{uuid.uuid4().hex[:6]}", json={"image": "chromium", "command": f"text {site.url('/?cron')}",
                                                                           "cron": "* * * * *"})
            assert r.status_code == 200, r.text
            cluster.cron = r.json()
        yield cluster
    finally:
        cluster.stop()
        drop_facade_database(facade)


def _one_holder(split: Split) -> int | None:
    """The pid of the services process holding every cluster service, once one does."""
    cluster = [s for s in split.status().values() if s["scope"] == "cluster"]
    holders = {_pid_of(s["heldBy"]) for s in cluster}
    return holders.pop() if len(holders) == 1 and holders <= split.services_pids() else None


@pytest.mark.slow
def test_apis_without_services_run_only_their_local_services_and_one_services_process_holds_each_cluster_service(split):
    until("one services process holding every cluster service", lambda: _one_holder(split), timeout=60)
    for base in split.bases:
        status = _status(base, split.key)
        assert [n for n, s in status.items() if s["runsHere"]] == ["dispatcher", "job-metrics"], base
        assert status["retention"]["heldBy"] and status["webhooks"]["scope"] == "replica" and not status["webhooks"]["runsHere"]
        assert {s["scope"] for s in status.values()} == {"local", "replica", "cluster"}
        # an API without services still exports the workers' figures in its /metrics
        # (the session's Prefect server has other workers, whose reports every API sees: this one's by its name)
        pattern = re.compile(rf'^sojourn_worker_slots{{worker="{split.worker}"}} 4\.0$', re.M)
        until(f"the worker in {base}/metrics", lambda: pattern.search(httpx.get(f"{base}/metrics", headers={"X-API-Key": split.key}).text), timeout=30)
    # the holder reports its rounds through the lease row: any API process shows them
    until("the holder's rounds visible from an API process", lambda: (split.status()["fastlane-sweep"]["runs"] or 0) > 0, timeout=20)


@pytest.mark.slow
def test_two_api_processes_starting_a_job_of_one_scrape_project_at_once_start_one(split, site):
    """The project's one open job is a compare-and-set in the database: of two starts at the same instant, in two
    processes, one gets 201 and the other JOB_RUNNING, every time."""
    import threading

    a, b = (httpx.Client(base_url=base + "/scrape/api/v1", headers={"Authorization": f"Bearer {split.key}"}, timeout=30) for base in split.bases)
    for round_ in range(4):
        pid = a.post("/projects", json={"name": f"race {round_}", "config": {"rate_limit_delay": 0}}).json()["id"]
        assert a.post(f"/projects/{pid}/targets", json={"url": site.url(f"/?race={round_}")}).status_code == 201
        answers: list[httpx.Response] = []
        start = threading.Barrier(2)

        def post(client: httpx.Client) -> None:
            start.wait()
            answers.append(client.post(f"/projects/{pid}/jobs"))

        threads = [threading.Thread(target=post, args=(c,)) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in answers)
        assert codes == [201, 400], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 400).json()
        assert refused["code"] == "JOB_RUNNING" and pid in refused["detail"]
        assert a.get(f"/projects/{pid}/jobs").json()["total"] == 1


@pytest.mark.slow
def test_hooks_of_one_execution_settled_side_by_side_in_two_processes_are_all_recorded(split, site):
    """Eight hooks of one execution, each refused once (500) and then taken (200): the deliveries settle at the same
    time (threads of one services process, and the other's for the retries); all 16 attempts are in webhookDispatch."""
    receiver = Receiver()
    refused: set[str] = set()
    original = receiver.server.RequestHandlerClass.do_POST

    def once_refused(handler):  # noqa: ANN001
        path = handler.path
        if path not in refused:
            refused.add(path)
            handler.rfile.read(int(handler.headers["Content-Length"]))
            handler.send_response(500)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = once_refused
    try:
        hooks = {"finishes": [{"url": f"{receiver.url}/{i}", "retries": 1} for i in range(8)]}
        fl = httpx.Client(base_url=split.bases[1] + "/fastlane", headers={"X-API-Key": split.key}, timeout=30)
        r = fl.post(f"/tasks/split-{uuid.uuid4().hex[:6]}", json={"image": "chromium", "command": f"text {site.url('/?hooks')}", "webhooks": hooks})
        assert r.status_code == 200, r.text
        url = r.json()["executionUrl"]
        receiver.wait(8, timeout=120)

        def attempts() -> list[tuple]:
            meta = fl.get(url).json()["execution"]["metadata"]
            return sorted((d["url"].rsplit("/", 1)[1], d["attempt"], d["statusCode"]) for d in meta.get("webhookDispatch", []))

        expected = sorted([(str(i), 1, 500) for i in range(8)] + [(str(i), 2, 200) for i in range(8)])
        until("all 16 attempts recorded", lambda: attempts() == expected, timeout=30)
    finally:
        receiver.server.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_when_the_services_process_holding_the_cluster_services_dies_the_other_takes_over_and_webhooks_go_on(split, site, prefect_server):
    receiver = Receiver()
    try:
        http = split.http(split.bases[1])
        assert http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.completed"]}).status_code == 201

        mine: list[str] = []

        def job_delivered(n: int) -> None:
            r = http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": site.url(f"/?split={n}")}]}})
            assert r.status_code == 202, r.text
            job_id = r.json()["jobId"]
            until(f"job {job_id} completed", lambda: http.get(f"/api/v1/jobs/{job_id}").json()["status"] == "completed", timeout=90)
            # Its delivery arrives. Delivery is at least once: the holder may die after the receiver took a delivery
            # and before it recorded it, and the survivor sends it again after the claim lapses, with the same id.
            until(f"job {job_id}'s webhook", lambda: any(job_id in body.decode() for _h, body in receiver.received), timeout=30)
            mine.append(job_id)
            # One event per job, however often it was sent. Only this test's jobs count: the module's fastlane cron
            # job ends every minute, and its runs are jobs of the same principal, owed to the same webhook.
            sent = [d for d in (json.loads(body) for _h, body in receiver.received) if d["data"]["id"] in mine]
            assert len({d["id"] for d in sent}) == n, sent

        job_delivered(1)
        holder = until("one services process holding every cluster service", lambda: _one_holder(split), timeout=60)
        dead = next(p for p in split.procs.values() if p.pid == holder)
        survivor = (split.services_pids() - {holder}).pop()
        # The holder dies outright: the other services process takes every cluster service over within the lease
        # (3 s) plus a renewal (1 s), and runs them.
        processes.kill_group(dead)
        killed_at = time.time()
        until("the survivor holding every cluster service", lambda: _one_holder(split) == survivor, timeout=3 + 1 + 4, every=0.25)

        def sweep_ran_since_kill() -> bool:
            last = split.status()["outcome-sweep"]["lastRunAt"]
            return last is not None and _ts(last) >= killed_at

        until("the outcome sweep running in the survivor", sweep_ran_since_kill, timeout=15, every=0.5)
        job_delivered(2)

        # The cron job: the first firing after the kill runs (made and adopted by the survivor, or by Prefect's
        # scheduler ahead and adopted), and no firing has two runs or two executions, though two processes adopt.
        fl = httpx.Client(base_url=split.bases[0] + "/fastlane", headers={"X-API-Key": split.key}, timeout=30)
        pf = httpx.Client(base_url=prefect_server, timeout=30)
        dep_id = pf.get(f"/deployments/name/browse/fastlane-{split.cron['jobId']}").json()["id"]
        next_minute = (int(killed_at) // 60 + 1) * 60

        def job() -> dict:
            return fl.get(split.cron["jobUrl"]).json()["job"]

        def ran_after_kill() -> bool:
            return any(e["status"] == "done" and e["startedAt"] and _ts(e["startedAt"]) >= next_minute for e in job()["executions"])

        until("the first firing after the kill, done", ran_after_kill, timeout=next_minute - time.time() + 60, every=1)

        def adopted_runs() -> list[dict]:
            runs = pf.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [dep_id]}}, "limit": 200}).json()
            return [r for r in runs if "sojourn" in r["tags"]]

        def one_execution_per_run() -> bool:
            return job()["executionCount"] == len(adopted_runs())

        until("as many executions as adopted runs", one_execution_per_run, timeout=20, every=1)
        starts = [r["expected_start_time"] for r in adopted_runs()]
        assert starts and len(starts) == len(set(starts)), starts
        assert all(_ts(s) % 60 == 0 for s in starts), starts  # each on its minute
    finally:
        receiver.server.shutdown()
