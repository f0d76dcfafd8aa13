"""What the Task Engine routes depend on: its service, the settings and the caller.

``create_app`` keeps the main app and the settings on the dialect's app (``request.app`` in its routes).
The caller: ``client`` + ``api-key`` headers (or ``x-auth-key``, or the native key headers); the key must be
valid and belong to the client it names, the admin key may name any client. Routes that read the body
authenticate with it (its ``client``), so the body is parsed first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from sojourn.api.auth import presented_key
from sojourn.api.dialects.mounted import main_state
from sojourn.api.dialects.taskengine.error_handlers import UNAUTHORISED, TEError
from sojourn.api.dialects.taskengine.requests import Body, JobBody
from sojourn.services.principals import Principal
from sojourn.services.taskengine import TaskEngine

TENANT_SCOPES = frozenset({"jobs:read", "jobs:write"})


async def taskengine_of(request: Request) -> TaskEngine:
    return main_state(request).taskengine  # type: ignore[no-any-return]


TE = Annotated[TaskEngine, Depends(taskengine_of)]


# ------------------------------------------------------------------ the caller


def key_of(request: Request) -> str | None:
    return request.headers.get("api-key") or request.headers.get("x-auth-key") or presented_key(request)


def authenticate(request: Request, body: dict[str, Any] | None = None, write: bool = True, admin: bool = False) -> Principal:
    """``client`` + ``api-key``: the key must be valid and belong to the client it names (the admin key may
    name any client). Without a ``client`` the key's own principal is the client."""
    key = key_of(request)
    principal = main_state(request).auth.lookup(key) if key else None
    if principal is None or not principal.can("jobs:write" if write else "jobs:read") or (admin and not principal.is_admin):
        raise TEError(401, UNAUTHORISED)
    client = request.headers.get("client") or (body or {}).get("client")
    if client is not None and not isinstance(client, str):
        raise TEError(401, UNAUTHORISED)
    if not client or client == principal.name:
        return principal
    if principal.is_admin:
        return Principal(client, TENANT_SCOPES)
    raise TEError(401, UNAUTHORISED)


async def reader(request: Request) -> Principal:
    return authenticate(request, write=False)


async def writer(request: Request) -> Principal:
    return authenticate(request)


async def body_writer(request: Request, body: Body) -> Principal:
    return authenticate(request, body)


async def submitter(request: Request, body: JobBody) -> Principal:
    return authenticate(request, body)


async def body_admin(request: Request, body: Body) -> Principal:
    return authenticate(request, body, admin=True)


async def viewer(request: Request) -> tuple[str | None, bool]:
    """For the endpoints readable without a key: whose jobs may be shown (None: everyone's, for the admin)
    and whether their parameters may be. Without a key only the ``client`` named is shown, without parameters."""
    if key_of(request):
        principal = authenticate(request, write=False)
        return (None if principal.is_admin else principal.name), True
    return (request.headers.get("client") or request.query_params.get("client") or ""), False


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
BodyWriter = Annotated[Principal, Depends(body_writer)]  # after the body: its client
Submitter = Annotated[Principal, Depends(submitter)]  # POST /job: after its body
BodyAdmin = Annotated[Principal, Depends(body_admin)]  # installation-wide: the admin key
Viewer = Annotated[tuple[str | None, bool], Depends(viewer)]
