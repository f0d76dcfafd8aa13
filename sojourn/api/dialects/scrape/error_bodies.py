"""The scrape-jobs error body, for every error the dialect answers: ``{"detail", "code"}``, plus ``field`` where
one field is at fault. Framework errors (unknown routes, 405, request validation) answer the same shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sojourn.services.service_error import ServiceError


def error(status: int, code: str, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "code": code}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


HTTP_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE",
              429: "RATE_LIMITED"}


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_r: Request, exc: ServiceError) -> JSONResponse:
        code = exc.code if exc.status != 404 else "NOT_FOUND"
        return error(exc.status, code, exc.message, (exc.details or {}).get("field"), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        # Unions (str | FieldSpec) add the member's name to the location; it is not a field of the request.
        loc = [p for p in loc if p not in ("str", "FieldSpec") and not p.startswith("function-")]
        field = ".".join(loc) or "body"
        return error(422, "VALIDATION_ERROR", f"Invalid field `{field}`: {first.get('msg')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "ERROR")
        return error(exc.status_code, code, "Not found" if exc.status_code == 404 else str(exc.detail))
