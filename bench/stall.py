"""Does the default stack stall? (issue #22)

    .venv/bin/python bench/stall.py --stacks 10 --rounds 3

Each stack is a fresh `sojourn up` on the embedded defaults (Prefect on SQLite, a new SOJOURN_HOME), as a
newcomer starts it. Each round: one job on a page that never finishes loading, cancelled once it is
processing, then 24 trivial screenshot jobs at once. Reported per round: the longest gap between two of the
24 jobs' completions, the time from their submission to the first completion, jobs/s, and the "database is
locked" lines the Prefect server printed. Target: no gap over 3 s.

With ``--spy`` a py-spy dump of the Prefect server is taken whenever no job has completed for 5 s.
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
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.site import Site  # noqa: E402

SOJOURN = [str(Path(sys.executable).with_name("sojourn"))]
FINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def when(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Stack:
    """`sojourn up` in a fresh home, in a newcomer's environment (no PREFECT_ or SOJOURN_ settings)."""

    def __init__(self, tmp: Path) -> None:
        from sojourn.lifeline import die_with_parent

        self.home = tmp / "home"
        self.api_port, self.prefect_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SOJOURN_"))}
        env.update({"SOJOURN_HOME": str(self.home), "SOJOURN_API_PORT": str(self.api_port),
                    "SOJOURN_PREFECT_PORT": str(self.prefect_port), "PYTHONUNBUFFERED": "1",
                    "PREFECT_LOGGING_LEVEL": "INFO"})
        self.log = tmp / "up.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([*SOJOURN, "up"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=die_with_parent)
        self.base = f"http://127.0.0.1:{self.api_port}"
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything." not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`sojourn up` did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        self.key = (self.home / "admin.key").read_text().strip()

    def prefect_pid(self) -> int | None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "server start" in cmd and f"--port {self.prefect_port}" in cmd:
                return int(pid)
        return None

    def locked_lines(self) -> list[str]:
        text = (self.home / "prefect-server.log").read_text(errors="replace") + self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "database is locked" in line or "↩ [" in line and "ms]" in line]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


async def one_round(stack: Stack, site: Site, n: int, spy_dir: Path | None) -> dict:
    headers = {"X-API-Key": stack.key}
    async with httpx.AsyncClient(base_url=stack.base, headers=headers, timeout=90) as http:
        # 1. a job on a page that never finishes loading, cancelled once it runs
        r = await http.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": [{"url": site.url("/never?s=300"), "timeout": 300}]}})
        never = r.json()["jobId"]
        deadline = time.monotonic() + 60
        while (await http.get(f"/api/v1/jobs/{never}")).json()["status"] != "processing":
            if time.monotonic() > deadline:
                raise RuntimeError("the never-loading job did not start")
            await asyncio.sleep(0.25)
        await http.post(f"/api/v1/jobs/{never}/cancel")
        # 2. then a batch of trivial jobs at once
        body = lambda i: {"type": "browse", "input": {"steps": [{"url": site.url(f"/?stall={i}")}], "capture": ["screenshot"]}}  # noqa: E731
        submitted = time.time()
        ids = [r.json()["jobId"] for r in await asyncio.gather(*(http.post("/api/v1/jobs", json=body(i)) for i in range(n)))]
        done_at: list[float] = []
        spies: list[str] = []

        async def watch() -> None:
            last = time.monotonic()
            count = 0
            while True:
                await asyncio.sleep(0.5)
                if len(done_at) != count:
                    count, last = len(done_at), time.monotonic()
                elif spy_dir is not None and time.monotonic() - last > 5 and (pid := stack.prefect_pid()):
                    out = spy_dir / f"prefect-{int(time.time())}.txt"
                    dump = subprocess.run([str(Path(sys.executable).with_name("py-spy")), "dump", "--pid", str(pid), "--locals"], capture_output=True, text=True)
                    out.write_text(dump.stdout + dump.stderr)
                    spies.append(str(out))
                    last = time.monotonic()

        async def final(job_id: str) -> dict:
            while True:
                job = (await http.get(f"/api/v1/jobs/{job_id}", params={"wait": 30})).json()
                if job["status"] in FINAL:
                    done_at.append(time.time())
                    return job

        watcher = asyncio.ensure_future(watch())
        jobs = await asyncio.wait_for(asyncio.gather(*(final(j) for j in ids)), timeout=600)
        watcher.cancel()
        cancelled = (await http.get(f"/api/v1/jobs/{never}")).json()["status"]
    ends = sorted([submitted] + [when(j["completedAt"]) for j in jobs if j.get("completedAt")])
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return {
        "jobs": n, "completed": sum(j["status"] == "completed" for j in jobs), "never_job": cancelled,
        "longest_gap_s": round(max(gaps[1:]), 2) if len(gaps) > 1 else None,  # between two completions
        "first_s": round(gaps[0], 2) if gaps else None,  # submission to the first completion
        "wall_s": round(ends[-1] - submitted, 2), "jobs_per_s": round(n / (ends[-1] - submitted), 2),
        "spies": spies,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stacks", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=24)
    ap.add_argument("--spy", action="store_true", help="py-spy dump the Prefect server when completions stop for 5 s")
    args = ap.parse_args()
    results = []
    with Site() as site:
        for s in range(args.stacks):
            tmp = Path(tempfile.mkdtemp(prefix="sojourn-stall-"))
            stack = Stack(tmp)
            try:
                for r in range(args.rounds):
                    res = asyncio.run(one_round(stack, site, args.n, tmp if args.spy else None))
                    res.update(stack=s + 1, round=r + 1)
                    results.append(res)
                    print(json.dumps(res), flush=True)
                locked = stack.locked_lines()
                print(f"stack {s + 1}: {len(locked)} 'database is locked' lines" + (f"; first: {locked[0][:200]}" if locked else ""), flush=True)
            finally:
                stack.stop()
                if not args.spy:
                    shutil.rmtree(tmp, ignore_errors=True)
    worst = max(r["longest_gap_s"] or 0 for r in results)
    first = max(r["first_s"] or 0 for r in results)
    print(f"\n{len(results)} rounds on {args.stacks} fresh stacks: longest gap between completions {worst:.2f} s (target <= 3 s), "
          f"first completion after at most {first:.2f} s; "
          f"jobs/s min {min(r['jobs_per_s'] for r in results):.2f}, median {sorted(r['jobs_per_s'] for r in results)[len(results) // 2]:.2f}")


if __name__ == "__main__":
    main()
