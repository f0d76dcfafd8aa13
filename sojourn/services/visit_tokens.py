"""Tourist-style tokens: an issuer token mints visit tokens scoped to a URL.

Signed JWTs (HS256) under a persistent secret: ``SOJOURN_TOURIST_SECRET``, or
one generated once and stored under ``SOJOURN_HOME`` (mode 0600), so tokens
survive restarts. Scope rules fix Tourist's flaws:

* strict: every requested URL must equal the scope exactly;
* non-strict: same registrable domain (public suffix list, so ``a.github.io``
  and ``b.github.io`` are different sites), and for IP addresses or single-label
  hosts the exact host (Tourist compared the last two labels, so 127.0.0.1
  matched 10.0.0.1);
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import jwt

from sojourn.local_secrets import stored_secret
from sojourn.settings import Settings

ALGORITHM = "HS256"
ISSUER = "sojourn-tourist"


class TokenError(Exception):
    pass


@dataclass(frozen=True)
class VisitToken:
    scope: str
    strict: bool


def secret(settings: Settings) -> bytes:
    if settings.tourist_secret:
        return settings.tourist_secret.get_secret_value().encode()
    return stored_secret(settings, "tourist.secret", lambda: secrets.token_urlsafe(48)).encode()


def issue(settings: Settings, kind: str, *, scope: str | None = None, strict: bool = False, validity: float | None = None) -> str:
    now = int(time.time())
    claims: dict = {"iss": ISSUER, "typ": kind, "iat": now}
    if validity is not None:
        claims["exp"] = now + int(validity)
    if kind == "visit":
        claims.update(scope=scope, strict=strict)
    return jwt.encode(claims, secret(settings), algorithm=ALGORITHM)


def issuer_token(settings: Settings) -> str:
    """An issuer token: it can mint visit tokens and nothing else."""
    return issue(settings, "issuer")


def decode(settings: Settings, token: str, kind: str) -> dict:
    try:
        claims = jwt.decode(token, secret(settings), algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["iss", "typ", "iat"]})
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from None
    if claims.get("typ") != kind:
        raise TokenError(f"not a {kind} token")
    return claims


def visit_token(settings: Settings, token: str) -> VisitToken:
    claims = decode(settings, token, "visit")
    scope = claims.get("scope")
    if not isinstance(scope, str) or not scope:
        raise TokenError("visit token without a scope")
    return VisitToken(scope, bool(claims.get("strict")))


@lru_cache(maxsize=1)
def _psl():
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def _site(host: str) -> str:
    """The registrable domain of a host; the host itself for IPs and single labels."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    return _psl().privatesuffix(host) or host


def covers(token: VisitToken, url: str) -> bool:
    if token.strict:
        return url == token.scope
    want, got = urlsplit(token.scope), urlsplit(url)
    if not got.hostname or not want.hostname:
        return False
    return _site(want.hostname) == _site(got.hostname)
