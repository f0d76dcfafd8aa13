"""Live job updates for SSE and WebSocket clients, from the one shared Prefect event subscription.

Each client gets a queue on the EventHub for the jobs it follows; nothing
polls Prefect per client. A client that arrives late first gets the job's
current state, then what happens next; a job that is already final gets its
`complete` message at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

from sojourn.services.principals import Principal
from sojourn.services.service_error import ServiceError
from sojourn.services.jobs import JobService
from sojourn.services.job_view import FINAL_EVENTS, STATUS, JobView

Renderer = Callable[[JobView], Awaitable[dict[str, Any]]]


async def snapshot(view: JobView, render: Renderer) -> dict[str, Any]:
    """The first message for a follower: where the job stands now."""
    if view.final:
        return await complete(view, render)
    data: dict[str, Any] = {"status": view.status}
    if view.progress:
        data["progress"] = view.progress
    return {"type": "progress" if view.progress else "status", "jobId": view.id, "data": data}


async def complete(view: JobView, render: Renderer) -> dict[str, Any]:
    body = await render(view)
    return {"type": "complete", "jobId": view.id, "data": {"status": view.status, "result": body.get("result"), "error": body.get("error")}}


class Follower:
    """One client's view of the event stream: the jobs it follows, one queue for all of them."""

    def __init__(self, svc: JobService, principal: Principal, render: Renderer) -> None:
        self.svc = svc
        self.principal = principal
        self.render = render
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.jobs: set[str] = set()
        self.told: set[str] = set()  # jobs whose `complete` went out (once each)

    async def follow(self, job_id: str) -> dict[str, Any]:
        """Start following (raises the 404 ServiceError for a job the principal cannot see); returns the snapshot."""
        view = await self.svc.get(job_id, self.principal)
        if job_id not in self.jobs:
            self.jobs.add(job_id)
            self.svc.hub.subscribe(job_id, self.queue)
        # Read again after subscribing: an event between the two reads would otherwise be missed.
        if not view.final:
            view = await self.svc.get(job_id, self.principal)
        if view.final:
            self.told.add(job_id)
        return await snapshot(view, self.render)

    def unfollow(self, job_id: str) -> None:
        if job_id in self.jobs:
            self.jobs.discard(job_id)
            self.svc.hub.unsubscribe(job_id, self.queue)

    def close(self) -> None:
        for job_id in list(self.jobs):
            self.unfollow(job_id)

    async def messages(self, keepalive: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Messages for followed jobs as they happen; None every `keepalive` seconds of quiet.

        Quiet is also when a followed job's end is looked for: its final event can fail to reach this follower (a
        full queue drops it; one was seen lost after an API restart, path not established), and a job that ended
        is then told within `keepalive` seconds, not never."""
        while True:
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout=keepalive)
            except asyncio.TimeoutError:
                for ended in await self._ended_unnoticed():
                    yield ended
                yield None
                continue
            message = await self.translate(item)
            if message is not None:
                yield message

    async def translate(self, item: dict[str, Any]) -> dict[str, Any] | None:
        job_id = item.get("job_id")
        if job_id not in self.jobs:
            return None
        name, payload = item["event"], item.get("payload") or {}
        if name == "sojourn.job.progress":
            return {"type": "progress", "jobId": job_id, "data": {"status": "processing", "progress": payload}}
        if name == "sojourn.job.screenshot":
            return {"type": "screenshot", "jobId": job_id, "data": payload}
        if name in FINAL_EVENTS:
            view = await self.svc.get(job_id, self.principal)
            if view.final and job_id not in self.told:
                self.told.add(job_id)
                return await complete(view, self.render)
            return None
        if name.startswith("prefect.flow-run."):
            state = name[len("prefect.flow-run.") :]
            status = next((s for t, s in STATUS.items() if t.value.title() == state), None) or (
                "submitted" if state in ("Scheduled", "Late", "AwaitingRetry", "Held", "Pending") else "processing"
            )
            return {"type": "status", "jobId": job_id, "data": {"status": status, "state": state}}
        return None

    async def _ended_unnoticed(self) -> list[dict[str, Any]]:
        """`complete` for each followed job that has ended without its final event reaching this follower."""
        out = []
        for job_id in sorted(self.jobs - self.told):
            try:
                view = await self.svc.get(job_id, self.principal)
            except ServiceError:  # deleted meanwhile (retention): nothing to tell
                continue
            if view.final and job_id not in self.told:
                self.told.add(job_id)
                out.append(await complete(view, self.render))
        return out

