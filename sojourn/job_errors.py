"""Failure codes a job can end with, shared by the engine and every dialect."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    NAVIGATION_FAILED = "NAVIGATION_FAILED"
    ACTION_FAILED = "ACTION_FAILED"
    TIMEOUT = "TIMEOUT"
    BROWSER_ERROR = "BROWSER_ERROR"
    BROWSER_UNAVAILABLE = "BROWSER_UNAVAILABLE"
    INVALID_INPUT = "INVALID_INPUT"
    URL_BLOCKED = "URL_BLOCKED"


class JobError(Exception):
    """A job failure with a code and where it happened.

    ``str()`` is ``"CODE: message"`` so the code survives in the Prefect
    state message, where :func:`parse_error` reads it back.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        step: int | None = None,
        action: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.code = ErrorCode(code)
        self.message = message
        self.step = step
        self.action = action
        self.details = dict(details or {})
        super().__init__(f"{self.code.value}: {message}")

    def __reduce__(self):  # keyword-only arguments: teach pickle to rebuild it
        return (_rebuild, (self.code.value, self.message, self.step, self.action, self.details))

    def to_dict(self) -> dict[str, Any]:
        details = dict(self.details)
        if self.step is not None:
            details["step"] = self.step
        if self.action is not None:
            details["action"] = self.action
        return {"code": self.code.value, "message": self.message, "details": details}


def _rebuild(code: str, message: str, step: int | None, action: str | None, details: dict[str, Any]) -> JobError:
    return JobError(code, message, step=step, action=action, details=details)


_CODE_RE = re.compile(r"\b(" + "|".join(c.value for c in ErrorCode) + r"): (.*)", re.S)


def parse_error(text: str | None) -> dict[str, Any] | None:
    """Recover ``{code, message}`` from a state message or exception text."""
    if not text:
        return None
    m = _CODE_RE.search(text)
    if not m:
        return None
    return {"code": m.group(1), "message": m.group(2).strip()}
