"""Cancelling a running job from outside its flow, so it ends Cancelled (not Crashed).

The flow runs its body as a child task registered here under the job id.
A worker that sees the run set to Cancelling calls :func:`request`: the body
is cancelled (its browser context closes on the way out) and the flow returns
a ``Cancelled`` state, which Prefect records as the run's final state.
"""

from __future__ import annotations

import asyncio

_bodies: dict[str, asyncio.Task] = {}
_requested: set[str] = set()


def register(job_id: str, body: asyncio.Task) -> None:
    _bodies[job_id] = body


def unregister(job_id: str) -> None:
    _bodies.pop(job_id, None)
    _requested.discard(job_id)


def request(job_id: str) -> bool:
    """Cancel the job's body if it runs in this process; False if it does not."""
    body = _bodies.get(job_id)
    if body is None or body.done():
        return False
    _requested.add(job_id)
    body.cancel()
    return True


def was_requested(job_id: str) -> bool:
    return job_id in _requested
