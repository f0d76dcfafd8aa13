"""A Prefect server that counts the requests it is sent (for bench/idle.py).

    python bench/counting_prefect.py --port 4300

Prefect's own server app (``create_app(final=True)``: the API, the UI and its services, as ``prefect server
start`` runs it, with Sojourn's server settings) behind an ASGI layer that counts each HTTP request and each
websocket opened, by method and path with ids folded to ``{id}``. ``GET /__counts`` answers the counts so far
as JSON. Nothing else differs from the server Sojourn starts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|/\d+(?=/|$)")


def counting(app):  # noqa: ANN001, ANN201
    counts: Counter[str] = Counter()

    async def wrapped(scope, receive, send):  # noqa: ANN001
        if scope["type"] == "http" and scope["path"] == "/__counts":
            body = json.dumps(dict(counts)).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] in ("http", "websocket"):
            method = scope.get("method", "WS")
            counts[f"{method} {ID.sub('/{id}', scope['path'])}"] += 1
        await app(scope, receive, send)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    from sojourn.deployments.prefect_server import server_env

    for name, value in server_env({}).items():
        os.environ.setdefault(name, value)
    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(counting(create_app(final=True)), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
