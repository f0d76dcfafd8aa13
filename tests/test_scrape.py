"""The scrape-jobs dialect at /scrape/api/v1, over HTTP against the running stack (API + worker, real Chromium),
scraping a local catalogue site (tests/sites_scrape.py)."""

from __future__ import annotations

import csv
import io
import json
import time
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


def test_project_targets_job_results(tenant, finished):
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
    for name, n in expected.items():
        assert by[targets[name]["id"]]["status"] == "completed", (name, job["target_status"])
        assert by[targets[name]["id"]]["results_count"] == n, (name, by[targets[name]["id"]])
        assert "duration_seconds" in by[targets[name]["id"]]
    assert job["progress"] == {"total_targets": 5, "completed_targets": 5, "total_results": 21, "percentage": 100}
    assert job["started_at"] and job["completed_at"] and job["duration_seconds"] >= 0

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
    assert r.status_code == 409 and r.json()["code"] == "DUPLICATE_TARGET"
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
