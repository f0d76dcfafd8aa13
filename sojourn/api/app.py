"""The FastAPI application: the dialects' routers over the process's parts (:mod:`sojourn.assembly`)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry

from sojourn.api import errors
from sojourn.assembly import ALL, HTTP_ONLY, running
from sojourn.api.auth import KeyAuth, presented_key
from sojourn.api.bodylimit import BodySizeLimit
from sojourn.api.dialects import native
from sojourn.api.dialects.native.jobs import renderer
from sojourn.api.dialects.tourist import create_tourist_app
from sojourn.api.dialects import fastlane, scrape, taskengine
from sojourn.api.ratelimit import RateLimiter, RateLimitMiddleware
from sojourn.api.timing import RequestTiming
from sojourn.services.service_error import ServiceError
from sojourn.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, services: bool = True) -> FastAPI:
    """The API; ``services=False`` (``sojourn api --no-services``): only the background work that serves this
    process's own requests runs here, the rest in ``sojourn services``."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings, renderer, scopes=ALL if services else HTTP_ONLY, registry=app.state.registry) as parts:
            st = app.state
            st.parts = parts
            st.jobs, st.hub, st.stats, st.metrics, st.webhooks, st.batches = parts.jobs, parts.hub, parts.stats, parts.metrics, parts.webhooks, parts.batches
            st.scrape, st.taskengine, st.fastlane, st.runner, st.pressure = parts.scrape, parts.taskengine, parts.fastlane, parts.runner, parts.pressure
            st.profiles = parts.profiles
            yield

    app = FastAPI(
        title="Sojourn",
        version="0.1.0",
        description="Browser jobs as Prefect flows, behind the job APIs you already have clients for.",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = KeyAuth(settings)
    errors.install(app)
    app.include_router(native.router)
    app.mount("/tourist", create_tourist_app(app, settings))
    app.mount("/scrape", scrape.create_app(app, settings))
    app.mount("/taskengine", taskengine.create_app(app, settings))
    app.mount("/fastlane", fastlane.create_app(app, settings))
    app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(settings), auth=app.state.auth)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.registry = CollectorRegistry()  # the API's metrics (Metrics adds its own to it)
    app.add_middleware(RequestTiming, registry=app.state.registry)

    @app.get("/health", tags=["system"], summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/pressure", tags=["system"], summary="How much more work the cluster can take, in browserless's shape "
             "(for balancers and autoscalers); any valid key (header or ?token=), or none with SOJOURN_PRESSURE_PUBLIC")
    async def pressure(request: Request, token: str | None = None) -> dict[str, Any]:
        if not settings.pressure_public:
            key = presented_key(request) or token  # browserless's health checks send ?token=
            if not key or request.app.state.auth.lookup(key) is None:
                raise ServiceError(401, "UNAUTHORIZED", "A valid API key is required: `Authorization: Bearer <key>`, `X-API-Key` or `?token=`.")
        return await request.app.state.pressure.read()

    @app.get("/metrics", tags=["system"], summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        body = await request.app.state.metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
