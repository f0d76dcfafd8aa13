"""The browse flow against a real Chromium, a real Prefect server and a local site."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.helpers import POPUP_LOADED, artifact_bytes, media_duration, pdf_text, png_image, run_failing_job, run_job

pytestmark = pytest.mark.usefixtures("pool")


def echo_extract() -> dict:
    return {"headers": "#headers", "cookies": "#cookies"}


# ------------------------------------------------------------------ captures


async def test_screenshot_is_a_png_of_the_page(site):
    m = await run_job({"steps": [{"url": site.url("/")}], "capture": {"screenshot": {"fullPage": False}}, "viewport": {"width": 800, "height": 600}})
    assert m.status == "completed"
    shot = m.artifact("screenshot")
    assert (shot.width, shot.height) == (800, 600)
    img = png_image(await artifact_bytes(m, "screenshot"))
    assert img.size == (800, 600)
    # The page is mostly white with dark heading text: both must be present.
    colors = img.convert("L").getcolors(maxcolors=1 << 16)
    assert max(colors)[1] > 240 and min(c for _, c in colors) < 80


async def test_full_page_screenshot_covers_the_whole_page(site):
    m = await run_job({"steps": [{"url": site.url("/long")}], "capture": ["screenshot"], "viewport": {"width": 640, "height": 480}})
    img = png_image(await artifact_bytes(m, "screenshot"))
    assert img.size[0] == 640 and img.size[1] > 3000


async def test_pdf_holds_the_page_text_and_honours_options(site):
    m = await run_job({"steps": [{"url": site.url("/pdf")}], "capture": {"pdf": {"format": "A4", "landscape": True, "margin": 20}}})
    data = await artifact_bytes(m, "pdf")
    text = pdf_text(data)
    assert "Printable heading" in text and "quick brown fox" in text
    from pypdf import PdfReader
    import io

    box = PdfReader(io.BytesIO(data)).pages[0].mediabox
    assert float(box.width) > float(box.height)  # landscape A4


async def test_pdf_custom_size(site):
    m = await run_job({"steps": [{"url": site.url("/pdf")}], "capture": {"pdf": {"size": {"width": "4in", "height": "2in"}, "media": "print"}}})
    from pypdf import PdfReader
    import io

    box = PdfReader(io.BytesIO(await artifact_bytes(m, "pdf"))).pages[0].mediabox
    assert round(float(box.width)) == 288 and round(float(box.height)) == 144  # points


@pytest.mark.slow
async def test_video_is_a_webm_with_duration(site, tmp_path):
    m = await run_job({"steps": [{"url": site.url("/animated"), "actions": ["page.waitForTimeout(1200)"]}], "capture": {"video": True}})
    data = await artifact_bytes(m, "video")
    assert data[:4] == b"\x1a\x45\xdf\xa3"  # EBML header
    assert media_duration(data, tmp_path) > 0.5


async def test_text_html_console_and_extract(site):
    m = await run_job(
        {
            "steps": [{"url": site.url("/table")}, {"url": site.url("/console")}],
            "capture": {"text": True, "html": True, "console": True},
            "extract": {"heading": "h1", "script": {"selector": "//head/script", "attribute": "html"}},
        }
    )
    assert m.data == {"heading": "console", "script": "console.log('hello from page'); console.warn('careful')"}  # from the last page
    assert "console" in (await artifact_bytes(m, "text")).decode()
    assert "<h1>console</h1>" in (await artifact_bytes(m, "html")).decode()
    assert {"type": "log", "text": "hello from page"} in m.console
    assert {"type": "warning", "text": "careful"} in m.console


async def test_extract_css_xpath_attributes_and_lists(site):
    m = await run_job(
        {
            "steps": [{"url": site.url("/table")}],
            "extract": {
                "first_name": ".name",
                "names": {"selector": ".name", "all": True},
                "cents": {"selector": "//td[@class='price']", "attribute": "data-cents", "all": True},
                "links": {"selector": "a.link", "attribute": "href", "all": True},
                "missing": "#nope",
                "cell_html": {"selector": "td.name", "attribute": "html"},
            },
        }
    )
    assert m.data == {
        "first_name": "Widget",
        "names": ["Widget", "Gadget"],
        "cents": ["1999", "2999"],
        "links": ["/a", "/b"],
        "missing": None,
        "cell_html": "Widget",
    }
    stored = json.loads(await artifact_bytes(m, "extract"))
    assert stored == m.data


async def test_manifest_describes_every_artifact(site, store):
    m = await run_job({"steps": [{"url": site.url("/")}], "capture": ["screenshot", "text"]})
    again = await store.read_manifest(m.job_id)
    assert again == m
    import hashlib

    for a in m.artifacts:
        data = await store.read_bytes(a.path)
        assert a.size == len(data) and a.sha256 == hashlib.sha256(data).hexdigest()
        assert a.path.startswith(f"jobs/{m.job_id}/")
    assert m.steps[0].title == "Home" and m.steps[0].status == 200


# ------------------------------------------------------------------ cookies and headers


async def test_cookies_reach_the_server(site):
    tag = uuid.uuid4().hex
    m = await run_job(
        {
            "steps": [{"url": site.url(f"/echo?t={tag}")}],
            "cookies": [
                {"name": "plain", "value": "v1"},
                {"name": "scoped", "value": "v2", "domain": "127.0.0.1", "path": "/echo", "httpOnly": True},
                {"name": "elsewhere", "value": "v3", "domain": "127.0.0.1", "path": "/other"},
            ],
            "extract": echo_extract(),
        }
    )
    cookies = json.loads(m.data["cookies"])
    assert cookies == {"plain": "v1", "scoped": "v2"}
    hit = [h for h in site.state.requests_to("/echo") if h.query.get("t") == [tag]][0]
    assert hit.cookies == {"plain": "v1", "scoped": "v2"}


async def test_samesite_cookies_follow_the_browser_rules(site):
    """Strict and Lax cookies stay home when another site frames the page."""
    tag = uuid.uuid4().hex
    framed = site.url(f"/echo?t={tag}")
    await run_job(
        {
            "steps": [{"url": site.url(f"/cross-site?frame={framed}", host="localhost")}],  # the step waits for `load`, frames included
            "cookies": [
                {"name": "strict", "value": "s", "domain": "127.0.0.1", "sameSite": "Strict"},
                {"name": "lax", "value": "l", "domain": "127.0.0.1", "sameSite": "Lax"},
                {"name": "unset", "value": "u", "domain": "127.0.0.1"},
            ],
        }
    )
    hit = [h for h in site.state.requests_to("/echo") if h.query.get("t") == [tag]][0]
    assert "strict" not in hit.cookies and "lax" not in hit.cookies

    tag2 = uuid.uuid4().hex
    await run_job(
        {
            "steps": [{"url": site.url(f"/echo?t={tag2}")}],
            "cookies": [
                {"name": "strict", "value": "s", "domain": "127.0.0.1", "sameSite": "Strict"},
                {"name": "lax", "value": "l", "domain": "127.0.0.1", "sameSite": "Lax"},
            ],
        }
    )
    direct = [h for h in site.state.requests_to("/echo") if h.query.get("t") == [tag2]][0]
    assert direct.cookies == {"strict": "s", "lax": "l"}


async def test_extra_headers_from_spec_page_and_context_reach_the_server(site):
    tag = uuid.uuid4().hex
    await run_job(
        {
            "steps": [
                {
                    "url": site.url(f"/echo?t={tag}"),
                    "actions": [
                        "page.setExtraHTTPHeaders({'X-Page': 'from-page'})",
                        "context.setExtraHTTPHeaders({'X-Context': 'from-context'});",
                    ],
                }
            ],
            "headers": {"X-Spec": "from-spec"},
            "userAgent": "SojournTest/1.0",
        }
    )
    hit = [h for h in site.state.requests_to("/echo") if h.query.get("t") == [tag]][0]
    assert hit.headers["x-spec"] == "from-spec"
    assert hit.headers["x-page"] == "from-page"
    assert hit.headers["x-context"] == "from-context"
    assert hit.headers["user-agent"] == "SojournTest/1.0"


async def test_steps_share_one_session(site):
    tag = uuid.uuid4().hex
    m = await run_job(
        {
            "steps": [
                {"url": site.url(f"/set-cookie?name=visit&value={tag}")},
                {"url": site.url("/echo")},
            ],
            "extract": echo_extract(),
        }
    )
    assert json.loads(m.data["cookies"]) == {"visit": tag}
    assert [s.index for s in m.steps] == [0, 1]


async def test_jobs_never_share_a_context(site):
    tag = uuid.uuid4().hex
    await run_job({"steps": [{"url": site.url(f"/set-cookie?name=leak&value={tag}")}]})
    m = await run_job({"steps": [{"url": site.url("/echo")}], "extract": echo_extract()})
    assert "leak" not in json.loads(m.data["cookies"])


# ------------------------------------------------------------------ actions


async def test_clicks_by_every_locator_kind(site):
    async def out_after(action: str) -> str:
        m = await run_job({"steps": [{"url": site.url("/buttons"), "actions": [action]}], "extract": {"out": "#out"}})
        return m.data["out"]

    assert await out_after("page.click('#one')") == "one"
    assert await out_after("await page.locator('#two').click();") == "two"
    assert await out_after('page.getByRole("button", { name: "Second button" }).click()') == "two"
    assert await out_after("page.get_by_role('button', name='One').click()") == "one"
    assert await out_after("page.getByText('One', {exact: true}).click()") == "one"
    assert await out_after("page.getByTestId('tid').click()") == "by test id"
    assert await out_after("page.dblclick('#dbl')") == "double"
    assert await out_after("page.hover('#hov')") == "hovered"
    assert await out_after('{"click": "#two"}') == "two"  # a structured action sent as a JSON string
    assert await out_after("page.locator('button').filter({hasText: 'Two'}).click()") == "two"


async def test_structured_actions(site):
    m = await run_job(
        {
            "steps": [
                {
                    "url": site.url("/form"),
                    "actions": [
                        {"fill": ["#q", "structured"]},
                        {"selectOption": ["#color", "blue"]},
                        {"check": "#agree"},
                        {"click": ["#go", {"timeout": 5000}]},
                    ],
                }
            ],
            "extract": {"query": "#query"},
        }
    )
    assert json.loads(m.data["query"]) == {"agree": ["yes"], "color": ["blue"], "q": ["structured"]}


async def test_form_actions_fill_type_press_select_check(site):
    m = await run_job(
        {
            "steps": [
                {
                    "url": site.url("/form"),
                    "actions": [
                        "page.getByLabel('Search').fill('flights')",
                        "page.type('#typed', 'ab')",
                        "page.press('#typed', 'Tab')",
                        "page.selectOption('#color', 'blue')",
                        "page.check('#agree')",
                        # the keys the page heard on #typed go along with the form
                        "page.evaluate(() => { const i = document.createElement('input'); i.type = 'hidden'; i.name = 'keys';"
                        " i.value = document.getElementById('keys').textContent.trim(); document.forms[0].appendChild(i); })",
                        "page.getByPlaceholder('Type here').press('Enter')",
                        "page.waitForURL('**/submitted**')",
                        "page.waitForLoadState('domcontentloaded')",
                    ],
                }
            ],
            "extract": {"query": "#query"},
        }
    )
    query = json.loads(m.data["query"])
    assert query == {"q": ["flights"], "typed": ["ab"], "color": ["blue"], "agree": ["yes"], "keys": ["a b Tab"]}
    assert m.steps[0].final_url.startswith(site.url("/submitted"))


async def test_keyboard_mouse_and_waits(site):
    typed = await run_job(
        {
            "steps": [
                {
                    "url": site.url("/form"),
                    "actions": [
                        "page.focus('#typed')",
                        "page.keyboard.type('xy')",
                        "page.keyboard.press('Enter')",  # submits the form
                        "page.waitForSelector('#query', {timeout: 5000})",
                    ],
                }
            ],
            "extract": {"query": "#query"},
        }
    )
    assert json.loads(typed.data["query"])["typed"] == ["xy"]

    async def mouse(actions: list) -> str:
        m = await run_job({"steps": [{"url": site.url("/mouse"), "actions": actions}], "extract": {"out": "#out"}})
        return m.data["out"]

    assert await mouse(["page.mouse.click(40, 30)", "page.waitForFunction('document.readyState === \"complete\"')"]) == "click 40,30"
    assert await mouse(["page.mouse.dblclick(120, 60)"]) == "double 120,60"
    assert await mouse(["page.mouse.move(300, 150)", "page.mouse.down()", "page.mouse.up()", "page.waitForTimeout(50)"]) == "click 300,150"


async def test_evaluate_runs_in_the_page_not_on_the_host(site):
    m = await run_job(
        {
            "steps": [
                {
                    "url": site.url("/"),
                    "actions": [
                        "page.evaluate('document.querySelector(\"h1\").textContent = typeof require + \"/\" + typeof process')",
                    ],
                }
            ],
            "extract": {"h1": "h1"},
        }
    )
    assert m.data["h1"] == "undefined/undefined"


async def test_dialogs_accept_dismiss_and_prompt_text(site):
    async def result(actions: list) -> str:
        m = await run_job({"steps": [{"url": site.url("/dialogs"), "actions": actions}], "extract": {"r": "#result"}})
        return m.data["r"]

    assert await result(["page.on('dialog', d => d.accept())", "page.click('#confirm')"]) == "confirmed"
    assert await result(["page.on('dialog', dialog => dialog.dismiss())", "page.click('#confirm')"]) == "declined"
    assert await result(["page.click('#confirm')"]) == "declined"  # unanswered dialogs are dismissed
    assert await result(["page.on('dialog', async d => { await d.accept('Ada'); })", "page.click('#prompt')"]) == "prompted:Ada"
    assert await result(["page.on('dialog', lambda d: d.accept('Bob'))", "page.click('#prompt')"]) == "prompted:Bob"
    assert await result([{"dialog": {"accept": "Cy"}}, "page.click('#prompt')"]) == "prompted:Cy"


async def test_alerts_are_read_from_the_page_and_popups(site):
    m = await run_job(
        {
            "steps": [
                {"url": site.url("/dialogs"), "actions": ["page.click('#alert')"]},
                {"url": site.url("/popup"), "actions": ["page.click('#open')", POPUP_LOADED]},
            ],
            "capture": {"alerts": True},
        }
    )
    assert m.messages == ["alert says hi", "loaded alert"]


async def test_redirects_and_anchors(site):
    m = await run_job(
        {
            "steps": [
                {"url": site.url("/redirect?to=/buttons")},
                {"url": site.url("/"), "actions": ["page.click('#to-echo')"]},
            ]
        }
    )
    assert m.steps[0].final_url == site.url("/buttons")
    assert m.steps[1].final_url == site.url("/echo")


async def test_goto_inside_actions(site):
    m = await run_job({"steps": [{"url": site.url("/"), "actions": [f"page.goto('{site.url('/table')}')"]}], "extract": {"n": ".name"}})
    assert m.data["n"] == "Widget"


# ------------------------------------------------------------------ failures, retries, timeouts


async def test_a_failing_action_names_the_step_and_action(site):
    state, err, manifest = await run_failing_job(
        {"steps": [{"url": site.url("/buttons"), "actions": ["page.click('#missing', {timeout: 300})"], "timeout": 5}]}
    )
    assert err["code"] == "TIMEOUT"
    assert "page.click('#missing'" in err["message"]
    details = dict(manifest.error["details"])
    assert details.pop("failureSnapshot")["url"] == site.url("/buttons")  # the page it failed on, kept
    assert details == {"step": 0, "action": "page.click('#missing', {timeout: 300})"}
    assert manifest.status == "failed"


async def test_navigation_failure_has_its_code(site):
    _, err, manifest = await run_failing_job({"steps": [{"url": f"http://127.0.0.1:{_closed_port()}/"}]})
    assert err["code"] == "NAVIGATION_FAILED"
    assert "ERR_CONNECTION_REFUSED" in err["message"]


async def test_a_step_that_fails_twice_succeeds_under_retries(site):
    key = uuid.uuid4().hex
    step = {"url": site.url(f"/flaky?key={key}&fail=2"), "actions": ["page.waitForSelector('#attempt', {timeout: 500})"]}
    m = await run_job({"steps": [step], "retries": 2, "retryDelay": 0.1, "extract": {"n": "#attempt"}})
    assert m.data["n"] == "3"
    assert site.state.counters[key] == 3
    assert m.steps[0].status == 200


async def test_without_retries_the_flaky_step_fails(site):
    key = uuid.uuid4().hex
    step = {"url": site.url(f"/flaky?key={key}&fail=1"), "actions": ["page.waitForSelector('#attempt', {timeout: 500})"]}
    _, err, manifest = await run_failing_job({"steps": [step]})
    assert err["code"] == "TIMEOUT" and "#attempt" in err["message"]
    assert site.state.counters[key] == 1
    assert manifest.error["details"]["step"] == 0


@pytest.mark.slow
async def test_job_timeout(site):
    _, err, manifest = await run_failing_job({"steps": [{"url": site.url("/never?s=20")}], "timeout": 2})
    assert err["code"] == "TIMEOUT"
    assert manifest.error["code"] == "TIMEOUT"


async def test_step_navigation_timeout(site):
    _, err, _ = await run_failing_job({"steps": [{"url": site.url("/never?s=10"), "timeout": 0.5}]})
    assert err["code"] == "TIMEOUT"


async def test_firefox_is_refused_when_not_installed(site, pool, monkeypatch, tmp_path):
    """A worker on a machine without Firefox: discovery looks where it always does and finds none.

    CI installs firefox-esr, so the places discovery looks are emptied for this test (the system paths, Playwright's
    browsers folder, the setting); everything after discovery is the real path a job takes.
    """
    from sojourn.browser import discovery

    monkeypatch.setattr(discovery, "SYSTEM_FIREFOX", ())
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))  # an empty browsers folder: no Playwright build
    monkeypatch.setattr(pool.settings, "firefox_executable", None)
    assert pool.choice("firefox") is None and pool.choice("chromium") is not None
    before, launched = pool.stats.contexts_opened, dict(pool.stats.by_kind)
    _, err, manifest = await run_failing_job({"browser": "FIREFOX", "steps": [{"url": site.url("/")}]})
    assert err["code"] == "BROWSER_UNAVAILABLE" and "no firefox browser is installed" in err["message"]
    assert "firefox-esr" in err["message"]  # it says what to install
    assert manifest is not None and manifest.error["code"] == "BROWSER_UNAVAILABLE"
    assert pool.stats.contexts_opened == before and pool.stats.by_kind == launched  # never fell back to Chromium


# ------------------------------------------------------------------ cache


async def test_cache_hit_opens_no_browser(site, pool):
    spec = {"steps": [{"url": site.url(f"/?c={uuid.uuid4().hex}")}], "capture": ["screenshot"], "cacheTtl": 60}
    first = await run_job(spec)
    opened = pool.stats.contexts_opened
    second = await run_job(spec)
    assert pool.stats.contexts_opened == opened
    assert second.cached_from == first.job_id and second.job_id != first.job_id
    assert second.artifact("screenshot").sha256 == first.artifact("screenshot").sha256
    # a different spec is not a hit
    third = await run_job({**spec, "capture": ["text"]})
    assert third.cached_from is None and pool.stats.contexts_opened == opened + 1


async def test_without_cache_ttl_nothing_is_cached(site, pool):
    spec = {"steps": [{"url": site.url(f"/?n={uuid.uuid4().hex}")}]}
    await run_job(spec)
    opened = pool.stats.contexts_opened
    m = await run_job(spec)
    assert m.cached_from is None and pool.stats.contexts_opened == opened + 1


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
async def test_har_lists_the_page_and_its_subresources_with_their_status(site, browser):
    """capture.har: the job's traffic as HAR 1.2 (Playwright's recorder), bodies embedded; a request the URL policy
    refuses is an entry with the refusal, never the refused content."""
    tag = uuid.uuid4().hex

    def url(path: str) -> str:  # the job may reach the site by the name localhost only
        return site.url(path, host="localhost")

    refused = site.url(f"/?refused={tag}")  # 127.0.0.1: not on the job's allow-list
    steps = [{"url": url(f"/slow-image?t={tag}")}, {"url": url(f"/flaky?key={tag}&fail=1")}, {"url": url("/cross-site?frame=" + refused)}]
    m = await run_job({"steps": steps, "browser": browser, "capture": {"har": True}, "urlAllow": ["localhost"]})
    har = json.loads(await artifact_bytes(m, "har"))
    entries = [(e["request"]["url"], e["response"]["status"]) for e in har["log"]["entries"]]
    assert har["log"]["version"] == "1.2" and har["log"]["pages"], har["log"].keys()
    assert (url(f"/slow-image?t={tag}"), 200) in entries, entries
    assert (url("/slow.png?ms=1500"), 200) in entries, entries  # the page's image
    assert (url(f"/flaky?key={tag}&fail=1"), 503) in entries, entries  # an error answer is recorded as it came
    page_entry = next(e for e in har["log"]["entries"] if e["request"]["url"] == url(f"/slow-image?t={tag}"))
    assert "slow" in page_entry["response"]["content"].get("text", ""), page_entry["response"]["content"]  # the body, embedded
    blocked = [e["response"] for e in har["log"]["entries"] if e["request"]["url"] == refused]
    assert blocked and all(r["status"] != 200 and "Hello Sojourn" not in r["content"].get("text", "") for r in blocked), blocked
    assert not any(h.query.get("refused") == [tag] for h in site.state.hits)  # it never reached the site
    assert m.artifact("har").name == "network.har" and m.artifact("har").content_type == "application/json"
