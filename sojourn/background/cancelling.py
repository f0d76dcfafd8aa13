"""Cancelling tasks with a bound: a stop must not wait on a task that does not let go.

A task told to cancel normally ends at its next await. Some do not: a Prefect client call that swallows the
cancellation (seen once in CI: a worker's heartbeat, cancelled while Prefect was gone, kept retrying its
request, and the worker's stop overran its bound). Whoever stops tasks gives them ``within`` seconds, logs
where each straggler still waits, and goes on without it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

log = logging.getLogger("sojourn.services")


async def cancel_all(tasks: Iterable["asyncio.Future[Any]"], *, within: float, what: str) -> list["asyncio.Future[Any]"]:
    """Cancel ``tasks``; wait up to ``within`` s for them to end; return (and log) the ones that did not."""
    tasks = [t for t in tasks if not t.done()]
    for t in tasks:
        t.cancel()
    if not tasks:
        return []
    _done, pending = await asyncio.wait(tasks, timeout=within)
    stuck = [t for t in tasks if t in pending]
    if stuck:
        log.warning("%s: %d task(s) still running %g s after being cancelled; leaving them:\n%s",
                    what, len(stuck), within, "\n".join(where_waiting(t) for t in stuck))
    return stuck


def where_waiting(task: "asyncio.Future[Any]") -> str:
    """A task's name and its chain of awaits, outermost first, down to what it waits on now."""
    name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
    lines = [f"{name}{' (cancelling)' if isinstance(task, asyncio.Task) and task.cancelling() else ''}:"]
    awaited: Any = task.get_coro() if isinstance(task, asyncio.Task) else None
    for _ in range(40):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None) or getattr(awaited, "gi_yieldfrom", None)
    if awaited is not None:
        lines.append(f"  awaiting {awaited!r}"[:300])
    return "\n".join(lines)
