"""Warm browsers, one fresh context per job.

One browser per kind per event loop, launched on first use. Every job gets
its own :class:`~playwright.async_api.BrowserContext` (cookies, storage and
cache never cross jobs), closed when the job ends. After
``contexts_per_browser`` jobs a browser is retired: new jobs go to a fresh
launch and the old one closes when its last job ends. A browser that
disconnects (crash, kill) is replaced on the next job.
"""

from __future__ import annotations

import asyncio
import os
import logging
import tempfile
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from playwright.async_api import Browser, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from sojourn.browser.egress import EgressProxy, JobPolicy
from sojourn.browser import bidi_relay
from sojourn.browser.discovery import CHROMIUM_ARGS, FIREFOX_PREFS, BrowserChoice, ensure_ffmpeg, find_browser, sandbox_args
from sojourn.job_errors import ErrorCode, JobError
from sojourn.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class _Launched:
    browser: Browser
    kind: str
    served: int = 0
    active: int = 0
    retiring: bool = False


@dataclass
class PoolStats:
    launches: int = 0
    contexts_opened: int = 0
    contexts_open: int = 0
    crashes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class ContextHandle:
    """What a job gets: its context and page; after exit, its video file."""

    context: Any
    page: Any
    video_dir: Path | None = None
    trace_path: Path | None = None
    video_path: Path | None = None
    har_path: Path | None = None  # written by Playwright when the context closes


class BrowserPool:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._pw: Playwright | None = None
        self._current: dict[str, _Launched] = {}
        self._lock = asyncio.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="sojourn-pool-"))
        self.stats = PoolStats()
        self.egress = EgressProxy()
        self._warned_sandbox = False

    # -------------------------------------------------------------- availability
    def _configured(self, kind: str) -> str | None:
        return self.settings.chromium_executable if kind == "chromium" else self.settings.firefox_executable

    def choice(self, kind: str) -> BrowserChoice | None:
        return find_browser(kind, self._configured(kind))

    def require(self, kind: str) -> BrowserChoice:
        choice = self.choice(kind)
        if choice is None:
            if configured := self._configured(kind):
                raise JobError(
                    ErrorCode.BROWSER_UNAVAILABLE,
                    f"no {kind} browser on this worker: SOJOURN_{kind.upper()}_EXECUTABLE names {configured}, which does not exist",
                )
            raise JobError(
                ErrorCode.BROWSER_UNAVAILABLE,
                f"no {kind} browser is installed on this worker"
                + (" (install firefox-esr, or set SOJOURN_FIREFOX_EXECUTABLE to a Firefox)" if kind == "firefox" else ""),
            )
        return choice

    # -------------------------------------------------------------- browsers
    async def _playwright(self) -> Playwright:
        if self._pw is None:
            self._pw = await async_playwright().start()
        return self._pw

    async def _launch(self, kind: str) -> _Launched:
        choice = self.require(kind)
        pw = await self._playwright()
        kwargs: dict[str, Any] = {"headless": self.settings.headless}
        if choice.executable:
            kwargs["executable_path"] = choice.executable
        try:
            if kind == "chromium":
                sandbox = sandbox_args()
                if sandbox and not self._warned_sandbox:
                    self._warned_sandbox = True
                    log.warning(
                        "Chromium runs WITHOUT its sandbox (%s): a page that exploits the renderer runs as this user. "
                        "Run workers as a non-root user to keep the sandbox.",
                        "running as root" if os.geteuid() == 0 else "SOJOURN_CHROMIUM_NO_SANDBOX is set",
                    )
                try:
                    browser = await pw.chromium.launch(args=CHROMIUM_ARGS + sandbox, **kwargs)
                except PlaywrightError as exc:
                    if sandbox or "sandbox" not in str(exc).lower():
                        raise
                    log.warning("Chromium could not start its sandbox here (%s); starting without it", str(exc).splitlines()[0])
                    browser = await pw.chromium.launch(args=CHROMIUM_ARGS + ["--no-sandbox"], **kwargs)
            elif choice.bidi:
                # A stock Firefox speaks WebDriver BiDi; the relay smooths over what an ESR does not know yet.
                kwargs["executable_path"] = str(bidi_relay.launcher(self._tmp, choice.executable or "firefox"))
                browser = await pw.firefox.launch(channel="moz-firefox", firefox_user_prefs=FIREFOX_PREFS, **kwargs)
            else:
                browser = await pw.firefox.launch(firefox_user_prefs=FIREFOX_PREFS, **kwargs)
        except PlaywrightError as exc:
            raise JobError(ErrorCode.BROWSER_UNAVAILABLE, f"{kind} failed to launch: {str(exc).splitlines()[0]}") from None
        launched = _Launched(browser, kind)
        browser.on("disconnected", lambda _b: self._on_disconnect(launched))
        self.stats.launches += 1
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        log.info("launched %s %s (%s%s)", kind, browser.version, choice.source, ", WebDriver BiDi" if choice.bidi else "")
        return launched

    def _on_disconnect(self, launched: _Launched) -> None:
        if self._current.get(launched.kind) is launched:
            del self._current[launched.kind]
            if not launched.retiring:
                self.stats.crashes += 1
                log.warning("%s disconnected; the next job relaunches it", launched.kind)

    async def _acquire(self, kind: str) -> _Launched:
        async with self._lock:
            cur = self._current.get(kind)
            if cur is not None and (not cur.browser.is_connected() or cur.served >= self.settings.contexts_per_browser):
                cur.retiring = True
                del self._current[kind]
                if cur.active == 0:
                    asyncio.ensure_future(_close_quietly(cur.browser))
                cur = None
            if cur is None:
                cur = await self._launch(kind)
                self._current[kind] = cur
            cur.served += 1
            cur.active += 1
            return cur

    def _release(self, launched: _Launched) -> None:
        launched.active -= 1
        if launched.retiring and launched.active == 0:
            asyncio.ensure_future(_close_quietly(launched.browser))

    # -------------------------------------------------------------- contexts
    @asynccontextmanager
    async def context(
        self, kind: str = "chromium", *, video: bool = False, trace: bool = False, har: str | None = None, policy: JobPolicy | None = None,
        **options: Any,
    ) -> AsyncIterator[ContextHandle]:
        """A fresh context and page for one job, closed (and its video finished) on exit. ``har``: record the
        context's traffic as HAR with response bodies ``omit``-ted, ``embed``-ded or ``attach``-ed (a zip).

        Every request of the context goes through the egress proxy under ``policy``
        (a default one when none is given: the server's URL policy always applies).
        """
        launched = await self._acquire(kind)
        handle = ContextHandle(context=None, page=None)
        policy = policy or JobPolicy(job_id="-")
        try:
            options["proxy"] = await self.egress.register(policy)
            if video:
                if ensure_ffmpeg() is None:
                    raise JobError(ErrorCode.BROWSER_UNAVAILABLE, "video needs ffmpeg, which is not installed on this worker")
                handle.video_dir = Path(tempfile.mkdtemp(prefix="video-", dir=self._tmp))
                options["record_video_dir"] = str(handle.video_dir)
                if options.get("viewport"):
                    options["record_video_size"] = options["viewport"]
            if har:
                handle.har_path = self._tmp / f"har-{id(handle)}.{'zip' if har == 'attach' else 'har'}"
                options["record_har_path"] = str(handle.har_path)
                options["record_har_content"] = har
            try:
                handle.context = await launched.browser.new_context(**options)
                if trace:
                    await handle.context.tracing.start(screenshots=True, snapshots=True)
                handle.page = await handle.context.new_page()
            except PlaywrightError as exc:
                raise JobError(ErrorCode.BROWSER_ERROR, f"could not open a browser context: {str(exc).splitlines()[0]}") from None
            self.stats.contexts_opened += 1
            self.stats.contexts_open += 1
            try:
                yield handle
            finally:
                self.stats.contexts_open -= 1
                await self._finish(handle, trace)
        finally:
            self.egress.unregister(policy)
            self._release(launched)

    async def _finish(self, handle: ContextHandle, trace: bool) -> None:
        ctx = handle.context
        try:
            if trace:
                handle.trace_path = self._tmp / f"trace-{id(handle)}.zip"
                await ctx.tracing.stop(path=str(handle.trace_path))
        except PlaywrightError:
            handle.trace_path = None
        video = handle.page.video if handle.video_dir and handle.page else None
        try:
            await ctx.close()
        except PlaywrightError:
            pass
        if video is not None:
            try:
                handle.video_path = Path(await video.path())
            except PlaywrightError:
                handle.video_path = None

    async def close(self) -> None:
        for launched in list(self._current.values()):
            launched.retiring = True
            await _close_quietly(launched.browser)
        self._current.clear()
        if self._pw is not None:
            await self._pw.stop()
            self._pw = None
        await self.egress.close()


async def _close_quietly(browser: Browser) -> None:
    try:
        await browser.close()
    except PlaywrightError:
        pass


_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BrowserPool]" = weakref.WeakKeyDictionary()


def get_pool() -> BrowserPool:
    """The pool of the running event loop (Playwright objects belong to one loop)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = BrowserPool()
    return pool
