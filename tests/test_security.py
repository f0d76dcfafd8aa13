"""The URL policy on every request the browser makes, SSRF attempts, and the API under a schema fuzzer."""

from __future__ import annotations

import time
import uuid

import pytest

from sojourn.settings import configure
from tests.helpers import run_failing_job, run_job
from tests.test_runtime import submit, wait_for

METADATA = "http://169.254.169.254/latest/meta-data/"


@pytest.fixture()
def loopback_denied():
    """The production default: jobs may not reach this machine (the test site is on 127.0.0.1)."""
    configure(allow_loopback=False)
    try:
        yield
    finally:
        configure()  # back to the environment (SOJOURN_ALLOW_LOOPBACK=true for the suite)


def hits_with(site, marker: str) -> list:
    return [h for h in site.state.hits if marker in (h.query.get("m") or [""])[0] or marker in h.path]


async def test_loopback_is_refused_by_address_and_by_a_name_that_resolves_to_it(site, loopback_denied):
    marker = uuid.uuid4().hex
    _, err, manifest = await run_failing_job({"steps": [{"url": site.url(f"/?m={marker}")}]})
    assert err["code"] == "URL_BLOCKED" and "loopback" in err["message"]
    # "localhost" is a name: it is resolved and the address it resolves to is what is checked
    _, err, manifest = await run_failing_job({"steps": [{"url": site.url(f"/?m={marker}", host="localhost")}]})
    assert err["code"] == "URL_BLOCKED" and "resolves to 127.0.0.1" in err["message"]
    assert manifest.blocked_requests and manifest.blocked_requests[0]["url"].startswith("http://localhost:")
    assert hits_with(site, marker) == []  # the server never saw a request


def private_address() -> str | None:
    """An address of this machine in a private range (SOJOURN_ALLOW_PRIVATE_NETWORKS governs those), if it has one."""
    import ipaddress
    import subprocess

    from sojourn.browser.url_policy import PRIVATE

    words = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    return next((w for w in words if any(ipaddress.ip_address(w) in n for n in PRIVATE)), None)


@pytest.fixture()
def private_site():
    """The test site again, on this machine's private address (this machine kind has fd00::2)."""
    from tests.site import Site

    address = private_address()
    if address is None:
        pytest.skip("this machine has no address in a private range to serve a page on")
    with Site(address) as s:
        yield s


async def test_private_networks_are_refused_unless_allowed(private_site, monkeypatch):
    marker = uuid.uuid4().hex
    _, err, _ = await run_failing_job({"steps": [{"url": private_site.url(f"/?m={marker}")}]})
    assert err["code"] == "URL_BLOCKED" and "private address" in err["message"] and "SOJOURN_ALLOW_PRIVATE_NETWORKS" in err["message"]
    assert hits_with(private_site, marker) == []
    monkeypatch.setenv("SOJOURN_ALLOW_PRIVATE_NETWORKS", "true")  # as an operator sets it
    configure()
    try:
        m = await run_job({"steps": [{"url": private_site.url(f"/?m={marker}")}], "extract": {"h1": "h1"}})
    finally:
        monkeypatch.undo()
        configure()
    assert m.data["h1"] == "Hello Sojourn" and len(hits_with(private_site, marker)) == 1


async def test_the_operators_deny_list_refuses_hosts_and_ranges_on_every_request(site, monkeypatch):
    marker = uuid.uuid4().hex

    def deny(rules: str) -> None:  # as an operator sets it: a JSON list in the environment
        monkeypatch.setenv("SOJOURN_URL_DENY", rules)
        configure()

    try:
        deny('["localhost", "*.internal.test"]')
        _, err, _ = await run_failing_job({"steps": [{"url": site.url(f"/?m={marker}", host="localhost")}]})
        assert err["code"] == "URL_BLOCKED" and "deny rule 'localhost'" in err["message"]
        _, err, _ = await run_failing_job({"steps": [{"url": f"http://db.internal.test:{site.port}/?m={marker}"}]})
        assert err["code"] == "URL_BLOCKED" and "deny rule '*.internal.test'" in err["message"]
        # a page that is allowed cannot pull a denied host in as a frame
        framed = site.url(f"/echo?m={marker}", host="localhost")
        m = await run_job({"steps": [{"url": site.url(f"/cross-site?frame={framed}")}]})
        assert [b["url"] for b in m.blocked_requests] == [framed] and "deny rule 'localhost'" in m.blocked_requests[0]["reason"]
        # a range: the suite allows loopback, the operator's list takes it away again
        deny('["127.0.0.0/8"]')
        _, err, _ = await run_failing_job({"steps": [{"url": site.url(f"/?m={marker}")}]})
        assert err["code"] == "URL_BLOCKED" and "deny rule '127.0.0.0/8'" in err["message"]
    finally:
        monkeypatch.undo()
        configure()
    assert hits_with(site, marker) == []
    # without the list the same page loads: the refusals above were the list's doing
    assert (await run_job({"steps": [{"url": site.url(f"/?m={marker}")}], "extract": {"h1": "h1"}})).data["h1"] == "Hello Sojourn"


async def test_a_redirect_to_the_metadata_address_is_blocked(site):
    _, err, manifest = await run_failing_job({"steps": [{"url": site.url(f"/redirect?to={METADATA}")}]})
    assert err["code"] == "URL_BLOCKED"
    assert "169.254.169.254" in err["message"] and "metadata" in err["message"]
    assert manifest.blocked_requests[0]["url"] == METADATA  # (then, perhaps, the browser's favicon request there)


async def test_frames_fetches_and_popups_to_denied_hosts_are_blocked_and_reported(site):
    frame = "http://169.254.169.254/frame"
    m = await run_job({
        "steps": [{
            "url": site.url(f"/cross-site?frame={frame}"),
            "actions": [
                "page.evaluate(\"fetch('http://10.1.2.3/private').catch(() => 0)\")",
                # resolves once the popup has left about:blank (its blocked load makes it an error page of another origin)
                "page.evaluate(\"new Promise(done => { const w = window.open('http://169.254.170.2/popup');"
                " const t = setInterval(() => { try { void w.location.href; } catch (e) { clearInterval(t); done(1); } }, 20); })\")",
            ],
        }],
    })
    blocked = {b["url"]: b["reason"] for b in m.blocked_requests}
    assert frame in blocked and "metadata" in blocked[frame]
    assert "http://10.1.2.3/private" in blocked and "private address" in blocked["http://10.1.2.3/private"]
    assert "http://169.254.170.2/popup" in blocked


async def test_a_jobs_allow_list_applies_to_its_subresources_too(site):
    marker = uuid.uuid4().hex
    inner = site.url(f"/echo?m={marker}")  # 127.0.0.1: not a name the list allows
    outer = site.url(f"/cross-site?frame={inner}", host="localhost")
    m = await run_job({"steps": [{"url": outer}], "urlAllow": ["localhost"]})  # the step waits for `load`, frames included
    assert [b["url"] for b in m.blocked_requests] == [inner]
    assert "allow-list" in m.blocked_requests[0]["reason"]
    assert hits_with(site, marker) == []
    # and the same frame loads when the list allows it
    m = await run_job({"steps": [{"url": outer}], "urlAllow": ["localhost", "127.0.0.0/8"]})
    assert m.blocked_requests == [] and hits_with(site, marker)


async def test_a_https_tunnel_to_a_denied_address_is_refused(site):
    _, err, manifest = await run_failing_job({"steps": [{"url": site.url("/redirect?to=https://169.254.169.254/")}]})
    assert err["code"] == "URL_BLOCKED"
    assert manifest.blocked_requests[0]["url"] == "https://169.254.169.254"


def test_blocked_requests_show_in_the_jobs_log_over_http(stack, site):
    with stack.client() as http:
        job = wait_for(http, submit(http, [{"url": site.url(f"/redirect?to={METADATA}")}]))
        assert job["status"] == "failed" and job["error"]["code"] == "URL_BLOCKED"
        deadline = time.monotonic() + 15  # log lines reach Prefect in batches, shortly after the run ends
        while time.monotonic() < deadline:
            logs = http.get(f"/api/v1/jobs/{job['id']}/logs").json()["logs"]
            if any("blocked by the URL policy" in line["message"] and "169.254.169.254" in line["message"] for line in logs):
                break
            time.sleep(0.5)
        else:
            raise AssertionError([line["message"] for line in logs])


def test_the_api_answers_fuzzed_requests_without_a_server_error(stack):
    """schemathesis, generated from /api/openapi.json: no 500s and every answer in the error format or documented shape."""
    import schemathesis
    from hypothesis import HealthCheck, settings as hsettings

    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{stack.base}/api/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hsettings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        @given(case=operation.as_strategy())
        def exercise(case) -> None:
            response = case.call(base_url=stack.base, headers={"X-API-Key": stack.admin_key}, timeout=30)
            where = f"{case.method} {case.formatted_path}"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400:
                err = response.json().get("error") if "json" in str(response.headers.get("content-type", "")) else None
                if not (isinstance(err, dict) and err.get("code") and err.get("message")):
                    failures.append(f"{where}: {response.status_code} not in the standard error body: {response.text[:200]}")

        exercise()
    assert operations >= 25
    assert failures == [], "\n".join(failures[:20])
