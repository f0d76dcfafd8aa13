"""The Task Engine dialect at /taskengine: integer jobs, priorities, run_at, semaphores, settings.

Paths, bodies and status codes as the Task Engine documents them
(shared/seeds/task-engine-api.md); errors as ``{"error": "..."}`` (``{"id": null,
"error": ...}`` from ``POST /job``), each message naming the field. HTTP only:
the Task Engine's semantics are in :mod:`sojourn.services.taskengine`.
Routes: :mod:`.status`, :mod:`.jobs`, :mod:`.settings_routes`; their dependencies in :mod:`.dependencies`.
"""

from __future__ import annotations

from fastapi import FastAPI

from sojourn.api.dialects.taskengine import error_handlers, jobs, settings_routes, status
from sojourn.api.dialects.taskengine.error_handlers import TEError
from sojourn.api.dialects.taskengine.render import iso, render
from sojourn.services.taskengine import VERSION
from sojourn.services.taskengine.service import STATES
from sojourn.settings import Settings


def create_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(title="Sojourn: Task Engine API", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
                  description="The Task Engine job API (integer jobs, priorities, run_at, semaphores, settings), served by Sojourn.")
    error_handlers.install(app)
    app.state.main, app.state.settings = main, settings
    for module in (status, jobs, settings_routes):
        app.include_router(module.router)
    return app


__all__ = ["create_app", "STATES", "VERSION", "TEError", "iso", "render"]
