"""The browsing-agent spec's standard error body, for every error the native API answers.

    {"error": {"code", "message", "timestamp", "path", "details"}}

Framework errors (404 for unknown routes, 405, 422 validation) are rendered
the same way, so a client only ever parses one shape.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sojourn.services.service_error import ServiceError
from sojourn.spec import spec_errors




def error_body(request: Request, code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "path": request.url.path,
            "details": details or {},
        }
    }


def invalid_input(exc: ValidationError | RequestValidationError, prefix: str = "") -> tuple[str, dict[str, Any]]:
    """A message naming the first bad field, and every problem in details."""
    if isinstance(exc, ValidationError):
        problems = spec_errors(exc)
    else:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
            problems.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    if prefix:
        problems = [{**p, "field": f"{prefix}.{p['field']}" if p["field"] != "body" else prefix} for p in problems]
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    return f"Invalid field `{first['field']}`: {first['message']}", {"errors": problems}


_STATUS_CODES = {400: "INVALID_INPUT", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 429: "RATE_LIMITED"}


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _api_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(request, exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = invalid_input(exc)
        return JSONResponse(error_body(request, "INVALID_INPUT", message, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        message = "No such endpoint." if exc.status_code == 404 and exc.detail == "Not Found" else str(exc.detail)
        return JSONResponse(error_body(request, code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None))
