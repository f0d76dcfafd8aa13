"""fastlane's job payload, read as a browser job: ``image`` names the browser, ``command`` the JobSpec.

fastlane runs ``command`` in a container of ``image``. Here ``image`` is ``chromium``, ``chromium:<tag>``,
``firefox`` or an alias an operator configured (``SOJOURN_FASTLANE_IMAGE_ALIASES``), and ``command`` is a
JobSpec as JSON or a shorthand ``screenshot|pdf|text|html <url>``, after ``${VAR}`` substitution from
``envs``. A command or image that cannot run is not refused at enqueue (fastlane accepts any): its
execution fails with a readable error, as a failed pull or an unknown shell command does in fastlane.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from sojourn.settings import Settings
from sojourn.spec import JobSpec, spec_errors, valid_hosts

SHORTHANDS = {
    "screenshot": {"screenshot": {"fullPage": True}},
    "pdf": {"pdf": True},
    "text": {"text": True},
    "html": {"html": True},
}
SECRET_WORDS = ("password", "key", "secret", "client_id")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_START_IN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class CommandError(Exception):
    """The command (or image) cannot run: the execution fails with this message."""

    def __init__(self, message: str, *, pulling: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.pulling = pulling


def browser_of(image: str, settings: Settings) -> str:
    """The browser kind an image names; CommandError (a failed pull) when Sojourn cannot run it."""
    name = image.strip()
    aliases = {k.lower(): v for k, v in settings.fastlane_image_aliases.items()}
    base = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    for candidate in (name.lower(), base.lower()):
        if candidate in ("chromium", "firefox"):
            return candidate
        if candidate in aliases and aliases[candidate] in ("chromium", "firefox"):
            return aliases[candidate]
    known = ", ".join(sorted(aliases)) or "none configured"
    raise CommandError(
        f"Failed to pull image {name}: Sojourn runs browser images only: chromium, chromium:<tag>, firefox, "
        f"or an alias from SOJOURN_FASTLANE_IMAGE_ALIASES ({known}).",
        pulling=True,
    )


def substitute(command: str, envs: dict[str, Any]) -> str:
    """``${VAR}`` → the env's value (an unknown variable becomes empty, as in a shell)."""
    return _VAR.sub(lambda m: str(envs.get(m.group(1), "")), command)


def dns_hosts(entries: Any) -> dict[str, str]:
    """fastlane's ``additionalDNSEntries`` (``[{"ip", "hostnames": [...]}]``) as the JobSpec's ``hosts`` map;
    ValueError naming what is wrong."""
    if entries in (None, [], {}):
        return {}
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("must be a list of {ip, hostnames}")
    hosts: dict[str, str] = {}
    for i, entry in enumerate(entries):
        names = entry.get("hostnames")
        if isinstance(names, str):
            names = [names]
        if not isinstance(entry.get("ip"), str) or not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"entry {i} must be {{\"ip\": \"<address>\", \"hostnames\": [\"<name>\", ...]}}")
        for name in names:
            hosts[name] = entry["ip"]
    return valid_hosts(hosts)


def to_spec(image: str, command: str, envs: dict[str, Any], timeout: float | None, settings: Settings,
            hosts: dict[str, str] | None = None) -> JobSpec:
    """The JobSpec an execution runs; CommandError when it cannot run (the execution fails with it).
    ``hosts`` (from ``additionalDNSEntries``) is added to the command's own host map."""
    browser = browser_of(image, settings)
    text = substitute(command, envs).strip()
    data: dict[str, Any]
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"sojourn: the command is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(data, dict):
            raise CommandError("sojourn: a JSON command must be a JobSpec object")
    else:
        parts = text.split()
        verb = parts[0].lower() if parts else ""
        if verb not in SHORTHANDS or len(parts) != 2:
            shown = parts[0] if parts else "(empty)"
            raise CommandError(
                f"sh: 1: {shown}: not found (Sojourn runs a JobSpec as JSON or `screenshot|pdf|text|html <url>`)"
            )
        data = {"steps": [{"url": parts[1]}], "capture": dict(SHORTHANDS[verb])}
    capture = data.get("capture")
    if isinstance(capture, list):
        capture = {str(k): True for k in capture}
    capture = dict(capture or {})
    capture.setdefault("console", True)  # the page's console errors go to stderr
    data = {**data, "browser": browser, "capture": capture}
    if timeout is not None:
        data["timeout"] = min(float(timeout), settings.max_job_timeout)
    if hosts:
        own = data.get("hosts")
        data["hosts"] = {**(own if isinstance(own, dict) else {}), **hosts}
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        first = spec_errors(exc)[0]
        raise CommandError(f"sojourn: invalid command: Invalid field `{first['field']}`: {first['message']}") from None


def parse_start_in(value: Any) -> timedelta:
    """``2h30m50s`` (h, m, s in that order, each optional); ValueError otherwise."""
    m = _START_IN.match(str(value).strip())
    if not m or not any(m.groups()):
        raise ValueError(value)
    h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(hours=h, minutes=mi, seconds=s)


def parse_start_at(value: Any) -> datetime:
    """Unix seconds (int, float or numeric string); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


def redact_envs(envs: dict[str, Any]) -> dict[str, Any]:
    """Env values whose key names a secret show as ``***``."""
    return {k: ("***" if any(w in k.lower() for w in SECRET_WORDS) else v) for k, v in (envs or {}).items()}
