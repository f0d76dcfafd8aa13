"""What the scrape-jobs services share: ids, refusals, pagination, time formats."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import string
from datetime import datetime, timezone
from typing import Any

from sojourn.services.service_error import ServiceError
from sojourn.services.principals import Principal
from sojourn.store.clock import aware

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    """``proj_``, ``tgt_``, ``job_``, ``res_``, ``sch_`` + 12 lowercase alphanumerics, as the docs show them."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def derived_id(prefix: str, seed: str) -> str:
    """An id of the same form, the same for the same ``seed`` (every process adopting one run names it alike)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return f"{prefix}_" + "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:12])


def not_found(what: str, ident: str) -> ServiceError:
    return ServiceError(404, "NOT_FOUND", f"{what} '{ident}' not found", {"id": ident})


def invalid(field: str, message: str, code: str = "VALIDATION_ERROR") -> ServiceError:
    return ServiceError(422, code, f"Invalid field `{field}`: {message}", {"field": field})


def bad_request(code: str, message: str, **details: Any) -> ServiceError:
    return ServiceError(400, code, message, details)


def sees(principal: Principal, owner: str) -> bool:
    return principal.is_admin or principal.name == owner


def iso(dt: datetime | None) -> str | None:
    dt = aware(dt)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if dt is not None else None


def page_of(items: list[Any], total: int, page: int, per_page: int) -> dict[str, Any]:
    return {"items": items, "total": total, "page": page, "per_page": per_page, "pages": math.ceil(total / per_page) if total else 0}


def loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
