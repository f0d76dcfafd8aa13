"""The Task Engine's error bodies: ``{"error": "..."}`` (``{"id": null, "error": ...}`` where the route says so)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sojourn.services.service_error import ServiceError

UNAUTHORISED = {"result": "Unauthorised request."}


class TEError(Exception):
    """An answer with exactly this status and body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def install(app: FastAPI) -> None:
    @app.exception_handler(TEError)
    async def _te(_r: Request, exc: TEError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(ServiceError)
    async def _service(_r: Request, exc: ServiceError) -> JSONResponse:
        status = 400 if exc.status in (404, 409, 422) else exc.status
        return JSONResponse({"error": exc.message}, status_code=status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return JSONResponse({"error": f"{where}: {first.get('msg')}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)
