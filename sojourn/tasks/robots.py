"""robots.txt, for scrape projects that respect it (``respect_robots_txt``, off by default as in Crawlee).

Each origin's file is fetched once per job, through the job's browser context (so through the egress proxy and
its URL policy, like every request the job makes), and read as RFC 9309 says: the group naming Sojourn's user
agent token (``Sojourn``) if there is one, else ``*``; ``*`` and ``$`` in paths; a 4xx answer (no file) allows
everything; a 5xx answer or no answer disallows everything on that origin for this job, since the site could not
say what it allows. Parsing is Protego's (the parser Scrapy and Crawlee use).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from protego import Protego

log = logging.getLogger(__name__)

USER_AGENT = "Sojourn"


@dataclass(frozen=True)
class Rules:
    origin: str
    parsed: Protego | None  # None: everything allowed (no file) or nothing (``unreachable``)
    unreachable: str | None = None

    def allows(self, url: str) -> bool:
        if self.unreachable is not None:
            return False
        return self.parsed is None or bool(self.parsed.can_fetch(url, USER_AGENT))


class Robots:
    """The robots.txt of each origin a job visits, fetched once (concurrent askers share the one fetch)."""

    def __init__(self, request: Any, timeout_s: float) -> None:
        self.request = request  # the job's browser context's APIRequestContext
        self.timeout_s = timeout_s
        self._rules: dict[str, asyncio.Task[Rules]] = {}

    async def check(self, url: str) -> tuple[bool, str]:
        """Whether ``url`` may be visited, and a reason to log when it may not."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._rules:
            self._rules[origin] = asyncio.ensure_future(self._fetch(origin))
        rules = await self._rules[origin]
        if rules.allows(url):
            return True, ""
        if rules.unreachable is not None:
            return False, f"{origin}/robots.txt could not be read ({rules.unreachable}), so nothing on {origin} is fetched"
        return False, f"{url} is disallowed by {origin}/robots.txt for {USER_AGENT}"

    async def _fetch(self, origin: str) -> Rules:
        try:
            response = await self.request.get(f"{origin}/robots.txt", timeout=self.timeout_s * 1000, fail_on_status_code=False,
                                              max_redirects=5)
            status = response.status
            body = await response.text() if 200 <= status < 300 else ""
        except Exception as exc:
            return Rules(origin, None, unreachable=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if status >= 500:
            return Rules(origin, None, unreachable=f"HTTP {status}")
        if status >= 400:
            return Rules(origin, None)  # no robots.txt: everything allowed
        return Rules(origin, Protego.parse(body))
