"""A load balancer in front of Prefect API replicas (README "Scaling out"): an haproxy configuration.

What ``tests/test_prefect_ha.py`` and ``bench/run.py --prefect-layout ha`` run, and a starting point for a
deployment: round robin over the replicas, each checked on ``GET /api/health`` every second (out after two
failures, its open connections cut so that websocket subscribers reconnect to a live replica at once), a request
cut off by a dead replica sent again to another (``option redispatch``), and websockets (Prefect's event stream)
kept open for an hour (``timeout tunnel``).
"""

from __future__ import annotations

from typing import Mapping

_TEMPLATE = """\
defaults
    mode http
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend prefect
    bind {bind}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /api/health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""

_STATS = """\
listen stats
    bind {bind}
    stats enable
    stats uri /stats
"""


def haproxy_config(bind: str, replicas: Mapping[str, str], stats: str | None = None) -> str:
    """The configuration of an haproxy listening on ``bind`` (``host:port``) for ``replicas`` (name → ``host:port``
    of a Prefect API replica); with ``stats`` (``host:port``), its status page at ``/stats`` there (``;csv``)."""
    servers = "\n".join(f"    server {name} {address} check" for name, address in replicas.items())
    return _TEMPLATE.format(bind=bind, servers=servers) + (_STATS.format(bind=stats) if stats else "")
