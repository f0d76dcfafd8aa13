"""One subscription to Prefect's event stream, shared by everything in the API process.

Sync endpoints wait on it (no polling loop), and live streams (WebSocket/SSE)
will fan out from it. Subscribers register interest in a job id and get every
state change and progress event for that flow run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter

log = logging.getLogger(__name__)


class EventHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def subscribe(self, job_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._subscribers[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        subs = self._subscribers.get(job_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                self._subscribers.pop(job_id, None)

    async def _run(self) -> None:
        event_filter = EventFilter(event=EventNameFilter(prefix=["prefect.flow-run.", "sojourn.job."]))
        while True:
            try:
                async with get_events_subscriber(filter=event_filter, reconnect_on_clean_close=True) as events:
                    self.connected.set()
                    async for event in events:
                        self._dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("Prefect event stream lost (%s); reconnecting", exc)
                await asyncio.sleep(1)

    def _dispatch(self, event: Any) -> None:
        rid = event.resource.id
        if not rid.startswith("prefect.flow-run."):
            return
        job_id = rid[len("prefect.flow-run.") :]
        subs = self._subscribers.get(job_id)
        if not subs:
            return
        item = {"event": event.event, "occurred": event.occurred, "payload": event.payload}
        for queue in list(subs):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                pass
