"""Load: many clients submitting and reading at once against a running stack.

Each client has its own key (its own tenant) and loops until the time is up:
it submits a small job every ``submit_every`` seconds and otherwise reads
(its last job's status, its job list), a few times a second. A 429 is obeyed
(it waits for Retry-After) and a refused submission is tried again next turn. Afterwards every accepted job is
waited for: a job that never reaches a final state counts as lost.

    python bench/load.py --base http://127.0.0.1:8000 --admin-key sj_... --url http://127.0.0.1:9000/ --clients 100 --seconds 60

`bench/run.py` runs it as part (g) against the stack it starts; tests run a
short version in CI (tests/test_load.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import httpx


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(q / 100 * (len(values) - 1)))))]


async def run_load(base: str, admin_key: str, url: str, *, clients: int, seconds: float, submit_every: float = 5.0,
                   drain_timeout: float = 900, rate_limit: str | None = None) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        keys = []
        for i in range(clients):
            body: dict[str, Any] = {"name": f"load-{i}"}
            if rate_limit:
                body["rateLimit"] = rate_limit
            r = await http.post("/api/v1/keys", json=body, headers={"X-API-Key": admin_key})
            r.raise_for_status()
            keys.append(r.json()["key"])

        latencies: dict[str, list[float]] = {"submit": [], "get": [], "list": []}
        statuses: Counter[str] = Counter()
        errors: list[str] = []
        accepted: list[tuple[str, str]] = []
        deadline = time.monotonic() + seconds

        async def call(kind: str, method: str, path: str, key: str, **kw: Any) -> httpx.Response | None:
            started = time.perf_counter()
            try:
                r = await http.request(method, path, headers={"X-API-Key": key}, **kw)
            except httpx.HTTPError as exc:
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                return None
            latencies[kind].append((time.perf_counter() - started) * 1000)
            statuses[f"{kind} {r.status_code}"] += 1
            if r.status_code >= 500 or (r.status_code >= 400 and r.status_code != 429):
                errors.append(f"{kind}: {r.status_code} {r.text[:200]}")
            return r

        async def client(i: int) -> None:
            key = keys[i]
            last: str | None = None
            next_submit = time.monotonic() + random.uniform(0, submit_every)
            while time.monotonic() < deadline:
                if time.monotonic() >= next_submit:
                    r = await call("submit", "POST", "/api/v1/jobs", key, json={"type": "browse", "input": {"steps": [{"url": f"{url}?load={i}"}]}})
                    if r is not None and r.status_code == 202:
                        next_submit += submit_every
                        last = r.json()["jobId"]
                        accepted.append((key, last))
                elif last and random.random() < 0.7:
                    r = await call("get", "GET", f"/api/v1/jobs/{last}", key)
                else:
                    r = await call("list", "GET", "/api/v1/jobs", key, params={"limit": 5})
                pause = random.uniform(0.05, 0.25)
                if r is not None and r.status_code in (429, 503):  # wait as long as Retry-After says, as clients should
                    pause = max(pause, float(r.headers.get("Retry-After", 1)))
                await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))

        started = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.monotonic() - started
        requests = sum(len(v) for v in latencies.values())

        # Every accepted job must end: one long poll per job (?wait=60), with its own key, obeying 429s.
        final: Counter[str] = Counter()
        drain_deadline = time.monotonic() + drain_timeout
        pending: list[tuple[str, str]] = []

        polls = asyncio.Semaphore(clients)  # at most one long poll per client connection at a time

        async def settle(key: str, job_id: str) -> None:
            while time.monotonic() < drain_deadline:
                try:
                    async with polls:
                        r = await http.get(f"/api/v1/jobs/{job_id}", params={"wait": 60}, headers={"X-API-Key": key}, timeout=90)
                except httpx.HTTPError:
                    await asyncio.sleep(1)
                    continue
                if r.status_code == 200 and r.json().get("status") in ("completed", "failed", "cancelled"):
                    final[r.json()["status"]] += 1
                    return
                await asyncio.sleep(float(r.headers.get("Retry-After", 0)) if r.status_code in (429, 503) else 0)
            pending.append((key, job_id))

        await asyncio.gather(*(settle(key, job_id) for key, job_id in accepted))
        drained = time.monotonic() - started - elapsed

    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1),
        "latency_ms": {k: {"p50": _r(pct(v, 50)), "p99": _r(pct(v, 99)), "n": len(v)} for k, v in latencies.items()},
        "all_p99_ms": _r(pct([x for v in latencies.values() for x in v], 99)),
        "statuses": dict(statuses),
        "rate_limited": sum(n for k, n in statuses.items() if k.endswith(" 429")),
        "errors": errors[:20],
        "error_count": len(errors),
        "accepted": len(accepted),
        "final": dict(final),
        "lost": len(pending),
        "drain_seconds": round(drained, 1),
    }


def _r(x: float | None) -> float | None:
    return round(x, 1) if x is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--url", required=True, help="the page jobs visit")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--submit-every", type=float, default=20)
    ap.add_argument("--rate-limit", default=None, help="per-client key limit, e.g. 300/minute")
    args = ap.parse_args()
    result = asyncio.run(run_load(args.base, args.admin_key, args.url, clients=args.clients, seconds=args.seconds,
                                  submit_every=args.submit_every, rate_limit=args.rate_limit))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
