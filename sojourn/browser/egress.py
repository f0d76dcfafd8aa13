"""The egress proxy: every request a job's browser makes passes here and is checked.

Each job's browser context is pointed at a proxy listener of its own
(Playwright's per-context ``proxy``, a loopback port opened for that job and
closed with it), so the proxy knows which job, and which job policy, a
connection belongs to. (Credentials per job were the first design; Chromium's
407 challenge round trip then occasionally showed the 407 page instead of
answering it, so the port is the identity now.) That covers what a route handler on the
page cannot: redirects (each hop is a new request through the proxy),
subresources, frames, popups, fetch/XHR/WebSocket from page scripts, and
DNS rebinding (the proxy resolves the name once, checks every address, and
connects to the address it checked, so a second answer cannot slip past).

A job's ``hosts`` map (hostname → IP, like /etc/hosts) is applied here too: a
request or CONNECT tunnel to a mapped name connects to its address (the Host
header and TLS SNI stay the name, as the browser sent them), and the URL policy
is checked on the name (deny rules, allow-lists) and on the address (loopback,
private, metadata), as for a name that resolved to it.

What is refused (see :mod:`sojourn.browser.url_policy` for the rules) gets
``403`` with ``X-Sojourn-Blocked`` for plain HTTP, or a refused tunnel for
HTTPS, and is recorded against the job so it shows in the job's log.

It is a deliberately small HTTP/1.1 forward proxy: CONNECT tunnels, and for
plain HTTP one request per upstream connection (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sojourn.browser.url_policy import Decision, check_host, classify, host_allowed, host_matches
from sojourn.settings import get_settings

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024


@dataclass
class JobPolicy:
    """One job's view of the proxy: its allow-list and what was refused."""

    job_id: str
    url_allow: tuple[str, ...] = ()
    blocked: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    hosts: dict[str, str] = field(default_factory=dict)  # hostname → IP the job's requests to it connect to

    async def check(self, host: str) -> Decision:
        """The URL policy for a request to ``host``, through the job's host map."""
        name = host.lower().rstrip(".")
        mapped = self.hosts.get(name)
        if mapped is None:
            return await check_host(host, self.url_allow)
        return check_mapped(name, mapped, self.url_allow)

    def record(self, target: str, reason: str) -> None:
        if len(self.blocked) < 500:
            self.blocked.append({"url": target, "reason": reason, "at": time.time()})

    def proxy_options(self) -> dict[str, str]:
        return {"server": f"http://127.0.0.1:{self.port}"}


class EgressProxy:
    """One loopback listener per registered job policy."""

    def __init__(self) -> None:
        self._servers: dict[int, asyncio.base_events.Server] = {}

    async def register(self, policy: JobPolicy) -> dict[str, str]:
        """Open the job's listener; returns Playwright's ``proxy`` option for its context."""
        server = await asyncio.start_server(lambda r, w: self._handle(r, w, policy), "127.0.0.1", 0, limit=MAX_HEAD)
        policy.port = server.sockets[0].getsockname()[1]
        self._servers[id(policy)] = server
        return policy.proxy_options()

    def unregister(self, policy: JobPolicy) -> None:
        server = self._servers.pop(id(policy), None)
        if server is not None:
            server.close()

    async def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()

    # -------------------------------------------------------------- one client connection
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, policy: JobPolicy) -> None:
        try:
            await self._serve(reader, writer, policy)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass
        except Exception as exc:  # never take the worker down for one connection
            log.warning("egress proxy: %r", exc)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, policy: JobPolicy) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=60)
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            return await _reply(writer, 400, "Bad Request")
        headers = [tuple(h.split(":", 1)) for h in lines[1:] if ":" in h]

        if method.upper() == "CONNECT":
            host, _, port_text = target.rpartition(":")
            port = int(port_text) if port_text.isdigit() else 443
            host = host.strip("[]")
            shown = f"https://{host}" + ("" if port == 443 else f":{port}")
        else:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                return await _reply(writer, 400, "Bad Request")
            host, port = parts.hostname, parts.port or 80
            shown = target

        decision = await policy.check(host)
        if not decision.allowed:
            return await self._refuse(writer, policy, shown, decision)
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(decision.address, port), timeout=30)
        except (OSError, asyncio.TimeoutError) as exc:
            # Said in the browser's own words, so a job's error reads as it would without the proxy.
            net = "net::ERR_CONNECTION_REFUSED" if isinstance(exc, ConnectionRefusedError) else (
                "net::ERR_CONNECTION_TIMED_OUT" if isinstance(exc, asyncio.TimeoutError) else "net::ERR_CONNECTION_FAILED")
            return await _reply(writer, 502, "Bad Gateway", {"X-Sojourn-Upstream-Error": net}, body=f"could not connect to {host}:{port}: {net}")

        if method.upper() == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
        else:
            path = urlsplit(target)._replace(scheme="", netloc="").geturl() or "/"
            keep = [(k, v) for k, v in headers if k.strip().lower() not in ("proxy-authorization", "proxy-connection", "connection", "keep-alive")]
            out = [f"{method} {path} {version}"] + [f"{k}:{v}" for k, v in keep] + ["Connection: close", "", ""]
            up_writer.write("\r\n".join(out).encode("latin-1"))
            await up_writer.drain()
        await _pipe_both(reader, writer, up_reader, up_writer)

    async def _refuse(self, writer: asyncio.StreamWriter, policy: JobPolicy, shown: str, decision: Decision) -> None:
        policy.record(shown, decision.reason)
        log.warning("job %s: blocked %s (%s)", policy.job_id, shown, decision.reason)
        await _reply(writer, 403, "Forbidden", {"X-Sojourn-Blocked": decision.reason}, body=f"Blocked by Sojourn's URL policy: {decision.reason}")


def check_mapped(host: str, address: str, job_allow: tuple[str, ...] | list[str] = ()) -> Decision:
    """:func:`check_host` for a name the job maps to ``address`` itself: the name passes the deny rules and the
    allow-lists (by name, or by its address for IP patterns), and the address the server's policy."""
    for pattern in get_settings().url_deny:
        if host_matches(host, pattern):
            return Decision(False, f"{host} matches the deny rule {pattern!r}")
    allow = list(job_allow)
    if allow and not (host_allowed(host, allow) or host_allowed(address, allow)):
        return Decision(False, f"{host} is not in this job's URL allow-list")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return Decision(False, f"{host} is mapped to {address!r}, which is not an IP address")
    why = classify(ip)
    if why:
        return Decision(False, f"{host} is mapped to {why.replace(' is ', ', ', 1)}")
    return Decision(True, address=str(ip))


async def _reply(writer: asyncio.StreamWriter, status: int, reason: str, headers: dict[str, str] | None = None, body: str = "") -> None:
    data = body.encode()
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(data)}", "Content-Type: text/plain; charset=utf-8", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
    await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            dst.write_eof()
        except (OSError, RuntimeError, AttributeError):
            pass


async def _pipe_both(r1: asyncio.StreamReader, w1: asyncio.StreamWriter, r2: asyncio.StreamReader, w2: asyncio.StreamWriter) -> None:
    try:
        await asyncio.gather(_pipe(r1, w2), _pipe(r2, w1))
    finally:
        w2.close()
