"""Per-key rate limits on the native and scrape-jobs APIs, with their `X-RateLimit-*` headers.

Counters live in memory by default (one API process), or in Redis when
``SOJOURN_REDIS_URL`` is set so several API processes share them. The
window is a sliding-window counter (the `limits` library): smooth, and
one round trip to Redis per request.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sojourn.api.auth import KeyAuth, presented_key
from sojourn.api.errors import error_body
from sojourn.settings import Settings

log = logging.getLogger(__name__)


def parse_rate(text: str) -> RateLimitItem:
    """'100/minute', '10 per second', ...; a ValueError says what was wrong."""
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate such as '100/minute' or '10/second'") from None


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.redis_url:
            url = settings.redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1)
        else:
            url = "async+memory://"
        # redis-py's asyncio client (limits defaults to coredis, which we do not ship)
        self.storage = storage_from_string(url, implementation="redispy", key_prefix="sojourn-ratelimit") if settings.redis_url else storage_from_string(url)
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)  # type: ignore[arg-type]
        self.default = parse_rate(settings.rate_limit)
        self._items: dict[str, RateLimitItem] = {}

    def item(self, rate: str | None) -> RateLimitItem:
        if not rate:
            return self.default
        if rate not in self._items:
            try:
                self._items[rate] = parse_rate(rate)
            except ValueError:
                self._items[rate] = self.default
        return self._items[rate]

    async def check(self, identity: str, rate: str | None) -> tuple[bool, dict[str, str]]:
        """(allowed, headers). Fails open, with a warning, when the counter store is unreachable."""
        item = self.item(rate)
        try:
            allowed = await self.limiter.hit(item, identity)
            stats = await self.limiter.get_window_stats(item, identity)
        except Exception as exc:
            log.warning("rate-limit store unavailable (%s); request let through", exc)
            return True, {}
        now = time.time()
        # limits' Redis storage reports "now" for a key's first hit (no expiry set yet): the window then
        # ends one full period from now. Either way the Reset is in the future.
        reset_at = stats.reset_time if stats.reset_time > now + 0.5 else now + item.get_expiry()
        reset = int(math.ceil(reset_at))
        headers = {
            "X-RateLimit-Limit": str(item.amount),
            "X-RateLimit-Remaining": str(max(stats.remaining, 0)),
            "X-RateLimit-Reset": str(reset),
        }
        if not allowed:
            # A sliding window frees capacity gradually: about one request per (period / limit), not all at the reset.
            spacing = math.ceil(item.get_expiry() / max(item.amount, 1))
            headers["Retry-After"] = str(max(1, min(reset - int(now), spacing)))
        return allowed, headers


def native_refusal(request: Request, headers: dict[str, str]) -> dict[str, Any]:
    return error_body(request, "RATE_LIMITED", f"Rate limit of {headers['X-RateLimit-Limit']} requests exceeded for this key; retry after {headers['Retry-After']} s.",
                      {"limit": int(headers["X-RateLimit-Limit"]), "retryAfter": int(headers["Retry-After"])})


def scrape_refusal(_request: Request, headers: dict[str, str]) -> dict[str, Any]:
    """The scrape-jobs dialect's error shape (its reference lists the same X-RateLimit-* headers)."""
    return {"detail": f"Rate limit of {headers['X-RateLimit-Limit']} requests exceeded; retry after {headers['Retry-After']} s", "code": "RATE_LIMITED"}


# path prefix → the 429 body of the API under it
LIMITED: dict[str, Callable[[Request, dict[str, str]], dict[str, Any]]] = {"/api/v1": native_refusal, "/scrape/api/v1": scrape_refusal}


class RateLimitMiddleware:
    """Counts every authenticated request under the limited prefixes against its key's limit."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, auth: KeyAuth,
                 prefixes: dict[str, Callable[[Request, dict[str, str]], dict[str, Any]]] | None = None) -> None:
        self.app = app
        self.limiter = limiter
        self.auth = auth
        self.prefixes = prefixes or LIMITED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = next((r for p, r in self.prefixes.items() if scope["type"] == "http" and scope["path"].startswith(p)), None)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = presented_key(request)
        principal = self.auth.lookup(key) if key else None
        if principal is None:  # unauthenticated: the route answers 401
            await self.app(scope, receive, send)
            return
        allowed, headers = await self.limiter.check(principal.key_id, principal.rate_limit)
        if not allowed:
            response: Response = JSONResponse(refusal(request, headers), status_code=429, headers=headers)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)
