"""Plain-English jobs: the built-in planner on local mini-sites, the model planner against a scripted server."""

from __future__ import annotations

import base64
import json
import uuid
import re
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sojourn.blocks.artifact_store import ArtifactStore, Manifest
from sojourn.job_errors import parse_error
from sojourn.flows import agent
from sojourn.settings import configure, get_settings
from tests.helpers import artifact_bytes, png_image
from tests.minisites import PRODUCTS
from tests.test_runtime import wait_for


async def ask(goal: str, image: bool = False) -> Manifest:
    spec = {"kind": "agent", "goal": goal}
    if image:
        spec["capture"] = {"screenshot": {"fullPage": False}}
    return Manifest.model_validate(await agent(spec))


async def refused(goal: str) -> dict:
    state = await agent({"kind": "agent", "goal": goal}, return_state=True)
    assert state.is_failed(), state
    return parse_error(state.message)


def next_july_6() -> str:
    today = date.today()
    d = date(today.year, 7, 6)
    return (d if d >= today else date(today.year + 1, 7, 6)).isoformat()


# The phrasings a person might write, and what the page must give back.
PHRASINGS = [
    ("Go to {flights}, search for flights from Amsterdam to Palma on July 6th and return the cheapest price", lambda a: a == "€91"),
    ("Open {flights} then type Amsterdam into From, enter Palma in To, set the departure date to 2026-07-06, click Search flights and return the highest price", lambda a: a == "€132"),
    ("Visit {flights}. Fill in From with Berlin, fill To with Rome, set Date to July 6th, press Enter, then read the heading",
     lambda a: a == f"Flights from Berlin to Rome on {next_july_6()}"),
    ("go to {shop}, search for desk lamp, click the first result and tell me the price", lambda a: a == "€49.00"),
    ("Open {shop} and search for 'lamp', then return the cheapest price", lambda a: a == "€19.99"),
    ("Go to {shop}, search for lamp and get the price of the Brass lamp", lambda a: a == "€79.50"),
    ("Navigate to {shop}, search for chair, click Oak chair and read the title", lambda a: a == "Oak chair – Shop"),
    ("go to {shop} then search for desk lamp and wait for Results, then return the first price", lambda a: a == "€49.00"),
    ("go to {signup}, type Ada Lovelace into Full name, type ada@example.com into Email, select Germany from Country, "
     "check I agree to the terms, click Next, choose Pro as plan, click Finish and read the confirmation message",
     lambda a: "Thank you, Ada Lovelace! Your Pro plan is confirmed for ada@example.com in Germany." in a),
    ("Start at {signup}; fill Full name with Grace Hopper, put grace@navy.mil in the email address, pick Canada in Country, "
     "tick the terms box, press Next, select Basic, hit Finish, then extract the text of the confirmation",
     lambda a: "Grace Hopper" in a and "Basic plan" in a and "Canada" in a),
    ("go to {flights} and return the page title", lambda a: a == "Fly Cheap – flight search"),
    ("Please open {flights}, search for flights from Oslo to Nice on 24 December 2026, wait 1 second and report the lowest fare",
     lambda a: a == "€90"),
]


@pytest.mark.parametrize("goal,check", PHRASINGS, ids=[f"phrasing-{i}" for i in range(len(PHRASINGS))])
async def test_the_builtin_planner_follows_plain_english(site, goal, check):
    m = await ask(goal.format(flights=site.url("/flights"), shop=site.url("/shop"), signup=site.url("/signup")))
    assert m.status == "completed" and check(m.answer), (m.answer, m.data["moves"])
    assert m.data["planner"] == "builtin"
    # every move left a named screenshot, and the job knows where it went
    shots = [a for a in m.artifacts if a.kind == "screenshot"]
    assert shots and all(a.step_name for a in shots)
    assert m.data["urlsVisited"][0].startswith(site.url("/"))


async def test_the_flight_form_was_filled_as_told(site):
    await ask(f"Go to {site.url('/flights')}, search for flights from Lisbon to Porto on 2026-12-01 and return the cheapest price")
    hit = [h for h in site.state.requests_to("/flights/results") if h.query.get("from") == ["Lisbon"]][-1]
    assert hit.query == {"from": ["Lisbon"], "to": ["Porto"], "date": ["2026-12-01"]}


# "uncheck": the account form's two boxes are ticked by default; what the server receives says which the agent cleared.
UNCHECKING = [
    ("Go to {account}, type {email} into Email, uncheck the newsletter box, click Create account and read the confirmation",
     {"remember": ["on"]}, "Newsletter: no. Stay signed in: yes."),
    ("Open {account} then fill Email with {email}, untick Email me the weekly newsletter, uncheck Keep me signed in "
     "and press Create account, then read the confirmation",
     {}, "Newsletter: no. Stay signed in: no."),
    # the control: told nothing about the boxes, the agent leaves them ticked and the browser sends both
    ("Go to {account}, type {email} into Email, click Create account and read the confirmation",
     {"newsletter": ["on"], "remember": ["on"]}, "Newsletter: yes. Stay signed in: yes."),
]


def test_untick_and_untick_are_two_instructions():
    from sojourn.agent.builtin import parse_instructions

    clauses = parse_instructions("go to http://x/account, untick the newsletter box and untick Keep me signed in")
    assert [(c.kind, c.args.get("ref")) for c in clauses] == [("goto", None), ("check", "newsletter box"), ("check", "Keep me signed in")]


@pytest.mark.parametrize("goal", ["On http://x.test:8000/shop, what is the price of the blue kettle?",
                                  "At http://x.test:8000/shop: tell me the price of the blue kettle",
                                  "On the page http://x.test:8000/shop read the price of the blue kettle"])
def test_a_page_named_first_is_opened_first(goal):
    """#25 (the held-out set's first finding): the place first, as people write it ("On <url>, ..."), is a visit."""
    from sojourn.agent.builtin import parse_instructions

    clauses = parse_instructions(goal)
    assert [(c.kind, c.args.get("url") or c.args.get("what")) for c in clauses] == [("goto", "http://x.test:8000/shop"), ("read", "price of the blue kettle")]


@pytest.mark.parametrize("goal,boxes,confirmation", UNCHECKING, ids=["uncheck-one", "clear-both", "leave-ticked"])
async def test_unchecking_a_box_leaves_it_out_of_what_the_form_sends(site, goal, boxes, confirmation):
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    m = await ask(goal.format(account=site.url("/account"), email=email))
    assert m.status == "completed", m.data["moves"]
    sent = [h.query for h in site.state.requests_to("/account/done") if h.query.get("email") == [email]]
    assert sent == [{"email": [email], **boxes}]
    assert m.answer == f"Account created for {email}. {confirmation}"
    unchecked = [mv for mv in m.data["moves"] if mv["verb"] == "uncheck"]
    assert len(unchecked) == 2 - len(boxes)


# "last": the mug results are Stone €12.50, Glass €6.00, Travel €24.00, Enamel €9.75 (in that order); the flight
# results for Amsterdam–Palma are €132, €91, €105. A first, cheapest or highest pick answers something else.
LAST = [
    ("Go to {shop}, search for mug and return the last price", "€9.75"),
    ("Open {shop}, search for 'mug', then tell me the last price", "€9.75"),
    ("Go to {flights}, search for flights from Amsterdam to Palma on July 6th and return the last price", "€105"),
    ("go to {shop}, search for mug, click the last result and read the title", "Enamel mug – Shop"),
]


async def test_the_second_result_is_the_second_and_a_third_that_is_not_there_is_named(site):
    m = await ask(f"go to {site.url('/shop')}, search for chair, click the second result and read the title")
    assert m.status == "completed" and m.answer == "Desk chair – Shop", (m.answer, m.data["moves"])
    err = await refused(f"go to {site.url('/shop')}, search for chair, click the third result and read the title")
    assert err["code"] == "ACTION_FAILED" and "only 2 results" in err["message"], err


def test_the_mug_results_tell_first_last_cheapest_and_highest_apart():
    prices = [float(price.lstrip("€")) for name, price in PRODUCTS.values() if "mug" in name.lower()]
    assert prices[-1] == 9.75 and len({prices[0], prices[-1], min(prices), max(prices)}) == 4


@pytest.mark.parametrize("goal,answer", LAST, ids=[f"last-{i}" for i in range(len(LAST))])
async def test_the_builtin_planner_picks_the_last_of_a_list(site, goal, answer):
    m = await ask(goal.format(flights=site.url("/flights"), shop=site.url("/shop")))
    assert m.status == "completed" and m.answer == answer, (m.answer, m.data["moves"])


# SOJOURN_AGENT_MAX_STEPS: this goal takes five moves (open, fill the search box, click Search, read, finish).
FIVE_MOVES = "Go to {shop}, search for mug and return the last price"


@pytest.mark.parametrize("limit", [1, 4])
async def test_a_goal_needing_more_moves_than_agent_max_steps_fails(site, limit):
    configure(agent_max_steps=limit)
    try:
        state = await agent({"kind": "agent", "goal": FIVE_MOVES.format(shop=site.url("/shop"))}, return_state=True)
    finally:
        configure()
    assert state.is_failed(), state
    err = parse_error(state.message)
    assert err == {"code": "TIMEOUT", "message": f"the goal was not reached in {limit} moves (SOJOURN_AGENT_MAX_STEPS)"}, state.message
    manifest = await ArtifactStore.from_settings().read_manifest(str(state.state_details.flow_run_id))
    assert manifest is not None and manifest.status == "failed" and manifest.error["code"] == "TIMEOUT"
    assert [mv["verb"] for mv in manifest.data["moves"]] == ["goto", "fill", "click", "read"][:limit]  # it stopped at the limit


@pytest.mark.parametrize("limit", [5, None], ids=["exactly-enough", "default"])
async def test_the_same_goal_succeeds_within_agent_max_steps(site, limit):
    configure(**({"agent_max_steps": limit} if limit else {}))
    try:
        assert get_settings().agent_max_steps == (limit or 30)  # 30: the documented default
        m = await ask(FIVE_MOVES.format(shop=site.url("/shop")))
    finally:
        configure()
    assert m.status == "completed" and m.answer == "€9.75", (m.answer, m.data["moves"])
    assert [mv["verb"] for mv in m.data["moves"]] == ["goto", "fill", "click", "read", "finish"]


async def test_the_image_type_returns_a_png_of_the_final_page(site):
    m = await ask(f"Go to {site.url('/flights')}, search for flights from Oslo to Nice on 2026-12-24, then take a screenshot", image=True)
    assert m.status == "completed"
    final = [a for a in m.artifacts if a.kind == "screenshot"][-1]
    assert final.step_name == "Final page"
    img = png_image(await artifact_bytes(Manifest(job_id=m.job_id, status="x", artifacts=[final]), "screenshot"))
    assert img.size == (1280, 720)
    assert "Flights from Oslo to Nice" in json.dumps(m.data["moves"]) or m.steps[-1].title.startswith("Flights Oslo")


async def test_an_instruction_it_cannot_understand_is_named(site):
    err = await refused(f"Go to {site.url('/shop')} and make me a sandwich")
    assert err["code"] == "INVALID_INPUT" and "'make me a sandwich'" in err["message"]


async def test_an_element_it_cannot_find_is_named_with_what_the_page_has(site):
    err = await refused(f"Go to {site.url('/shop')} and click the Checkout button")
    assert err["code"] == "ACTION_FAILED"
    assert "Checkout" in err["message"] and "'Search'" in err["message"]


async def test_agent_jobs_obey_the_url_policy(site):
    err = await refused("Go to http://169.254.169.254/latest/meta-data/ and return the page title")
    assert err["code"] == "URL_BLOCKED"


# ---------------------------------------------------------------------- the model planner


class ScriptedModel:
    """Stands in for an OpenAI-compatible model server (there is no model on this machine).

    It answers chat completions with tool calls a script decides from the
    observation it is sent, and makes one deliberate mistake (a handle that does
    not exist) to check that the planner tells it and it can recover.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                call = outer.decide(body["messages"])
                reply = {"id": "cmpl", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "tool_calls",
                                      "message": {"role": "assistant", "content": None, "tool_calls": [
                                          {"id": f"call{len(outer.requests)}", "type": "function",
                                           "function": {"name": call[0], "arguments": json.dumps(call[1])}}]}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.start: str = ""

    def decide(self, messages: list[dict]) -> tuple[str, dict]:
        page = json.loads(messages[-1]["content"].split("\n", 1)[1])
        tool_results = [m["content"] for m in messages if m.get("role") == "tool"]

        def handle(name: str) -> str:
            return next(e["handle"] for e in page["elements"] if e["name"] == name)

        if page["url"] == "about:blank":
            return "goto", {"url": self.start}
        if page["url"].startswith(self.start) and not any("error" in r for r in tool_results):
            return "click", {"handle": "e999"}  # the mistake
        if "/flights/results" not in page["url"]:
            if not any(e.get("value") for e in page["elements"] if e["name"] == "From"):
                return "fill", {"handle": handle("From"), "text": "Amsterdam"}
            if not any(e.get("value") for e in page["elements"] if e["name"] == "To"):
                return "fill", {"handle": handle("To"), "text": "Palma"}
            if not any(e.get("value") for e in page["elements"] if e["name"] == "Departure date"):
                return "fill", {"handle": handle("Departure date"), "text": "2026-07-06"}
            return "click", {"handle": handle("Search flights")}
        prices = [t for t in page["text"] if re.fullmatch(r"€\d+", t)]
        return "finish", {"answer": min(prices, key=lambda p: int(p[1:]))}


async def test_the_model_planner_follows_tool_calls_and_recovers_from_a_wrong_one(site):
    """The model is a scripted stand-in (an LLM endpoint cannot exist here); its key comes from a real Prefect Secret block."""
    from prefect.blocks.system import Secret

    model = ScriptedModel()
    model.start = site.url("/flights")
    block, key = f"llm-key-{uuid.uuid4().hex[:8]}", "sk-test-" + uuid.uuid4().hex
    await Secret(value=key).save(block)
    configure(llm_base_url=model.url, llm_model="scripted-test-model", llm_key_block=block)
    try:
        m = await ask("Find the cheapest flight from Amsterdam to Palma on July 6th 2026 and return its price")
    finally:
        configure()
    assert m.status == "completed" and m.answer == "€91"
    assert m.data["planner"] == "llm"
    moves = m.data["moves"]
    assert moves[1]["verb"] == "click" and moves[1]["result"].startswith("error:")  # the wrong call, told back
    sent_back = [msg for msg in model.requests[2]["body"]["messages"] if msg.get("role") == "tool"]
    assert any("e999" in msg["content"] for msg in sent_back)
    assert model.requests[0]["body"]["tools"] and model.requests[0]["body"]["model"] == "scripted-test-model"
    assert {r["auth"] for r in model.requests} == {f"Bearer {key}"}  # every call carries the block's key


# ---------------------------------------------------------------------- over HTTP


def test_plain_english_jobs_over_the_native_api(stack, site):
    with stack.client() as http:
        goal = f"Go to {site.url('/flights')}, search for flights from Amsterdam to Palma on July 6th and return the cheapest price"
        r = http.post("/api/v1/jobs", json={"type": "browseWebAndReturnText", "input": {"provideAllValuesInPlainEnglish": goal}})
        assert r.status_code == 202, r.text
        job = wait_for(http, r.json()["jobId"], timeout=90)
        assert job["status"] == "completed", job
        assert job["result"]["type"] == "text" and job["result"]["data"] == "€91"
        meta = job["result"]["metadata"]
        assert meta["planner"] == "builtin" and meta["stepsTaken"] >= 5 and meta["urlsVisited"][0] == site.url("/flights")
        shots = http.get(f"/api/v1/jobs/{job['id']}/screenshots").json()["screenshots"]
        assert [s["step"] for s in shots][:2] == [f"Opening {site.url('/flights')}", "Filling From"]

        r = http.post("/api/v1/jobs", json={"type": "browseWebAndReturnImage", "input": {"provideAllValuesInPlainEnglish": f"open {site.url('/shop')}"}})
        job = wait_for(http, r.json()["jobId"], timeout=90)
        assert job["status"] == "completed" and job["result"]["type"] == "image"
        # the spec's `data` is "string or base64": the final screenshot itself, as a data URL; its id stays in screenshots
        prefix = "data:image/png;base64,"
        assert job["result"]["data"].startswith(prefix)
        image = base64.b64decode(job["result"]["data"][len(prefix):])
        assert image == http.get(f"/api/v1/screenshots/{job['result']['screenshots'][-1]}").content
        png_image(image)
        assert all("_" not in k for mv in job["result"]["metadata"]["moves"] for k in mv)  # one casing, the spec's

        r = http.post("/api/v1/jobs", json={"type": "browseWebAndReturnText", "input": {"provideAllValuesInPlainEnglish": f"go to {site.url('/shop')} and dance"}})
        job = wait_for(http, r.json()["jobId"], timeout=60)
        assert job["status"] == "failed" and job["error"]["code"] == "INVALID_INPUT" and "'dance'" in job["error"]["message"]
        r = http.post("/api/v1/jobs", json={"type": "browseWebAndReturnText", "input": {}})
        assert r.status_code == 422 and "provideAllValuesInPlainEnglish" in r.json()["error"]["message"]
