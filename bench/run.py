"""Sojourn benchmark: everything measured in one run, on this machine, against raw Playwright.

    make bench                      # full run
    .venv/bin/python bench/run.py --quick

It starts its own Prefect server (SQLite, temporary home), the Sojourn API and
one sojourn worker, and a local site with a trivial page and a ~200 KB page.
Measures:

  (a) raw Playwright: warm Chromium, fresh context per job, concurrency C
  (b) Sojourn end to end over REST (submit N screenshot jobs, wait for all)
  (c) the same flow on Prefect's stock process worker
  (d) one-at-a-time job latency p50/p95 vs a single raw Playwright job
  (e) submit latency p50/p99 for a burst of submissions
  (f) worker RSS (worker + its browsers) from job 100 to the last job

Prints a table with ratios to (a) and writes bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TMP = Path(tempfile.mkdtemp(prefix="sojourn-bench-"))
PREFECT_PORT = free_port()
API_PORT = free_port()
ADMIN_KEY = "sj_bench_" + os.urandom(8).hex()
os.environ.update(
    {
        "PREFECT_HOME": str(TMP / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "SOJOURN_HOME": str(TMP / "home"),
        "SOJOURN_API_PORT": str(API_PORT),
        "SOJOURN_ADMIN_KEY": ADMIN_KEY,
        # The benchmark's pages are served on 127.0.0.1; production refuses loopback.
        "SOJOURN_ALLOW_LOOPBACK": "true",
    }
)

import httpx  # noqa: E402

from tests.site import Site  # noqa: E402

SCREENSHOT = {"fullPage": True}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(q / 100 * (len(values) - 1)))))
    return values[k]


def wait_http(url: str, timeout: float = 120) -> None:
    from sojourn.readiness import wait_until_up

    wait_until_up(url, timeout=timeout)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def rss_tree_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (the worker and its browsers)."""
    total = 0
    for p in _descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_by_program(pid: int) -> dict[str, float]:
    """CPU seconds of a process tree by program (python, node = Playwright's driver, chromium), live processes only."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for p in _descendants(pid):
        try:
            raw = Path(f"/proc/{p}/stat").read_text()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        kind = "chromium" if "chrom" in name else "node" if name == "node" else "python" if name.startswith("python") or name == "sojourn" else name
        out[kind] = out.get(kind, 0.0) + sum(int(x) for x in fields[11:13]) / tick
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of a process tree: live processes plus the children they have reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


# --------------------------------------------------------------------------- (a) raw Playwright


async def raw_playwright(urls: list[str], concurrency: int) -> dict:
    """Also the CPU seconds of this process tree over the run, read before the browser closes: Chromium's
    exited renderers are counted through the browser process that reaped them (after close they are lost)."""
    from playwright.async_api import async_playwright

    from sojourn.browser.discovery import CHROMIUM_ARGS, find_browser, sandbox_args

    choice = find_browser("chromium", os.environ.get("SOJOURN_CHROMIUM_EXECUTABLE"))
    if BROWSER_CPUS:  # --pin: this thread (Playwright's client) and the driver and Chromium it starts: the browser's core
        os.sched_setaffinity(0, BROWSER_CPUS)
    async with async_playwright() as p:
        kwargs = {"executable_path": choice.executable} if choice and choice.executable else {}
        browser = await p.chromium.launch(args=CHROMIUM_ARGS + sandbox_args(), **kwargs)
        sem = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        failures = 0

        async def job(url: str) -> None:
            nonlocal failures
            async with sem:
                t = time.perf_counter()
                try:
                    ctx = await browser.new_context(viewport={"width": 1280, "height": 720})
                    page = await ctx.new_page()
                    await page.goto(url)
                    await page.screenshot(full_page=True)
                    await ctx.close()
                    latencies.append(time.perf_counter() - t)
                except Exception:
                    failures += 1

        await job(urls[0])  # warm
        latencies.clear()
        cpu0 = cpu_seconds(os.getpid())
        t0 = time.perf_counter()
        await asyncio.gather(*(job(u) for u in urls))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(os.getpid()) - cpu0
        await browser.close()
    if CONTROL_CPUS:
        os.sched_setaffinity(0, CONTROL_CPUS)
    return {"jobs": len(urls), "ok": len(latencies), "failed": failures, "seconds": elapsed, "jobs_per_s": len(latencies) / elapsed,
            "latency_p50": pct(latencies, 50), "latency_p95": pct(latencies, 95), "cpu_seconds_per_job": round(cpu / max(1, len(latencies)), 3)}


# --------------------------------------------------------------------------- (b)/(d)/(e) Sojourn over REST


def job_body(url: str, priority: str = "normal") -> dict:
    return {"type": "browse", "priority": priority, "input": {"steps": [{"url": url}], "capture": {"screenshot": SCREENSHOT}}}


async def wait_all(http: httpx.AsyncClient, ids: list[str], timeout: float) -> dict[str, dict]:
    """Long-poll every job (GET ?wait=60, driven by Prefect events in the API): no status polling load."""
    deadline = time.monotonic() + timeout

    async def one(jid: str) -> dict:
        while time.monotonic() < deadline:
            job = (await http.get(f"/api/v1/jobs/{jid}", params={"wait": 60}, timeout=90)).json()
            if job.get("status") in ("completed", "failed", "cancelled"):
                return job
        return {"status": "timeout"}

    results = await asyncio.gather(*(one(j) for j in ids))
    return dict(zip(ids, results))


def api_client(base: str, connections: int = 200) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN_KEY}, timeout=60, limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


async def sojourn_throughput(base: str, urls: list[str], timeout: float = 1800) -> dict:
    async with api_client(base, len(urls) + 10) as http:
        t0 = time.perf_counter()
        ids = []
        for u in urls:
            r = await http.post("/api/v1/jobs", json=job_body(u))
            r.raise_for_status()
            ids.append(r.json()["jobId"])
        done = await wait_all(http, ids, timeout)
        elapsed = time.perf_counter() - t0
    ok = sum(1 for j in done.values() if j["status"] == "completed")
    return {"jobs": len(urls), "ok": ok, "failed": len(urls) - ok, "seconds": elapsed, "jobs_per_s": ok / elapsed}


async def sojourn_latency(base: str, url: str, n: int) -> dict:
    lat = []
    async with api_client(base) as http:
        for _ in range(n):
            t = time.perf_counter()
            r = await http.post("/api/v1/jobs", json=job_body(url))
            jid = r.json()["jobId"]
            await wait_all(http, [jid], 120)
            lat.append(time.perf_counter() - t)
    return {"n": n, "p50": pct(lat, 50), "p95": pct(lat, 95)}


async def submit_burst(base: str, url: str, n: int, concurrency: int = 10) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    lat: list[float] = []
    errors = 0
    async with get_client() as client:
        await client.update_work_pool("browsers", WorkPoolUpdate(is_paused=True))
    ids: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN_KEY}, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as http:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> None:
                nonlocal errors
                async with sem:
                    t = time.perf_counter()
                    r = await http.post("/api/v1/jobs", json=job_body(url, "low"))
                    lat.append((time.perf_counter() - t) * 1000)
                    if r.status_code == 202:
                        ids.append(r.json()["jobId"])
                    else:
                        errors += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            elapsed = time.perf_counter() - t0
    finally:
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": ADMIN_KEY}, timeout=60) as http:
            for jid in ids:  # the burst measured submission only; drop the queued jobs
                await http.post(f"/api/v1/jobs/{jid}/cancel")
        async with get_client() as client:
            await client.update_work_pool("browsers", WorkPoolUpdate(is_paused=False))
    return {"n": n, "concurrency": concurrency, "errors": errors, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat), "per_s": n / elapsed}


# --------------------------------------------------------------------------- (c) stock process worker


async def process_worker(urls: list[str], concurrency: int, timeout: float = 900) -> dict:
    from prefect.client.orchestration import get_client

    from sojourn.deployments.bootstrap import bootstrap_process_pool

    boot = await bootstrap_process_pool()
    log = open(TMP / "process-worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", boot.pool, "--type", "process", "--limit", str(concurrency)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        async with get_client() as client:
            t0 = time.perf_counter()
            runs = [
                await client.create_flow_run_from_deployment(boot.deployments["browse"], parameters={"spec": {"steps": [{"url": u}], "capture": {"screenshot": SCREENSHOT}}})
                for u in urls
            ]
            pending = {r.id for r in runs}
            ok = 0
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                for rid in list(pending):
                    fr = await client.read_flow_run(rid)
                    if fr.state and fr.state.is_final():
                        pending.discard(rid)
                        ok += fr.state.is_completed()
                await asyncio.sleep(0.5)
            elapsed = time.perf_counter() - t0
    finally:
        worker.terminate()
        worker.wait(30)
    return {"jobs": len(urls), "ok": ok, "failed": len(urls) - ok, "seconds": elapsed, "jobs_per_s": ok / elapsed}


# --------------------------------------------------------------------------- (f) worker memory


async def worker_rss(base: str, url: str, total: int, worker_pid: int, concurrency: int) -> dict:
    samples: dict[int, int] = {}
    done = 0
    async with api_client(base) as http:
        while done < total:
            batch = min(50, total - done)
            ids = []
            for _ in range(batch):
                while True:  # a queue still full of (e)'s jobs answers 503 QUEUE_FULL: wait as told, as a client would
                    r = await http.post("/api/v1/jobs", json=job_body(url))
                    if r.status_code not in (429, 503):
                        break
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                assert r.status_code == 202, r.text
                ids.append(r.json()["jobId"])
            await wait_all(http, ids, 900)
            done += batch
            samples[done] = rss_tree_kb(worker_pid)
            print(f"f: {done} jobs, worker tree RSS {samples[done] / 1024:.0f} MB", flush=True)
    at100 = samples.get(100) or next(iter(samples.values()))
    last = samples[max(samples)]
    return {"jobs": total, "rss_kb": samples, "rss_at_100_kb": at100, "rss_at_end_kb": last, "change": (last - at100) / at100}


# --------------------------------------------------------------------------- main


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Stop what the run started, last started first; kill what has not stopped in 30 s."""
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def request_seconds(base: str) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """The API's own ``sojourn_api_request_seconds`` buckets: (method, route) -> [(le, count)], summed over statuses."""
    out: dict[tuple[str, str], dict[float, float]] = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if not line.startswith("sojourn_api_request_seconds_bucket{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.rindex("}")].split('",'))
        labels = {k: v.strip('"') for k, v in labels.items()}
        key = (labels["method"].strip('"'), labels["route"].strip('"'))
        le = float(labels["le"].strip('"').replace("+Inf", "inf"))
        out.setdefault(key, {})
        out[key][le] = out[key].get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return {k: sorted(v.items()) for k, v in out.items()}


def api_side_quantiles(before: dict, after: dict) -> dict[str, dict[str, float | None]]:
    """p50/p99 (upper bucket bounds, ms) of requests answered between two readings, per route."""
    out = {}
    for key, buckets in after.items():
        prior = dict(before.get(key, []))
        counts = [(le, n - prior.get(le, 0.0)) for le, n in buckets]
        total = counts[-1][1] if counts else 0
        if not total:
            continue

        def q(p: float) -> float | None:
            return next((le * 1000 for le, n in counts if n >= p * total), None)

        out[f"{key[0]} {key[1]}"] = {"n": total, "p50_ms": q(0.5), "p99_ms": q(0.99)}
    return out


def spy_on(roles: dict, folder: str | None, label: str) -> list[subprocess.Popen]:
    """py-spy on each process (threads holding the GIL, 50 Hz), folded stacks in ``folder``."""
    if not folder:
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(["py-spy", "record", "-p", str(p.pid), "-r", "50", "--gil", "-f", "raw", "-o", f"{folder}/{label}-{k}.txt"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k, p in roles.items()]


def stop_spies(spies: list[subprocess.Popen]) -> None:
    for spy in spies:
        spy.send_signal(2)
    for spy in spies:
        spy.wait(30)


def prefect_ha_layout(server_env: dict[str, str], redis_url: str, roles: dict[str, subprocess.Popen]) -> None:
    """Prefect's own distributed layout on this machine, as README "Scaling out" runs it: two
    ``sojourn prefect-server --no-services`` API replicas on one PostgreSQL database, one
    ``sojourn prefect-server services``, Redis messaging, and haproxy on PREFECT_PORT in front of the replicas (what
    the API and the worker talk to). Each process goes into ``roles`` as it starts (the caller stops them)."""
    import redis

    from sojourn.deployments.balancer import haproxy_config
    redis.Redis.from_url(redis_url).flushdb()
    env = {**server_env, "SOJOURN_REDIS_URL": redis_url}
    cli = [sys.executable, "-m", "sojourn.cli", "prefect-server"]
    ports = [free_port(), free_port()]
    for name, port in zip(("prefect_replica_a", "prefect_replica_b"), ports):  # at once: one migrates, under a lock
        roles[name] = subprocess.Popen([*cli, "--no-services", "--host", "127.0.0.1", "--port", str(port)],
                                       stdout=open(TMP / f"{name}.log", "wb"), stderr=subprocess.STDOUT, env=env, preexec_fn=pinned(CONTROL_CPUS))
    for port in ports:
        wait_http(f"http://127.0.0.1:{port}/api/health")
    roles["prefect_services"] = subprocess.Popen([*cli, "services"], stdout=open(TMP / "prefect_services.log", "wb"), stderr=subprocess.STDOUT, env=env,
                                                 preexec_fn=pinned(CONTROL_CPUS))
    cfg = TMP / "haproxy.cfg"
    cfg.write_text(haproxy_config(f"127.0.0.1:{PREFECT_PORT}", {f"r{i}": f"127.0.0.1:{p}" for i, p in enumerate(ports)}))
    roles["haproxy"] = subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(cfg)],
                                        stdout=open(TMP / "haproxy.log", "wb"), stderr=subprocess.STDOUT, preexec_fn=pinned(CONTROL_CPUS))


CONTROL_CPUS: set[int] | None = None  # --pin: the Prefect server(s), the API and this process's HTTP clients
BROWSER_CPUS: set[int] | None = None  # --pin: the worker and its Chromium; raw Playwright's Chromium


def pinned(cpus: set[int] | None):  # noqa: ANN201
    """For Popen(preexec_fn=...): the child (its threads and what it starts) runs on ``cpus`` only."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def cpu_busy() -> dict[str, tuple[int, int]]:
    """Per CPU from /proc/stat: (busy ticks, all ticks)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name != "cpu":
            values = [int(t) for t in ticks[:8]]
            idle = values[3] + values[4]  # idle + iowait
            out[name] = (sum(values) - idle, sum(values))
    return out


def busy_between(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    return {k: round((after[k][0] - before[k][0]) / max(1, after[k][1] - before[k][1]), 3) for k in after}


def redis_server_pid() -> int | None:
    found = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


def fresh_postgres_database(server_url: str) -> str:
    from tests.postgres import fresh_postgres_database as fresh

    return fresh(server_url, prefix="sojourn_bench")


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop what we started
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small numbers, a few minutes")
    ap.add_argument("--concurrency", "-c", type=int, default=4)
    ap.add_argument("--jobs", "-n", type=int, default=None)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c,d,e,f,g")
    ap.add_argument("--pages", default="trivial,heavy", help="pages for parts a-c: trivial, heavy or both")
    ap.add_argument("--py-spy", metavar="DIR", help="sample each process with py-spy (GIL holders, 50 Hz) during (b); folded stacks in DIR")
    ap.add_argument("--prefect-defaults", action="store_true", help="run the Prefect server with Prefect's default settings, not Sojourn's (for comparison)")
    ap.add_argument("--prefect-db", choices=["sqlite", "postgres"], default="sqlite", help="database behind the Prefect server")
    ap.add_argument("--prefect-layout", choices=["one", "ha"], default="one",
                    help="one: one Prefect server process; ha: Prefect's distributed layout (#24): two --no-services API replicas "
                         "behind haproxy, one services process, Redis messaging (needs PostgreSQL, Redis and haproxy)")
    ap.add_argument("--pin", action="store_true",
                    help="one browser core (#28): Prefect, the API and the bench's clients on CPU 0; the worker and its Chromium on CPU 1; "
                         "raw Playwright on CPU 1 alone; reports how busy each CPU was during (b)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/7", help="for --prefect-layout ha: Prefect's Redis (its own database: it is flushed)")
    ap.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432", help="server URL (a fresh database is created on it)")
    ap.add_argument("--burst-concurrency", type=int, default=4)
    ap.add_argument("--load-nice", type=int, default=0, help="(g) run the load clients at this niceness (negative: ahead of everything else)")
    ap.add_argument("--load-rate-limit", default=None, help="(g) each client key's rate limit, e.g. 120/minute (default: the API's)")
    ap.add_argument("--rss-jobs", type=int, default=None, help="jobs for (f); default 1000 (200 with --quick)")
    args = ap.parse_args()
    quick = args.quick
    C = args.concurrency
    N = args.jobs or (24 if quick else 80)
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {"machine": {"cores": os.cpu_count()}, "concurrency": C, "jobs": N, "quick": quick, "prefect_db": args.prefect_db}

    from sojourn.deployments.prefect_server import server_command, server_env as sojourn_server_env

    server_env = os.environ.copy() if args.prefect_defaults else sojourn_server_env()
    results["prefect_server_settings"] = "prefect defaults" if args.prefect_defaults else "sojourn"
    results["prefect_layout"] = args.prefect_layout
    if args.pin:
        global CONTROL_CPUS, BROWSER_CPUS
        CONTROL_CPUS, BROWSER_CPUS = {0}, {1}
        os.sched_setaffinity(0, CONTROL_CPUS)  # this process's threads (the test site's among them) start here
        results["pin"] = {"control": sorted(CONTROL_CPUS), "browser": sorted(BROWSER_CPUS)}
    if args.prefect_layout == "ha":
        args.prefect_db = results["prefect_db"] = "postgres"
    if args.prefect_db == "postgres":
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = fresh_postgres_database(args.postgres_url)
    prefect_roles: dict[str, subprocess.Popen] = {}
    procs: list[subprocess.Popen] = []
    try:
        if args.prefect_layout == "one":
            prefect_roles["prefect_server"] = subprocess.Popen(server_command("--host", "127.0.0.1", "--port", str(PREFECT_PORT)),
                                                               stdout=open(TMP / "prefect.log", "wb"), stderr=subprocess.STDOUT, env=server_env,
                                                               preexec_fn=pinned(CONTROL_CPUS))
        else:
            prefect_ha_layout(server_env, args.redis_url, prefect_roles)
        wait_http(f"http://127.0.0.1:{PREFECT_PORT}/api/health")
        env = os.environ.copy()
        env["SOJOURN_MAX_CONCURRENCY"] = str(C)
        procs.append(subprocess.Popen([sys.executable, "-m", "sojourn.cli", "api"], env=env, stdout=open(TMP / "api.log", "wb"), stderr=subprocess.STDOUT,
                                      preexec_fn=pinned(CONTROL_CPUS)))
        base = f"http://127.0.0.1:{API_PORT}"
        wait_http(f"{base}/health")
        worker = subprocess.Popen([sys.executable, "-m", "sojourn.cli", "worker"], env=env, stdout=open(TMP / "worker.log", "wb"), stderr=subprocess.STDOUT,
                                  preexec_fn=pinned(BROWSER_CPUS))
        procs.append(worker)
        roles = {**prefect_roles, "api": procs[-2], "worker_and_browser": worker}
        redis_pid = redis_server_pid() if args.prefect_layout == "ha" else None
        if redis_pid:
            roles["redis (system)"] = type("Pid", (), {"pid": redis_pid})()  # (its CPU is read like ours; it is not stopped)
        with Site() as site:
            pages = {"trivial": site.url("/"), "heavy": site.url("/heavy")}
            results["page_bytes"] = {k: len(httpx.get(u).content) for k, u in pages.items()}
            # warm the worker's browser
            asyncio.run(sojourn_throughput(base, [pages["trivial"]] * 2))
            for name, url in pages.items():
                if name not in args.pages.split(","):
                    continue
                urls = [f"{url}{'&' if '?' in url else '?'}i={i}" for i in range(N)]
                part: dict = {}
                if "a" not in skip:
                    part["a_raw"] = asyncio.run(raw_playwright(urls, C))
                    part["a_cpu_seconds_per_job"] = part["a_raw"]["cpu_seconds_per_job"]
                if "b" not in skip:
                    before = {k: cpu_seconds(p.pid) for k, p in roles.items()}
                    before_worker = cpu_by_program(worker.pid)
                    spies = spy_on(roles, args.py_spy, name)
                    ticks = cpu_busy()
                    part["b_sojourn"] = asyncio.run(sojourn_throughput(base, urls))
                    part["b_cpu_busy"] = busy_between(ticks, cpu_busy())
                    stop_spies(spies)
                    ok = max(1, part["b_sojourn"]["ok"])
                    part["b_cpu_seconds_per_job"] = {k: round((cpu_seconds(p.pid) - before[k]) / ok, 3) for k, p in roles.items()}
                    part["b_worker_cpu_seconds_per_job"] = {k: round((v - before_worker.get(k, 0.0)) / ok, 3) for k, v in cpu_by_program(worker.pid).items()}
                if "c" not in skip and name == "trivial":
                    part["c_process_worker"] = asyncio.run(process_worker(urls[: (6 if quick else 12)], C))
                results[name] = part
                print(name, json.dumps(part, indent=1), flush=True)
            if "d" not in skip:
                single = asyncio.run(raw_playwright([pages["trivial"]] * (10 if quick else 30), 1))
                results["d_latency"] = {"raw_single": single, "sojourn": asyncio.run(sojourn_latency(base, pages["trivial"], 10 if quick else 30))}
                print("d", json.dumps(results["d_latency"], indent=1), flush=True)
            if "e" not in skip:
                results["e_submit"] = asyncio.run(submit_burst(base, pages["trivial"], 100 if quick else 500, args.burst_concurrency))
                print("e", json.dumps(results["e_submit"], indent=1), flush=True)
            if "g" not in skip:
                clients, seconds = (20, 15) if quick else (100, 60)
                before = {k: cpu_seconds(p.pid) for k, p in roles.items()}
                spies = spy_on(roles, args.py_spy, "load")
                # The clients run in a process of their own: here they would share the GIL with the test site's threads,
                # and their own queueing would read as the API's latency.
                cmd = [*(["nice", "-n", str(args.load_nice)] if args.load_nice else []), sys.executable, str(ROOT / "bench" / "load.py"), "--base", base, "--admin-key", ADMIN_KEY, "--url", pages["trivial"],
                       "--clients", str(clients), "--seconds", str(seconds), "--submit-every", "20"]
                if args.load_rate_limit:
                    cmd += ["--rate-limit", args.load_rate_limit]
                server_before = request_seconds(base)
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"bench/load.py failed:\n{done.stderr[-3000:]}")
                results["g_load"] = json.loads(done.stdout)
                results["g_load"]["api_side_ms"] = api_side_quantiles(server_before, request_seconds(base))
                stop_spies(spies)
                results["g_load"]["cpu_seconds_during_load_and_drain"] = {k: round(cpu_seconds(p.pid) - before[k], 1) for k, p in roles.items()}
                results["g_load"]["api_reads"] = {line.split('"')[1]: float(line.split()[-1]) for line in httpx.get(f"{base}/metrics").text.splitlines()
                                                  if line.startswith("sojourn_api_reads_total")}
                print("g", json.dumps(results["g_load"], indent=1), flush=True)
            if "f" not in skip:
                results["f_rss"] = asyncio.run(worker_rss(base, pages["trivial"], args.rss_jobs or (200 if quick else 1000), worker.pid, C))
                print("f", json.dumps({k: v for k, v in results["f_rss"].items() if k != "rss_kb"}, indent=1), flush=True)
    finally:
        stop_all([*prefect_roles.values(), *procs])  # (the Prefect processes too if the layout failed to start)
    report(results)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}\nlogs: {TMP}")


def report(r: dict) -> None:
    rows = []
    targets = {"heavy": 0.95, "trivial": 0.5}
    for name in ("trivial", "heavy"):
        part = r.get(name, {})
        raw = part.get("a_raw", {}).get("jobs_per_s")
        for key, label in (("a_raw", "(a) raw Playwright"), ("b_sojourn", "(b) Sojourn over REST"), ("c_process_worker", "(c) stock process worker")):
            if key in part:
                v = part[key]["jobs_per_s"]
                ratio = f"{v / raw:.2f}" if raw else "-"
                target = f">= {targets[name]}" if key == "b_sojourn" else ""
                rows.append((f"{name}: {label}", f"{v:.2f} jobs/s ({part[key]['ok']}/{part[key]['jobs']} ok)", ratio, target))
        if "b_sojourn" in part and "c_process_worker" in part:
            rows.append((f"{name}: (b)/(c)", f"{part['b_sojourn']['jobs_per_s'] / part['c_process_worker']['jobs_per_s']:.1f}x", "", ">= 5"))
    for name in ("trivial", "heavy"):
        part = r.get(name, {})
        cpu = part.get("b_cpu_seconds_per_job")
        if cpu:
            total = sum(cpu.values())
            raw_cpu = part.get("a_cpu_seconds_per_job")
            rows.append((f"{name}: CPU s per job (b)", ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()) + f"; all {total:.2f} ",
                         f"{total / raw_cpu:.2f}" if raw_cpu else "", "<= 1.5 s" if name == "trivial" else ""))
            if raw_cpu:
                rows.append((f"{name}: CPU s per job (a)", f"{raw_cpu:.2f} (this process, its driver and Chromium)", "1.00", ""))
            if part.get("b_cpu_busy"):
                rows.append((f"{name}: CPUs busy during (b)", ", ".join(f"{k} {v * 100:.0f}%" for k, v in part["b_cpu_busy"].items()), "", ""))
            if part.get("b_worker_cpu_seconds_per_job"):
                rows.append((f"{name}: worker tree by program (b)", ", ".join(f"{k} {v:.2f}" for k, v in part["b_worker_cpu_seconds_per_job"].items()), "", ""))
    if "d_latency" in r:
        d = r["d_latency"]
        raw = d["raw_single"]["latency_p50"]
        rows.append(("(d) one job, raw Playwright p50", f"{raw * 1000:.0f} ms", "1.00", ""))
        rows.append(("(d) one job, Sojourn p50 / p95", f"{d['sojourn']['p50'] * 1000:.0f} / {d['sojourn']['p95'] * 1000:.0f} ms", f"{d['sojourn']['p50'] / raw:.2f}", "<= 1.5"))
    if "e_submit" in r:
        e = r["e_submit"]
        rows.append((f"(e) submit x{e['n']} (c={e['concurrency']}) p50 / p99", f"{e['p50_ms']:.0f} / {e['p99_ms']:.0f} ms (max {e['max_ms']:.0f})", "", "p99 <= 50 ms"))
    if "f_rss" in r:
        f = r["f_rss"]
        rows.append((f"(f) worker RSS job 100 -> {f['jobs']}", f"{f['rss_at_100_kb'] / 1024:.0f} -> {f['rss_at_end_kb'] / 1024:.0f} MB", f"{f['change'] * 100:+.1f}%", "within ±10%"))
    if not rows:
        return
    width = max(len(x[0]) for x in rows) + 2
    print("\n" + "measure".ljust(width) + "result".ljust(44) + "ratio".ljust(8) + "target")
    for a, b, c, d in rows:
        print(a.ljust(width) + b.ljust(44) + c.ljust(8) + d)


if __name__ == "__main__":
    main()
