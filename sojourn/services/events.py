"""One subscription to Prefect's event stream, shared by everything in the API process.

Sync endpoints wait on it (no polling loop), and live streams (WebSocket/SSE)
fan out from it. Subscribers register interest in a job id and get every
state change and progress event of that job's flow run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Callable

from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter

from sojourn.tags import job_id_from_tags

log = logging.getLogger(__name__)


class EventHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._observers: list[Callable[[dict[str, Any]], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        # Counts connections: what was learnt from events under an earlier one may have missed some.
        self.epoch = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def subscribe(self, job_id: str, queue: asyncio.Queue[dict[str, Any]] | None = None) -> asyncio.Queue[dict[str, Any]]:
        """Events of one job; pass the same queue for several jobs to read them as one stream."""
        queue = queue if queue is not None else asyncio.Queue(maxsize=1000)
        self._subscribers[job_id].add(queue)
        return queue

    def listen(self) -> asyncio.Queue[dict[str, Any]]:
        """Every event (all jobs, worker stats): for the API's own background listeners."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        self._listeners.add(queue)
        return queue

    def observe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback`` with every event, in order, before any queue gets it (it must not block)."""
        self._observers.append(callback)

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        subs = self._subscribers.get(job_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                self._subscribers.pop(job_id, None)

    async def _run(self) -> None:
        event_filter = EventFilter(event=EventNameFilter(prefix=["prefect.flow-run.", "sojourn.job.", "sojourn.worker."]))
        while True:
            try:
                async with get_events_subscriber(filter=event_filter, reconnect_on_clean_close=True) as events:
                    self.epoch += 1
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
        tags = [r.id[len("prefect.tag.") :] for r in event.related if r.role == "tag"]
        # A Sojourn job's run carries its job id as a `job:` tag; a run started some other way is known by its own id.
        job_id = job_id_from_tags(tags)
        if job_id is None and rid.startswith("prefect.flow-run."):
            job_id = rid[len("prefect.flow-run.") :]
        item = {
            "event": event.event,
            "occurred": event.occurred,
            "payload": event.payload,
            "job_id": job_id,
            "resource": dict(event.resource.root) if hasattr(event.resource, "root") else {"prefect.resource.id": rid},
            "tags": tags,
            "deployment_id": next((r.id[len("prefect.deployment."):] for r in event.related if r.role == "deployment"), None),
        }
        self._dispatch_item(item)

    def _dispatch_item(self, item: dict[str, Any]) -> None:
        for callback in self._observers:
            try:
                callback(item)
            except Exception:
                log.exception("event observer failed on %s", item["event"])
        targets = set(self._listeners)
        if item["job_id"] is not None:
            targets |= self._subscribers.get(item["job_id"], set())
        for queue in targets:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("event queue full; dropped %s for %s", item["event"], item["job_id"])
