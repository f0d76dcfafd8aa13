"""The one refusal every service raises: what went wrong (a stable code, a message naming the field or
the object) and the HTTP status a front end should answer with. Each dialect renders it in its own
documented error body (:mod:`sojourn.api.errors` for the native API)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers
        super().__init__(message)
