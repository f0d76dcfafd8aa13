"""The flows are plain Prefect flows: Prefect's stock process worker runs them too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from sojourn.blocks.artifact_store import ArtifactStore
from tests.helpers import png_image

pytestmark = pytest.mark.slow


def test_stock_process_worker_runs_a_browse_job(site, tmp_home, prefect_server):
    from prefect.client.orchestration import get_client

    from sojourn.deployments.bootstrap import bootstrap_process_pool

    boot = asyncio.run(bootstrap_process_pool())
    env = os.environ.copy()
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", boot.pool, "--type", "process", "--limit", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
            assert fr.state.is_completed(), fr.state
            return str(fr.id)

    try:
        job_id = asyncio.run(run())
    finally:
        worker.terminate()
        worker.wait(30)
    manifest = asyncio.run(ArtifactStore.from_settings().read_manifest(job_id))
    shot = manifest.artifact("screenshot")
    assert png_image(asyncio.run(ArtifactStore.from_settings().read_bytes(shot.path))).size == (1280, 720)
