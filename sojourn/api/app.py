"""The FastAPI application: dialect routers over one JobService, and the API's background loops."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from prefect.client.orchestration import get_client

from sojourn.api import errors
from sojourn.api.auth import KeyAuth
from sojourn.services.principals import ensure_admin_key
from sojourn.services.batches import BatchService
from sojourn.api.bodylimit import BodySizeLimit
from sojourn.api.dialects import native
from sojourn.api.dialects.native.jobs import renderer
from sojourn.api.dialects.tourist import create_tourist_app
from sojourn.api.dialects import fastlane, scrape, taskengine
from sojourn.services.events import EventHub
from sojourn.services.jobs import JobService
from sojourn.services.metrics import Metrics
from sojourn.services.outcomes import Outcomes
from sojourn.api.ratelimit import RateLimiter, RateLimitMiddleware
from sojourn.api.timing import RequestTiming
from sojourn.services.stats import Stats
from sojourn.services.webhooks import WebhookService
from sojourn.blocks.artifact_store import ArtifactStore
from sojourn.settings import Settings, get_settings


# Prefect's client keeps 8 of its 16 connections alive; under load the rest were reopened per call.
PREFECT_HTTP = {"limits": httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=25)}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from sojourn.worker.reaper import reap_forever

        ensure_admin_key(settings)
        hub = EventHub()
        hub.start()
        async with get_client(httpx_settings=PREFECT_HTTP) as client, get_client(httpx_settings=PREFECT_HTTP) as dispatch_client:
            svc = JobService(settings, client, hub, ArtifactStore.from_settings(settings), dispatch_client=dispatch_client)
            await svc.start()
            stats = Stats(client, settings.work_pool, svc.ledger)
            metrics = Metrics(stats, stale_after=max(3 * settings.worker_heartbeat_seconds, 15), reads=svc.reads, waiting=svc.waiting.get,
                              registry=app.state.registry)
            webhooks = WebhookService(settings)
            batches = BatchService(svc)
            outcomes = Outcomes(svc, webhooks, batches, metrics, renderer(svc))
            app.state.jobs, app.state.hub, app.state.stats = svc, hub, stats
            app.state.metrics, app.state.webhooks, app.state.batches = metrics, webhooks, batches
            loops = [
                asyncio.ensure_future(svc.dispatcher.run_forever()),
                asyncio.ensure_future(reap_forever(settings, settings.work_pool)),
                asyncio.ensure_future(outcomes.listen_forever()),
                asyncio.ensure_future(outcomes.sweep_forever()),
                asyncio.ensure_future(webhooks.run_forever()),
                asyncio.ensure_future(svc.retention.run_forever()),
            ]
            for start in app.state.on_start:  # the dialects' own services and loops
                loops += [asyncio.ensure_future(c) for c in await start(app)]
            try:
                yield
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                await hub.stop()

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
    # A dialect with background work appends ``async def start(app) -> list[coroutine]`` here; each coroutine
    # runs until the API stops (cancelled then).
    app.state.on_start = []
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

    @app.get("/metrics", tags=["system"], summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        body = await request.app.state.metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
