"""A small catalogue site for the scrape-jobs tests, served on 127.0.0.1 by a ThreadingHTTPServer.

    /catalog?page=N   3 pages of 4 products, a "next" link on pages 1-2; page 2 repeats the last item of page 1
    /paged?page=N     3 products on pages 1-2 (no links: read with a ?page={page} template); page 3 is empty
    /js               3 products that appear only after JavaScript has run (300 ms after load)
    /slow?page=N      40 pages of 2 products, each page answered after 1.2 s, "next" links
    /missing          404
    /about            a plain page (a target without an item selector is one result)
    /many?n=N&page=P  N products per page (ids carry the page), "next" links up to page 10
    /books/page-N.html  the README's example: <article>s with an <h3> title and a .price, "a.next" links, 3 pages
    /members          3 products (robots.txt keeps Sojourn out of it)
    /robots.txt       `*` may not read /catalog; Sojourn may read it, but not its page 2, nor /members
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _page(title: str, body: str) -> bytes:
    return f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head><body>{body}</body></html>".encode()


def _product(pid: str, name: str, price: str) -> str:
    return (f'<div class="product" data-id="{pid}"><h2 class="name">{name}</h2><span class="price">{price}</span>'
            f'<a class="link" href="/item/{pid}">details</a><span class="tag">t1</span><span class="tag">t2</span></div>')


CATALOG = {
    1: [("a1", "Alpha", "1.00"), ("a2", "Beta", "2.00"), ("a3", "Gamma", "3.00"), ("a4", "Delta", "4.00")],
    2: [("a4", "Delta", "4.00"), ("b1", "Epsilon", "5.00"), ("b2", "Zeta", "6.00"), ("b3", "Eta", "7.00")],
    3: [("c1", "Theta", "8.00"), ("c2", "Iota", "9.00"), ("c3", "Kappa", "10.00"), ("c4", "Lambda", "11.00")],
}
BOOKS = {
    1: [("A Light in the Attic", "£51.77"), ("Tipping the Velvet", "£53.74")],
    2: [("Soumission", "£50.10"), ("Sharp Objects", "£47.82")],
    3: [("Sapiens", "£54.23")],
}
PAGED = {1: [("p1", "One", "1"), ("p2", "Two", "2"), ("p3", "Three", "3")], 2: [("p4", "Four", "4"), ("p5", "Five", "5"), ("p6", "Six", "6")]}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - a router
        parts = urlsplit(self.path)
        q = parse_qs(parts.query)
        page = int(q.get("page", ["1"])[0])
        path = parts.path
        self.server.hits.append(path + ("?" + parts.query if parts.query else ""))  # type: ignore[attr-defined]
        if path == "/catalog":
            items = "".join(_product(*p) for p in CATALOG.get(page, []))
            nxt = f'<a class="next" href="/catalog?page={page + 1}">next</a>' if page < 3 else ""
            return self._send(200, _page(f"Catalog {page}", items + nxt))
        if path == "/paged":
            return self._send(200, _page(f"Paged {page}", "".join(_product(*p) for p in PAGED.get(page, []))))
        if path == "/js":
            script = """<div id=list></div><script>setTimeout(() => {
              for (const [id, n] of [['j1','Jay'],['j2','Kay'],['j3','El']]) {
                const d = document.createElement('div'); d.className = 'product';
                d.innerHTML = '<h2 class=name>' + n + '</h2><span class=price>1</span>';
                document.getElementById('list').appendChild(d);
              }
              const done = document.createElement('p'); done.id = 'ready'; document.body.appendChild(done);
            }, 300);</script>"""
            return self._send(200, _page("JS", script))
        if path == "/slow":
            time.sleep(1.2)
            items = _product(f"s{page}a", f"Slow {page}a", "1") + _product(f"s{page}b", f"Slow {page}b", "2")
            nxt = f'<a class="next" href="/slow?page={page + 1}">next</a>' if page < 40 else ""
            return self._send(200, _page(f"Slow {page}", items + nxt))
        if path.startswith("/books/page-") and path.endswith(".html"):
            n = int(path[len("/books/page-"):-len(".html")])
            items = "".join(f'<article class="product_pod"><h3><a href="#">{t}</a></h3><p class="price">{p}</p></article>' for t, p in BOOKS.get(n, []))
            nxt = f'<ul class="pager"><li><a class="next" href="page-{n + 1}.html">next</a></li></ul>' if n < len(BOOKS) else ""
            return self._send(200 if n in BOOKS else 404, _page(f"Books {n}", items + nxt))
        if path == "/robots.txt":
            rules = "User-agent: *\nDisallow: /catalog\n\nUser-agent: Sojourn\nDisallow: /catalog?page=2\nDisallow: /members\n"
            return self._send(200, rules.encode())
        if path == "/members":
            return self._send(200, _page("Members", "".join(_product(*p) for p in CATALOG[3][:3])))
        if path == "/about":
            return self._send(200, _page("About us", "<h1>About</h1><p>We sell Greek letters.</p>"))
        if path == "/many":
            n = int(q.get("n", ["10"])[0])
            items = "".join(_product(f"m{page}-{i}", f"Item {page}-{i}", str(i)) for i in range(n))
            nxt = f'<a class="next" href="/many?n={n}&page={page + 1}">next</a>' if page < 10 else ""
            return self._send(200, _page(f"Many {page}", items + nxt))
        return self._send(404, _page("Not found", "<h1>404</h1>"))


class CatalogSite:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self.server.daemon_threads = True
        self.server.hits = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "CatalogSite":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def hits(self) -> list[str]:
        return self.server.hits  # type: ignore[attr-defined]
