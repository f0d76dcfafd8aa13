"""A value read from somewhere slow at most every few seconds, with one read in flight however many ask.

Submissions need the queue's size (for QUEUE_FULL and the queue position) and
a duration estimate; asking Prefect for them on every submission costs it
queries per job and makes each submission wait for them. Here a stale value is
answered at once while one background read refreshes it; only the very first
caller waits for a read.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")


class Refreshed(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]], every: float, every_if_none: float | None = None) -> None:
        """``every_if_none``: a None answer (nothing known yet) is read again sooner, and waited for."""
        self._read = read
        self.every = every
        self.every_if_none = every if every_if_none is None else every_if_none
        self.value: T | None = None
        self._at: float | None = None
        self._inflight: asyncio.Future[T] | None = None

    async def get(self) -> T:
        every = self.every if self.value is not None else self.every_if_none
        stale = self._at is None or time.monotonic() - self._at >= every
        if stale and self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
            self._inflight.add_done_callback(_quiet)
        if self._at is not None and (self.value is not None or not stale):
            return self.value  # type: ignore[return-value]
        return await asyncio.shield(self._inflight)  # type: ignore[arg-type]

    async def peek(self, first_wait: float = 0.2) -> T | None:
        """What is known now; a stale value starts a refresh, never waited for. Only before anything is
        known does it wait for the first read, at most ``first_wait`` seconds (then None)."""
        every = self.every if self.value is not None else self.every_if_none
        if (self._at is None or time.monotonic() - self._at >= every) and self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
            self._inflight.add_done_callback(_quiet)
        if self._at is None and self._inflight is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(self._inflight), timeout=first_wait)
            except Exception:
                return None
        return self.value

    async def _refresh(self) -> T:
        try:
            value = await self._read()
            self.value, self._at = value, time.monotonic()
            return value
        finally:
            self._inflight = None

    def update(self, change: Callable[[T], T]) -> None:
        """Account for something this process just did, until the next read sees it."""
        if self.value is not None:
            self.value = change(self.value)


def _quiet(future: asyncio.Future[object]) -> None:
    """A failed background refresh is retried by the next caller; the one waiting on it sees the error."""
    if not future.cancelled():
        future.exception()
