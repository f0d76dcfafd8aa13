"""Stopping a running job from outside its flow, so it ends the way it should.

The flow runs its body as a child task registered here under the job id.
Two reasons to stop it:

* ``cancel``: a client cancelled the job; the flow returns ``Cancelled``;
* ``handback``: the worker is shutting down; the flow returns
  ``AwaitingRetry`` so another worker runs the job again.

Either way the body is cancelled (its browser context closes on the way out)
and the run never passes through Crashed.
"""

from __future__ import annotations

import asyncio
from typing import Literal

Reason = Literal["cancel", "handback"]

_bodies: dict[str, asyncio.Task] = {}
_reasons: dict[str, Reason] = {}


def register(job_id: str, body: asyncio.Task) -> None:
    _bodies[job_id] = body


def unregister(job_id: str) -> None:
    _bodies.pop(job_id, None)
    _reasons.pop(job_id, None)


def request(job_id: str, reason: Reason = "cancel") -> bool:
    """Stop the job's body if it runs in this process; False if it does not."""
    body = _bodies.get(job_id)
    if body is None or body.done():
        return False
    _reasons[job_id] = reason
    body.cancel()
    return True


def reason(job_id: str) -> Reason | None:
    return _reasons.get(job_id)
