"""One job's browser session: its context, its page, and what it observed.

A :class:`JobSession` owns the job's fresh context and main page for the
job's whole life (steps share cookies and storage), answers dialogs the way
the job's actions asked, records console and ``alert()`` messages from every
page of the context (popups included), and runs parsed :class:`Action` s
through a fixed dispatch table: a method is only ever looked up by a name
from the allow-list in :mod:`sojourn.browser.actions`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from playwright.async_api import BrowserContext, Dialog, Error as PlaywrightError, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from sojourn.browser.actions import Action, parse_action
from sojourn.browser.egress import JobPolicy
from sojourn.browser.url_policy import url_host
from sojourn.job_errors import ErrorCode, JobError

log = logging.getLogger(__name__)

MAX_MESSAGES = 1000


@dataclass
class DialogPolicy:
    method: str = "dismiss"  # what to do with a dialog nobody asked about
    args: tuple[Any, ...] = ()
    once: bool = False


@dataclass
class StepOutcome:
    index: int
    url: str
    final_url: str = ""
    title: str = ""
    status: int | None = None
    duration_ms: int = 0


class JobSession:
    def __init__(self, context: BrowserContext, page: Page, *, step_timeout: float, policy: JobPolicy | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.context = context
        self.headers = dict(headers or {})  # the job's own headers, set on the context when it was made
        self.page = page
        self.policy = policy
        self.step_timeout_ms = step_timeout * 1000
        self.console: list[dict[str, Any]] = []
        self.alerts: list[str] = []
        self.dialogs: list[dict[str, Any]] = []
        self.policies: list[DialogPolicy] = []
        self.mid_step_screenshots: list[bytes] = []
        # Context-wide listeners exist before any popup does, so a popup's
        # alert() on load is seen (a per-page listener attached on the "page"
        # event can come too late, and Playwright auto-dismisses unheard dialogs).
        context.on("dialog", self._on_dialog)
        context.on("console", self._on_console)

    # ------------------------------------------------------------------ observers
    def _on_console(self, msg: Any) -> None:
        if len(self.console) < MAX_MESSAGES:
            self.console.append({"type": msg.type, "text": msg.text})

    async def _on_dialog(self, dialog: Dialog) -> None:
        if dialog.type == "alert" and len(self.alerts) < MAX_MESSAGES:
            self.alerts.append(dialog.message)
        policy = self.policies[-1] if self.policies else DialogPolicy()
        if policy.once and self.policies:
            self.policies.pop()
        if len(self.dialogs) < MAX_MESSAGES:
            self.dialogs.append({"type": dialog.type, "message": dialog.message, "answer": policy.method})
        try:
            if policy.method == "accept":
                await dialog.accept(*policy.args)
            else:
                await dialog.dismiss()
        except PlaywrightError:  # page closed under it
            pass

    # ------------------------------------------------------------------ steps
    async def run_step(self, index: int, url: str, actions: list[Any], *, wait_until: str, timeout: float | None) -> StepOutcome:
        """Actions that set handlers/headers/timeouts, then navigation, then the rest."""
        timeout_ms = (timeout * 1000) if timeout else self.step_timeout_ms
        self.page.set_default_timeout(timeout_ms)
        self.page.set_default_navigation_timeout(timeout_ms)
        parsed = [parse_action(a) for a in actions]
        outcome = StepOutcome(index=index, url=url)
        started = time.perf_counter()
        for action in (a for a in parsed if a.phase == "before"):
            await self._run(index, action)
        blocked_before = len(self.policy.blocked) if self.policy else 0
        if self.policy is not None:
            decision = await self.policy.check(url_host(url))  # through the job's host map, as the proxy does
            if not decision.allowed:
                self.policy.record(url, decision.reason)
                raise JobError(ErrorCode.URL_BLOCKED, f"step {index}: {url} is blocked: {decision.reason}", step=index)
        try:
            response = await self.page.goto(url, wait_until=wait_until)  # type: ignore[arg-type]
        except PlaywrightTimeout as exc:
            raise JobError(ErrorCode.TIMEOUT, f"step {index}: loading {url} timed out ({_first_line(exc)})", step=index) from None
        except PlaywrightError as exc:
            blocked = self.policy.blocked[blocked_before:] if self.policy else []
            if blocked:  # a redirect (or the tunnel) went somewhere the policy refuses
                raise JobError(ErrorCode.URL_BLOCKED, f"step {index}: loading {url} reached {blocked[-1]['url']}, which is blocked: {blocked[-1]['reason']}", step=index) from None
            raise JobError(ErrorCode.NAVIGATION_FAILED, f"step {index}: could not load {url}: {_first_line(exc)}", step=index) from None
        if response is not None and (reason := response.headers.get("x-sojourn-blocked")):
            raise JobError(ErrorCode.URL_BLOCKED, f"step {index}: loading {url} reached {response.url}, which is blocked: {reason}", step=index)
        if response is not None and (net := response.headers.get("x-sojourn-upstream-error")):
            raise JobError(ErrorCode.NAVIGATION_FAILED, f"step {index}: could not load {response.url}: {net}", step=index)
        outcome.status = response.status if response else None
        for action in (a for a in parsed if a.phase == "after"):
            await self._run(index, action)
            try:
                await self.page.wait_for_load_state()
            except PlaywrightError:
                pass
        outcome.final_url = self.page.url
        try:
            outcome.title = await self.page.title()
        except PlaywrightError:
            outcome.title = ""
        outcome.duration_ms = int((time.perf_counter() - started) * 1000)
        return outcome

    async def _run(self, index: int, action: Action) -> None:
        log.info("step %s: %s", index, action.describe())
        try:
            await self.dispatch(action)
        except JobError:
            raise
        except PlaywrightTimeout as exc:
            raise JobError(ErrorCode.TIMEOUT, f"step {index}: `{action.describe()}` timed out: {_first_line(exc)}", step=index, action=action.describe()) from None
        except (PlaywrightError, AttributeError, TypeError, ValueError) as exc:
            raise JobError(ErrorCode.ACTION_FAILED, f"step {index}: `{action.describe()}` failed: {_first_line(exc)}", step=index, action=action.describe()) from None

    async def dispatch(self, action: Action) -> Any:
        page, context = self.page, self.context
        m, args, kw = action.method, action.args, action.kwargs
        if action.target == "dialog":
            self.policies.append(DialogPolicy(m, args, bool(kw.get("once"))))
            return None
        if action.target == "context":
            if m == "set_extra_http_headers" and args and isinstance(args[0], dict):
                # Playwright replaces the context's headers; the job's own `headers` stay unless named again.
                args = ({**self.headers, **args[0]}, *args[1:])
            return await _CONTEXT[m](context, *args, **kw)
        if action.target == "keyboard":
            return await _KEYBOARD[m](page.keyboard, *args, **kw)
        if action.target == "mouse":
            return await _MOUSE[m](page.mouse, *args, **kw)
        if action.target == "locator":
            return await _LOCATOR[m](self._locator(action), *args, **kw)
        if m == "screenshot":
            self.mid_step_screenshots.append(await page.screenshot(**kw))
            return None
        if m == "wait_for_timeout":
            return await page.wait_for_timeout(float(args[0]))
        return await _PAGE[m](page, *args, **kw)

    def _locator(self, action: Action) -> Any:
        target: Any = self.page
        for step in action.locator:
            target = _BUILDERS[step.method](target, *step.args, **step.kwargs)
        return target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # Playwright appends a call log; the first line says what happened.
    return text.splitlines()[0] if text else type(exc).__name__


# The dispatch tables: allow-listed names → the Playwright method. Built from
# explicit names, never from the action text.
def _method_table(cls: type, names: Any) -> dict[str, Any]:
    return {n: getattr(cls, n) for n in names}


def _tables() -> None:
    from playwright.async_api import Keyboard, Locator, Mouse

    from sojourn.browser import actions as A

    global _PAGE, _CONTEXT, _KEYBOARD, _MOUSE, _LOCATOR, _BUILDERS
    _PAGE = _method_table(Page, [n for n in A.PAGE_METHODS if n not in ("screenshot", "wait_for_timeout")])
    _CONTEXT = _method_table(BrowserContext, A.CONTEXT_METHODS)
    _KEYBOARD = _method_table(Keyboard, A.KEYBOARD_METHODS)
    _MOUSE = _method_table(Mouse, A.MOUSE_METHODS)
    _LOCATOR = _method_table(Locator, A.LOCATOR_METHODS)
    builders: dict[str, Any] = {}
    for name in A.LOCATOR_BUILDERS:
        if name in ("first", "last"):
            builders[name] = (lambda prop: (lambda target: getattr(target, prop)))(name)
        elif name == "filter":
            builders[name] = lambda target, **kw: target.filter(**kw)
        else:
            builders[name] = (lambda n: (lambda target, *a, **kw: getattr(target, n)(*a, **kw)))(name)
    _BUILDERS = builders


_PAGE: dict[str, Any] = {}
_CONTEXT: dict[str, Any] = {}
_KEYBOARD: dict[str, Any] = {}
_MOUSE: dict[str, Any] = {}
_LOCATOR: dict[str, Any] = {}
_BUILDERS: dict[str, Any] = {}
_tables()

