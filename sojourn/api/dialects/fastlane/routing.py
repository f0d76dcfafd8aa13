"""The dialect's router: fastlane answers both trailing-slash forms of a path directly (no redirect)."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter


class Router(APIRouter):
    def both(self, path: str, methods: list[str], **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The route at ``path`` (in the schema) and at ``path/`` (not in it), one endpoint for both."""
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add_api_route(path, fn, methods=methods, **kw)
            self.add_api_route(path.rstrip("/") + "/", fn, methods=methods, include_in_schema=False)
            return fn
        return deco
