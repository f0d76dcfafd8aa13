"""A short load run in CI (the long one is bench/run.py part g: 100 clients for 60 s)."""

from __future__ import annotations

import asyncio
import json

import httpx

from bench.load import run_load


def _reads(stack) -> dict[str, float]:
    text = httpx.get(f"{stack.base}/metrics").text
    return {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines() if line.startswith("sojourn_api_reads_total")}


def test_many_clients_at_once_get_no_errors_and_lose_no_job(stack, site):
    before = _reads(stack)
    result = asyncio.run(run_load(
        stack.base, stack.admin_key, site.url("/"), clients=20, seconds=6, submit_every=3, drain_timeout=240, rate_limit="60/minute",
    ))
    print(json.dumps(result, indent=1))
    assert result["error_count"] == 0, result["errors"]
    assert result["accepted"] >= 20
    assert result["lost"] == 0 and sum(result["final"].values()) == result["accepted"]
    assert result["final"].get("completed") == result["accepted"], result["final"]
    # most reads were answered from memory (kept fresh by Prefect's events), not by asking Prefect
    after = _reads(stack)
    memory, prefect = after["memory"] - before.get("memory", 0), after["prefect"] - before.get("prefect", 0)
    assert memory > prefect, (memory, prefect)
