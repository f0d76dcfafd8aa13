"""The model planner: any OpenAI-compatible chat-completions server with tool calling.

Hosted APIs, Ollama, vLLM and llama.cpp's server all speak it. Each step the
model gets the goal, the page observation (handles, roles, names, visible
text) and what its earlier calls did, and must call exactly one tool. A call
that fails (an unknown handle, a click that times out) is answered with the
error as the tool result, so the model can correct itself; it is not a job
failure until the step cap is reached.

Settings: ``SOJOURN_LLM_BASE_URL`` (e.g. http://127.0.0.1:11434/v1),
``SOJOURN_LLM_MODEL``, and the key in a Prefect Secret block named by
``SOJOURN_LLM_KEY_BLOCK`` (default ``sojourn-llm-key``; none for local servers).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from sojourn.agent.actions import AgentAction
from sojourn.agent.observe import Observation
from sojourn.job_errors import ErrorCode, JobError
from sojourn.settings import Settings

log = logging.getLogger(__name__)


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required}}}


_H = {"handle": {"type": "string", "description": "an element handle from the observation, e.g. e12"}}
TOOLS = [
    _tool("goto", "Open a URL (http or https).", {"url": {"type": "string"}}, ["url"]),
    _tool("click", "Click an element.", _H, ["handle"]),
    _tool("fill", "Type text into a field (replaces its value). Dates in YYYY-MM-DD for date fields.", {**_H, "text": {"type": "string"}}, ["handle", "text"]),
    _tool("select", "Choose an option of a <select> by its visible text.", {**_H, "option": {"type": "string"}}, ["handle", "option"]),
    _tool("check", "Tick or untick a checkbox or radio.", {**_H, "checked": {"type": "boolean"}}, ["handle"]),
    _tool("press", "Press a key (Enter, Tab, Escape, ArrowDown...), optionally in an element.", {"key": {"type": "string"}, **_H}, ["key"]),
    _tool("scroll", "Scroll the page.", {"direction": {"type": "string", "enum": ["up", "down"]}}, ["direction"]),
    _tool("wait_for", "Wait until a text appears, or for a number of seconds.", {"text": {"type": "string"}, "seconds": {"type": "number"}}, []),
    _tool("screenshot", "Take a screenshot of the page, with a short name.", {"name": {"type": "string"}}, []),
    _tool("finish", "Stop: the goal is met (or cannot be). Give the answer the user asked for.", {"answer": {"type": "string"}}, ["answer"]),
]

SYSTEM = (
    "You operate a web browser for a user. Each turn you get the page: its URL, title, interactive elements "
    "(handle, role, name, value, options) and visible text. Call exactly one tool per turn. Refer to elements only "
    "by their handle. When the goal is met, call finish with the answer the user asked for (a value, a short text). "
    "If a call fails you are told why; correct it."
)


async def llm_key(settings: Settings) -> str | None:
    """The model key from its Prefect Secret block (none for local servers without auth)."""
    if not settings.llm_key_block:
        return None
    try:
        from prefect.blocks.system import Secret

        secret = await Secret.aload(settings.llm_key_block)
        return str(secret.get())
    except Exception as exc:  # no block: a local server that needs no key
        log.info("no LLM key block %r (%s); calling the model without a key", settings.llm_key_block, type(exc).__name__)
        return None


class LLMPlanner:
    name = "llm"

    def __init__(self, goal: str, settings: Settings, key: str | None, *, want: str = "text", start_url: str | None = None) -> None:
        assert settings.llm_base_url and settings.llm_model
        self.goal = goal
        self.settings = settings
        self.model = settings.llm_model
        self.url = settings.llm_base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Goal: {goal}\nReturn: {'an answer text' if want == 'text' else 'finish when the page shows what was asked (a screenshot is taken)'}."},
        ]
        self._pending: str | None = None  # the tool call id awaiting its result

    def report(self, result: str) -> None:
        """What the last call did (or the error it met): the next request carries it."""
        if self._pending is not None:
            self.messages.append({"role": "tool", "tool_call_id": self._pending, "content": result[:2000]})
            self._pending = None

    async def next_action(self, obs: Observation, history: list[dict[str, Any]]) -> AgentAction:
        self.messages.append({"role": "user", "content": "Page now:\n" + json.dumps(obs.brief(), ensure_ascii=False)})
        body = {"model": self.model, "messages": self.messages, "tools": TOOLS, "tool_choice": "required", "temperature": 0}
        try:
            async with httpx.AsyncClient(timeout=self.settings.llm_timeout) as http:
                response = await http.post(self.url, json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise JobError(ErrorCode.BROWSER_ERROR, f"the model server at {self.settings.llm_base_url} did not answer: {exc}") from None
        if response.status_code != 200:
            raise JobError(ErrorCode.BROWSER_ERROR, f"the model server answered {response.status_code}: {response.text[:300]}")
        message = response.json()["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        self.messages.append({k: v for k, v in message.items() if k in ("role", "content", "tool_calls")})
        if not calls:
            # A model that answers in prose instead of calling finish: take the text as the answer.
            return AgentAction("finish", text=message.get("content") or "", label="Done")
        call = calls[0]
        self._pending = call.get("id") or "call"
        name = call["function"]["name"]
        try:
            args = json.loads(call["function"].get("arguments") or "{}")
        except json.JSONDecodeError:
            args = {}
        return self._action(name, args if isinstance(args, dict) else {})

    @staticmethod
    def _action(name: str, a: dict[str, Any]) -> AgentAction:
        handle = str(a.get("handle")) if a.get("handle") else None
        if name == "goto":
            return AgentAction("goto", url=str(a.get("url", "")), label=f"Opening {a.get('url')}")
        if name == "fill":
            return AgentAction("fill", handle=handle, text=str(a.get("text", "")), label=f"Filling {handle}")
        if name == "select":
            return AgentAction("select", handle=handle, text=str(a.get("option", "")), label=f"Choosing {a.get('option')}")
        if name == "check":
            return AgentAction("check" if a.get("checked", True) else "uncheck", handle=handle, label=f"Ticking {handle}")
        if name == "press":
            return AgentAction("press", key=str(a.get("key", "Enter")), handle=handle, label=f"Pressing {a.get('key')}")
        if name == "scroll":
            return AgentAction("scroll", text=str(a.get("direction", "down")), label="Scrolling")
        if name == "wait_for":
            seconds = a.get("seconds")
            return AgentAction("wait_for", text=a.get("text"), seconds=float(seconds) if isinstance(seconds, (int, float)) else None, label="Waiting")
        if name == "screenshot":
            return AgentAction("screenshot", text=str(a.get("name") or "screenshot"), label=f"Screenshot {a.get('name') or ''}".strip())
        if name == "finish":
            return AgentAction("finish", text=str(a.get("answer", "")), label="Done")
        if name == "click":
            return AgentAction("click", handle=handle, label=f"Clicking {handle}")
        return AgentAction(name, label=f"Unknown tool {name}")  # perform() answers it as an error the model can read
