"""What idle API processes cost: CPU seconds per minute each, and Prefect API requests per minute (issue #23).

    .venv/bin/python bench/idle.py [--before /path/to/older/checkout] [--apis 1,3] [--seconds 60]

For each layout, a fresh stack on PostgreSQL (a Prefect server that counts its requests,
``bench/counting_prefect.py``; a fresh facade database) and N ``sojourn api`` processes with no job and no
client, then after a warm-up: the CPU each API process used over ``--seconds`` (utime + stime from /proc), and
the HTTP requests and websockets the Prefect server was sent over the same time, by path. No worker runs, so
every request counted comes from the API processes.

Layouts: ``sojourn api`` ×N (each process runs every background service; a cluster-wide one runs in one of
them); ``sojourn api --no-services`` ×N plus one ``sojourn services``; and with ``--before``, ``sojourn api``
×N of another checkout (run from its own tree, same virtualenv) for a before/after in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.stall import free_port  # noqa: E402
from sojourn.readiness import NotReady, wait_until_up  # noqa: E402
from tests import processes  # noqa: E402
from tests.postgres import drop_database, drop_facade_database, fresh_facade_database, fresh_postgres_database  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def wait_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    try:
        wait_until_up(url, timeout=timeout, proc=proc, what=" ".join(map(str, proc.args)))  # type: ignore[arg-type]
    except NotReady as exc:
        raise RuntimeError(f"{exc}:\n{log.read_text(errors='replace')[-3000:]}") from None


def measure(tree: Path, apis: int, split: bool, seconds: float, warmup: float, tmp: Path) -> dict:
    prefect_db = fresh_postgres_database(prefix=f"sojourn_idle_{uuid.uuid4().hex[:6]}")
    facade = fresh_facade_database("sojourn_idle")
    assert facade is not None, "bench/idle.py needs PostgreSQL on 127.0.0.1:5432"
    started: list[subprocess.Popen] = []
    try:
        port = free_port()
        prefect_url = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SOJOURN_"))}
        log = tmp / f"prefect-{port}.log"
        prefect = processes.start([sys.executable, str(ROOT / "bench" / "counting_prefect.py"), "--port", str(port)],
                                  env={**env, "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db, "PREFECT_HOME": str(tmp / f"ph-{port}")}, log=log)
        started.append(prefect)
        wait_up(f"{prefect_url}/health", prefect, log)
        common = {**env, "PREFECT_API_URL": prefect_url, "SOJOURN_PREFECT_API_URL": prefect_url, "SOJOURN_DATABASE_URL": facade,
                  "SOJOURN_HOME": str(tmp / f"home-{port}"), "SOJOURN_ADMIN_KEY": "sk_idle_" + uuid.uuid4().hex,
                  "SOJOURN_WORK_POOL": f"idle-{uuid.uuid4().hex[:6]}", "PYTHONPATH": str(tree)}
        api_pids = []
        for i in range(apis):
            api_port = free_port()
            log = tmp / f"api-{port}-{i}.log"
            args = ["api", "--no-services"] if split else ["api"]
            proc = processes.start([sys.executable, "-m", "sojourn.cli", *args], cwd=tree, log=log,
                                   env={**common, "SOJOURN_API_PORT": str(api_port)})
            started.append(proc)
            wait_up(f"http://127.0.0.1:{api_port}/health", proc, log)
            api_pids.append(proc.pid)
        services_pid = None
        if split:
            log = tmp / f"services-{port}.log"
            proc = processes.start([sys.executable, "-m", "sojourn.cli", "services"], cwd=tree, log=log, env=common)
            started.append(proc)
            services_pid = proc.pid
        time.sleep(warmup)
        pids = api_pids + ([services_pid] if services_pid else [])
        cpu0 = {p: cpu_seconds(p) for p in pids}
        counts0 = Counter(httpx.get(f"http://127.0.0.1:{port}/__counts").json())
        time.sleep(seconds)
        cpu1 = {p: cpu_seconds(p) for p in pids}
        counts = Counter(httpx.get(f"http://127.0.0.1:{port}/__counts").json())
        counts.subtract(counts0)
        per_min = 60 / seconds
        return {
            "apis": apis, "split": split, "tree": str(tree),
            "api_cpu_s_per_min": [round((cpu1[p] - cpu0[p]) * per_min, 2) for p in api_pids],
            "services_cpu_s_per_min": round((cpu1[services_pid] - cpu0[services_pid]) * per_min, 2) if services_pid else None,
            "prefect_requests_per_min": round(sum(v for k, v in counts.items() if not k.startswith("WS ")) * per_min, 1),
            "by_path_per_min": {k: round(v * per_min, 1) for k, v in counts.most_common() if v > 0},
        }
    finally:
        for proc in reversed(started):
            processes.stop(proc, timeout=30)
        drop_facade_database(facade)
        drop_database(prefect_db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="another checkout to measure the same way (its `sojourn api` ×N)")
    parser.add_argument("--apis", default="1,3")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=20)
    args = parser.parse_args()
    counts = [int(n) for n in args.apis.split(",")]
    layouts = [(ROOT, n, False) for n in counts] + [(ROOT, n, True) for n in counts]
    if args.before:
        layouts = [(args.before.resolve(), n, False) for n in counts] + layouts
    with tempfile.TemporaryDirectory(prefix="sojourn-idle-") as tmp:
        for tree, n, split in layouts:
            result = measure(tree, n, split, args.seconds, args.warmup, Path(tmp))
            name = f"{'before' if tree != ROOT else 'after'} {'api --no-services + services' if split else 'api'} x{n}"
            print(json.dumps({"layout": name, **result}), flush=True)
    left = processes.stop_all()
    if left:
        print(f"killed what was left: {left}", file=sys.stderr)


if __name__ == "__main__":
    main()
