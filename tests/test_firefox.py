"""Firefox jobs on a stock Firefox (Debian's firefox-esr) over WebDriver BiDi, behind sojourn/browser/bidi_relay.py.

In-process jobs through the session's pool and the browse flow (as tests/test_browse.py), one lifecycle test on a
pool of its own (a Firefox killed under it, a clean shutdown), and Tourist requests with "browser": "FIREFOX"
over the running stack.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
import uuid

import httpx
import pytest

from sojourn.browser.bidi_relay import Patcher
from sojourn.browser.discovery import ensure_ffmpeg, find_browser
from sojourn.browser.egress import JobPolicy
from tests.helpers import artifact_bytes, pdf_text, png_image, run_failing_job, run_job
from tests.postgres import required_in_ci

# CI installs Debian's firefox-esr (a stock Firefox, driven over WebDriver BiDi through the relay) and ffmpeg: there
# their absence fails the suite (required_in_ci raises); only a machine that genuinely lacks them skips.
FIREFOX = find_browser("firefox", os.environ.get("SOJOURN_FIREFOX_EXECUTABLE"))
STOCK_FIREFOX = FIREFOX is not None and FIREFOX.bidi
if not STOCK_FIREFOX:
    required_in_ci("a stock Firefox (apt-get install firefox-esr)")
pytestmark = [pytest.mark.skipif(FIREFOX is None, reason="no Firefox here (apt-get install firefox-esr)"), pytest.mark.usefixtures("pool")]
needs_stock = pytest.mark.skipif(not STOCK_FIREFOX, reason="only Playwright's own Firefox build here: the relay and BiDi printing are for a stock Firefox")

METADATA = "http://169.254.169.254/latest/meta-data/"


def ff(spec: dict) -> dict:
    return {"browser": "firefox", **spec}


def hits(site, tag: str, path: str = "/echo") -> list:
    return [h for h in site.state.requests_to(path) if h.query.get("t") == [tag]]


# ------------------------------------------------------------------ the relay's rules (no browser)


def test_relay_forgives_only_a_media_override_that_asks_for_nothing_new():
    p = Patcher()
    light = json.dumps({"id": 7, "method": "emulation.setMediaFeaturesOverride", "params": {"features": {"prefers-color-scheme": "light"}}})
    dark = json.dumps({"id": 8, "method": "emulation.setMediaFeaturesOverride", "params": {"features": {"prefers-color-scheme": "dark"}}})
    assert p.to_browser(light) == light and p.to_browser(dark) == dark  # passed on unchanged: a newer Firefox applies them
    unknown = lambda i: json.dumps({"type": "error", "id": i, "error": "unknown command", "message": "emulation.setMediaFeaturesOverride"})  # noqa: E731
    assert json.loads(p.to_client(unknown(7))) == {"type": "success", "id": 7, "result": {}}
    assert json.loads(p.to_client(unknown(8)))["type"] == "error"  # dark was asked for and cannot be had: it fails
    other = json.dumps({"type": "error", "id": 9, "error": "unknown command", "message": "x"})
    assert p.to_client(other) == other


def test_relay_sends_https_through_the_same_proxy():
    msg = {"id": 3, "method": "browser.createUserContext", "params": {"proxy": {"proxyType": "manual", "httpProxy": "127.0.0.1:4242"}}}
    out = json.loads(Patcher().to_browser(json.dumps(msg)))
    assert out["params"]["proxy"] == {"proxyType": "manual", "httpProxy": "127.0.0.1:4242", "sslProxy": "127.0.0.1:4242"}


def test_a_configured_firefox_that_does_not_exist_means_none(tmp_path):
    """The operator's setting is not a hint: discovery does not fall back to another Firefox behind it."""
    assert find_browser("firefox", str(tmp_path / "no-firefox")) is None
    assert find_browser("chromium", str(tmp_path / "no-chromium")) is None
    if FIREFOX.executable:  # and one that exists is taken as it is
        assert find_browser("firefox", FIREFOX.executable) == FIREFOX.__class__("firefox", FIREFOX.executable, "configured", bidi=FIREFOX.bidi)


def test_relay_prints_in_the_centimetres_bidi_measures_in():
    """Playwright 1.65 sends inches (A4: 8.27 x 11.7); BiDi reads centimetres: the relay converts, and only numbers."""
    msg = {"id": 4, "method": "browsingContext.print", "params": {
        "context": "c1", "orientation": "landscape", "scale": 1, "page": {"width": 8.27, "height": 11.7},
        "margin": {"top": 0.5, "right": 0, "bottom": 1, "left": 0.25}}}
    out = json.loads(Patcher().to_browser(json.dumps(msg)))["params"]
    assert out["page"] == pytest.approx({"width": 21.0058, "height": 29.718})
    assert out["margin"] == pytest.approx({"top": 1.27, "right": 0, "bottom": 2.54, "left": 0.635})
    assert (out["orientation"], out["scale"], out["context"]) == ("landscape", 1, "c1")


# ------------------------------------------------------------------ jobs in Firefox


async def test_firefox_job_screenshot_is_firefox_and_is_a_png(site, pool):
    tag = uuid.uuid4().hex
    m = await run_job(ff({"steps": [{"url": site.url(f"/echo?t={tag}")}, {"url": site.url("/")}],
                          "capture": {"screenshot": {"fullPage": False}}, "viewport": {"width": 800, "height": 600},
                          "extract": {"h1": "h1"}}))
    assert m.status == "completed" and m.browser == "firefox" and m.data == {"h1": "Hello Sojourn"}
    assert "Firefox/" in hits(site, tag)[0].headers["user-agent"]  # really Firefox, not Chromium
    img = png_image(await artifact_bytes(m, "screenshot"))
    assert img.size == (800, 600)
    colors = img.convert("L").getcolors(maxcolors=1 << 16)
    assert max(colors)[1] > 240 and min(c for _, c in colors) < 80  # white page, dark heading
    assert pool.stats.by_kind.get("firefox", 0) >= 1  # the pool launched a Firefox for it


async def test_firefox_full_page_screenshot(site):
    m = await run_job(ff({"steps": [{"url": site.url("/long")}], "capture": ["screenshot"], "viewport": {"width": 640, "height": 480}}))
    img = png_image(await artifact_bytes(m, "screenshot"))
    assert img.size[0] == 640 and img.size[1] > 3000


async def test_firefox_cookies_headers_and_user_agent_reach_the_server(site):
    tag = uuid.uuid4().hex
    m = await run_job(ff({
        "steps": [{"url": site.url(f"/echo?t={tag}"), "actions": ["page.setExtraHTTPHeaders({'X-Page': 'from-page'})"]},
                  {"url": site.url(f"/echo?t={tag}"), "actions": [
                      # what the page itself sees: its time zone (by name, and as the offset of a winter date) and language
                      "page.evaluate(() => document.title = [Intl.DateTimeFormat().resolvedOptions().timeZone,"
                      " new Date(2026, 0, 15, 12).getTimezoneOffset(), navigator.language].join(' '))"]}],
        "cookies": [{"name": "plain", "value": "v1"},
                    {"name": "scoped", "value": "v2", "domain": "127.0.0.1", "path": "/echo", "httpOnly": True},
                    {"name": "elsewhere", "value": "v3", "domain": "127.0.0.1", "path": "/other"}],
        "headers": {"X-Spec": "from-spec"}, "userAgent": "SojournFox/1.0", "locale": "de-DE", "timezone": "Asia/Tokyo",
        "extract": {"cookies": "#cookies"},
    }))
    first, second = hits(site, tag)
    assert first.cookies == {"plain": "v1", "scoped": "v2"} and json.loads(m.data["cookies"]) == {"plain": "v1", "scoped": "v2"}
    assert first.headers["x-spec"] == "from-spec" and first.headers["user-agent"] == "SojournFox/1.0"
    assert second.headers["x-page"] == "from-page"
    assert first.headers["accept-language"].startswith("de")
    assert m.steps[1].title == "Asia/Tokyo -540 de-DE"  # Tokyo is UTC+9 all year (no DST): -540 minutes


async def test_firefox_steps_share_one_session_and_set_cookies_persist(site):
    tag = uuid.uuid4().hex
    m = await run_job(ff({"steps": [{"url": site.url(f"/set-cookie?name=visit&value={tag}")}, {"url": site.url("/echo")}],
                          "extract": {"cookies": "#cookies"}}))
    assert json.loads(m.data["cookies"]) == {"visit": tag}
    # and the next job starts with no cookies: a fresh context each time
    m = await run_job(ff({"steps": [{"url": site.url("/echo")}], "extract": {"cookies": "#cookies"}}))
    assert json.loads(m.data["cookies"]) == {}


async def test_firefox_actions_click_fill_select_check_press_and_evaluate(site):
    m = await run_job(ff({"steps": [
        {"url": site.url("/buttons"), "actions": ["page.click('#one')", 'page.getByRole("button", { name: "Second button" }).click()',
                                                  "page.hover('#hov')"]},
    ], "extract": {"out": "#out"}}))
    assert m.data["out"] == "hovered"
    m = await run_job(ff({"steps": [{"url": site.url("/form"), "actions": [
        "page.getByLabel('Search').fill('flights')",
        "page.type('#typed', 'ab')",
        {"selectOption": ["#color", "blue"]},
        {"check": "#agree"},
        "page.evaluate(() => document.title = 'changed')",
        "page.getByPlaceholder('Type here').press('Enter')",
        "page.waitForURL('**/submitted**')",
    ]}], "extract": {"query": "#query"}}))
    assert json.loads(m.data["query"]) == {"q": ["flights"], "typed": ["ab"], "color": ["blue"], "agree": ["yes"]}
    assert m.steps[0].final_url.startswith(site.url("/submitted"))


async def test_firefox_dialogs_are_read_and_answered(site):
    async def result(actions: list, alerts: bool = False):
        m = await run_job(ff({"steps": [{"url": site.url("/dialogs"), "actions": actions}], "capture": {"alerts": alerts},
                              "extract": {"result": "#result"}}))
        return m.data["result"], m.messages

    # a job that accepts: confirm() returns true, and the alert before it was read
    assert await result(["page.click('#alert')", "page.on('dialog', d => d.accept())", "page.click('#confirm')"], alerts=True) == (
        "confirmed", ["alert says hi"])
    assert (await result(["page.on('dialog', d => d.dismiss())", "page.click('#confirm')"]))[0] == "declined"
    assert (await result(["page.click('#confirm')"]))[0] == "declined"  # a dialog nobody answers is dismissed
    assert (await result([{"dialog": {"accept": "Ada"}}, "page.click('#prompt')"]))[0] == "prompted:Ada"  # with the job's text


async def test_firefox_failing_action_names_step_and_action(site):
    _, err, _ = await run_failing_job(ff({"steps": [{"url": site.url("/buttons"), "actions": ["page.click('#nope', {timeout: 300})"]}]}))
    assert err["code"] == "TIMEOUT" and "#nope" in err["message"]


# ------------------------------------------------------------------ the URL policy on Firefox


async def test_firefox_loopback_goes_through_the_proxy_and_the_allow_list_refuses_it(site):
    """Firefox sends loopback around a proxy by default: here the job's allow-list must still see (and refuse) it."""
    marker = uuid.uuid4().hex
    # a page on an allowed name may not pull in 127.0.0.1 (not on the list) as a frame
    inner = site.url(f"/echo?m={marker}")
    m = await run_job(ff({"steps": [{"url": site.url(f"/cross-site?frame={inner}", host="localhost")}], "urlAllow": ["localhost"]}))
    assert [b["url"] for b in m.blocked_requests] == [inner] and "allow-list" in m.blocked_requests[0]["reason"]
    assert [h for h in site.state.hits if marker in (h.query.get("m") or [""])[0]] == []
    # and the same frame loads when the list allows it: the refusal was the list's doing
    m = await run_job(ff({"steps": [{"url": site.url(f"/cross-site?frame={inner}", host="localhost")}], "urlAllow": ["localhost", "127.0.0.0/8"]}))
    assert m.blocked_requests == [] and [h for h in site.state.hits if marker in (h.query.get("m") or [""])[0]]


async def test_firefox_redirect_to_the_metadata_address_is_blocked(site):
    _, err, manifest = await run_failing_job(ff({"steps": [{"url": site.url(f"/redirect?to={METADATA}")}]}))
    assert err["code"] == "URL_BLOCKED" and "169.254.169.254" in err["message"]
    assert manifest.blocked_requests[0]["url"] == METADATA


async def test_firefox_https_goes_through_the_proxy_too(site):
    _, err, manifest = await run_failing_job(ff({"steps": [{"url": site.url("/redirect?to=https://169.254.169.254/")}]}))
    assert err["code"] == "URL_BLOCKED"
    assert manifest.blocked_requests[0]["url"] == "https://169.254.169.254"


async def test_firefox_fetches_and_frames_to_denied_hosts_are_blocked(site):
    frame = "http://169.254.169.254/frame"
    m = await run_job(ff({"steps": [{"url": site.url(f"/cross-site?frame={frame}"),
                                     "actions": ["page.evaluate(\"fetch('http://10.1.2.3/private').catch(() => 0)\")"]}]}))
    blocked = {b["url"]: b["reason"] for b in m.blocked_requests}
    assert frame in blocked and "metadata" in blocked[frame]
    assert "http://10.1.2.3/private" in blocked and "private address" in blocked["http://10.1.2.3/private"]


# ------------------------------------------------------------------ PDF


@needs_stock
async def test_firefox_pdf_job_prints_with_its_options(site, pool):
    """firefox-esr prints through WebDriver BiDi (the relay), with the job's paper size and orientation."""
    import io

    from pypdf import PdfReader

    assert pool.choice("firefox").bidi
    m = await run_job(ff({"steps": [{"url": site.url("/pdf")}], "capture": {"pdf": {"format": "A4", "landscape": True}}}))
    data = await artifact_bytes(m, "pdf")
    assert data.startswith(b"%PDF")
    text = " ".join(pdf_text(data).split())  # (Firefox may wrap lines)
    assert "Printable heading" in text and "The quick brown fox jumps over the lazy dog." in text
    box = PdfReader(io.BytesIO(data)).pages[0].mediabox
    # A4 landscape is 841.9 x 595.3 points (Playwright's table rounds A4 to 8.27 x 11.7 in, hence the tolerance);
    # inches read as centimetres printed 332 x 235
    assert (float(box.width), float(box.height)) == (pytest.approx(841.9, abs=2), pytest.approx(595.3, abs=2))


@pytest.mark.skipif(STOCK_FIREFOX, reason="Playwright's own Firefox build is not the one here (it cannot download here); "
                                          "only that build refuses to print")
async def test_playwright_firefox_pdf_job_is_refused_naming_the_field(site):
    _, err, _ = await run_failing_job(ff({"steps": [{"url": site.url("/pdf")}], "capture": {"pdf": {"format": "A4"}}}))
    assert err["code"] == "INVALID_INPUT" and "capture.pdf" in err["message"]


@needs_stock
async def test_firefox_esr_prints_through_bidi(site, pool):
    """What a Firefox PDF capture runs on (see docs/firefox.md): BiDi's browsingContext.print, through the relay."""
    async with pool.context("firefox", policy=JobPolicy(job_id="pdf-probe")) as h:
        await h.page.goto(site.url("/pdf"))
        await h.page.emulate_media(media="print")
        data = await h.page.pdf(format="A4", landscape=True)
    assert "Printable heading" in pdf_text(data)


@pytest.mark.skipif(ensure_ffmpeg() is None and not required_in_ci("ffmpeg"), reason="no ffmpeg here (apt-get install ffmpeg)")
async def test_firefox_video_records(site):
    m = await run_job(ff({"steps": [{"url": site.url("/animated"), "actions": ["page.waitForTimeout(800)"]}], "capture": {"video": True}}))
    assert (await artifact_bytes(m, "video"))[:4] == b"\x1a\x45\xdf\xa3"  # EBML header (webm)


# ------------------------------------------------------------------ lifecycle: a killed Firefox, a clean close


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _relay_pids() -> set[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return {p for p in pids if any(a.endswith("bidi_relay.py") for a in _cmdline(p)) and _alive(p)}


def _children(pid: int) -> list[int]:
    out = []
    for p in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        try:
            with open(f"/proc/{p}/stat") as f:
                if int(f.read().rsplit(") ", 1)[1].split()[1]) == pid:
                    out.append(p)
        except (OSError, ValueError, IndexError):
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@needs_stock
async def test_a_killed_firefox_is_replaced_and_close_leaves_nothing_running(site):
    from sojourn.browser.pool import BrowserPool

    own = BrowserPool()
    assert own.choice("firefox").bidi  # the relay runs for a stock Firefox
    before = _relay_pids()
    try:
        async with own.context("firefox", policy=JobPolicy(job_id="life")) as h:
            await h.page.goto(site.url("/"))
        relays = _relay_pids() - before
        assert len(relays) == 1
        relay = relays.pop()
        firefox = _children(relay)
        assert firefox, "the relay has no Firefox under it"
        os.kill(firefox[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(relay) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not _alive(relay), "the relay outlived its Firefox"
        async with own.context("firefox", policy=JobPolicy(job_id="life2")) as h:  # relaunched
            await h.page.goto(site.url("/"))
            assert await h.page.inner_text("h1") == "Hello Sojourn"
        assert own.stats.crashes == 1 and own.stats.by_kind["firefox"] == 2
        second = _relay_pids() - before
        assert len(second) == 1
    finally:
        await own.close()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in second) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not any(_alive(p) for p in second), "closing the pool left its Firefox relay running"


# ------------------------------------------------------------------ Tourist over HTTP


@pytest.fixture(scope="module")
def tourist(stack):
    with httpx.Client(base_url=f"{stack.base}/tourist", timeout=120) as c:
        yield c


def _token(tourist, scope: str) -> dict[str, str]:
    from sojourn.services import visit_tokens
    from sojourn.settings import get_settings

    r = tourist.post("/api/v1/issue-token", json={"scope": scope}, headers={"Authorization": f"Bearer {visit_tokens.issuer_token(get_settings())}"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_tourist_firefox_async_job_then_sync_job_with_cookies_and_alerts(tourist, site):
    h = _token(tourist, site.url("/"))
    # async first: the worker's first Firefox job launches Firefox, which may take longer than a sync wait on a busy machine
    r = tourist.post("/api/v1/async-job", json={"browser": "FIREFOX", "steps": [{"url": site.url("/")}], "options": ["SCREENSHOT"]}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "scheduled", r.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = tourist.get("/api/v1/job-status", params={"id": r.json()["id"]}, headers=h).json()
        if status["status"] != "pending":
            break
        time.sleep(0.5)
    assert status["status"] == "success", status
    assert png_image(base64.b64decode(status["result"]["screenshot"])).size[0] == 1280  # overlay scrollbars: the full width

    tag = uuid.uuid4().hex
    body = {"browser": "FIREFOX", "options": ["SCREENSHOT", "READ_ALERTS"],
            "cookies": [{"name": "a", "value": "1", "domain": "127.0.0.1"}],
            "steps": [{"url": site.url(f"/echo?t={tag}")},
                      {"url": site.url("/dialogs"), "actions": ["page.click('#alert')"]}]}
    r = tourist.post("/api/v1/sync-job", json=body, headers=h)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert r.json()["status"] == "success" and result["messages"] == ["alert says hi"]
    assert png_image(base64.b64decode(result["screenshot"])).size[0] == 1280
    hit = hits(site, tag)[0]
    assert "Firefox/" in hit.headers["user-agent"] and hit.cookies == {"a": "1"}


def test_tourist_firefox_refuses_a_blocked_host_and_prints_a_pdf(tourist, site):
    h = _token(tourist, site.url("/"))
    r = tourist.post("/api/v1/sync-job", json={"browser": "FIREFOX", "steps": [{"url": site.url(f"/redirect?to={METADATA}")}]}, headers=h)
    assert r.status_code == 400 and "169.254.169.254" in r.json()["message"] and "blocked" in r.json()["message"]
    r = tourist.post("/api/v1/sync-job", json={"browser": "FIREFOX", "steps": [{"url": site.url("/pdf")}], "options": ["PDF"]}, headers=h,
                     timeout=60)
    assert r.status_code == 200, r.text  # the stack's worker runs firefox-esr through the relay: it prints
    assert r.json()["status"] == "success"
    assert "Printable heading" in " ".join(pdf_text(base64.b64decode(r.json()["result"]["pdf"])).split())  # (Firefox wraps it)
