"""Who is asking: the API key a request presents, looked up by its hash (keys: :mod:`sojourn.services.principals`)."""

from __future__ import annotations

import time

from starlette.requests import HTTPConnection

from sojourn.services.service_error import ServiceError
from sojourn.services.principals import Principal, hash_key, principal_for
from sojourn.settings import Settings


def presented_key(request: HTTPConnection) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    key = request.headers.get("x-api-key")
    if not key and request.scope.get("type") == "websocket":
        key = request.query_params.get("apiKey")  # browsers cannot set headers on a WebSocket
    return key or None


class KeyAuth:
    """Looks keys up by hash; a short-lived cache keeps the hot path off the database.

    Entries live ``CACHE_SECONDS``, so a key revoked through another API process
    stops working there within that time (at once in the process that revoked it).
    """

    CACHE_SECONDS = 10.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if hit is not None and time.monotonic() - hit[0] < self.CACHE_SECONDS:
            return hit[1]
        principal = principal_for(self.settings, digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic(), principal)
        return principal

    def forget(self) -> None:
        self._cache.clear()

    def authenticate(self, request: HTTPConnection, scope: str) -> Principal:
        key = presented_key(request)
        if not key:
            raise ServiceError(401, "UNAUTHORIZED", "An API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.")
        principal = self.lookup(key)
        if principal is None:
            raise ServiceError(401, "UNAUTHORIZED", "The API key is not valid.")
        if not principal.can(scope):
            raise ServiceError(403, "FORBIDDEN", f"This key lacks the `{scope}` scope.")
        return principal
