"""API keys, for the admin: create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sojourn.services.principals import VALID_SCOPES, Principal, create_key, list_keys, revoke_key
from sojourn.services.service_error import ServiceError
from sojourn.api.dialects.native.jobs import iso
from sojourn.api.ratelimit import parse_rate
from sojourn.store.keys import ApiKey

router = APIRouter(prefix="/api/v1", tags=["keys"])


def admin(request: Request) -> Principal:
    return request.app.state.auth.authenticate(request, "admin")


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    principal: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.@-]+$", description="who owns what this key creates; a new principal when omitted. Keys of one principal see the same jobs.")
    scopes: list[str] = Field(default_factory=lambda: ["jobs:read", "jobs:write"], description="jobs:read, jobs:write, admin")
    urlAllowList: list[str] | None = Field(None, max_length=200, description="host patterns jobs of this key may visit: example.com, *.example.com, 10.0.0.0/8")
    rateLimit: str | None = Field(None, max_length=50, description="requests for this key, e.g. 100/minute (server default when omitted)")

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in VALID_SCOPES]
        if bad:
            raise ValueError(f"unknown scope {bad[0]!r}; choose from {', '.join(VALID_SCOPES)}")
        return sorted(set(v))

    @field_validator("rateLimit")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None:
            parse_rate(v)
        return v


def render_key(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "principal": row.principal,
        "scopes": sorted(row.scope_set),
        "urlAllowList": [p for p in (row.url_allow or "").split(",") if p] or None,
        "rateLimit": row.rate_limit,
        "createdAt": iso(row.created_at),
        "revokedAt": iso(row.revoked_at),
    }


@router.post("/keys", status_code=201, summary="Create an API key (admin); the key is in this answer only")
async def create(body: NewKey, request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    row, key = create_key(
        request.app.state.settings, name=body.name, principal=body.principal, scopes=body.scopes,
        url_allow=body.urlAllowList, rate_limit=body.rateLimit,
    )
    return {**render_key(row), "key": key}


@router.get("/keys", summary="List API keys (admin); keys themselves are never shown again")
async def index(request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    rows = list_keys(request.app.state.settings)
    return {"keys": [render_key(r) for r in rows], "total": len(rows)}


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key (admin)")
async def revoke(key_id: str, request: Request, principal: Principal = Depends(admin)) -> Response:
    if key_id == principal.key_id:
        raise ServiceError(409, "INVALID_INPUT", "A key cannot revoke itself; use another admin key.", {"keyId": key_id})
    row = revoke_key(request.app.state.settings, key_id)
    if row is None:
        raise ServiceError(404, "KEY_NOT_FOUND", f"Key with ID '{key_id}' not found", {"keyId": key_id})
    request.app.state.auth.forget()
    return Response(status_code=204)
