"""Native dialect, profiles: saved browser sessions a job can start from and save to (``services/profiles.py``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sojourn.api.dialects.native.jobs import iso, reader, writer
from sojourn.services.principals import Principal
from sojourn.services.profiles import ProfileService
from sojourn.store.profiles import Profile

router = APIRouter(prefix="/api/v1", tags=["profiles"])


class NewProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="1-100 letters, digits, '.', '_' or '-'; unique among your profiles")
    storageState: dict[str, Any] | None = Field(None, description="to start from: Playwright's storage state ({cookies, origins})")  # noqa: N815


def render(row: Profile) -> dict[str, Any]:
    """A profile as the API shows it: its version and what it holds (``summary``: counts and domains, never a value)."""
    return {"name": row.name, "version": row.version, **json.loads(row.summary or "{}"), "createdAt": iso(row.created_at),
            "updatedAt": iso(row.updated_at)}


def profiles(request: Request) -> ProfileService:
    return request.app.state.profiles


@router.post("/profiles", status_code=201, summary="Make a profile (empty, or from a storage state)")
async def create(body: NewProfile, principal: Principal = Depends(writer), svc: ProfileService = Depends(profiles)) -> dict[str, Any]:
    return render(await svc.create(principal.name, body.name, body.storageState))


@router.get("/profiles", summary="Your profiles: names, versions, what they hold (never a cookie's value)")
async def list_profiles(principal: Principal = Depends(reader), svc: ProfileService = Depends(profiles)) -> dict[str, Any]:
    rows = svc.visible(principal.name)
    return {"profiles": [render(r) for r in rows], "total": len(rows)}


@router.get("/profiles/{name}", summary="One profile: its version and what it holds (counts and domains)")
async def get_profile(name: str, principal: Principal = Depends(reader), svc: ProfileService = Depends(profiles)) -> dict[str, Any]:
    return render(svc.get(principal.name, name))


@router.delete("/profiles/{name}", status_code=204, summary="Delete a profile and every stored copy of its state")
async def delete_profile(name: str, principal: Principal = Depends(writer), svc: ProfileService = Depends(profiles)) -> Response:
    await svc.delete(principal.name, name)
    return Response(status_code=204)
