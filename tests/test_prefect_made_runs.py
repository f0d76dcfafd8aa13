"""Runs made the Prefect way on the browse deployment are jobs (#23): a run made with Prefect's client (what the UI's
"Custom run" and `prefect deployment run` do) and a schedule made with Prefect's client, against the session stack."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import IntervalSchedule

from sojourn.deployments.bootstrap import deployment_suffix
from sojourn.settings import get_settings
from tests.helpers import Receiver, until

PNG = b"\x89PNG\r\n\x1a\n"


def _key(stack, principal: str) -> str:
    with stack.client() as admin:
        r = admin.post("/api/v1/keys", json={"name": "prefect-made", "principal": principal})
        assert r.status_code == 201, r.text
        return r.json()["key"]


async def _browse_deployment(client) -> object:
    return await client.read_deployment_by_name(f"browse/browse{deployment_suffix(get_settings())}")


def _job_ends_with_its_screenshot(stack, key: str, job_id: str, marker: str) -> dict:
    with stack.client(key) as http:
        job = until(f"run {job_id} readable as a job", lambda: (r := http.get(f"/api/v1/jobs/{job_id}")).status_code == 200 and r.json(), timeout=60)
        assert job["id"] == job_id
        job = until(f"job {job_id} completed", lambda: (j := http.get(f"/api/v1/jobs/{job_id}", params={"wait": 20}).json())["status"] in
                    ("completed", "failed", "cancelled") and j, timeout=120)
        assert job["status"] == "completed", job
        steps = job["result"]["metadata"]["steps"]
        assert steps[0]["url"].endswith(marker), steps
        [shot] = job["result"]["screenshots"]
        png = http.get(f"/api/v1/screenshots/{shot}")
        assert png.status_code == 200 and png.content.startswith(PNG)
        assert job_id in [j["id"] for j in http.get("/api/v1/jobs", params={"limit": 100}).json()["jobs"]]
    return job


@pytest.mark.slow
async def test_runs_made_in_prefect_on_browse_are_jobs_of_their_owner_with_captures_and_webhooks(stack, site):
    owner = "prefect-made-" + uuid.uuid4().hex[:6]
    key, other = _key(stack, owner), _key(stack, owner + "-other")
    receiver = Receiver()
    with stack.client(key) as http:
        assert http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.completed"]}).status_code == 201
    spec = {"steps": [{"url": site.url("/?made-in=prefect")}], "capture": {"screenshot": True}}
    async with get_client() as client:
        deployment = await _browse_deployment(client)

        # 1. A run made with Prefect's client, as the UI's "Custom run" makes it; its owner named by a tag.
        run = await client.create_flow_run_from_deployment(deployment.id, parameters={"spec": spec}, tags=[f"owner:{owner}"])
        job = _job_ends_with_its_screenshot(stack, key, str(run.id), "/?made-in=prefect")
        receiver.wait(1, timeout=90)  # the owner's webhook, as for any job
        payload = json.loads(receiver.received[0][1])
        assert payload["event"] == "job.completed" and payload["data"]["id"] == str(run.id) and payload["data"]["status"] == "completed"
        with stack.client(other) as http:  # another tenant does not see it
            assert http.get(f"/api/v1/jobs/{run.id}").status_code == 404
        tags = (await client.read_flow_run(run.id)).tags
        assert {"sojourn", f"owner:{owner}", f"job:{run.id}"} <= set(tags), tags
        assert job["id"] == str(run.id)

        # 2. A schedule made with Prefect's client (as in the Prefect UI or prefect.yaml), its runs made by Prefect.
        spec2 = {"steps": [{"url": site.url("/?made-in=prefect-schedule")}], "capture": {"screenshot": True}}
        [schedule] = await client.create_deployment_schedules(deployment.id, [DeploymentScheduleCreate(
            schedule=IntervalSchedule(interval=timedelta(hours=1), anchor_date=datetime.now(timezone.utc) + timedelta(seconds=3)),
            active=True, parameters={"spec": spec2})])
        try:
            # Prefect's scheduler service makes the runs within its loop (60 s); its API does it at once when asked.
            r = httpx.post(f"{os.environ['PREFECT_API_URL']}/deployments/{deployment.id}/schedule", json={"max_runs": 1}, timeout=30)
            assert r.status_code < 300, r.text
            # (its scheduler service may have made the later firings too, an hour apart: the first one is due now)
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])))
            made = min((r for r in runs if (r.parameters.get("spec") or {}).get("steps", [{}])[0].get("url", "").endswith("prefect-schedule")),
                       key=lambda r: r.expected_start_time)
            _job_ends_with_its_screenshot(stack, stack.admin_key, str(made.id), "/?made-in=prefect-schedule")  # no owner tag: the admin's
        finally:
            await client.delete_deployment_schedule(deployment.id, schedule.id)
            for left in await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))):
                if not any(t.startswith("job:") for t in left.tags):
                    await client.delete_flow_run(left.id)

        # 3. A run whose owner tag names nobody with a key here is refused: cancelled, and no job.
        refused = await client.create_flow_run_from_deployment(deployment.id, parameters={"spec": spec}, tags=["owner:nobody-" + uuid.uuid4().hex[:6]])

        async def ended() -> object:
            return (r := await client.read_flow_run(refused.id)).state_type in (StateType.CANCELLED, StateType.CANCELLING) and r

        deadline = datetime.now(timezone.utc) + timedelta(seconds=60)
        while not (done := await ended()):
            assert datetime.now(timezone.utc) < deadline, "the run of an unknown owner was not refused within 60 s"
            await asyncio.sleep(0.5)
        assert done.state.message.startswith("Refused by Sojourn: its owner tag names 'nobody-"), done.state.message
        with stack.client() as admin:
            assert admin.get(f"/api/v1/jobs/{refused.id}").status_code == 404
