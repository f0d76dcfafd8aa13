"""The Task Engine dialect at /taskengine: integer jobs, priorities, run_at, semaphores, settings."""

from __future__ import annotations

from fastapi import FastAPI

from sojourn.settings import Settings


def create_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(title="Sojourn: Task Engine API", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None)
    return app
