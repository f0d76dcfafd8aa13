"""Where one job's time goes: submit trivial jobs one at a time and split each into phases.

    .venv/bin/python bench/trace.py [-n 20] [--prefect-db postgres]

Starts the same stack as bench/run.py (Prefect server, API, one worker) and,
for each job, reads back from the job ledger and Prefect's state history:

  accept     POST answered (client clock)
  dispatch   ledger row → flow run created (Scheduled)
  pickup     Scheduled → Pending (the worker heard of it, polled, proposed Pending)
  start      Pending → Running (worker bookkeeping, engine start)
  body       Running → Completed (the flow: browser work, tasks, artifacts, final writes)
  notice     Completed → the client's long poll answered

Prints the median and p90 of each, and the raw rows as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run as bench  # noqa: E402  (sets the environment for the stack it starts)


async def trace(base: str, url: str, n: int) -> list[dict[str, float]]:
    from prefect.client.orchestration import get_client

    from sojourn.services.ledger import Ledger
    from sojourn.settings import get_settings

    ledger = Ledger(get_settings().database_location)
    rows: list[dict[str, float]] = []
    async with bench.api_client(base) as http, get_client() as client:
        for _ in range(n + 2):
            t0 = time.time()
            r = await http.post("/api/v1/jobs", json=bench.job_body(url))
            t_accept = time.time()
            job_id = r.json()["jobId"]
            await bench.wait_all(http, [job_id], 120)
            t_seen = time.time()
            row = await ledger.get(job_id)
            states = await client.read_flow_run_states(row.flow_run_id)  # type: ignore[arg-type, union-attr]
            at = {s.type.value: s.timestamp.timestamp() for s in states}
            rows.append({
                "accept": t_accept - t0,
                "dispatch": at["SCHEDULED"] - t_accept,
                "pickup": at["PENDING"] - at["SCHEDULED"],
                "start": at["RUNNING"] - at["PENDING"],
                "body": at["COMPLETED"] - at["RUNNING"],
                "notice": t_seen - at["COMPLETED"],
                "total": t_seen - t0,
            })
    return rows[2:]  # the first two warm the browser and the caches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--prefect-db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--prefect-defaults", action="store_true", help="Prefect's default server settings, not Sojourn's")
    ap.add_argument("--py-spy", metavar="DIR", help="sample the Prefect server, API and worker with py-spy meanwhile (raw folded stacks in DIR)")
    args = ap.parse_args()
    from tests.site import Site

    from sojourn.deployments.prefect_server import server_command, server_env as sojourn_server_env

    server_env = dict(bench.os.environ) if args.prefect_defaults else sojourn_server_env()
    if args.prefect_db == "postgres":
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = bench.fresh_postgres_database("postgresql+asyncpg://postgres@127.0.0.1:5432")
    procs = [subprocess.Popen(server_command("--host", "127.0.0.1", "--port", str(bench.PREFECT_PORT)),
                              stdout=open(bench.TMP / "prefect.log", "wb"), stderr=subprocess.STDOUT, env=server_env)]
    try:
        bench.wait_http(f"http://127.0.0.1:{bench.PREFECT_PORT}/api/health")
        procs.append(subprocess.Popen([sys.executable, "-m", "sojourn.cli", "api"], stdout=open(bench.TMP / "api.log", "wb"), stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{bench.API_PORT}"
        bench.wait_http(f"{base}/health")
        procs.append(subprocess.Popen([sys.executable, "-m", "sojourn.cli", "worker"], stdout=open(bench.TMP / "worker.log", "wb"), stderr=subprocess.STDOUT))
        spies = []
        if args.py_spy:
            Path(args.py_spy).mkdir(parents=True, exist_ok=True)
            time.sleep(3)  # the worker is up
            for role, proc in zip(("prefect", "api", "worker"), procs):
                spies.append(subprocess.Popen(["py-spy", "record", "-p", str(proc.pid), "-r", "100", "--gil", "-f", "raw", "-o", f"{args.py_spy}/{role}.txt"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Site() as site:
            rows = asyncio.run(trace(base, site.url("/"), args.n))
        for spy in spies:
            spy.send_signal(2)
        for spy in spies:
            spy.wait(30)
    finally:
        bench.stop_all(procs)
    print("phase      p50 ms   p90 ms")
    for key in rows[0]:
        print(f"{key:<10}{bench.pct([r[key] for r in rows], 50) * 1000:7.0f}  {bench.pct([r[key] for r in rows], 90) * 1000:7.0f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
