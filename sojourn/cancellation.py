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
_early: dict[str, Reason] = {}  # stop requests that came before the body started (taken up by `guarded`)


def register(job_id: str, body: asyncio.Task) -> None:
    _bodies[job_id] = body


def unregister(job_id: str) -> None:
    _bodies.pop(job_id, None)
    _reasons.pop(job_id, None)


def request(job_id: str, reason: Reason = "cancel", *, early: bool = False) -> bool:
    """Stop the job's body if it runs in this process; False if it does not.

    ``early``: the flow has started but its body may not be registered yet (the engine is between Running
    and the body): the request is kept, and :func:`guarded` ends the body at once when it starts. Cancelling
    the engine itself in that window would end the run Crashed, not Cancelled.
    """
    body = _bodies.get(job_id)
    if body is None or body.done():
        if early:
            _early[job_id] = reason
            return True
        return False
    _reasons[job_id] = reason
    body.cancel()
    return True


def waiting(job_id: str) -> bool:
    """True while an early request has not been taken up by the body."""
    return job_id in _early


def forget(job_id: str) -> None:
    _early.pop(job_id, None)


def reason(job_id: str) -> Reason | None:
    return _reasons.get(job_id)


async def guarded(job_id: str, body: Awaitable[T]) -> T | State:
    """Run a flow's body as a registered child task; a stop request ends it the way the reason says."""
    from datetime import datetime, timezone

    from prefect.states import AwaitingRetry, Cancelled

    task = asyncio.ensure_future(body)
    register(job_id, task)
    if (early := _early.pop(job_id, None)) is not None:
        _reasons[job_id] = early
        task.cancel()  # before its first step: nothing has run
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
