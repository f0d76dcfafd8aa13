"""The scrape-jobs dialect at /scrape/api/v1: projects, targets, jobs, results, schedules.

Clients of the scrape-jobs API (shared/seeds/scrape-jobs-api.md; the resources it refers to as
shared/reference/scrape-jobs.md describes them) work unchanged with their base URL set to
``http://HOST:8000/scrape/api/v1``. Errors are ``{"detail", "code"}`` (plus ``field`` where one field is
at fault). HTTP only: parse, call :mod:`sojourn.services.scrape`, render.

Routes: :mod:`.projects` (and targets), :mod:`.jobs`, :mod:`.results`, :mod:`.schedules`; what they are given in
:mod:`.dependencies`, what requests may say in :mod:`.requests`, the error bodies in :mod:`.error_bodies`.
"""

from __future__ import annotations

from fastapi import FastAPI

from sojourn.api.dialects.scrape import error_bodies, jobs, projects, results, schedules
from sojourn.settings import Settings

PREFIX = "/api/v1"


def create_app(main: FastAPI, settings: Settings) -> FastAPI:
    """The dialect's own app, mounted by the main one (its own error shapes; the main app's state via ``main``)."""
    app = FastAPI(
        title="Sojourn: Scrape-jobs API",
        description="Projects of targets, scraped page by page into results by Prefect flows with a real browser.",
        version="1.0.0", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
    )
    error_bodies.install(app)
    app.state.main, app.state.settings = main, settings
    for module in (projects, jobs, results, schedules):
        app.include_router(module.router, prefix=PREFIX)
    return app
