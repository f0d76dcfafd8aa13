"""The moves an agent may make, and how each is carried out on the page.

A planner (built in or a model) only ever returns an :class:`AgentAction`:
a verb from a fixed list with plain-data arguments. Elements are addressed by
the observation's handles, never by selectors or code from the planner.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from sojourn.job_errors import ErrorCode, JobError

Verb = Literal["goto", "click", "fill", "select", "check", "uncheck", "press", "scroll", "wait_for", "read", "screenshot", "finish"]
VERBS: tuple[str, ...] = Verb.__args__  # type: ignore[attr-defined]
KEYS = {"enter": "Enter", "tab": "Tab", "escape": "Escape", "esc": "Escape", "space": "Space", "backspace": "Backspace",
        "arrowdown": "ArrowDown", "arrowup": "ArrowUp", "down": "ArrowDown", "up": "ArrowUp", "pagedown": "PageDown", "pageup": "PageUp"}


@dataclass
class AgentAction:
    verb: str
    handle: str | None = None
    text: str | None = None
    url: str | None = None
    key: str | None = None
    seconds: float | None = None
    label: str = ""  # what a person reads as the current step ("Filling From")
    clause: str = ""  # the instruction it came from (built-in planner)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}


def locator(page: Page, handle: str) -> Any:
    if not re.fullmatch(r"e\d{1,6}", handle or ""):
        raise JobError(ErrorCode.ACTION_FAILED, f"no element {handle!r} on the page (handles look like e12)")
    return page.locator(f'[data-sojourn-id="{handle}"]')


async def _settle(page: Page, timeout_ms: float) -> None:
    """After a click or a key: let a navigation it started finish loading (if there is none, return soon).

    The short pause lets a navigation the click triggers begin; without it the old,
    already loaded document answers at once and the next observation races the new one.
    """
    try:
        await page.wait_for_timeout(150)
        await page.wait_for_load_state(timeout=timeout_ms)
    except PlaywrightError:
        pass


async def screenshot(page: Page, attempts: int = 3) -> bytes:
    """A viewport PNG; a page caught mid-navigation ("Unable to capture screenshot") is given a moment."""
    for attempt in range(attempts):
        try:
            return await page.screenshot(full_page=False)
        except PlaywrightError:
            if attempt == attempts - 1:
                raise
            await _settle(page, 5000)
    raise AssertionError("unreachable")


async def perform(page: Page, action: AgentAction, timeout_ms: float = 10_000) -> str:
    """Carry out one action; returns a short note of what happened (a model reads it)."""
    v = action.verb
    try:
        if v == "goto":
            if not action.url or not re.match(r"^https?://", action.url, re.I):
                raise JobError(ErrorCode.INVALID_INPUT, f"goto needs an http(s) URL, not {action.url!r}")
            response = await page.goto(action.url, timeout=timeout_ms)
            if response is not None and (reason := response.headers.get("x-sojourn-blocked")):
                raise JobError(ErrorCode.URL_BLOCKED, f"{action.url} is blocked: {reason}")
            return f"opened {page.url} ({response.status if response else 'no response'})"
        if v in ("click", "fill", "select", "check", "uncheck"):
            target = locator(page, action.handle or "")
            if await target.count() == 0:
                raise JobError(ErrorCode.ACTION_FAILED, f"no element {action.handle!r} on the page")
            if v == "click":
                await target.first.click(timeout=timeout_ms)
                await _settle(page, timeout_ms)
                return f"clicked {action.handle}"
            if v == "fill":
                await target.first.fill(action.text or "", timeout=timeout_ms)
                return f"filled {action.handle} with {action.text!r}"
            if v == "select":
                try:
                    await target.first.select_option(label=action.text or "", timeout=timeout_ms)
                except PlaywrightError:
                    await target.first.select_option(value=action.text or "", timeout=timeout_ms)
                return f"selected {action.text!r} in {action.handle}"
            await target.first.set_checked(v == "check", timeout=timeout_ms)
            return f"{v}ed {action.handle}"
        if v == "press":
            key = KEYS.get((action.key or "").lower().replace(" ", ""), action.key or "Enter")
            if action.handle:
                await locator(page, action.handle).first.press(key, timeout=timeout_ms)
            else:
                await page.keyboard.press(key)
            await _settle(page, timeout_ms)
            return f"pressed {key}"
        if v == "scroll":
            await page.mouse.wheel(0, -800 if (action.text or "").lower() == "up" else 800)
            return "scrolled"
        if v == "wait_for":
            if action.seconds:
                await page.wait_for_timeout(min(action.seconds, 30) * 1000)
                return f"waited {action.seconds:g} s"
            await page.get_by_text(action.text or "", exact=False).first.wait_for(timeout=timeout_ms)
            return f"saw {action.text!r}"
        if v in ("read", "screenshot", "finish"):
            return v  # handled by the flow: they produce results, not page changes
    except PlaywrightError as exc:
        raise JobError(ErrorCode.ACTION_FAILED, f"{v} {action.handle or action.url or action.text or ''}: {str(exc).splitlines()[0]}") from None
    raise JobError(ErrorCode.INVALID_INPUT, f"unknown action {v!r}; one of {', '.join(VERBS)}")
