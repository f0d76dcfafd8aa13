"""fastlane's requests (bodies, query params, job ids), checked as fastlane checks them and answered with its
messages (HTTP parsing; the service gets normalized options)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import Request

from sojourn.services.fastlane import InputError, LookupFailed, commands
from sojourn.services.fastlane.cron import next_firing
from sojourn.store.clock import utcnow


async def read_body(request: Request) -> Any:
    """The JSON body, whatever the Content-Type (curl without a header works); ``None`` when empty."""
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise InputError("Failed to enqueue task because JSON body could not be parsed.") from None


def check_job_id(job_id: str) -> None:
    """A job id a client chooses (PUT) must be a UUID4."""
    try:
        ok = uuid.UUID(job_id).version == 4
    except ValueError:
        ok = False
    if not ok:
        raise InputError(f"The job_id {job_id} is not a valid UUID4. All job IDs must be UUID4.")


def parse_page(request: Request, operation: str) -> int:
    """The ``page`` query param (default 1), a positive integer."""
    raw = request.query_params.get("page", "1")
    try:
        page = int(raw)
        if page < 1:
            raise ValueError
    except ValueError:
        raise LookupFailed(400, "Tasks pagination page param should be a positive integer.", operation) from None
    return page


def search_words(request: Request) -> list[str]:
    """The ``query`` param of a search, required: the whole words a task id must have."""
    query = request.query_params.get("query")
    if not query:
        raise LookupFailed(400, "The query param is required.", "search_tasks")
    return query.split()


def parse_enqueue(body: Any) -> dict[str, Any]:
    """The payload checks fastlane makes, with its messages (first failure wins, in fastlane's order); returns the
    normalized options: image, command, envs, custom, retries, expiration, timeout, webhooks, notify,
    additionalDNSEntries, and run_at/startIn/startAt/cron when given. The service caps retries and timeout."""
    if not isinstance(body, dict):
        raise InputError("Failed to enqueue task because JSON body could not be parsed.")
    image, command = body.get("image"), body.get("command")
    if not image or not command or not isinstance(image, str) or not isinstance(command, str):
        raise InputError("image and command must be filled in the request.")
    given = [k for k in ("startAt", "startIn", "cron") if body.get(k) is not None]
    if len(given) > 1:
        raise InputError("Only ONE of 'startAt', 'startIn' and 'cron' should be in the request.")
    opts: dict[str, Any] = {
        "envs": body.get("envs") or {},
        "custom": body.get("metadata") or {},
        "retries": body.get("retries", 0) or 0,
        "expiration": body.get("expiration"),
        "timeout": body.get("timeout"),
        "webhooks": body.get("webhooks") or {},
        "notify": body.get("notify") or {},
        "additionalDNSEntries": body.get("additionalDNSEntries") or [],
    }
    try:
        commands.dns_hosts(opts["additionalDNSEntries"])
    except ValueError as exc:
        raise InputError(f"additionalDNSEntries: {exc}.") from None
    if not isinstance(opts["envs"], dict):
        raise InputError("envs must be an object of names to values.")
    if not isinstance(opts["custom"], dict):
        raise InputError("metadata must be an object.")
    try:
        opts["retries"] = int(opts["retries"])
        if opts["retries"] < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise InputError("retries must be a non-negative integer.") from None
    for name in ("expiration", "timeout"):
        if opts[name] is not None:
            try:
                opts[name] = float(opts[name])
                if opts[name] <= 0 and name == "timeout":
                    raise ValueError
            except (TypeError, ValueError):
                raise InputError(f"{name} must be a positive number of seconds.") from None
    if not isinstance(opts["webhooks"], dict):
        raise InputError("webhooks must be an object with succeeds, fails and finishes lists.")
    for event, hooks in opts["webhooks"].items():
        if event not in ("succeeds", "fails", "finishes") or not isinstance(hooks, list) or not all(
                isinstance(h, dict) and isinstance(h.get("url"), str) for h in hooks):
            raise InputError(f"webhooks.{event} must be a list of {{url, headers, retries}} (events: succeeds, fails, finishes).")
    if body.get("startIn") is not None:
        try:
            opts["run_at"] = utcnow() + commands.parse_start_in(body["startIn"])
        except ValueError:
            raise InputError("startIn must be a duration like 2h30m50s (h, m and s in that order).") from None
        opts["startIn"] = body["startIn"]
    if body.get("startAt") is not None:
        try:
            opts["run_at"] = commands.parse_start_at(body["startAt"])
        except (TypeError, ValueError, OverflowError, OSError):
            raise InputError("startAt must be a unix timestamp in seconds.") from None
        opts["startAt"] = body["startAt"]
    if body.get("cron") is not None:
        try:
            next_firing(str(body["cron"]), utcnow())
        except ValueError as exc:
            raise InputError(f"cron is not a valid cron expression: {exc}") from None
        opts["cron"] = str(body["cron"])
    return {"image": image, "command": command, **opts}
