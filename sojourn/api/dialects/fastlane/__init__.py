"""The fastlane dialect at /fastlane: tasks, jobs and executions.

Clients written for fastlane work unchanged with their base URL set to ``http://HOST:8000/fastlane``:
the routes, bodies, messages and status codes of fastlane 2.2.4 (shared/reference/fastlane.md), both
trailing-slash forms, plain-text enqueue errors and ``{"error", "operation"}`` lookup errors. What runs is
a browser job (see :mod:`sojourn.services.fastlane.commands`). fastlane has no auth; here a request needs
an API key (Basic auth with the key as password, ``X-API-Key`` or Bearer) unless
``SOJOURN_FASTLANE_AUTH=false``, and a principal sees only its own tasks.

Routes: :mod:`.status`, :mod:`.tasks`, :mod:`.jobs`, :mod:`.executions`, :mod:`.streams`; what they depend on:
:mod:`.dependencies`; request parsing: :mod:`.requests`; bodies: :mod:`.bodies`; errors: :mod:`.error_handlers`.
"""

from __future__ import annotations

from fastapi import FastAPI

from sojourn.api.dialects.fastlane import error_handlers, executions, jobs, status, streams, tasks
from sojourn.settings import Settings

ROUTERS = (status.router, tasks.router, jobs.router, executions.router, streams.router)  # fastlane's order of routes


def create_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(title="Sojourn: fastlane API", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
                  description="fastlane's task/job/execution API over Sojourn browser jobs.")
    error_handlers.install(app)
    app.state.main, app.state.settings = main, settings  # read by .dependencies (request.app is this sub-app)
    for router in ROUTERS:
        app.include_router(router)
    return app
