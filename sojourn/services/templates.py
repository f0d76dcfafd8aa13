"""Job templates: a saved request whose strings carry `{variable}` placeholders.

Only declared variables are substituted, so other braces (page JavaScript in
actions, JSON in strings) pass through untouched.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from sqlmodel import select

from sojourn.services.service_error import ServiceError
from sojourn.settings import Settings
from sojourn.store.db import owned, session
from sojourn.store.templates import Template

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def fill(value: Any, variables: dict[str, str], declared: set[str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in declared else m.group(0), value)
    if isinstance(value, dict):
        return {k: fill(v, variables, declared) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, variables, declared) for v in value]
    return value


def render(template: Template, variables: dict[str, Any]) -> dict[str, Any]:
    """The job request the template makes with these variables; 400 INVALID_INPUT naming a missing one."""
    declared = json.loads(template.variables)
    missing = [v for v in declared if v not in variables or variables[v] is None]
    if missing:
        raise ServiceError(
            400, "INVALID_INPUT", f"Missing variable `{missing[0]}` for template '{template.name}'",
            {"field": f"variables.{missing[0]}", "missing": missing, "required": declared},
        )
    return {
        "type": template.type,
        "input": fill(json.loads(template.default_input), variables, set(declared)),
        "priority": template.priority,
        "options": json.loads(template.options),
    }


def create(settings: Settings, owner: str, *, name: str, description: str, type: str, default_input: dict[str, Any],
           variables: list[str], priority: str, options: dict[str, Any]) -> Template:
    row = Template(
        id="tpl_" + secrets.token_hex(8), owner=owner, name=name, description=description, type=type,
        default_input=json.dumps(default_input), variables=json.dumps(variables), priority=priority, options=json.dumps(options),
    )
    with session(settings.database_location) as db:
        db.add(row)
        db.commit()
    return row


def visible(settings: Settings, owner: str | None) -> list[Template]:
    """A principal's templates (all of them for the admin: owner None)."""
    with session(settings.database_location) as db:
        q = select(Template).order_by(Template.created_at)  # type: ignore[arg-type]
        if owner is not None:
            q = q.where(Template.owner == owner)
        return list(db.exec(q))


def get(settings: Settings, template_id: str, owner: str | None) -> Template:
    row = owned(settings.database_location, Template, template_id, owner)
    if row is None:
        raise ServiceError(404, "TEMPLATE_NOT_FOUND", f"Template with ID '{template_id}' not found", {"templateId": template_id})
    return row


def delete(settings: Settings, template_id: str, owner: str | None) -> None:
    row = get(settings, template_id, owner)
    with session(settings.database_location) as db:
        db.delete(db.get(Template, row.id))
        db.commit()
