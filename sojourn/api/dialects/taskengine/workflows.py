"""Task Engine workflows → JobSpec: browse, screenshot, pdf, agent and ``template:<name>``.

Every error is a :class:`ServiceError` 400 whose message names the field
(``parameters.url: ...``), rendered as ``{"id": null, "error": ...}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sojourn.api.dialects.native.jobs import SubmitJob, to_spec as native_spec
from sojourn.services import templates
from sojourn.services.service_error import ServiceError
from sojourn.settings import Settings
from sojourn.spec import JobSpec, spec_errors

# Parameters the Task Engine itself reads; the rest are the workflow's.
TE_EXTRAS = ("content_id", "custom_data", "rest_endpoints")

WORKFLOWS: dict[str, str] = {
    "browse": "parameters is a JobSpec: steps, cookies, headers, viewport, capture, extract, timeout, ...",
    "screenshot": "parameters: {url, full_page?, viewport?, wait_until?, actions?, timeout?}: one page, one screenshot",
    "pdf": "parameters: {url, format?, landscape?, margin?, media?, background?, scale?, viewport?, wait_until?, actions?, timeout?}: one page as PDF",
    "agent": "parameters: {instructions}: a task in plain English",
    "scrape": "parameters: {project_id, target_ids?}: a scrape job of one of your scrape projects (/scrape/api/v1); files are its results' exports",
    "template:<name>": "a saved native template (POST /api/v1/templates) by name; parameters are its variables",
}


def bad(message: str) -> ServiceError:
    return ServiceError(400, "INVALID_INPUT", message)


def _validated(data: dict[str, Any], prefix: str = "parameters") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        first = spec_errors(exc)[0]
        field = first["field"] if first["field"] != "body" else ""
        raise bad(f"{prefix}{'.' + field if field else ''}: {first['message']}") from None


def _one_page(params: dict[str, Any], allowed: set[str], capture: dict[str, Any], workflow: str) -> JobSpec:
    extra = sorted(set(params) - allowed)
    if extra:
        raise bad(f"parameters.{extra[0]}: not a parameter of the {workflow} workflow (it takes {', '.join(sorted(allowed))})")
    if not params.get("url"):
        raise bad(f"parameters.url: the {workflow} workflow needs the page's url")
    step = {"url": params["url"], "actions": params.get("actions", [])}
    if "wait_until" in params:
        step["wait_until"] = params["wait_until"]
    data: dict[str, Any] = {"steps": [step], "capture": capture}
    for key in ("viewport", "timeout", "cookies", "headers", "user_agent", "retries", "retry_delay"):
        if key in params:
            data[key] = params[key]
    try:
        return _validated(data)
    except ServiceError as exc:  # name the shorthand's own fields, not the JobSpec's
        for inner in ("parameters.steps.0.", "parameters.capture.screenshot.", "parameters.capture.pdf."):
            exc.message = exc.message.replace(inner, "parameters.")
        raise


def scrape_parameters(parameters: dict[str, Any]) -> tuple[str, list[str] | None]:
    """The ``scrape`` workflow's ``{project_id, target_ids?}`` (the project is looked up when the job is made)."""
    params = {k: v for k, v in parameters.items() if k not in TE_EXTRAS}
    extra = sorted(set(params) - {"project_id", "target_ids"})
    if extra:
        raise bad(f"parameters.{extra[0]}: not a parameter of the scrape workflow (it takes project_id and target_ids)")
    project_id = params.get("project_id")
    if not isinstance(project_id, str) or not project_id.strip():
        raise bad("parameters.project_id: the scrape workflow needs the id of one of your scrape projects (proj_...)")
    target_ids = params.get("target_ids")
    if target_ids is not None:
        if not isinstance(target_ids, list) or not target_ids:
            raise bad("parameters.target_ids: expected a non-empty list of target ids of the project (or leave it out for all its targets)")
        for i, tid in enumerate(target_ids):
            if not isinstance(tid, str) or not tid:
                raise bad(f"parameters.target_ids.{i}: expected a target id (tgt_...), got {tid!r}")
    return project_id.strip(), target_ids


def to_spec(settings: Settings, owner: str, workflow: Any, parameters: dict[str, Any]) -> JobSpec:
    if not isinstance(workflow, str) or not workflow.strip():
        raise bad("job.workflow: the workflow is required (browse, screenshot, pdf, agent, scrape or template:<name>)")
    params = {k: v for k, v in parameters.items() if k not in TE_EXTRAS}
    common = {"actions", "wait_until", "viewport", "timeout", "cookies", "headers", "user_agent", "retries", "retry_delay", "url"}
    if workflow == "browse":
        return _validated(params)
    if workflow == "screenshot":
        return _one_page(params, common | {"full_page"}, {"screenshot": {"fullPage": bool(params.get("full_page", True))}}, workflow)
    if workflow == "pdf":
        pdf_keys = {"format", "landscape", "margin", "media", "background", "scale", "size", "delay"}
        pdf = {k: params[k] for k in pdf_keys if k in params}
        return _one_page(params, common | pdf_keys, {"pdf": pdf or True}, workflow)
    if workflow == "agent":
        extra = sorted(set(params) - {"instructions", "timeout"})
        if extra:
            raise bad(f"parameters.{extra[0]}: the agent workflow takes only instructions (and timeout)")
        goal = params.get("instructions")
        if not isinstance(goal, str) or not goal.strip():
            raise bad("parameters.instructions: the agent workflow needs instructions in plain English")
        return _validated({"kind": "agent", "goal": goal.strip(), **({"timeout": params["timeout"]} if "timeout" in params else {})})
    if workflow.startswith("template:"):
        name = workflow[len("template:"):].strip()
        found = [t for t in templates.visible(settings, owner) if t.name == name]
        if not found:
            raise bad(f"job.workflow: no template named {name!r} (create it with POST /api/v1/templates)")
        try:
            request = templates.render(found[-1], {k: (v if isinstance(v, str) else str(v)) for k, v in params.items()})
            return native_spec(SubmitJob.model_validate(request))
        except ServiceError as exc:
            field = (exc.details or {}).get("field") or ""
            field = field.replace("variables.", "parameters.")
            raise bad(f"{field + ': ' if field else ''}{exc.message}") from None
        except ValidationError as exc:
            raise bad(f"job.workflow: template {name!r} does not make a valid job: {spec_errors(exc)[0]['message']}") from None
    raise bad(f"job.workflow: unknown workflow {workflow!r}; known: browse, screenshot, pdf, agent, scrape, template:<name>")
