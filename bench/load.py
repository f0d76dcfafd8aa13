"""Load: many clients submitting and reading at once against a running stack.

Each client has its own key (its own tenant) and loops until the time is up:
it submits a small job every ``submit_every`` seconds and otherwise reads
(its last job's status, its job list). Afterwards every accepted job is
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
                    next_submit += submit_every
                    r = await call("submit", "POST", "/api/v1/jobs", key, json={"type": "browse", "input": {"steps": [{"url": f"{url}?load={i}"}]}})
                    if r is not None and r.status_code == 202:
                        last = r.json()["jobId"]
                        accepted.append((key, last))
                elif last and random.random() < 0.7:
                    await call("get", "GET", f"/api/v1/jobs/{last}", key)
                else:
                    await call("list", "GET", "/api/v1/jobs", key, params={"limit": 5})
                await asyncio.sleep(random.uniform(0.05, 0.25))

        started = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.monotonic() - started
        requests = sum(len(v) for v in latencies.values())

        # Every accepted job must end.
        final: Counter[str] = Counter()
        drain_deadline = time.monotonic() + drain_timeout
        pending = list(accepted)
        while pending and time.monotonic() < drain_deadline:
            still = []
            for key, job_id in pending:
                r = await http.get(f"/api/v1/jobs/{job_id}", headers={"X-API-Key": key})
                status = r.json().get("status") if r.status_code == 200 else f"http {r.status_code}"
                if status in ("completed", "failed", "cancelled"):
                    final[status] += 1
                else:
                    still.append((key, job_id))
            pending = still
            if pending:
                await asyncio.sleep(2)
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
