"""The scrape-jobs dialect at /scrape/api/v1, over HTTP against the running stack (API + worker, real Chromium),
scraping a local catalogue site (tests/sites_scrape.py)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.sites_scrape import CatalogSite

BASE = "/scrape/api/v1"
FINAL = ("completed", "failed", "cancelled")

PRODUCT = {"item_selector": ".product", "fields": {"name": ".name", "price": ".price",
                                                   "link": {"selector": "a.link", "attribute": "href"},
                                                   "tags": {"selector": ".tag", "multiple": True}}}


def new_key(stack) -> str:
    with stack.client() as admin:
        r = admin.post("/api/v1/keys", json={"name": "scrape-test"})
        assert r.status_code == 201, r.text
        return r.json()["key"]


def client(stack, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=stack.base + BASE, headers=headers, timeout=60)


def wait_final(c: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """The seed's polling loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.get(f"/jobs/{job_id}").json()
        assert 0 <= status["progress"]["percentage"] <= 100
        if status["status"] in FINAL:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end within {timeout} s: {status}")


def wait_for(c: httpx.Client, job_id: str, pred, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/jobs/{job_id}").json()
        if pred(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never got there: {job}")


@pytest.fixture(scope="module")
def catalog_site():
    with CatalogSite() as s:
        yield s


@pytest.fixture(scope="module")
def tenant(stack):
    with client(stack, new_key(stack)) as c:
        yield c


@pytest.fixture(scope="module")
def soon_schedule(tenant, catalog_site):
    """A schedule that fires at the next whole minute at least 12 s away (a cron a few seconds ahead); made first,
    so it fires while the other tests run. test_schedule_... checks what came of it."""
    from datetime import datetime, timedelta, timezone

    fires = (datetime.now(timezone.utc) + timedelta(seconds=72)).replace(second=0, microsecond=0)
    pid = tenant.post("/projects", json={"name": "soon", "config": {"rate_limit_delay": 0, "max_results_per_target": 3}}).json()["id"]
    tid = tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/catalog?soon"), **PRODUCT, "next_page": "a.next"}).json()["id"]
    r = tenant.post("/schedules", json={"project_id": pid, "cron": f"{fires.minute} {fires.hour} * * *"})
    assert r.status_code == 201, r.text
    return {"project": pid, "target": tid, "schedule": r.json(), "fires": fires}


@pytest.fixture(scope="module")
def finished(tenant, catalog_site):
    """One project with five targets (next links, a ?page= template, JavaScript, a 404, a plain page), scraped once."""
    r = tenant.post("/projects", json={"name": "Greek letters", "description": "catalogue", "config": {"rate_limit_delay": 0.1}})
    assert r.status_code == 201, r.text
    project = r.json()
    pid = project["id"]
    specs = {
        "catalog": {"url": catalog_site.url("/catalog"), "name": "catalog", **PRODUCT, "next_page": "a.next", "max_pages": 10},
        "paged": {"url": catalog_site.url("/paged?page=1"), **PRODUCT, "next_page": "/paged?page={page}", "max_pages": 10},
        "js": {"url": catalog_site.url("/js"), "item_selector": ".product", "fields": {"name": ".name"}, "wait_for": "#ready"},
        "missing": {"url": catalog_site.url("/missing"), **PRODUCT},
        "about": {"url": catalog_site.url("/about")},
    }
    targets = {}
    for name, spec in specs.items():
        r = tenant.post(f"/projects/{pid}/targets", json=spec)
        assert r.status_code == 201, r.text
        targets[name] = r.json()
    r = tenant.post(f"/projects/{pid}/jobs", json={"max_results_per_target": 100})
    assert r.status_code == 201, r.text
    created = r.json()
    job = wait_final(tenant, created["id"])
    return {"project": project, "targets": targets, "created": created, "job": job}


# ------------------------------------------------------------------ the whole flow


def test_project_targets_job_results(tenant, soon_schedule, finished):
    created, job, targets = finished["created"], finished["job"], finished["targets"]
    assert created["id"].startswith("job_") and len(created["id"]) == 16
    assert created["status"] == "pending" and created["source"] == "manual"
    assert created["config"] == {"max_results_per_target": 100, "targets": [t["id"] for t in targets.values()]}
    assert created["progress"] == {"total_targets": 5, "completed_targets": 0, "total_results": 0, "percentage": 0}

    # One target failed (404); the others completed: the job completed.
    assert job["status"] == "completed", job
    by = {t["target_id"]: t for t in job["target_status"]}
    assert by[targets["missing"]["id"]]["status"] == "failed"
    assert "404" in by[targets["missing"]["id"]]["error"]
    expected = {"catalog": 11, "paged": 6, "js": 3, "about": 1}  # catalog: 12 items, one repeated across pages
    specs_run = [*expected, "missing"]
    for name, n in expected.items():
        assert by[targets[name]["id"]]["status"] == "completed", (name, job["target_status"])
        assert by[targets[name]["id"]]["results_count"] == n, (name, by[targets[name]["id"]])
    assert job["progress"] == {"total_targets": 5, "completed_targets": 5, "total_results": 21, "percentage": 100}
    started, ended = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "completed_at"))
    ran = (ended - started).total_seconds()
    assert ran > 0 and abs(job["duration_seconds"] - ran) <= 0.501, (job["duration_seconds"], ran)  # whole seconds
    # each target's time is whole seconds of its own run, within the job's; targets of one site run one after another
    target_seconds = [by[targets[name]["id"]]["duration_seconds"] for name in specs_run]
    assert all(isinstance(d, int) and 0 <= d <= job["duration_seconds"] for d in target_seconds), (target_seconds, ran)
    assert sum(target_seconds) <= ran + len(target_seconds) * 0.5, (target_seconds, ran)  # (each rounded to the second)

    # Results, paged.
    r = tenant.get(f"/jobs/{job['id']}/results", params={"per_page": 5, "page": 2})
    assert r.status_code == 200
    page = r.json()
    assert (page["total"], page["page"], page["per_page"], page["pages"], len(page["items"])) == (21, 2, 5, 5, 5)
    r = tenant.get(f"/jobs/{job['id']}/results", params={"target_id": targets["catalog"]["id"], "per_page": 100})
    items = r.json()["items"]
    assert [i["data"]["name"] for i in items] == ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta",
                                                  "Theta", "Iota", "Kappa", "Lambda"]
    first = items[0]
    assert first["id"].startswith("res_") and first["job_id"] == job["id"] and first["project_id"] == finished["project"]["id"]
    assert first["page"] == 1 and first["position"] == 0 and first["source_url"].endswith("/catalog")
    assert first["data"]["link"].endswith("/item/a1") and first["data"]["tags"] == ["t1", "t2"] and first["data"]["price"] == "1.00"
    assert items[4]["page"] == 2 and items[4]["position"] == 1  # Delta (position 0 of page 2) was a duplicate
    about = tenant.get(f"/jobs/{job['id']}/results", params={"target_id": targets["about"]["id"]}).json()["items"][0]
    assert about["data"]["title"] == "About us" and "Greek letters" in about["data"]["text"]
    js = tenant.get(f"/jobs/{job['id']}/results", params={"target_id": targets["js"]["id"]}).json()["items"]
    assert [i["data"]["name"] for i in js] == ["Jay", "Kay", "El"]

    pid = finished["project"]["id"]
    proj = tenant.get(f"/projects/{pid}/results", params={"per_page": 100, "job_id": job["id"]}).json()
    assert proj["total"] == 21
    target = tenant.get(f"/targets/{targets['catalog']['id']}").json()
    assert target["results_count"] == 11 and target["last_scraped"]
    assert tenant.get(f"/projects/{pid}").json()["results_count"] >= 21

    listed = tenant.get(f"/projects/{pid}/jobs", params={"status": "completed"}).json()
    assert job["id"] in [j["id"] for j in listed["items"]]
    assert tenant.get(f"/projects/{pid}/jobs", params={"status": "failed"}).json()["items"] == []


def test_exports(tenant, finished):
    job = finished["job"]
    r = tenant.get(f"/jobs/{job['id']}/results", params={"format": "json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert len(data) == 21 and data[0]["data"]["name"] == "Alpha"
    r = tenant.get(f"/jobs/{job['id']}/results", params={"format": "jsonl", "target_id": finished["targets"]["paged"]["id"]})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["data"]["name"] for x in lines] == ["One", "Two", "Three", "Four", "Five", "Six"]
    assert {x["page"] for x in lines} == {1, 2}
    r = tenant.get(f"/projects/{finished['project']['id']}/results", params={"format": "csv", "job_id": job["id"]})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 21
    assert rows[0]["name"] == "Alpha" and rows[0]["tags"] == '["t1", "t2"]' and rows[0]["id"].startswith("res_")
    assert any(row["title"] == "About us" for row in rows)


def test_logs(tenant, finished):
    job, targets = finished["job"], finished["targets"]
    logs = tenant.get(f"/jobs/{job['id']}/logs").json()["logs"]
    assert logs and all(set(e) == {"timestamp", "level", "message", "target_id"} for e in logs)
    assert any(e["target_id"] == targets["catalog"]["id"] and "Target completed: 11 results" in e["message"] for e in logs)
    errors = tenant.get(f"/jobs/{job['id']}/logs", params={"level": "error"}).json()["logs"]
    assert errors and all(e["level"] == "error" for e in errors)
    assert any(e["target_id"] == targets["missing"]["id"] and "404" in e["message"] for e in errors)
    # A 404 fails the same way every time: the target ran once, not once per retry.
    assert sum(1 for e in logs if e["target_id"] == targets["missing"]["id"] and e["message"].startswith("Scraping target")) == 1
    assert len(tenant.get(f"/jobs/{job['id']}/logs", params={"limit": 2}).json()["logs"]) == 2


# ------------------------------------------------------------------ caps, live events, retry


def test_cap_exact_websocket_in_order_and_retry(stack, tenant, catalog_site):
    from websockets.sync.client import connect

    pid = tenant.post("/projects", json={"name": "capped", "config": {"rate_limit_delay": 0}}).json()["id"]
    tid = tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/catalog?cap"), **PRODUCT, "next_page": "a.next"}).json()["id"]
    job = tenant.post(f"/projects/{pid}/jobs", json={"max_results_per_target": 5}).json()
    assert job["config"]["max_results_per_target"] == 5
    token = tenant.headers["authorization"][7:]
    ws_url = stack.base.replace("http://", "ws://") + f"{BASE}/jobs/{job['id']}/ws?token={token}"
    messages = []
    with connect(ws_url, open_timeout=20) as ws:
        while True:
            message = json.loads(ws.recv(timeout=120))
            messages.append(message)
            if message["type"] in ("completed", "failed"):
                break
    types = [m["type"] for m in messages]
    assert types[0] == "progress" and types[-1] == "completed", types
    assert types.index("target_started") < types.index("target_completed") < len(types) - 1, types
    assert all(set(m["data"]) >= {"job_id", "status", "percentage", "current_target", "results_count"} for m in messages)
    assert messages[-1]["data"] == {"job_id": job["id"], "status": "completed", "percentage": 100, "current_target": None, "results_count": 5}

    done = wait_final(tenant, job["id"])
    assert done["progress"]["total_results"] == 5
    results = tenant.get(f"/jobs/{job['id']}/results").json()
    assert results["total"] == 5  # the cap holds mid-page: four from page 1, one from page 2
    assert [r["data"]["name"] for r in results["items"]] == ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]

    r = tenant.post(f"/jobs/{job['id']}/retry")
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["source"] == "retry" and again["retry_of"] == job["id"] and again["status"] == "pending"
    assert again["config"] == {"max_results_per_target": 5, "targets": [tid]}
    assert wait_final(tenant, again["id"])["progress"]["total_results"] == 5
    assert tenant.get(f"/projects/{pid}/jobs", params={"source": "retry"}).json()["total"] == 1
    assert tenant.get(f"/projects/{pid}/results").json()["total"] == 10


def test_cancel_mid_target_keeps_what_was_stored(tenant, catalog_site):
    pid = tenant.post("/projects", json={"name": "slow", "config": {"rate_limit_delay": 0}}).json()["id"]
    tid = tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/slow"), **PRODUCT, "next_page": "a.next", "max_pages": 40}).json()["id"]
    job = tenant.post(f"/projects/{pid}/jobs").json()
    running = wait_for(tenant, job["id"], lambda j: j["status"] == "running" and j["target_status"][0]["results_count"] >= 2)
    assert running["progress"]["current_target"] == tid

    r = tenant.post(f"/projects/{pid}/jobs")
    assert r.status_code == 400 and r.json()["code"] == "JOB_RUNNING"

    started = time.monotonic()
    r = tenant.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"], cancelled
    assert time.monotonic() - started < 20  # at once, not after the target's 40 pages
    assert cancelled["target_status"][0]["status"] == "cancelled"
    kept = cancelled["progress"]["total_results"]
    assert 2 <= kept < 80
    deadline = time.monotonic() + 30
    while tenant.get(f"/jobs/{job['id']}/results").json()["total"] != kept and time.monotonic() < deadline:
        time.sleep(0.5)
    assert tenant.get(f"/jobs/{job['id']}/results").json()["total"] == kept

    r = tenant.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 400 and r.json()["code"] == "CANNOT_CANCEL"

    # A retry cancelled before it started.
    again = tenant.post(f"/jobs/{job['id']}/retry").json()
    r = tenant.post(f"/jobs/{again['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert tenant.get(f"/projects/{pid}/jobs", params={"status": "cancelled"}).json()["total"] == 2


def test_daily_job_limit(tenant, catalog_site):
    pid = tenant.post("/projects", json={"name": "limited", "config": {"daily_job_limit": 1}}).json()["id"]
    tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/about?limited")})
    first = tenant.post(f"/projects/{pid}/jobs").json()
    assert wait_final(tenant, first["id"])["status"] == "completed"
    r = tenant.post(f"/projects/{pid}/jobs")
    assert r.status_code == 400 and r.json()["code"] == "RATE_LIMITED", r.text


# ------------------------------------------------------------------ errors and tenancy


def test_documented_errors(stack, tenant, catalog_site):
    with client(stack, None) as anon:
        r = anon.get("/projects")
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED" and r.json()["detail"]
    with client(stack, "sj_not_a_key") as bad:
        assert bad.get("/projects").status_code == 401
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(stack.base.replace("http://", "ws://") + f"{BASE}/jobs/job_x/ws?token=sj_not_a_key", open_timeout=20) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert closed.value.rcvd.code == 4001

    def invalid(r: httpx.Response, field: str) -> None:
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["code"] == "VALIDATION_ERROR" and body["field"] == field and f"`{field}`" in body["detail"], body

    invalid(tenant.post("/projects", json={}), "name")
    invalid(tenant.post("/projects", json={"name": "x", "config": {"max_results_per_target": 0}}), "config.max_results_per_target")
    invalid(tenant.get("/projects", params={"per_page": 1000}), "per_page")
    pid = tenant.post("/projects", json={"name": "errors"}).json()["id"]
    invalid(tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/x"), "item_selector": ".p"}), "fields")
    invalid(tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/x"), "max_pages": 0}), "max_pages")
    invalid(tenant.post(f"/projects/{pid}/jobs", json={"max_results_per_target": 5000}), "max_results_per_target")
    r = tenant.post(f"/projects/{pid}/targets", json={"url": "ftp://example.com/"})
    assert r.status_code == 422 and r.json()["code"] == "INVALID_URL" and r.json()["field"] == "url"

    r = tenant.post(f"/projects/{pid}/jobs", json={})
    assert r.status_code == 400 and r.json() == {"detail": "Project has no targets", "code": "NO_TARGETS"}
    t = tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/about?e"), "status": "paused"}).json()
    assert tenant.post(f"/projects/{pid}/jobs").json()["code"] == "NO_TARGETS"  # paused targets are skipped
    invalid(tenant.post(f"/projects/{pid}/jobs", json={"target_ids": [t["id"], "tgt_nope"]}), "target_ids.1")

    r = tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/about?e")})
    assert r.status_code == 400 and r.json()["code"] == "DUPLICATE_TARGET"
    r = tenant.post(f"/projects/{pid}/targets/bulk", json={"targets": [{"url": catalog_site.url("/about?e")}, {"url": catalog_site.url("/about?f")}]})
    assert r.status_code == 201
    bulk = r.json()
    assert (bulk["created"], bulk["failed"]) == (1, 1) and bulk["errors"][0]["code"] == "DUPLICATE_TARGET"

    r = tenant.put(f"/targets/{t['id']}", json={"status": "active", "name": "about"})
    assert r.json()["status"] == "active" and r.json()["name"] == "about"
    assert tenant.put(f"/projects/{pid}", json={"description": "d"}).json()["description"] == "d"

    for path in ("/projects/proj_nope", "/jobs/job_nope", "/targets/tgt_nope", "/jobs/job_nope/results", "/jobs/job_nope/logs"):
        r = tenant.get(path)
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (path, r.text)
    assert tenant.post("/jobs/job_nope/cancel").json()["code"] == "NOT_FOUND"

    assert tenant.delete(f"/targets/{t['id']}").status_code == 204
    assert tenant.get(f"/targets/{t['id']}").status_code == 404
    assert tenant.delete(f"/projects/{pid}").status_code == 204
    assert tenant.get(f"/projects/{pid}").status_code == 404


def test_tenants_see_only_their_own(stack, tenant, finished):
    pid, job = finished["project"]["id"], finished["job"]["id"]
    tid = finished["targets"]["catalog"]["id"]
    with client(stack, new_key(stack)) as other:
        assert pid not in [p["id"] for p in other.get("/projects").json()["items"]]
        for path in (f"/projects/{pid}", f"/projects/{pid}/targets", f"/projects/{pid}/jobs", f"/projects/{pid}/results",
                     f"/targets/{tid}", f"/jobs/{job}", f"/jobs/{job}/results", f"/jobs/{job}/logs"):
            r = other.get(path)
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (path, r.text)
        for path in (f"/jobs/{job}/cancel", f"/jobs/{job}/retry", f"/projects/{pid}/jobs", f"/projects/{pid}/targets"):
            assert other.post(path, json={"url": "http://127.0.0.1/"}).status_code == 404, path
        assert other.put(f"/targets/{tid}", json={"name": "mine"}).status_code == 404
        assert other.delete(f"/projects/{pid}").status_code == 404
    assert tenant.get(f"/projects/{pid}").status_code == 200
    assert tenant.get(f"/targets/{tid}").json()["name"] == "catalog"


# ------------------------------------------------------------------ schedules


def prefect(prefect_server: str) -> httpx.Client:
    """The Prefect server's own REST API: what the Prefect UI shows."""
    return httpx.Client(base_url=prefect_server, timeout=30)


def schedule_runs(pf: httpx.Client, deployment_id: str) -> list[dict[str, Any]]:
    r = pf.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"})
    assert r.status_code == 200, r.text
    return r.json()


def until(pred, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_schedule_is_a_prefect_schedule_whose_runs_become_scheduled_jobs(stack, tenant, catalog_site, prefect_server, soon_schedule):
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    soon, soon_tid, soon_sch, fires = (soon_schedule[k] for k in ("project", "target", "schedule", "fires"))
    assert soon_sch["cron"] == f"{fires.minute} {fires.hour} * * *" and soon_sch["frequency"] is None and soon_sch["timezone"] == "UTC"
    assert soon_sch["next_run"] == fires.isoformat().replace("+00:00", "Z")

    # Another project's schedule: daily at 03:30 in Berlin; everything else is tried on it meanwhile.
    pid = tenant.post("/projects", json={"name": "nightly", "config": {"rate_limit_delay": 0, "max_results_per_target": 3}}).json()["id"]
    tid = tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/catalog?nightly"), **PRODUCT, "next_page": "a.next"}).json()["id"]
    r = tenant.post("/schedules", json={"project_id": pid, "frequency": "daily", "time": "03:30", "timezone": "Europe/Berlin"})
    assert r.status_code == 201, r.text
    sch = r.json()
    sid = sch["id"]
    assert sid.startswith("sch_") and len(sid) == 16
    assert (sch["project_id"], sch["frequency"], sch["time"], sch["timezone"], sch["enabled"]) == (pid, "daily", "03:30", "Europe/Berlin", True)
    assert sch["last_run"] is None and sch["last_status"] is None and sch["run_history"] == []
    nxt = datetime.fromisoformat(sch["next_run"].replace("Z", "+00:00"))
    local = nxt.astimezone(ZoneInfo("Europe/Berlin"))
    assert nxt > datetime.now(timezone.utc) and (local.hour, local.minute) == (3, 30)
    r = tenant.post("/schedules", json={"project_id": pid, "cron": "0 * * * *"})
    assert r.status_code == 409 and r.json()["code"] == "SCHEDULE_EXISTS"
    assert {sid, soon_sch["id"]} <= {s["id"] for s in tenant.get("/schedules").json()["items"]}

    with prefect(prefect_server) as pf:
        # A deployment of the scrape flow named after the schedule, its cron in its timezone, in Sojourn's pool.
        dep = pf.get(f"/deployments/name/scrape/{sid}").json()
        assert dep["id"] == sch["deployment_id"] and sch["deployment"] == f"scrape/{sid}"
        assert dep["entrypoint"] == "sojourn.flows.scrape:scrape" and dep["paused"] is False
        (prefect_schedule,) = dep["schedules"]
        assert prefect_schedule["schedule"]["cron"] == "30 3 * * *" and prefect_schedule["schedule"]["timezone"] == "Europe/Berlin"
        assert prefect_schedule["active"] is True
        assert [t["id"] for t in dep["parameters"]["spec"]["targets"]] == [tid]
        assert f"schedule:{sid}" in dep["tags"] and "sojourn" not in dep["tags"]
        # Runs Prefect's scheduler makes ahead (if its service runs) are not jobs until they come due.
        assert all(r["state_type"] == "SCHEDULED" and "sojourn" not in r["tags"] for r in schedule_runs(pf, dep["id"]))
        assert tenant.get(f"/projects/{pid}/jobs").json()["total"] == 0

        # A target added later: the schedule's runs take the new snapshot.
        tid2 = tenant.post(f"/projects/{pid}/targets", json={"url": catalog_site.url("/about?nightly")}).json()["id"]
        dep = pf.get(f"/deployments/name/scrape/{sid}").json()
        assert [t["id"] for t in dep["parameters"]["spec"]["targets"]] == [tid, tid2]

        # Run now: a run of the schedule's deployment at once, a scheduled job.
        r = tenant.post(f"/schedules/project/{pid}/run")
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["source"] == "scheduled" and job["schedule_id"] == sid and job["status"] in ("pending", "running")
        assert job["config"] == {"max_results_per_target": 3, "targets": [tid, tid2]}
        r = tenant.post(f"/schedules/project/{pid}/run")
        assert r.status_code == 400 and r.json()["code"] == "JOB_RUNNING"
        done = wait_final(tenant, job["id"])
        assert done["status"] == "completed" and done["progress"]["total_results"] == 4, done  # 3 items (the cap) + the page
        assert tenant.get(f"/jobs/{job['id']}/results").json()["total"] == 4
        (run,) = [r for r in schedule_runs(pf, dep["id"]) if r["state_type"] != "SCHEDULED"]  # (not the scheduler's runs ahead)
        assert run["name"] and "sojourn" in run["tags"] and f"job:{run['id']}" in run["tags"] and f"schedule:{sid}" in run["tags"]
        until(lambda: any("Job completed" in e["message"] for e in tenant.get(f"/jobs/{job['id']}/logs").json()["logs"]), 15,
              "the scheduled job's log")
        assert [j["id"] for j in tenant.get(f"/projects/{pid}/jobs", params={"source": "scheduled"}).json()["items"]] == [job["id"]]
        read = until(lambda: (s := tenant.get(f"/schedules/project/{pid}").json())["last_status"] == "completed" and s, 20,
                     "last_status never became completed")
        assert [(h["job_id"], h["status"]) for h in read["run_history"]] == [(job["id"], "completed")]
        assert abs(datetime.fromisoformat(read["last_run"].replace("Z", "+00:00")).timestamp() - time.time()) < 120

        # One result, read and deleted by its id.
        item = tenant.get(f"/jobs/{job['id']}/results", params={"target_id": tid}).json()["items"][0]
        assert tenant.get(f"/results/{item['id']}").json() == item
        with client(stack, new_key(stack)) as other:
            assert other.get(f"/results/{item['id']}").status_code == 404
            assert other.delete(f"/results/{item['id']}").status_code == 404
            assert other.get(f"/schedules/project/{pid}").json()["code"] == "NOT_FOUND"
            assert sid not in [s["id"] for s in other.get("/schedules").json()["items"]]
            for path in (f"/schedules/project/{pid}/toggle", f"/schedules/project/{pid}/run"):
                assert other.post(path).status_code == 404, path
            assert other.put(f"/schedules/project/{pid}", json={"cron": "* * * * *"}).status_code == 404
            assert other.delete(f"/schedules/project/{pid}").status_code == 404
            assert other.post("/schedules", json={"project_id": pid, "cron": "* * * * *"}).status_code == 404
        before = tenant.get(f"/targets/{tid}").json()["results_count"]
        assert tenant.delete(f"/results/{item['id']}").status_code == 204
        assert tenant.get(f"/results/{item['id']}").json()["code"] == "NOT_FOUND"
        assert tenant.get(f"/targets/{tid}").json()["results_count"] == before - 1

        # Toggle: the Prefect deployment is paused (Prefect drops the runs it scheduled ahead) and resumed.
        off = tenant.post(f"/schedules/project/{pid}/toggle").json()
        assert off["enabled"] is False and off["next_run"] is None
        assert pf.get(f"/deployments/{dep['id']}").json()["paused"] is True
        until(lambda: not [r for r in schedule_runs(pf, dep["id"]) if r["state_type"] == "SCHEDULED"], 20, "paused schedule kept its runs")
        on = tenant.post(f"/schedules/project/{pid}/toggle").json()
        assert on["enabled"] is True and on["next_run"]
        assert pf.get(f"/deployments/{dep['id']}").json()["paused"] is False

        # PUT: a cron instead of the frequency; errors name the field.
        r = tenant.put(f"/schedules/project/{pid}", json={"cron": "*/15 * * * *", "timezone": "UTC"})
        assert r.status_code == 200, r.text
        assert (r.json()["cron"], r.json()["frequency"], r.json()["time"]) == ("*/15 * * * *", None, None)
        assert datetime.fromisoformat(r.json()["next_run"].replace("Z", "+00:00")).minute % 15 == 0
        assert pf.get(f"/deployments/{dep['id']}").json()["schedules"][0]["schedule"]["cron"] == "*/15 * * * *"
        r = tenant.put(f"/schedules/project/{pid}", json={"frequency": "weekly", "time": "08:05", "day_of_week": 6})
        assert (r.json()["frequency"], r.json()["cron"]) == ("weekly", None)
        assert pf.get(f"/deployments/{dep['id']}").json()["schedules"][0]["schedule"]["cron"] == "5 8 * * 0"  # Sunday
        assert datetime.fromisoformat(r.json()["next_run"].replace("Z", "+00:00")).weekday() == 6
        for body, field in (({"cron": "61 * * * *"}, "cron"), ({"timezone": "Mars/Olympus"}, "timezone"),
                            ({"frequency": "yearly"}, "frequency"), ({"time": "25:00"}, "time"), ({"day_of_week": 7}, "day_of_week"),
                            ({"frequency": "daily", "cron": "* * * * *"}, "cron")):
            r = tenant.put(f"/schedules/project/{pid}", json=body)
            assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR" and r.json()["field"] == field, (body, r.text)
        r = tenant.post("/schedules", json={"project_id": "proj_nope", "cron": "* * * * *"})
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        assert tenant.post("/schedules", json={"cron": "* * * * *"}).json()["field"] == "project_id"
        # one schedule per project: a second, valid one is refused (409 SCHEDULE_EXISTS, docs/scrape.md); one with
        # neither a frequency nor a cron is invalid first of all, naming the field
        r = tenant.post("/schedules", json={"project_id": pid, "cron": "* * * * *"})
        assert r.status_code == 409 and r.json()["code"] == "SCHEDULE_EXISTS", r.text
        r = tenant.post("/schedules", json={"project_id": pid})
        assert r.status_code == 422 and (r.json()["code"], r.json()["field"]) == ("VALIDATION_ERROR", "frequency"), r.text

        # DELETE: the deployment goes; the jobs it made stay.
        assert tenant.delete(f"/schedules/project/{pid}").status_code == 204
        assert pf.get(f"/deployments/{dep['id']}").status_code == 404
        assert tenant.get(f"/schedules/project/{pid}").status_code == 404
        assert tenant.get(f"/jobs/{job['id']}").json()["status"] == "completed"

        # The first schedule fired at its minute: a scheduled job of a run of its deployment, with its results.
        left = (fires - datetime.now(timezone.utc)).total_seconds()
        (fired,) = until(lambda: tenant.get(f"/projects/{soon}/jobs").json()["items"], max(left, 0) + 30,
                         "the schedule did not fire", every=1)
        assert fired["source"] == "scheduled" and fired["schedule_id"] == soon_sch["id"]
        assert wait_final(tenant, fired["id"])["progress"]["total_results"] == 3
        assert tenant.get(f"/jobs/{fired['id']}/results").json()["total"] == 3
        runs = schedule_runs(pf, soon_sch["deployment_id"])
        # One run for the firing, whoever made it (Prefect's scheduler, or the API's loop with the same idempotency
        # key); Prefect's scheduler may already have made the next days' runs too.
        (run,) = [r for r in runs if datetime.fromisoformat(r["expected_start_time"]) == fires]
        assert f"job:{run['id']}" in run["tags"]
        assert all(datetime.fromisoformat(r["expected_start_time"]) > fires and r["state_type"] == "SCHEDULED" for r in runs if r is not run)
        read = until(lambda: (s := tenant.get(f"/schedules/project/{soon}").json())["last_status"] == "completed" and s, 20,
                     "the fired schedule's last_status never became completed")
        assert read["last_run"] == fires.isoformat().replace("+00:00", "Z")
        assert [(h["job_id"], h["status"]) for h in read["run_history"]] == [(fired["id"], "completed")]
        assert read["next_run"] == (fires + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        assert soon_tid in fired["config"]["targets"]


# ------------------------------------------------------------------ a large export


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_export_of_10000_results_streams_with_flat_memory(stack, tenant):
    import threading

    from sojourn.settings import get_settings
    from sojourn.store.db import session
    from sojourn.store.scrape import ScrapeResult

    n = 10_000
    project = tenant.post("/projects", json={"name": "big"}).json()
    pid = project["id"]
    tid = tenant.post(f"/projects/{pid}/targets", json={"url": "http://127.0.0.1:9/big", "item_selector": ".i",
                                                        "fields": {"name": ".n", "body": ".b"}}).json()["id"]
    # Results as the API ingests them (scrape_results rows), written straight into the facade database.
    filler = "x" * 1500
    with session(get_settings().database_location) as db:
        from sojourn.store.scrape import ScrapeProject

        owner = db.get(ScrapeProject, pid).owner
        db.add_all(ScrapeResult(id=f"res_big{pid[-6:]}{i:05d}", owner=owner, project_id=pid, target_id=tid, job_id="job_bigexport0001",
                                source_url="http://127.0.0.1:9/big", page=i // 100 + 1, position=i % 100,
                                data=json.dumps({"name": f"item {i}", "body": f"{i} {filler}"})) for i in range(n))
        db.commit()
    assert tenant.get(f"/projects/{pid}/results", params={"per_page": 1}).json()["total"] == n
    api = stack.api.pid
    tenant.get(f"/projects/{pid}/results", params={"format": "csv", "job_id": "job_none"})  # warm the export path

    for fmt in ("json", "jsonl", "csv"):
        base = _rss_kb(api)
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_kb(api))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        size, lines, first, last = 0, 0, b"", b""
        try:
            with tenant.stream("GET", f"/projects/{pid}/results", params={"format": fmt}, timeout=120) as r:
                assert r.status_code == 200
                for chunk in r.iter_bytes():
                    if len(first) < 200:
                        first = (first + chunk)[:200]
                    size += len(chunk)
                    lines += chunk.count(b"\n")
                    last = (last + chunk)[-2000:]
                    time.sleep(0.001)  # a client slower than the server: the response must not pile up in the API
        finally:
            stop.set()
            sampler.join()
        growth_mb = (peak[0] - base) / 1024
        print(f"{fmt}: {size / 1e6:.1f} MB exported, API RSS {base / 1024:.0f} MB, grew {growth_mb:.1f} MB at most")
        assert size > n * 1500, (fmt, size)  # ~15 MB went out
        assert growth_mb < 30, f"{fmt}: the API grew {growth_mb:.1f} MB while exporting {size / 1e6:.1f} MB"
        if fmt == "jsonl":
            assert lines == n
            assert json.loads(last.splitlines()[-1])["data"]["name"] == f"item {n - 1}"
        elif fmt == "csv":
            assert lines == n + 1 and first.startswith(b"id,job_id,target_id,project_id,source_url,page,position,created_at,name,body")
        else:
            assert first.startswith(b'[{"id": "res_big') and last.endswith(b"}]")
    # The exact count of the JSON export, parsed.
    assert len(tenant.get(f"/projects/{pid}/results", params={"format": "json"}).json()) == n
    rows = list(csv.DictReader(io.StringIO(tenant.get(f"/projects/{pid}/results", params={"format": "csv"}).text)))
    assert len(rows) == n and rows[-1]["name"] == f"item {n - 1}"


def test_rate_limit_headers_and_429_in_the_dialects_shape(stack):
    from tests.test_native_api import new_key

    key = new_key(stack, rateLimit="3/minute")
    with httpx.Client(base_url=f"{stack.base}/scrape/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        answers = [http.get("/projects") for _ in range(3)]
        assert [r.status_code for r in answers] == [200] * 3
        assert [int(r.headers["X-RateLimit-Remaining"]) for r in answers] == [2, 1, 0]
        assert answers[0].headers["X-RateLimit-Limit"] == "3" and int(answers[0].headers["X-RateLimit-Reset"]) > time.time()
        r = http.get("/projects")
        assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED" and "detail" in r.json() and int(r.headers["Retry-After"]) >= 1


def test_a_project_that_respects_robots_txt_skips_what_it_disallows(tenant, catalog_site):
    """The site's robots.txt names Sojourn: its group (not `*`'s) applies. The catalogue's first page is read and its
    disallowed page 2 is not followed; /members is skipped and reported; the file is fetched once for the job. The
    same targets in a project that does not ask (the default) are read whole."""
    def project(config: dict) -> tuple[str, dict[str, str]]:
        pid = tenant.post("/projects", json={"name": "robots", "config": {"rate_limit_delay": 0, **config}}).json()["id"]
        tids = {}
        for name, url in (("catalog", catalog_site.url("/catalog")), ("members", catalog_site.url("/members"))):
            r = tenant.post(f"/projects/{pid}/targets", json={"url": url, **PRODUCT, "next_page": "a.next", "max_pages": 3})
            assert r.status_code == 201, r.text
            tids[name] = r.json()["id"]
        return pid, tids

    pid, tids = project({"respect_robots_txt": True})
    assert tenant.get(f"/projects/{pid}").json()["config"]["respect_robots_txt"] is True
    before = len(catalog_site.hits)
    job = wait_final(tenant, tenant.post(f"/projects/{pid}/jobs").json()["id"])
    hits = catalog_site.hits[before:]
    assert job["status"] == "completed", job
    status = {t["target_id"]: t for t in job["target_status"]}
    assert status[tids["catalog"]]["status"] == "completed" and status[tids["catalog"]]["results_count"] == 4  # page 1 only
    skipped = status[tids["members"]]
    assert skipped["status"] == "skipped" and skipped["results_count"] == 0 and "robots.txt" in skipped["error"], skipped
    assert job["progress"]["completed_targets"] == 2 and job["progress"]["percentage"] == 100
    assert hits.count("/robots.txt") == 1 and "/members" not in hits and "/catalog?page=2" not in hits, hits
    warnings = tenant.get(f"/jobs/{job['id']}/logs", params={"level": "warning"}).json()["logs"]
    assert any(e["target_id"] == tids["members"] and "Target skipped" in e["message"] and "/members" in e["message"] for e in warnings), warnings
    assert any(e["target_id"] == tids["catalog"] and "next page skipped" in e["message"] for e in warnings), warnings

    pid, tids = project({})
    assert tenant.get(f"/projects/{pid}").json()["config"]["respect_robots_txt"] is False
    job = wait_final(tenant, tenant.post(f"/projects/{pid}/jobs").json()["id"])
    counts = {t["target_id"]: (t["status"], t["results_count"]) for t in job["target_status"]}
    assert counts == {tids["catalog"]: ("completed", 11), tids["members"]: ("completed", 3)}, job
