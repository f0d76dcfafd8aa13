"""The flows are plain Prefect flows: Prefect's stock process worker runs them too."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from sojourn.blocks.artifact_store import ArtifactStore
from tests import processes
from tests.helpers import png_image

pytestmark = pytest.mark.slow


def test_stock_process_worker_runs_a_browse_job(site, tmp_home, prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    from sojourn.deployments.bootstrap import bootstrap_process_pool

    boot = asyncio.run(bootstrap_process_pool())
    # The stock worker polls every 10 s by default; once a second here, so the job starts as soon as it is created.
    env = {**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    worker = processes.start(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", boot.pool, "--type", "process", "--limit", "1"],
        env=env, log=tmp_path / "process-worker.log",
    )

    async def run() -> str:
        async with get_client() as client:
            fr = await client.create_flow_run_from_deployment(
                boot.deployments["browse"],
                parameters={"spec": {"steps": [{"url": site.url("/")}], "capture": ["screenshot"]}},
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                fr = await client.read_flow_run(fr.id)
                if fr.state and fr.state.is_final():
                    break
                await asyncio.sleep(0.5)
            assert fr.state.is_completed(), f"{fr.state}\n{(tmp_path / 'process-worker.log').read_text(errors='replace')[-3000:]}"
            return str(fr.id)

    try:
        job_id = asyncio.run(run())
    finally:
        processes.stop(worker, timeout=15)  # then its process group is killed, flow-run processes included
    manifest = asyncio.run(ArtifactStore.from_settings().read_manifest(job_id))
    shot = manifest.artifact("screenshot")
    assert png_image(asyncio.run(ArtifactStore.from_settings().read_bytes(shot.path))).size == (1280, 720)
