"""A local test site like Tourist's, served by the tests (never the internet).

It records every request it receives (path, headers, cookies) so tests can
assert what reached the server, not just what the page showed.
"""

from __future__ import annotations

import html
import json
import socket
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests import minisites

# 1x1 transparent PNG
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def page(title: str, body: str, head: str = "") -> bytes:
    return f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title>{head}</head><body>{body}</body></html>".encode()


PAGES: dict[str, bytes] = {
    "/": page("Home", "<h1>Hello Sojourn</h1><p id=intro>A tiny page for tests.</p><a id=to-echo href=/echo>echo</a>"),
    "/buttons": page(
        "Buttons",
        """<h1>Buttons</h1><p id=out>none</p>
        <button id=one onclick="out.textContent='one'">One</button>
        <button id=two onclick="out.textContent='two'" aria-label="Second button">Two</button>
        <button id=dbl ondblclick="out.textContent='double'">Double</button>
        <div id=hov onmouseover="out.textContent='hovered'" style="width:50px;height:50px;background:#ccc">hover</div>
        <ul><li class=item>alpha</li><li class=item>beta</li><li class=item>gamma</li></ul>
        <a id=logo href=/ title="Logo link"><img alt="Company logo" src=/pixel.png></a>
        <button data-testid=tid onclick="out.textContent='by test id'">T</button>""",
    ),
    "/form": page(
        "Form",
        """<form action=/submitted method=get>
        <label for=q>Search</label><input id=q name=q placeholder="Type here">
        <label for=typed>Typed</label><input id=typed name=typed>
        <select id=color name=color><option value=red>Red</option><option value=blue>Blue</option></select>
        <label><input type=checkbox id=agree name=agree value=yes> I agree</label>
        <input type=submit id=go value=Submit>
        </form>
        <p id=keys></p>
        <script>document.getElementById('typed').addEventListener('keydown', e => {
          document.getElementById('keys').textContent += e.key + ' ';});</script>""",
    ),
    "/dialogs": page(
        "Dialogs",
        """<p id=result>none</p>
        <button id=alert onclick="alert('alert says hi')">alert</button>
        <button id=confirm onclick="result.textContent = confirm('sure?') ? 'confirmed' : 'declined'">confirm</button>
        <button id=prompt onclick="result.textContent = 'prompted:' + prompt('name?')">prompt</button>""",
    ),
    "/confirm-nav": page(
        "Confirm",
        """<button id=ask onclick="location = '/echo?answer=' + (confirm('sure?') ? 'yes' : 'no')">ask</button>""",
    ),
    "/alert-on-load": page("Alert", "<h1>alerting</h1>", "<script>alert('loaded alert')</script>"),
    "/popup": page(
        "Popup",
        """<button id=open onclick="window.popup = window.open('/alert-on-load')">open popup</button>""",
    ),
    "/mouse": page(
        "Mouse",
        """<div id=pad style="position:fixed;left:0;top:0;width:400px;height:200px;background:#eee"
          onclick="out.textContent = 'click ' + event.clientX + ',' + event.clientY"
          ondblclick="out.textContent = 'double ' + event.clientX + ',' + event.clientY"></div>
        <p id=out style="margin-top:240px">none</p>""",
    ),
    "/console": page("Console", "<h1>console</h1>", "<script>console.log('hello from page'); console.warn('careful')</script>"),
    "/slow-image": page("Slow image", "<h1>slow</h1><img id=img src='/slow.png?ms=1500'>"),
    "/never": b"",  # handled specially: never finishes
    "/table": page(
        "Table",
        """<table id=t><tr><th>name</th><th>price</th></tr>
        <tr class=row><td class=name>Widget</td><td class=price data-cents=1999>$19.99</td></tr>
        <tr class=row><td class=name>Gadget</td><td class=price data-cents=2999>$29.99</td></tr></table>
        <a class=link href=/a>A</a><a class=link href=/b>B</a>""",
    ),
    "/login": page("Log in", "<form action=/do-login><input id=user name=user><button id=go>Log in</button></form>"),
    "/painted": page("Painted", "<div style='position:fixed;inset:0;background:#e0452b'></div><h1 id=painted style='position:relative'>Painted red</h1>"),
    "/pdf": page("PDF source", "<h1>Printable heading</h1><p>The quick brown fox jumps over the lazy dog.</p>"),
    "/long": page("Long", "<div style='height:3000px;background:linear-gradient(#fff,#00f)'>top</div><p>bottom</p>"),
    "/animated": page(
        "Animated",
        "<div id=box style='width:100px;height:100px;background:red'></div>"
        "<script>let i=0;setInterval(()=>{box.style.background=['red','green','blue'][i++%3]},100)</script>",
    ),
}


@dataclass
class Hit:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    cookies: dict[str, str]
    host: str


@dataclass
class SiteState:
    hits: list[Hit] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_to(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


class _Handler(BaseHTTPRequestHandler):
    state: SiteState  # set on the subclass per server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - a router
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        cookies = {k: m.value for k, m in SimpleCookie(self.headers.get("Cookie", "")).items()}
        hit = Hit(path, query, {k.lower(): v for k, v in self.headers.items()}, cookies, self.headers.get("Host", ""))
        with self.state.lock:
            self.state.hits.append(hit)
        q = lambda name, default="": query.get(name, [default])[0]  # noqa: E731

        if path == "/echo":
            body = page(
                "Echo",
                f"<pre id=headers>{html.escape(json.dumps(hit.headers, sort_keys=True))}</pre>"
                f"<pre id=cookies>{html.escape(json.dumps(cookies, sort_keys=True))}</pre>",
            )
            return self._send(200, body)
        if path == "/set-cookie":
            name, value = q("name", "session"), q("value", "abc")
            return self._send(200, page("Cookie set", f"<p id=set>{html.escape(name)}</p>"), headers={"Set-Cookie": f"{name}={value}; Path=/"})
        if path == "/do-login":  # the login form's target: a session cookie, and the name in localStorage too
            user = html.escape(q("user"))
            script = f"<script>localStorage.setItem('member', '{user}')</script>"
            return self._send(200, page("Logged in", f"<p id=done>Hello {user}</p>{script}"), headers={"Set-Cookie": f"member={user}; Path=/"})
        if path == "/members":  # a members-only page: who the session cookie says, and what localStorage says
            who = cookies.get("member")
            body = f"<p id=welcome>Welcome, {html.escape(who)}</p>" if who else "<p id=welcome>Please log in</p>"
            return self._send(200, page("Members", body + "<p id=stored></p><script>document.getElementById('stored').textContent = "
                                                          "localStorage.getItem('member') || 'nothing stored'</script>"))
        if path == "/redirect":
            return self._send(302, b"", headers={"Location": q("to", "/")})
        if path == "/submitted":
            return self._send(200, page("Submitted", f"<pre id=query>{html.escape(json.dumps(query, sort_keys=True))}</pre>"))
        if path == "/cross-site":
            # A page on one site that loads a frame from another (SameSite tests).
            return self._send(200, page("Cross", f"<iframe id=f src='{html.escape(q('frame'))}'></iframe>"))
        if path == "/pixel.png":
            return self._send(200, PIXEL, "image/png")
        if path == "/slow.png":
            time.sleep(int(q("ms", "1000")) / 1000)
            return self._send(200, PIXEL, "image/png")
        if path == "/never":
            time.sleep(float(q("s", "60")))
            return self._send(200, page("Finally", "late"))
        if path == "/flaky":
            key = q("key")
            with self.state.lock:
                self.state.counters[key] += 1
                n = self.state.counters[key]
            if n <= int(q("fail", "2")):
                return self._send(503, page("Busy", f"<p id=busy>{n}</p>"))
            return self._send(200, page("Flaky", f"<p id=attempt>{n}</p>"))
        if path == "/heavy":
            rows = "".join(f"<p class=r>Row {i} " + "lorem ipsum dolor sit amet " * 8 + "</p>" for i in range(800))
            imgs = "".join(f"<img src='/pixel.png?{i}' width=20 height=20>" for i in range(20))
            scripts = "".join(f"<script>window.v{i} = {i};</script>" for i in range(10))
            return self._send(200, page("Heavy", imgs + rows + scripts))
        mini = minisites.route(path, {k: v[0] for k, v in query.items()})
        if mini is not None:
            return self._send(200, mini)
        body = PAGES.get(path)
        if body is None:
            return self._send(404, page("Not found", "<h1>404</h1>"))
        return self._send(200, body)

    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that went away (a cancelled job's visit to /never) leaves its answer nowhere to go: not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class Site:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.state = SiteState()
        self.host = f"[{host}]" if ":" in host else host
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = (_Server6 if ":" in host else _Server)((host, 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Site":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"
