"""Which hosts a job may reach: job and key allow-lists, and the server's policy on resolved addresses.

Host patterns (a key's URL allow-list, a job's `url_allow`):

- ``example.com``: that host only;
- ``*.example.com``: any subdomain of example.com, not example.com itself;
- ``10.0.0.0/8`` or ``127.0.0.1``: IP literals in that network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

from sojourn.settings import get_settings


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_matches(host: str, pattern: str) -> bool:
    host, pattern = host.lower().rstrip("."), pattern.lower().strip().rstrip(".")
    if not host or not pattern:
        return False
    if "/" in pattern or _ip(pattern) is not None:
        ip = _ip(host)
        if ip is None:
            return False
        try:
            return ip in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return host == pattern


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    return any(host_matches(host, p) for p in patterns)


def url_host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


# ---------------------------------------------------------------------- the server's policy, on resolved addresses

# Never, whatever the settings say: cloud metadata endpoints and link-local ranges.
ALWAYS_DENIED = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")]
LOOPBACK = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128")]
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    address: str = ""  # the address to connect to: the one that was checked


def classify(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address is refused, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    settings = get_settings()
    if any(ip in n for n in ALWAYS_DENIED):
        return f"{ip} is link-local or a cloud metadata address"
    for pattern in settings.url_deny:
        if host_matches(str(ip), pattern):
            return f"{ip} matches the deny rule {pattern!r}"
    if any(ip in n for n in LOOPBACK):
        return None if settings.allow_loopback else f"{ip} is a loopback address (SOJOURN_ALLOW_LOOPBACK is off)"
    if any(ip in n for n in PRIVATE):
        return None if settings.allow_private_networks else f"{ip} is a private address (SOJOURN_ALLOW_PRIVATE_NETWORKS is off)"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return f"{ip} is not a unicast address"
    return None


async def check_host(host: str, job_allow: Iterable[str] = ()) -> Decision:
    """Is ``host`` allowed for this job? Resolves names once; every address must pass, the first is used."""
    host = host.lower().rstrip(".")
    job_allow = list(job_allow)
    settings = get_settings()
    by_name = not job_allow or host_allowed(host, job_allow)
    ip_patterns = [p for p in job_allow if "/" in p or _ip(p) is not None]
    if not by_name and not ip_patterns:
        return Decision(False, f"{host} is not in this job's URL allow-list")
    for pattern in settings.url_deny:
        if host_matches(host, pattern):
            return Decision(False, f"{host} matches the deny rule {pattern!r}")
    literal = _ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return Decision(False, f"{host} does not resolve ({exc.strerror})")
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos))
    for ip in addresses:
        why = classify(ip)
        if why:
            return Decision(False, f"{host} resolves to {why.replace(' is ', ', ', 1)}" if literal is None else why)
        if not by_name and not host_allowed(str(ip), ip_patterns):
            return Decision(False, f"{host} ({ip}) is not in this job's URL allow-list")
    return Decision(True, address=str(addresses[0]))
