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
from typing import Any, Awaitable, Literal, TypeVar

State = Any  # a prefect State (imported lazily: this module is imported by the worker before prefect settles)
T = TypeVar("T")

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


async def guarded(job_id: str, body: Awaitable[T]) -> T | State:
    """Run a flow's body as a registered child task; a stop request ends it the way the reason says."""
    from datetime import datetime, timezone

    from prefect.states import AwaitingRetry, Cancelled

    task = asyncio.ensure_future(body)
    register(job_id, task)
    try:
        return await task
    except asyncio.CancelledError:
        why = reason(job_id)
        if why == "cancel":
            return Cancelled(message="Cancelled by request.")
        if why == "handback":
            return AwaitingRetry(message="The worker shut down; handed back to the pool.", scheduled_time=datetime.now(timezone.utc))
        raise
    finally:
        unregister(job_id)
