"""The URL policy on every request the browser makes, SSRF attempts, and the API under a schema fuzzer."""

from __future__ import annotations

import time
import uuid

import httpx
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


async def test_private_networks_are_refused_by_default():
    """Refused before any connection is tried, so no server is needed: these addresses need not exist here."""
    for url, address in (("http://10.1.2.3/", "10.1.2.3"), ("http://192.168.77.1:8080/x", "192.168.77.1"),
                         ("http://172.16.5.5/", "172.16.5.5"), ("http://[fd00::2]/", "fd00::2")):
        _, err, manifest = await run_failing_job({"steps": [{"url": url}]})
        assert err["code"] == "URL_BLOCKED", (url, err)
        assert f"{address} is a private address (SOJOURN_ALLOW_PRIVATE_NETWORKS is off)" in err["message"], (url, err)
        assert manifest.blocked_requests and address in manifest.blocked_requests[0]["url"], (url, manifest.blocked_requests)


async def test_private_networks_are_allowed_when_the_operator_allows_them(private_site, monkeypatch):
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


# The dialects' OpenAPI documents name only their 2xx answer and FastAPI's 422 per operation, while every dialect also
# answers 400/401/403/404 in its own error shape (a spec gap, reported in issue #21: the routers are to declare them).
# Those codes are therefore not held against status_code_conformance; any other undocumented code is.
UNDOCUMENTED_ERRORS = {400, 401, 403, 404}


def known_schema_gap(prefix: str, code: int, response) -> bool:
    """A known mismatch of a documented answer's schema (a product bug outside this file, reported in issue #21):
    scrape answers its own validation errors (e.g. `dedupe_keys` naming an unknown field, on POST .../targets and
    .../targets/bulk) as {"detail": "<text>", "code": "VALIDATION_ERROR", "field": ...}, while documenting FastAPI's
    HTTPValidationError, whose `detail` is a list. Only that exact shape is excused."""
    if prefix != "/scrape" or code != 422:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("detail"), str) and body.get("code") == "VALIDATION_ERROR"


HUGE = 2**63  # past SQL's BIGINT


def fuzz(schema_url: str, base_url: str, headers: dict, max_examples: int, errors_in_standard_body: bool) -> tuple[int, list[str]]:
    """Fuzz every operation of one OpenAPI document: no 500, and every answer (2xx included) conforms to what the
    document says of its status code, content type and body schema. Returns (operations, failures)."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    prefix = base_url.split("://", 1)[1].partition("/")[2]
    prefix = "/" + prefix if prefix else ""
    schema = schemathesis.openapi.from_url(schema_url)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hsettings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        @given(case=operation.as_strategy())
        def exercise(case) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            code = response.status_code
            where = f"{prefix} {case.method} {case.formatted_path}"
            checks = [not_a_server_error, content_type_conformance]
            if not known_schema_gap(prefix, code, response):
                checks.append(response_schema_conformance)
            if code not in UNDOCUMENTED_ERRORS:
                checks.append(status_code_conformance)
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except BaseExceptionGroup as group:
                for failure in group.exceptions:
                    failures.append(f"{where}: {code} {type(failure).__name__}: {str(failure)[:300]} | {response.text[:200]}")
            if errors_in_standard_body and 400 <= code < 500:
                err = response.json().get("error") if "json" in str(response.headers.get("content-type", "")) else None
                if not (isinstance(err, dict) and err.get("code") and err.get("message")):
                    failures.append(f"{where}: {code} not in the standard error body: {response.text[:200]}")

        exercise()
    return operations, failures


def test_the_api_answers_fuzzed_requests_without_a_server_error(stack):
    """schemathesis, generated from /api/openapi.json: no 500s, every answer as documented, errors in the standard body."""
    operations, failures = fuzz(f"{stack.base}/api/openapi.json", stack.base, {"X-API-Key": stack.admin_key}, 8, True)
    assert operations >= 25
    assert failures == [], "\n".join(failures[:20])


@pytest.fixture(scope="module")
def fuzz_tenant(stack) -> dict[str, dict[str, str]]:
    """Each dialect's credentials of one fresh tenant. Not the admin's: fuzzing the Task Engine's settings or
    scheduler with the admin key would change them for the whole session."""
    from sojourn.services import visit_tokens
    from sojourn.settings import get_settings

    name = "fuzz-" + uuid.uuid4().hex[:8]
    with stack.client() as admin:
        key = admin.post("/api/v1/keys", json={"name": name, "principal": name}).json()["key"]
    token = httpx.post(f"{stack.base}/tourist/api/v1/issue-token", json={"scope": "http://127.0.0.1:9/"},
                       headers={"Authorization": f"Bearer {visit_tokens.issuer_token(get_settings())}"}).json()["token"]
    return {
        "/tourist": {"Authorization": f"Bearer {token}"},
        "/scrape": {"Authorization": f"Bearer {key}"},
        "/taskengine": {"client": name, "api-key": key},
        "/fastlane": {"X-API-Key": key},
    }


@pytest.mark.parametrize(("prefix", "operations"), [("/tourist", 5), ("/scrape", 28), ("/taskengine", 15), ("/fastlane", 21)])
def test_every_dialect_answers_fuzzed_requests_as_its_openapi_says(stack, fuzz_tenant, prefix, operations):
    """The same for each dialect's own document: each sub-app serves openapi.json under its prefix."""
    found, failures = fuzz(f"{stack.base}{prefix}/openapi.json", f"{stack.base}{prefix}", fuzz_tenant[prefix], 5, False)
    assert found >= operations
    assert failures == [], "\n".join(failures[:20])


def test_a_task_engine_job_id_of_unicode_digits_is_refused_not_a_server_error(stack, fuzz_tenant):
    with httpx.Client(base_url=f"{stack.base}/taskengine", headers=fuzz_tenant["/taskengine"], timeout=30) as http:
        for method, path in (("GET", "/jobs/³"), ("PUT", "/jobs/³"), ("PATCH", "/jobs/³"), ("POST", "/jobs/³/rerun"), ("GET", "/logs/³")):
            r = http.request(method, path, json={})
            assert r.status_code == 400 and "job ids are integers" in r.json()["error"], (method, path, r.status_code, r.text)


@pytest.mark.parametrize(("prefix", "path", "params"), [
    ("", "/api/v1/jobs", {"offset": HUGE}), ("", "/api/v1/jobs", {"page": HUGE}),
    ("/scrape", "/api/v1/projects", {"page": HUGE}), ("/scrape", "/api/v1/schedules", {"page": HUGE}),
])
def test_a_page_past_sqls_integers_is_not_a_server_error(stack, fuzz_tenant, prefix, path, params):
    headers = {"X-API-Key": stack.admin_key} if prefix == "" else fuzz_tenant[prefix]
    r = httpx.get(f"{stack.base}{prefix}{path}", params=params, headers=headers, timeout=30)
    # (it was a 500: OverflowError from the database driver) now each dialect's validation error, naming the field
    (field,) = params
    assert r.status_code == 422, (r.status_code, r.text[:200])
    assert field in r.text, r.text[:300]
