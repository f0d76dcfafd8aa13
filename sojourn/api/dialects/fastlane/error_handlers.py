"""The dialect's exception handlers: plain-text 400s for refused requests, fastlane's ``{"error", "operation"}``
for the rest (failed lookups, auth, unknown routes)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sojourn.api.dialects.fastlane.bodies import error
from sojourn.services.fastlane import InputError, LookupFailed
from sojourn.services.service_error import ServiceError


async def input_error(_r: Request, exc: InputError) -> PlainTextResponse:
    return PlainTextResponse(str(exc), status_code=400)


async def lookup_failed(_r: Request, exc: LookupFailed) -> JSONResponse:
    return error(exc.status, exc.error, exc.operation)


async def service_error(_r: Request, exc: ServiceError) -> JSONResponse:
    headers = dict(exc.headers or {})
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="sojourn"'
    return error(exc.status, exc.message, "authenticate" if exc.status in (401, 403) else "sojourn", headers)


async def http_error(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error(exc.status_code, str(exc.detail), "route")


def install(app: FastAPI) -> None:
    app.add_exception_handler(InputError, input_error)  # type: ignore[arg-type]
    app.add_exception_handler(LookupFailed, lookup_failed)  # type: ignore[arg-type]
    app.add_exception_handler(ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
