"""Native dialect, templates: create, list, get, delete, execute with variables."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sojourn.services import templates
from sojourn.services.principals import Principal
from sojourn.api.dialects.native.jobs import JobOptions, JobType, Priority, SubmitJob, accepted, iso, jobs, reader, to_spec, writer
from sojourn.api.errors import invalid_input
from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService
from sojourn.store.templates import Template

router = APIRouter(prefix="/api/v1", tags=["templates"])


class NewTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    type: JobType
    defaultInput: dict[str, Any] = Field(description="the job's `input`, with {variable} placeholders in its strings")
    variables: list[str] = Field(default_factory=list, max_length=100, description="placeholder names a caller must supply")
    priority: Priority = "normal"
    options: JobOptions = Field(default_factory=JobOptions)


class Execute(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)


def render_template(row: Template) -> dict[str, Any]:
    return {
        "templateId": row.id,
        "name": row.name,
        "description": row.description,
        "type": row.type,
        "defaultInput": json.loads(row.default_input),
        "variables": json.loads(row.variables),
        "priority": row.priority,
        "options": json.loads(row.options),
        "createdAt": iso(row.created_at),
    }


@router.post("/templates", status_code=201, summary="Create a job template")
async def create_template(body: NewTemplate, request: Request, principal: Principal = Depends(writer)) -> dict[str, Any]:
    bad = [v for v in body.variables if not v.isidentifier()]
    if bad:
        raise ServiceError(422, "INVALID_INPUT", f"Invalid field `variables`: {bad[0]!r} is not a name (letters, digits, _)", {"field": "variables"})
    undeclared = sorted(templates.placeholders(body.defaultInput) - set(body.variables))
    if undeclared and body.type != "browse":
        raise ServiceError(422, "INVALID_INPUT", f"Invalid field `defaultInput`: placeholder {{{undeclared[0]}}} is not in `variables`", {"field": "defaultInput"})
    row = templates.create(
        request.app.state.settings, principal.name, name=body.name, description=body.description, type=body.type,
        default_input=body.defaultInput, variables=body.variables, priority=body.priority,
        options=body.options.model_dump(exclude_none=True),
    )
    return {"templateId": row.id, "name": row.name}


@router.get("/templates", summary="List templates")
async def list_templates(request: Request, principal: Principal = Depends(reader)) -> dict[str, Any]:
    rows = templates.visible(request.app.state.settings, principal.owner_filter)
    return {"templates": [render_template(r) for r in rows], "total": len(rows)}


@router.get("/templates/{template_id}", summary="Get a template")
async def get_template(template_id: str, request: Request, principal: Principal = Depends(reader)) -> dict[str, Any]:
    return render_template(templates.get(request.app.state.settings, template_id, principal.owner_filter))


@router.delete("/templates/{template_id}", status_code=204, summary="Delete a template")
async def delete_template(template_id: str, request: Request, principal: Principal = Depends(writer)) -> Response:
    templates.delete(request.app.state.settings, template_id, principal.owner_filter)
    return Response(status_code=204)


@router.post("/templates/{template_id}/execute", status_code=202, summary="Submit a job from a template")
async def execute_template(
    template_id: str, request: Request, body: Execute | None = None, principal: Principal = Depends(writer), svc: JobService = Depends(jobs),
) -> dict[str, Any]:
    row = templates.get(request.app.state.settings, template_id, principal.owner_filter)
    filled = templates.render(row, {k: str(v) for k, v in (body.variables if body else {}).items()})
    try:
        job = SubmitJob.model_validate(filled)
    except ValidationError as exc:
        message, details = invalid_input(exc)
        raise ServiceError(422, "INVALID_INPUT", message, details) from None
    spec = to_spec(job)
    view = await svc.submit(spec, principal, dialect="native", labels={"type": job.type, "template": row.id})
    return {**(await accepted(svc, view, job)), "templateId": row.id}
