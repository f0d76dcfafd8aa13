"""The Tourist dialect over HTTP, as a Tourist client uses it (base URL .../tourist)."""

from __future__ import annotations

import base64
import io
import os
import sys
import time
import uuid

import httpx
import pytest

from sojourn.services import visit_tokens
from sojourn.settings import get_settings
from tests import processes
from tests.helpers import POPUP_LOADED, pdf_text, png_image


def issuer() -> str:
    return visit_tokens.issuer_token(get_settings())


@pytest.fixture(scope="module")
def tourist(stack):
    return httpx.Client(base_url=f"{stack.base}/tourist", timeout=60)


def token_for(tourist: httpx.Client, scope: str, strict: bool = False) -> dict[str, str]:
    r = tourist.post("/api/v1/issue-token", json={"scope": scope, "strict": strict}, headers={"Authorization": f"Bearer {issuer()}"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def sync(tourist, site, body: dict, scope: str | None = None) -> httpx.Response:
    return tourist.post("/api/v1/sync-job", json=body, headers=token_for(tourist, scope or site.url("/")))


def hit(site, tag: str, path: str = "/echo"):
    found = [h for h in site.state.requests_to(path) if h.query.get("t") == [tag]]
    assert found, f"no request to {path}?t={tag}"
    return found[-1]


# ------------------------------------------------------------------ tokens


def test_docs_are_served(tourist):
    assert tourist.get("/docs").status_code == 200
    paths = tourist.get("/openapi.json").json()["paths"]
    assert {"/api/v1/sync-job", "/api/v1/async-job", "/api/v1/job-status", "/api/v1/issue-token", "/api/v1/healthcheck"} <= set(paths)


def test_token_cases(tourist, site):
    body = {"steps": [{"url": site.url("/")}]}
    r = tourist.post("/api/v1/async-job", json=body)
    assert r.status_code == 401 and r.json() == {"statusCode": 401, "error": "Unauthorized", "message": "Authorization has not been provided"}
    r = tourist.post("/api/v1/async-job", json=body, headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 403 and "does not allow visiting" in r.json()["message"]
    r = tourist.post("/api/v1/async-job", json=body, headers={"Authorization": f"Bearer {issuer()}"})
    assert r.status_code == 403  # an issuer token cannot dispatch jobs
    r = tourist.post("/api/v1/async-job", json=body, headers=token_for(tourist, "http://other.test/"))
    assert r.status_code == 403
    r = tourist.post("/api/v1/async-job", json={"steps": [{"url": site.url("/"), "actions": ["page.goto('http://evil.test/')"]}]}, headers=token_for(tourist, site.url("/")))
    assert r.status_code == 403  # URLs inside actions are in scope too
    r = tourist.post("/api/v1/async-job", json={"steps": [{"url": site.url("/buttons")}]}, headers=token_for(tourist, site.url("/"), strict=True))
    assert r.status_code == 403  # strict: the exact URL only
    r = tourist.post("/api/v1/issue-token", json={"scope": site.url("/")}, headers={"Authorization": "Bearer forged"})
    assert r.status_code == 401 and r.json()["error"] == "Invalid Issuer Token"
    r = tourist.post("/api/v1/issue-token", json={"scope": site.url("/")}, headers=token_for(tourist, site.url("/")))
    assert r.status_code == 401  # a visit token cannot mint tokens


@pytest.mark.parametrize(
    "scope, url, strict, ok",
    [
        ("https://a.example.co.uk/x", "https://b.example.co.uk/y", False, True),
        ("https://x.github.io/", "https://y.github.io/", False, False),  # public suffix: different sites
        ("http://127.0.0.1:8000/", "http://127.0.0.1:9000/p", False, True),
        ("http://127.0.0.1/", "http://10.0.0.1/", False, False),  # Tourist's flaw: last two labels
        ("http://localhost/", "http://localhost:3000/", False, True),
        ("http://a.test/", "http://a.test/", True, True),
        ("http://a.test/", "http://a.test/?x", True, False),
    ],
)
def test_scope_rules(scope, url, strict, ok):
    assert visit_tokens.covers(visit_tokens.VisitToken(scope, strict), url) is ok


def test_tokens_expire(tourist, site):
    settings = get_settings()
    expired = visit_tokens.issue(settings, "visit", scope=site.url("/"), validity=-10)
    r = tourist.post("/api/v1/async-job", json={"steps": [{"url": site.url("/")}]}, headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 403


# ------------------------------------------------------------------ jobs


def test_sync_job_screenshot_pdf_and_video(tourist, site):
    r = sync(tourist, site, {"steps": [{"url": site.url("/pdf")}], "options": ["SCREENSHOT", "PDF", "RECORD"], "pdf": {"format": "A5", "landscape": True}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and set(body["result"]) == {"screenshot", "pdf", "video"}
    assert png_image(base64.b64decode(body["result"]["screenshot"])).size[0] == 1280
    pdf = base64.b64decode(body["result"]["pdf"])
    assert "Printable heading" in pdf_text(pdf)
    from pypdf import PdfReader

    box = PdfReader(io.BytesIO(pdf)).pages[0].mediabox
    assert float(box.width) > float(box.height)
    assert base64.b64decode(body["result"]["video"])[:4] == b"\x1a\x45\xdf\xa3"


def test_sync_job_without_options_has_an_empty_result(tourist, site):
    r = sync(tourist, site, {"steps": [{"url": site.url("/")}]})
    assert r.json() == {"status": "success", "result": {}}


def test_read_alerts_includes_popups(tourist, site):
    r = sync(tourist, site, {"steps": [{"url": site.url("/dialogs"), "actions": ["page.click('#alert')"]},
                                       {"url": site.url("/popup"), "actions": ["page.click('#open')", POPUP_LOADED]}],
                             "options": ["READ_ALERTS"]})
    assert r.json()["result"]["messages"] == ["alert says hi", "loaded alert"]


def test_cookies_with_samesite_reach_the_server(tourist, site):
    tag = uuid.uuid4().hex
    sync(tourist, site, {"steps": [{"url": site.url(f"/echo?t={tag}")}],
                         "cookies": [{"name": "a", "value": "1", "domain": "127.0.0.1"},
                                     {"name": "b", "value": "2", "domain": "127.0.0.1", "sameSite": "Strict", "httpOnly": True}]})
    assert hit(site, tag).cookies == {"a": "1", "b": "2"}


def test_extra_headers_on_page_and_context(tourist, site):
    tag = uuid.uuid4().hex
    r = sync(tourist, site, {"steps": [{"url": site.url(f"/echo?t={tag}"), "actions": [
        "page.setExtraHTTPHeaders({'X-Page': 'p'})", "context.setExtraHTTPHeaders({'X-Context': 'c'})"]}]})
    assert r.status_code == 200
    h = hit(site, tag).headers
    assert h["x-page"] == "p" and h["x-context"] == "c"


def test_multi_step_session_anchors_buttons_and_forms(tourist, site):
    tag = uuid.uuid4().hex
    r = sync(tourist, site, {"steps": [
        {"url": site.url(f"/set-cookie?name=s&value={tag}")},
        {"url": site.url("/form"), "actions": ["page.fill('#q', 'tourist')", "page.check('#agree')", "page.click('#go')"]},
        {"url": site.url("/"), "actions": ["page.click('#to-echo')"]},
    ]})
    assert r.status_code == 200, r.text
    submitted = site.state.requests_to("/submitted")[-1]
    assert submitted.query["q"] == ["tourist"] and submitted.cookies.get("s") == tag
    assert site.state.requests_to("/echo")[-1].cookies.get("s") == tag


def test_dialogs_accept_and_dismiss(tourist, site):
    for handler, answer in (("page.on('dialog', d => d.accept())", "yes"), ("page.on('dialog', d => d.dismiss())", "no")):
        sync(tourist, site, {"steps": [{"url": site.url("/confirm-nav"), "actions": [handler, "page.click('#ask')", "page.waitForURL('**/echo**')"]}]})
        assert site.state.requests_to("/echo")[-1].query["answer"] == [answer]


def test_bad_input_is_a_400_naming_the_problem(tourist, site):
    h = token_for(tourist, site.url("/"))
    r = tourist.post("/api/v1/sync-job", json={"steps": [{"url": site.url("/"), "actions": ["require('child_process').exec('id')"]}]}, headers=h)
    assert r.status_code == 400 and "require" in r.json()["message"] and "actions/0" in r.json()["message"]
    r = tourist.post("/api/v1/sync-job", json={"steps": [{"url": site.url("/")}], "options": ["PDF"], "pdf": {"format": "B7"}}, headers=h)
    assert r.status_code == 400 and "pdf" in r.json()["message"]
    r = tourist.post("/api/v1/sync-job", json={"steps": [{"url": site.url("/")}], "options": ["PDF"], "pdf": {"scale": 3}}, headers=h)
    assert r.status_code == 400 and "scale" in r.json()["message"]
    r = tourist.post("/api/v1/sync-job", json={"steps": [{"url": site.url("/")}], "extra": 1}, headers=h)
    assert r.status_code == 400 and r.json()["statusCode"] == 400
    r = tourist.post("/api/v1/sync-job", json={"steps": []}, headers=h)
    assert r.status_code == 400


def test_a_failing_sync_job_names_what_failed(tourist, site):
    r = sync(tourist, site, {"steps": [{"url": site.url("/buttons"), "actions": ["page.click('#nope', {timeout: 300})"]}]})
    assert r.status_code == 400 and "page.click('#nope'" in r.json()["message"]


def _worker_online(name_part: str, timeout: float = 90) -> str:
    """Wait until a worker whose name contains ``name_part`` heartbeats on the pool (Prefect's own record); its name."""
    url = f"{os.environ['PREFECT_API_URL']}/work_pools/{get_settings().work_pool}/workers/filter"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        online = [w["name"] for w in httpx.post(url, json={}, timeout=10).json() if w["status"] == "ONLINE" and name_part in w["name"]]
        if online:
            return online[0]
        time.sleep(0.2)
    raise AssertionError(f"no worker named *{name_part}* came online within {timeout:g} s")


def test_firefox_is_refused_by_a_worker_without_one(tourist, site, stack, tmp_path):
    """A Tourist client asks for Firefox; the worker that takes the job has none: 400 naming Firefox.

    The refusal happens in the worker process (the API cannot know which browsers a worker has), so for this test
    the stack's worker (which has firefox-esr) gives way to one whose SOJOURN_FIREFOX_EXECUTABLE names nothing:
    a configured browser that does not exist means none, as on a machine without Firefox. The stack's worker comes
    back afterwards.
    """
    missing = tmp_path / "no-firefox-here"
    name = f"no-firefox-{uuid.uuid4().hex[:8]}"
    stack.stop_worker()
    proc = processes.start([sys.executable, "-m", "sojourn.cli", "worker", "--name", name],
                           env={**stack.env, "SOJOURN_FIREFOX_EXECUTABLE": str(missing)}, log=tmp_path / "worker.log")
    try:
        _worker_online(name)
        r = sync(tourist, site, {"browser": "FIREFOX", "steps": [{"url": site.url("/")}]})
        assert r.status_code == 400, r.text
        assert "no firefox browser on this worker" in r.json()["message"] and str(missing) in r.json()["message"]
    finally:
        processes.stop(proc, timeout=60)
        stack.start_worker()
        _worker_online(f"-{stack.worker.pid}-")  # the next test's sync jobs must not wait for its start


def test_async_job_status_pending_then_success(tourist, site):
    h = token_for(tourist, site.url("/"))
    r = tourist.post("/api/v1/async-job", json={"steps": [{"url": site.url("/"), "actions": ["page.waitForTimeout(1000)"]}], "options": ["SCREENSHOT"]}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "scheduled"
    job_id = r.json()["id"]
    assert tourist.get("/api/v1/job-status", params={"id": job_id}, headers=h).json()["status"] == "pending"
    for _ in range(300):
        body = tourist.get("/api/v1/job-status", params={"id": job_id}, headers=h).json()
        if body["status"] != "pending":
            break
        time.sleep(0.1)
    assert body["status"] == "success" and png_image(base64.b64decode(body["result"]["screenshot"]))
    # another site's token may not read it; unknown ids are 404
    assert tourist.get("/api/v1/job-status", params={"id": job_id}, headers=token_for(tourist, "http://other.test/")).status_code == 403
    assert tourist.get("/api/v1/job-status", params={"id": str(uuid.uuid4())}, headers=h).status_code == 404
    assert tourist.get("/api/v1/job-status", params={"id": "1"}, headers=h).status_code == 404


def test_failed_async_job_keeps_its_error(tourist, site):
    h = token_for(tourist, site.url("/"))
    job_id = tourist.post("/api/v1/async-job", json={"steps": [{"url": site.url("/buttons"), "actions": ["page.click('#nope', {timeout: 300})"]}]}, headers=h).json()["id"]
    for _ in range(300):
        body = tourist.get("/api/v1/job-status", params={"id": job_id}, headers=h).json()
        if body["status"] != "pending":
            break
        time.sleep(0.1)
    assert body["status"] == "failed" and body["error"]["code"] == "TIMEOUT" and "#nope" in body["error"]["message"]


def test_healthcheck_visits_our_own_page(tourist):
    r = tourist.get("/api/v1/healthcheck")
    assert r.status_code == 200 and r.json() == {"status": "OK"}


@pytest.mark.slow
def test_sync_wait_limit_is_reported_clearly(tourist, site):
    r = sync(tourist, site, {"steps": [{"url": site.url("/never?s=40")}]})
    assert r.status_code == 504
    assert "did not finish within 20 s" in r.json()["message"] and r.json()["id"]
