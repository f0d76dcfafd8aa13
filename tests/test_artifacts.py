"""Artifact storage (local and S3 through moto's S3 server), progress, and what the Prefect UI shows."""

from __future__ import annotations

import asyncio
import uuid

import httpx

import pytest

from sojourn import settings as settings_mod
from sojourn.blocks.artifact_store import ArtifactStore
from tests.helpers import png_image, run_job

pytestmark = pytest.mark.usefixtures("pool")


@pytest.fixture()
def s3_settings(s3_server, monkeypatch):
    import boto3

    bucket = f"sojourn-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=bucket)
    old = settings_mod.get_settings()
    new = settings_mod.configure(
        home=old.home,
        artifacts_url=f"s3://{bucket}/sojourn",
        s3_endpoint_url=s3_server,
        s3_access_key="test",
        s3_secret_key="test",
        s3_region="us-east-1",
    )
    yield new, bucket
    settings_mod._current = old


async def test_jobs_store_their_captures_on_s3(site, s3_settings):
    settings, bucket = s3_settings
    m = await run_job({"steps": [{"url": site.url("/")}], "capture": ["screenshot", "text"]})
    store = ArtifactStore.from_settings()
    assert store.is_remote
    # Read back through a separate S3 client: the objects are really in the bucket.
    import boto3

    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"sojourn/jobs/{m.job_id}/")["Contents"]}
    assert keys == {f"sojourn/jobs/{m.job_id}/{n}" for n in ("manifest.json", "screenshot.png", "page.txt")}
    png = s3.get_object(Bucket=bucket, Key=f"sojourn/jobs/{m.job_id}/screenshot.png")["Body"].read()
    assert png_image(png).size == (1280, 720)
    assert (await store.read_manifest(m.job_id)) == m


async def test_cache_results_live_in_the_s3_store(site, s3_settings, pool):
    _, bucket = s3_settings
    spec = {"steps": [{"url": site.url(f"/?s3cache={uuid.uuid4().hex}")}], "cacheTtl": 60}
    first = await run_job(spec)
    opened = pool.stats.contexts_opened
    second = await run_job(spec)
    assert second.cached_from == first.job_id and pool.stats.contexts_opened == opened
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_settings[0].s3_endpoint_url, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=bucket, Prefix="sojourn/cache/")["KeyCount"] >= 1


async def test_local_store_layout(site, tmp_home):
    m = await run_job({"steps": [{"url": site.url("/")}], "capture": ["screenshot"]})
    folder = tmp_home / "artifacts" / "jobs" / m.job_id
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "screenshot.png"]


def test_store_refuses_paths_outside_a_job() -> None:
    with pytest.raises(ValueError):
        ArtifactStore.job_path("../../etc", "passwd")
    with pytest.raises(ValueError):
        ArtifactStore.job_path("abc", "../x")


# ------------------------------------------------------------------ Prefect: progress and UI


async def _flow_run_artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


async def test_progress_is_readable_while_the_job_runs(site):
    """A job running longer than ARTIFACT_AFTER (5 s) gets a progress artifact: the UI's progress bar."""
    from prefect import tags
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from sojourn.flows import browse
    from sojourn.progress import parse_progress

    tag = f"t-{uuid.uuid4().hex[:8]}"
    spec = {
        "steps": [
            {"url": site.url("/"), "name": "Opening home"},
            {"url": site.url("/buttons"), "name": "Waiting on buttons", "actions": ["page.waitForTimeout(8000)"]},
        ],
        "capture": ["screenshot"],
    }
    with tags(tag):
        job = asyncio.ensure_future(browse(spec))
    seen = None
    async with get_client() as client:
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
            if runs:
                progress = [a for a in await _flow_run_artifacts(runs[0].id) if a.type == "progress"]
                if progress:
                    seen = parse_progress(progress[0].description, float(progress[0].data))
                    if seen and seen["currentStep"] == "Waiting on buttons":
                        break
            await asyncio.sleep(0.25)
    assert not job.done(), "the job finished before its progress was read"
    assert seen == {"currentStep": "Waiting on buttons", "stepsCompleted": 1, "totalSteps": 3, "percentage": 33}
    await job
    progress = [a for a in await _flow_run_artifacts(runs[0].id) if a.type == "progress"][0]
    assert parse_progress(progress.description, float(progress.data)) == {"currentStep": "Done", "stepsCompleted": 3, "totalSteps": 3, "percentage": 100}


async def test_prefect_ui_links_are_signed_for_one_capture(site):
    """The captures artifact links each capture with a signed, expiring link, never an API key."""
    from urllib.parse import parse_qs, urlsplit

    from sojourn.settings import get_settings
    from sojourn.signed_links import signed_url, verify

    admin_key = "sj_test_admin_" + uuid.uuid4().hex
    old = get_settings()
    settings_mod.configure(home=old.home, admin_key=admin_key)  # the flow runs with an admin key in its settings
    try:
        m = await run_job({"steps": [{"url": site.url("/")}], "capture": ["screenshot", "pdf"]})
        settings = get_settings()
        assert settings.admin_key.get_secret_value() == admin_key
    finally:
        settings_mod._current = old
    arts = await _flow_run_artifacts(uuid.UUID(m.job_id))
    markdown = [a for a in arts if a.type == "markdown"][0].data
    prefix = f"{settings.public_base}/api/v1/jobs/{m.job_id}/artifacts/"
    assert f"![screenshot.png]({prefix}screenshot.png?expires=" in markdown and f"({prefix}page.pdf?expires=" in markdown
    assert admin_key not in markdown
    link = urlsplit(signed_url(settings, m.job_id, "page.pdf"))
    q = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert verify(settings, m.job_id, "page.pdf", q["expires"], q["signature"])
    assert not verify(settings, m.job_id, "screenshot.png", q["expires"], q["signature"])  # one capture only
    assert not verify(settings, m.job_id, "page.pdf", str(int(q["expires"]) + 1), q["signature"])  # expiry is signed
    old = signed_url(settings, m.job_id, "page.pdf", ttl=10, now=0)  # expired long ago
    oq = {k: v[0] for k, v in parse_qs(urlsplit(old).query).items()}
    assert not verify(settings, m.job_id, "page.pdf", oq["expires"], oq["signature"])


def test_the_stacks_admin_key_is_not_in_the_prefect_ui_artifact(stack, site):
    """A job run by the stack (whose API and worker hold the admin key): its captures artifact links every capture
    with a signed link of the stack's public URL, and the key itself appears nowhere in it."""
    import re
    from urllib.parse import parse_qs, urlsplit

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from sojourn.settings import get_settings
    from sojourn.signed_links import verify
    from tests.test_runtime import submit, wait_for

    async def markdown_of(job_id: str) -> str:
        async with get_client() as client:
            (run,) = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])))
        return [a for a in await _flow_run_artifacts(run.id) if a.type == "markdown"][0].data

    assert stack.env["SOJOURN_ADMIN_KEY"] == stack.admin_key  # the key the stack's API and worker run with
    with stack.client() as http:
        job = wait_for(http, submit(http, [{"url": site.url("/pdf")}], input={"capture": ["screenshot", "pdf"]}))
        assert job["status"] == "completed", job
    markdown = asyncio.run(markdown_of(job["id"]))
    assert stack.admin_key not in markdown
    links = re.findall(r"\((http[^)\s]+)\)", markdown)
    prefix = f"{stack.base}/api/v1/jobs/{job['id']}/artifacts/"
    assert {urlsplit(u).path.rsplit("/", 1)[1] for u in links} == {"screenshot.png", "page.pdf"}, markdown
    for url in links:
        assert url.startswith(prefix), url
        name = urlsplit(url).path.rsplit("/", 1)[1]
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert set(q) == {"expires", "signature"} and verify(get_settings(), job["id"], name, q["expires"], q["signature"]), url
        assert httpx.get(url).status_code == 200  # no key needed: the signature is the permission


async def test_prefect_ui_links_to_s3_captures_are_presigned(site, s3_settings):
    """With an S3 store the captures artifact links to S3 itself: real presigned URLs that need no credentials."""
    import re

    import httpx

    m = await run_job({"steps": [{"url": site.url("/")}], "capture": ["screenshot"]})
    markdown = [a for a in await _flow_run_artifacts(uuid.UUID(m.job_id)) if a.type == "markdown"][0].data
    url = re.search(r"!\[screenshot.png\]\(([^)]+)\)", markdown).group(1)
    assert url.startswith(s3_settings[0].s3_endpoint_url) and "X-Amz-Signature=" in url and "X-Amz-Expires=604800" in url
    async with httpx.AsyncClient() as http:  # no credentials of any kind
        r = await http.get(url)
        assert r.status_code == 200 and png_image(r.content).size == (1280, 720)
    # (moto's server does not check signatures, so a tampered URL is not tested here; the URL is botocore's own
    # SigV4 presign, valid 7 days, the most SigV4 allows)
    assert "X-Amz-Credential=" in url and "X-Amz-Date=" in url


async def test_a_short_job_makes_no_progress_artifact_only_its_captures(site):
    """Progress artifacts are for jobs someone could watch (running over a second); a short job's
    progress is in its events and its manifest, and its run gets only the captures artifact."""
    m = await run_job({"steps": [{"url": site.url("/")}], "capture": ["screenshot"]})
    kinds = [a.type for a in await _flow_run_artifacts(uuid.UUID(m.job_id))]
    assert kinds == ["markdown"]
