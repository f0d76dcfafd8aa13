"""What the dialect's routes depend on, read from the sub-app's state (``create_app`` stores the main app and the
settings there; inside the mounted sub-app ``request.app`` is the sub-app): the service, the settings, the main
app (its job service and Prefect client) and the principal asking.

fastlane has no auth; here a request needs an API key (Basic auth with the key as password, ``X-API-Key`` or
Bearer) unless ``SOJOURN_FASTLANE_AUTH=false``, when every request is :data:`OPEN`'s.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, WebSocket
from starlette.requests import HTTPConnection

from sojourn.api.dialects.mounted import Config, main_state
from sojourn.services.fastlane import FastlaneService
from sojourn.services.principals import Principal
from sojourn.services.service_error import ServiceError
from sojourn.settings import Settings

OPEN = Principal("fastlane", frozenset({"jobs:read", "jobs:write"}))


def who(conn: HTTPConnection, scope: str) -> Principal:
    """The principal of a request or WebSocket with ``scope``; ServiceError (401/403) when there is none."""
    settings: Settings = conn.app.state.settings
    if not settings.fastlane_auth:
        return OPEN
    auth: Any = main_state(conn).auth
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except Exception:
            raise ServiceError(401, "UNAUTHORIZED", "The Basic credentials could not be read.") from None
        principal = auth.lookup(password or user)
        if principal is None:
            raise ServiceError(401, "UNAUTHORIZED", "The API key is not valid.")
        if not principal.can(scope):
            raise ServiceError(403, "FORBIDDEN", f"This key lacks the `{scope}` scope.")
        return principal
    return auth.authenticate(conn, scope)


# async: attribute reads and the key lookup run on the event loop, as the routes' own code does (no threadpool hop)
async def main_app(conn: HTTPConnection) -> FastAPI:
    return conn.app.state.main  # type: ignore[no-any-return]


async def fastlane_service(conn: HTTPConnection) -> FastlaneService:
    return main_state(conn).fastlane  # type: ignore[no-any-return]


async def reader(request: Request) -> Principal:
    return who(request, "jobs:read")


async def writer(request: Request) -> Principal:
    return who(request, "jobs:write")


async def ws_reader(websocket: WebSocket) -> Principal | None:
    """A WebSocket's reader, or None: the route closes it with 1008 before accepting it."""
    try:
        return who(websocket, "jobs:read")
    except ServiceError:
        return None


MainApp = Annotated[FastAPI, Depends(main_app)]
Service = Annotated[FastlaneService, Depends(fastlane_service)]
DialectSettings = Config
Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
WsReader = Annotated[Principal | None, Depends(ws_reader)]
