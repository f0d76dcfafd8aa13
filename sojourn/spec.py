"""The JobSpec: the one language every dialect translates into.

Fields are snake_case; camelCase is accepted too (``userAgent``,
``fullPage``), so a JSON body written for Playwright's JavaScript API reads
naturally. Validation is strict (unknown fields are errors) and every error
names the field path (see :func:`spec_errors`). Bounds come from
:class:`~sojourn.settings.Settings`, so an operator can change them.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sojourn.browser.actions import ActionError, parse_action
from sojourn.settings import get_settings


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, validate_by_name=True, validate_by_alias=True)


_URL_RE = re.compile(r"^https?://[^\s/?#]+", re.I)


def _check_url(value: str) -> str:
    if not _URL_RE.match(value):
        raise ValueError("must be an http:// or https:// URL")
    if len(value) > 8192:
        raise ValueError("URL longer than 8192 characters")
    return value


HttpURL = Annotated[str, AfterValidator(_check_url)]


def _check_action(value: str | dict[str, Any]) -> str | dict[str, Any]:
    if len(value if isinstance(value, str) else json.dumps(value)) > 20_000:
        raise ValueError("action longer than 20000 characters")
    try:
        parse_action(value)
    except ActionError as exc:
        raise ValueError(str(exc)) from None
    return value


ActionItem = Annotated[str | dict[str, Any], AfterValidator(_check_action)]


class Viewport(_Model):
    width: int = Field(1280, ge=100, le=7680)
    height: int = Field(720, ge=100, le=7680)


class Cookie(_Model):
    name: str = Field(min_length=1, max_length=4096)
    value: str = Field(max_length=4096)
    domain: str | None = None
    path: str = "/"
    url: HttpURL | None = None
    expires: float | None = None
    http_only: bool = False
    secure: bool = False
    same_site: Literal["None", "Lax", "Strict"] | None = None

    @model_validator(mode="after")
    def _same_site_none_needs_secure(self) -> "Cookie":
        if self.same_site == "None" and not self.secure:
            raise ValueError("sameSite None requires secure: true")
        return self


class Step(_Model):
    url: HttpURL
    actions: list[ActionItem] = Field(default_factory=list)
    name: str | None = Field(None, max_length=200, description="shown as the current step and on screenshots")
    wait_until: Literal["load", "domcontentloaded", "networkidle", "commit"] = "load"
    timeout: float | None = Field(None, gt=0, description="seconds for navigation and each action")
    screenshot: bool = Field(False, description="take a named screenshot when this step ends")

    @field_validator("actions")
    @classmethod
    def _bounded(cls, v: list[Any]) -> list[Any]:
        limit = get_settings().max_actions_per_step
        if len(v) > limit:
            raise ValueError(f"at most {limit} actions per step")
        return v


PaperFormat = Literal["A0", "A1", "A2", "A3", "A4", "A5", "A6", "Letter", "Legal", "Tabloid", "Ledger"]


class Margin(_Model):
    top: float | str | None = None
    right: float | str | None = None
    bottom: float | str | None = None
    left: float | str | None = None


class PaperSize(_Model):
    width: float | str
    height: float | str


class PdfOptions(_Model):
    """Tourist's pdf options."""

    media: Literal["screen", "print"] = "screen"
    format: PaperFormat = "A4"
    landscape: bool = False
    background: bool = True
    margin: Margin | float | str | None = None
    size: PaperSize | None = None
    js: bool = True
    delay: int = Field(0, ge=0, le=10_000, description="ms to wait before rendering")
    scale: float = Field(1.0, ge=0.1, le=2.0)


class ScreenshotOptions(_Model):
    full_page: bool = True


class ProfileRef(_Model):
    id: str = Field(max_length=40)
    version: int = Field(ge=1)


class HarOptions(_Model):
    content: Literal["omit", "embed", "attach"] = Field(
        "embed", description="response bodies: left out, embedded in the HAR, or attached beside it (the HAR is then a zip)")


class Capture(_Model):
    screenshot: bool | ScreenshotOptions = False
    pdf: bool | PdfOptions = False
    har: bool | HarOptions = Field(False, description="the job's network traffic as a HAR file (network.har, or network.har.zip with attached bodies)")
    video: bool = False
    html: bool = False
    text: bool = False
    console: bool = False
    alerts: bool = False
    trace: bool = False
    moves: bool = Field(True, description="plain-English jobs: a screenshot after every move (the final one is kept either way when the job returns an image)")
    on_failure: bool = Field(True, description="when the job fails, keep a screenshot and the HTML of the page it was on (failure.png, failure.html)")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        # ["screenshot", "pdf"] is shorthand for {"screenshot": true, "pdf": true}
        if isinstance(data, list):
            return {str(k): True for k in data}
        return data

    @property
    def screenshot_options(self) -> ScreenshotOptions | None:
        if self.screenshot is True:
            return ScreenshotOptions()
        return self.screenshot or None

    @property
    def har_options(self) -> HarOptions | None:
        if self.har is True:
            return HarOptions()
        return self.har or None

    @property
    def pdf_options(self) -> PdfOptions | None:
        if self.pdf is True:
            return PdfOptions()
        return self.pdf or None

    @property
    def any(self) -> bool:
        """Anything to capture of the page when the job's steps are done (``moves`` is about agent moves; the HAR and
        the failure snapshot are recorded on the way)."""
        return any(bool(getattr(self, f)) for f in type(self).model_fields if f not in ("moves", "on_failure", "har"))


class ExtractRule(_Model):
    selector: str = Field(min_length=1, max_length=2000)
    type: Literal["css", "xpath"] | None = Field(None, description="default: xpath when the selector starts with / or (, else css")
    attribute: str | None = Field(None, description="attribute to read; default the element's text; 'html' for its inner HTML")
    all: bool = Field(False, description="every match as a list, not just the first")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"selector": data} if isinstance(data, str) else data

    @property
    def playwright_selector(self) -> str:
        kind = self.type or ("xpath" if self.selector.startswith(("/", "(")) else "css")
        return f"{kind}={self.selector}" if not self.selector.startswith(f"{kind}=") else self.selector


class Webhook(_Model):
    url: HttpURL
    events: list[Literal["job.completed", "job.failed", "job.cancelled"]] = Field(
        default_factory=lambda: ["job.completed", "job.failed", "job.cancelled"]
    )


class JobSpec(_Model):
    """A browser job: visit these pages, do these things, capture this."""

    kind: Literal["browse", "agent"] = "browse"
    browser: Literal["chromium", "firefox"] = "chromium"
    steps: list[Step] = Field(default_factory=list)
    cookies: list[Cookie] = Field(default_factory=list, max_length=500)
    headers: dict[str, str] = Field(default_factory=dict, max_length=100)
    user_agent: str | None = Field(None, max_length=1000)
    viewport: Viewport = Field(default_factory=Viewport)
    locale: str | None = Field(None, max_length=35)
    timezone: str | None = Field(None, max_length=64)
    capture: Capture = Field(default_factory=Capture)
    extract: dict[str, ExtractRule] = Field(default_factory=dict, max_length=200)
    goal: str | None = Field(None, max_length=10_000, description="plain-English task for agent jobs")
    timeout: float | None = Field(None, gt=0, description="seconds for the whole job")
    retries: int = Field(0, ge=0, description="retries per step")
    retry_delay: float = Field(1.0, ge=0, le=3600, description="seconds before the first retry; doubles each time")
    priority: Literal["high", "normal", "low"] = "normal"
    run_at: datetime | None = None
    cache_ttl: float | None = Field(None, gt=0, description="seconds an identical job may reuse this result")
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    url_allow: list[str] = Field(default_factory=list, max_length=200, description="host patterns every request of the job must match (example.com, *.example.com, 10.0.0.0/8); empty: the server's URL policy only. An API key's allow-list replaces it.")
    webhooks: list[Webhook] = Field(default_factory=list, max_length=20)
    hosts: dict[str, str] = Field(default_factory=dict, description="hostname → IP address the browser connects to for it (like /etc/hosts; at most 50), within the URL policy: it is checked on the hostname and on the address")
    profile: str | None = Field(None, max_length=100, description="a saved profile of yours (POST /api/v1/profiles): the job's fresh context starts from its cookies and storage")
    save_profile: bool = Field(False, description="when the job succeeds, its context's state becomes the profile's next version (refused with PROFILE_CONFLICT if another save came first)")
    profile_ref: ProfileRef | None = Field(None, description="set by the server from `profile` (the profile's id and version); a value sent is replaced")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: dict[str, str]) -> dict[str, str]:
        return valid_hosts(v)

    @field_validator("browser", "priority", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _bounds(self) -> "JobSpec":
        s = get_settings()
        if self.kind == "browse" and not self.steps:
            raise ValueError("steps: at least one step is required")
        if self.kind == "agent" and not self.goal:
            raise ValueError("goal: an agent job needs a goal")
        if len(self.steps) > s.max_steps:
            raise ValueError(f"steps: at most {s.max_steps} steps")
        if self.timeout is not None and self.timeout > s.max_job_timeout:
            raise ValueError(f"timeout: at most {s.max_job_timeout:g} seconds")
        if self.retries > s.max_retries:
            raise ValueError(f"retries: at most {s.max_retries}")
        if self.save_profile and not self.profile:
            raise ValueError("saveProfile: name the profile to save to in `profile`")
        for name, value in self.headers.items():
            if len(name) > 256 or len(value) > 8192:
                raise ValueError(f"headers: {name[:40]!r} is too long (names 256, values 8192 characters)")
        return self

    @property
    def effective_timeout(self) -> float:
        return self.timeout or get_settings().default_job_timeout

    def canonical_json(self) -> str:
        """The parts that decide a job's output, in a stable form (cache key)."""
        data = self.model_dump(mode="json", exclude={"priority", "run_at", "cache_ttl", "labels", "webhooks"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")


def valid_hosts(v: dict[str, str]) -> dict[str, str]:
    """The ``hosts`` map checked and normalized: at most 50 entries, hostnames (not IP literals) → IP literals."""
    import ipaddress

    if len(v) > 50:
        raise ValueError(f"at most 50 entries ({len(v)} given)")
    out: dict[str, str] = {}
    for name, address in v.items():
        host = str(name).strip().lower().rstrip(".")
        try:
            ipaddress.ip_address(host.strip("[]"))
            is_ip = True
        except ValueError:
            is_ip = False
        if is_ip or not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
            raise ValueError(f"{name!r} is not a hostname")
        try:
            out[host] = str(ipaddress.ip_address(str(address).strip().strip("[]")))
        except ValueError:
            raise ValueError(f"{name}: {address!r} is not an IP address") from None
    return out


_SCALAR_TAGS = {"bool", "str", "int", "float", "none", "list", "dict"}


def _is_union_tag(part: str) -> bool:
    """Pydantic names the union member an error came from in ``loc``; users don't need it."""
    return part in _SCALAR_TAGS or part in _MODEL_NAMES or part.startswith("function-") or "[" in part


def spec_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``[{field, message}]`` with dotted paths (``steps.0.actions.2``).

    Where a field accepts ``true`` or an options object, a bad object reports
    the object's errors, not also "should be a boolean".
    """
    found: list[tuple[str, str, bool]] = []
    for err in exc.errors(include_url=False):
        parts = [str(p) for p in err["loc"]]
        scalar_branch = bool(parts) and parts[-1] in _SCALAR_TAGS
        field = ".".join(p for p in parts if not _is_union_tag(p))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        # Model-level checks name their field in the message ("steps: ...").
        m = re.match(r"^([a-zA-Z_.]+): (.*)", msg, re.S)
        if m and not field:
            field, msg = m.group(1), m.group(2)
        found.append((field or "body", msg, scalar_branch))
    detailed = {f for f, _, scalar in found if not scalar}
    out = []
    for field, msg, scalar in found:
        if scalar and any(d == field or d.startswith(field + ".") for d in detailed):
            continue
        out.append({"field": field, "message": msg})
    return out


_MODEL_NAMES = {c.__name__ for c in list(globals().values()) if isinstance(c, type) and issubclass(c, BaseModel)}
