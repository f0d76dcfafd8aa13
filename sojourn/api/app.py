"""The FastAPI application: dialect routers over one JobService."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI
from prefect.client.orchestration import get_client

from sojourn.api import errors
from sojourn.api.auth import KeyAuth, ensure_admin_key
from sojourn.api.dialects import native
from sojourn.api.dialects.tourist import create_tourist_app
from sojourn.api.events import EventHub
from sojourn.api.jobs import JobService
from sojourn.blocks.artifact_store import ArtifactStore
from sojourn.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        from sojourn.worker.reaper import reap_forever

        ensure_admin_key(settings)
        hub = EventHub()
        hub.start()
        async with get_client() as client:
            svc = JobService(settings, client, hub, ArtifactStore.from_settings(settings))
            await svc.start()
            app.state.jobs = svc
            app.state.hub = hub
            reaper = asyncio.ensure_future(reap_forever(settings, settings.work_pool))
            try:
                yield
            finally:
                reaper.cancel()
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
    app.mount("/tourist", create_tourist_app(app, settings))

    @app.get("/health", tags=["system"], summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
