"""A WebDriver BiDi relay that lets Playwright drive a stock Firefox (Debian's ``firefox-esr``).

Playwright speaks WebDriver BiDi to a stock Firefox (``firefox.launch(channel="moz-firefox")``),
but Playwright 1.65 sends a few commands an ESR build does not know yet, and fails
the whole ``new_context`` when Firefox answers ``unknown command``. This relay sits
between the two and changes exactly that, nothing else:

* ``emulation.setMediaFeaturesOverride`` (sent for every context and page) is passed
  on; if Firefox does not know it and the override asks for nothing beyond what
  Firefox already does (no ``prefers-color-scheme``, or ``light``: headless Firefox
  renders light), the answer becomes a success. A ``dark`` request still fails,
  in Firefox's own words: a job never silently gets what it did not ask for.
* ``browser.createUserContext`` with a proxy: Playwright fills ``httpProxy`` only
  (the BiDi field for ``http:`` URLs). Sojourn's egress proxy speaks CONNECT, so the
  relay sets ``sslProxy`` to the same proxy: every request of the context, HTTPS
  included, goes through the URL policy, as it does on Chromium.
* ``browsingContext.print``: Playwright 1.65 sends the paper size and margins in
  inches (its paper-format table, ``convertPrintParameterToInches``), where
  WebDriver BiDi measures them in centimetres; Firefox then printed A4 as
  8.27 × 11.7 cm. The relay converts them (× 2.54). Puppeteer had the same bug
  (puppeteer#13515); ``tests/test_firefox.py`` checks the printed page size, so a
  Playwright that fixes it upstream fails that test instead of printing 2.54× too big.

How it is placed: this file is the ``executable_path`` Playwright launches (through
a two-line launcher script the pool writes, see :func:`launcher`). It starts the
real Firefox with Playwright's arguments, passes Firefox's output through, and
replaces the ``WebDriver BiDi listening on ws://...`` line Playwright waits for
with its own address. Firefox and the relay share Playwright's process group, so
Playwright's kill reaches both; the relay exits with Firefox's exit status. When
Playwright's driver dies without killing them (its worker killed outright), the
relay is told by the kernel and stops Firefox (``sojourn.lifeline``).

Only the standard library and ``websockets`` are imported: it starts as its own
small process, next to Firefox, not in the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://\S+)")

# Commands an older Firefox may not know, and when "unknown command" may be answered as success.
MEDIA_OVERRIDE = "emulation.setMediaFeaturesOverride"
CREATE_USER_CONTEXT = "browser.createUserContext"
PRINT = "browsingContext.print"
_WATCHED = (MEDIA_OVERRIDE, CREATE_USER_CONTEXT, PRINT)
CM_PER_INCH = 2.54


def launcher(directory: Path, firefox: str, python: str | None = None) -> Path:
    """Write the executable Playwright launches: this relay in front of ``firefox``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "firefox-bidi-relay"
    quote = lambda s: "'" + s.replace("'", "'\\''") + "'"  # noqa: E731
    path.write_text(
        "#!/bin/sh\n# Sojourn: Firefox behind its WebDriver BiDi relay (sojourn/browser/bidi_relay.py)\n"
        f"exec {quote(python or sys.executable)} -P {quote(str(Path(__file__).resolve()))} {quote(firefox)} \"$@\"\n"
    )
    path.chmod(0o755)
    return path


def print_in_centimetres(params: dict) -> bool:
    """Playwright's inches, in place, as the centimetres BiDi measures paper and margins in; True if anything changed."""
    changed = False
    for group, keys in (("page", ("width", "height")), ("margin", ("top", "right", "bottom", "left"))):
        values = params.get(group)
        if not isinstance(values, dict):
            continue
        for key in keys:
            value = values.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[key] = value * CM_PER_INCH
                changed = True
    return changed


def tolerable_media_override(params: dict) -> bool:
    """An override that asks for what headless Firefox does anyway."""
    features = params.get("features") or {}
    if not isinstance(features, dict):
        return False
    return all(k == "prefers-color-scheme" and v in (None, "light") for k, v in features.items())


class Patcher:
    """Per connection: what to change on the way to Firefox, and which answers to forgive."""

    def __init__(self) -> None:
        self.forgive: set[int] = set()
        self.forgiven = 0

    def to_browser(self, text: str) -> str:
        if not any(name in text for name in _WATCHED):
            return text
        try:
            msg = json.loads(text)
        except ValueError:
            return text
        method, params = msg.get("method"), msg.get("params") or {}
        if method == MEDIA_OVERRIDE and tolerable_media_override(params) and isinstance(msg.get("id"), int):
            self.forgive.add(msg["id"])
            return text
        if method == CREATE_USER_CONTEXT:
            proxy = params.get("proxy")
            if isinstance(proxy, dict) and proxy.get("proxyType") == "manual" and proxy.get("httpProxy") and not proxy.get("sslProxy"):
                proxy["sslProxy"] = proxy["httpProxy"]
                return json.dumps(msg)
        if method == PRINT and print_in_centimetres(params):
            return json.dumps(msg)
        return text

    def to_client(self, text: str) -> str:
        if not self.forgive or '"id"' not in text:
            return text
        try:
            msg = json.loads(text)
        except ValueError:
            return text
        msg_id = msg.get("id")
        if msg_id not in self.forgive:
            return text
        self.forgive.discard(msg_id)
        if msg.get("type") == "error" and msg.get("error") == "unknown command":
            self.forgiven += 1
            if self.forgiven == 1:
                _say(f"bidi relay: this Firefox has no {MEDIA_OVERRIDE}; the default (light) applies")
            return json.dumps({"type": "success", "id": msg_id, "result": {}})
        return text


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


async def _relay(client, upstream_base: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    path = client.request.path if client.request is not None else "/session"
    patcher = Patcher()
    try:
        upstream = await connect(upstream_base + path, max_size=None, compression=None, ping_interval=None, proxy=None, open_timeout=30)
    except Exception as exc:  # Firefox gone or refusing: the client sees a closed socket
        _say(f"bidi relay: could not reach Firefox at {upstream_base}{path}: {exc!r}")
        await client.close(1011, "firefox unreachable")
        return

    trace = open(os.environ["SOJOURN_BIDI_RELAY_LOG"], "a") if os.environ.get("SOJOURN_BIDI_RELAY_LOG") else None

    async def pump(src, dst, change) -> None:
        arrow = ">> " if src is client else "<< "
        try:
            async for message in src:
                if trace is not None:
                    trace.write(arrow + (message if isinstance(message, str) else f"<{len(message)} bytes>")[:2000] + "\n")
                    trace.flush()
                await dst.send(change(message) if isinstance(message, str) else message)
        except ConnectionClosed:
            pass
        finally:
            await dst.close()

    async with upstream:
        await asyncio.gather(pump(client, upstream, patcher.to_browser), pump(upstream, client, patcher.to_client))


async def _forward_output(stream: asyncio.StreamReader, out, on_listening) -> None:
    while line := await stream.readline():
        match = LISTENING.search(line)
        if match:
            line = line[: match.start(1)] + (await on_listening(match.group(1).decode())).encode() + line[match.end(1):]
        out.write(line)
        out.flush()


async def run(firefox: str, args: list[str]) -> int:
    from websockets.asyncio.server import serve

    from sojourn.lifeline import die_with_parent

    # Firefox listens on a port, not on a pipe: nothing tells it its driver is gone. It dies with this relay, and the
    # relay stops it when Playwright's driver dies (a worker killed outright), instead of both living on.
    die_with_parent(signal.SIGTERM)
    proc = await asyncio.create_subprocess_exec(
        firefox, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    servers = []

    async def on_listening(upstream: str) -> str:
        base = re.match(r"ws://[^/]+", upstream).group(0)
        server = await serve(
            lambda ws: _relay(ws, base), "127.0.0.1", 0,
            max_size=None, compression=None, ping_interval=None, server_header=None, open_timeout=30,
        )
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}" + upstream[len(base):]

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda s=sig: proc.returncode is None and proc.send_signal(s))
    await asyncio.gather(
        _forward_output(proc.stdout, sys.stdout.buffer, on_listening),
        _forward_output(proc.stderr, sys.stderr.buffer, on_listening),
    )
    code = await proc.wait()
    for server in servers:
        server.close()
    return code if code >= 0 else 128 - code


def main(argv: list[str]) -> int:
    if not argv:
        _say("usage: bidi_relay.py FIREFOX [firefox arguments...]")
        return 2
    try:
        return asyncio.run(run(argv[0], argv[1:]))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.pop("PYTHONSTARTUP", None)
    sys.exit(main(sys.argv[1:]))
