"""Profiles: log in once, reuse the session (README "Profiles"), through the native API with real Chromium."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from tests.helpers import until
from tests.test_scrape import wait_final
from tests.test_native_api import new_key
from tests.test_runtime import submit, wait_for


def login(site, user: str) -> list:
    return [{"url": site.url("/login"), "actions": [f"page.fill('#user', '{user}')", "page.click('#go')", "page.waitForSelector('#done')"]}]


def members(site) -> list:
    return [{"url": site.url(f"/members?t={uuid.uuid4().hex}")}]


def ended_with_save(http: httpx.Client, job_id: str) -> dict:
    """The job once it ended and its save was decided."""
    wait_for(http, job_id)
    return until(f"job {job_id}'s save decided", lambda: (j := http.get(f"/api/v1/jobs/{job_id}").json())["profile"]["saved"] is not None and j,
                 timeout=30)


def seen_by(http: httpx.Client, site, profile: str | None = None, **extra) -> dict:
    """What the members page showed a job (starting from ``profile``): the welcome and what localStorage held."""
    job = wait_for(http, submit(http, members(site), input={"extract": {"welcome": "#welcome", "stored": "#stored"},
                                                             **({"profile": profile} if profile else {}), **extra}))
    assert job["status"] == "completed", job
    return {**job["result"]["data"], "job": job["id"]}


def test_a_login_saved_once_is_reused_and_kept_to_its_owner(stack, site):
    with stack.client(new_key(stack)) as http, stack.client(new_key(stack)) as other:
        from sojourn.client import Sojourn

        with Sojourn(stack.base, http.headers["X-API-Key"]) as client:  # the Python client's way in
            made = client.create_profile("shop")
            assert (made.name, made.version, made.cookies) == ("shop", 1, 0) and [p.name for p in client.profiles()] == ["shop"]
        assert http.post("/api/v1/profiles", json={"name": "shop"}).json()["error"]["code"] == "PROFILE_EXISTS"
        assert http.post("/api/v1/profiles", json={"name": "../x"}).status_code == 400

        job = ended_with_save(http, submit(http, login(site, "ziggy"), input={"profile": "shop", "saveProfile": True}))
        assert job["status"] == "completed" and job["profile"] == {"name": "shop", "startedFromVersion": 1, "saved": True, "version": 2}, job
        profile = http.get("/api/v1/profiles/shop").json()
        assert profile["version"] == 2 and profile["cookies"] == 1 and profile["domains"] == ["127.0.0.1"], profile
        assert profile["origins"] == [site.url("/").rstrip("/")] and "ziggy" not in json.dumps(profile)  # what it holds, never a value

        # a job with no login steps is logged in: the cookie reached the server, localStorage came back too
        logged_in = seen_by(http, site, "shop")
        assert (logged_in["welcome"], logged_in["stored"]) == ("Welcome, ziggy", "ziggy")
        fresh = seen_by(http, site)
        assert (fresh["welcome"], fresh["stored"]) == ("Please log in", "nothing stored")  # without it: a fresh context

        # a scrape project that names the profile scrapes the members-only page logged in (each job: the current state)
        scrape = httpx.Client(base_url=f"{stack.base}/scrape/api/v1", headers={"Authorization": f"Bearer {http.headers['X-API-Key']}"}, timeout=30)
        pid = scrape.post("/projects", json={"name": "members", "config": {"profile": "shop", "rate_limit_delay": 0}}).json()["id"]
        assert scrape.post(f"/projects/{pid}/targets", json={"url": site.url("/members")}).status_code == 201
        scraped = wait_final(scrape, scrape.post(f"/projects/{pid}/jobs").json()["id"])
        assert scraped["status"] == "completed", scraped
        (item,) = scrape.get(f"/jobs/{scraped['id']}/results").json()["items"]
        assert "Welcome, ziggy" in item["data"]["text"], item
        bad = scrape.post("/projects", json={"name": "nobody's", "config": {"profile": "no-such"}}).json()["id"]
        assert scrape.post(f"/projects/{bad}/targets", json={"url": site.url("/members")}).status_code == 201
        refused = scrape.post(f"/projects/{bad}/jobs")
        assert refused.status_code == 422 and refused.json()["field"] == "config.profile", refused.text  # the dialect's validation error

        # another principal can neither read nor use it, not even by its id
        assert other.get("/api/v1/profiles/shop").status_code == 404 and other.get("/api/v1/profiles").json()["total"] == 0
        refused = other.post("/api/v1/jobs", json={"type": "browse", "input": {"steps": members(site), "profile": "shop"}})
        assert refused.status_code == 400 and "profile" in refused.json()["error"]["message"], refused.text
        ref = {"id": next(iter(_stored(stack))).name, "version": 2}
        assert seen_by(other, site, profileRef=ref)["welcome"] == "Please log in"  # a reference sent is dropped
        assert other.delete("/api/v1/profiles/shop").status_code == 404

        # stored encrypted, and never in the job's parameters in Prefect
        for path in _stored(stack).values():
            assert path and all(b"ziggy" not in data for data in path), "a profile's state stored in plaintext"
        parameters = json.dumps(asyncio.run(_parameters(logged_in["job"])))  # the job that started from the state
        assert "ziggy" not in parameters and "cookies" not in parameters, parameters  # a reference, not the state
        assert '"profile_ref"' in parameters, parameters

        # two jobs saving at once from version 2: one save wins, the other is refused, never a lost write
        jobs = [submit(http, login(site, who), input={"profile": "shop", "saveProfile": True}) for who in ("bob", "cy")]
        ended = {who: ended_with_save(http, j) for who, j in zip(("bob", "cy"), jobs)}
        saved = [who for who, j in ended.items() if j["profile"]["saved"]]
        assert len(saved) == 1 and all(j["status"] == "completed" and j["profile"]["startedFromVersion"] == 2 for j in ended.values()), ended
        lost = next(j for who, j in ended.items() if who not in saved)["profile"]
        assert lost["saved"] is False and lost["error"]["code"] == "PROFILE_CONFLICT" and "version 3" in lost["error"]["message"], lost
        assert http.get("/api/v1/profiles/shop").json()["version"] == 3
        assert seen_by(http, site, "shop")["welcome"] == f"Welcome, {saved[0]}"

        # deleting it removes every stored copy
        assert http.delete("/api/v1/profiles/shop").status_code == 204
        assert http.get("/api/v1/profiles/shop").status_code == 404 and _stored(stack) == {}


def _stored(stack) -> dict:
    """The artifact store's profile folders: {folder: [file contents]}."""
    root = stack.tmp / "home" / "artifacts" / "profiles"
    return {d: [f.read_bytes() for f in d.rglob("*") if f.is_file()] for d in root.iterdir()} if root.exists() else {}


async def _parameters(job_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])))
    return runs[0].parameters
