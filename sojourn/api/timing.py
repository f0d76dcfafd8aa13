"""How long the API takes to answer, per route, as Prometheus sees it (``sojourn_api_request_seconds``).

Measured from the moment the request reaches the app to its last byte out, so it is the API's own
time (queueing in its event loop included), not the network's or the client's.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RequestTiming:
    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app = app
        self.seconds = Histogram("sojourn_api_request_seconds", "Time to answer a request, by route", ["method", "route", "status"],
                                 buckets=BUCKETS, registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if scope.get("path", "").startswith("/tourist/"):  # the Tourist app is mounted: its routes are relative
                route = "/tourist" + route
            self.seconds.labels(scope.get("method", ""), route, str(status)).observe(time.perf_counter() - started)
