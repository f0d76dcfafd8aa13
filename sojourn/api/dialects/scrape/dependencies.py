"""What the scrape dialect's routes are given: the principal of the request's key, the scrape service, the settings
and the catalog.

``create_app`` leaves the main app and the settings on the dialect app's state; in the mounted dialect app
``request.app`` is the dialect's, and the main app's state holds the key check (``auth``) and, once the main app
has started, the scrape service.

(No ``from __future__ import annotations`` here: :func:`once_valid`'s dependency names a local in its annotation.)
"""

from typing import Annotated, Any, Awaitable, Callable, TypeVar

from fastapi import Depends
from starlette.requests import HTTPConnection

from sojourn.api.dialects.mounted import Config, main_state
from sojourn.services.principals import Principal
from sojourn.services.scrape import ScrapeService
from sojourn.services.scrape.catalog import Catalog
from sojourn.services.service_error import ServiceError

T = TypeVar("T")


def running(conn: HTTPConnection) -> ScrapeService | None:
    """The scrape service, None until the main app has started it."""
    return getattr(main_state(conn), "scrape", None)


def started(service: ScrapeService | None) -> ScrapeService:
    if service is None:
        raise ServiceError(503, "SERVICE_UNAVAILABLE", "The scrape service is starting; try again.")
    return service


async def scrape_service(conn: HTTPConnection) -> ScrapeService:
    return started(running(conn))


async def scrape_if_running(conn: HTTPConnection) -> ScrapeService | None:
    return running(conn)


async def reader(conn: HTTPConnection) -> Principal:
    return main_state(conn).auth.authenticate(conn, "jobs:read")


async def writer(conn: HTTPConnection) -> Principal:
    return main_state(conn).auth.authenticate(conn, "jobs:write")


async def catalog(settings: Config) -> Catalog:
    return Catalog(settings)


def once_valid(inputs: Callable[..., Any], dependency: Callable[[HTTPConnection], Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``dependency`` (:func:`reader`, :func:`writer`, :func:`scrape_service`), resolved only when ``inputs`` (the
    route's parsed query or body, :mod:`.requests`) is valid.

    FastAPI resolves a route's dependencies before its own parameters, and each dependency even when one before it
    was invalid; this dialect answers an invalid request 422 before it looks at the key (401, 403) or the service
    (503), so a route with inputs has its principal and service resolved after them."""

    async def resolved(conn: HTTPConnection, _inputs: Annotated[Any, Depends(inputs)]) -> T:
        return await dependency(conn)

    return resolved


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
Scrape = Annotated[ScrapeService, Depends(scrape_service)]
ScrapeIfRunning = Annotated[ScrapeService | None, Depends(scrape_if_running)]
CatalogDep = Annotated[Catalog, Depends(catalog)]
