"""Task Engine priorities as Prefect work queues, and ``max_jobs`` / ``priority_slots`` as their limits.

Priority N (1 most urgent .. 10) is work queue ``te-N`` of the pool, whose Prefect
priority is ``SOJOURN_TASKENGINE_QUEUE_PRIORITY_BASE + N``: Prefect serves the
lower number first and, within a queue, the earlier run first (FIFO). Nothing of
ours orders jobs.

What Prefect has no notion of is a limit across several queues (``max_jobs``
running Task Engine jobs, ``priority_slots`` of them only for jobs at or above
the threshold). The :class:`SlotController` expresses it with the one limit
Prefect has, each queue's concurrency limit: every time a Task Engine run
starts, ends or arrives (and every few seconds), it counts running and waiting
runs per queue and hands the free slots out in priority order, each queue
getting ``running + allowed`` as its limit. The allowances never add up to more
than what is free, so however the worker picks, no more than ``max_jobs`` run,
and a low priority queue never gets a reserved slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from sojourn.services.taskengine.config import TaskEngineConfig

log = logging.getLogger(__name__)

LEVELS = range(1, 11)
DIALECT_TAG = "dialect:taskengine"
ACTIVE = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]


def queue_name(priority: int) -> str:
    return f"te-{priority}"


def priority_of_queue(name: str | None) -> int | None:
    if name and name.startswith("te-") and name[3:].isdigit():
        return int(name[3:])
    return None


async def ensure_queues(client: PrefectClient, pool: str, base: int) -> dict[str, Any]:
    """Queues te-1 .. te-10 in the pool with their Prefect priorities; returns name → queue id.
    They start with limit 0 (nothing runs) until the controller has looked."""
    out: dict[str, Any] = {}
    for level in LEVELS:
        name, priority = queue_name(level), base + level
        try:
            q = await client.read_work_queue_by_name(name, work_pool_name=pool)
            if q.priority != priority:
                await client.update_work_queue(q.id, priority=priority)
        except ObjectNotFound:
            try:
                q = await client.create_work_queue(name=name, work_pool_name=pool, priority=priority, concurrency_limit=0,
                                                   description=f"Task Engine priority {level} jobs")
            except ObjectAlreadyExists:
                q = await client.read_work_queue_by_name(name, work_pool_name=pool)
        out[name] = q.id
    return out


def allowances(config: TaskEngineConfig, running: Counter[int], waiting: Counter[int]) -> dict[int, int]:
    """Each level's queue limit: its running jobs plus the free slots it may take now, handed out in
    priority order; levels past the threshold share only ``max_jobs - priority_slots``."""
    free = max(config.max_jobs - sum(running.values()), 0)
    threshold = config.priority_threshold
    ordinary_running = sum(n for level, n in running.items() if level > threshold)
    free_ordinary = max(min(free, config.max_jobs - config.priority_slots - ordinary_running), 0)
    limits = {}
    for level in LEVELS:
        room = free if level <= threshold else min(free, free_ordinary)
        allow = min(waiting.get(level, 0), room)
        free -= allow
        if level > threshold:
            free_ordinary -= allow
        limits[level] = running.get(level, 0) + allow
    return limits


IDLE_EVERY = 15.0


class SlotController:
    """Keeps the te-N queue limits equal to :func:`allowances` of the moment."""

    def __init__(self, client: PrefectClient, pool: str, base: int, config: Callable[[], Awaitable[TaskEngineConfig]],
                 every: float = 2.0) -> None:
        self.client = client
        self.pool = pool
        self.base = base
        self.config = config
        self.every = every
        self.queues: dict[str, Any] = {}
        self.limits: dict[str, int | None] = {}
        self.woken = asyncio.Event()
        self.last: dict[str, Any] = {}
        self.pool_id: Any = None

    def wake(self) -> None:
        self.woken.set()

    def interval(self) -> float:
        """Seconds to the next round when nothing wakes it: ``every`` while Task Engine runs are running or waiting;
        ``IDLE_EVERY`` when the last round found none, since a new run's own events wake the controller (in
        whichever process holds it) and the periodic round only catches a missed event."""
        busy = self.last.get("running") or self.last.get("waiting") or not self.last
        return self.every if busy else max(self.every, IDLE_EVERY)

    async def counts(self) -> tuple[Counter[int], Counter[int]]:
        """Running (pending, running, cancelling) and due waiting Task Engine runs, by level."""
        tags = FlowRunFilterTags(all_=["sojourn", DIALECT_TAG])
        running: Counter[int] = Counter()
        waiting: Counter[int] = Counter()
        for types, counter, due in ((ACTIVE, running, False), ([StateType.SCHEDULED], waiting, True)):
            flt = FlowRunFilter(tags=tags, state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)))
            if due:
                flt.expected_start_time = FlowRunFilterExpectedStartTime(before_=datetime.now(timezone.utc) + timedelta(seconds=1))
            offset = 0
            while True:
                page = await self.client.read_flow_runs(flow_run_filter=flt, limit=200, offset=offset)
                for run in page:
                    level = priority_of_queue(run.work_queue_name)
                    if level is not None:
                        counter[level] += 1
                if len(page) < 200:
                    break
                offset += 200
        return running, waiting

    async def apply_once(self) -> dict[int, int]:
        if not self.queues:
            self.queues = await ensure_queues(self.client, self.pool, self.base)
        running, waiting = await self.counts()
        config = await self.config()  # read after the counts: a change just made applies to what they saw
        limits = allowances(config, running, waiting)
        raised = False
        for level, limit in limits.items():
            name = queue_name(level)
            before = self.limits.get(name)
            if before != limit:
                await self.client.update_work_queue(self.queues[name], concurrency_limit=limit)
                self.limits[name] = limit
                raised = raised or before is None or limit > before
        if raised:
            await self.nudge()
        self.last = {"max_jobs": config.max_jobs, "priority_slots": config.priority_slots, "running": dict(running),
                     "waiting": dict(waiting), "limits": limits}
        return limits

    async def nudge(self) -> None:
        """Wake the pool's workers now that a queue may hand out more runs. A sojourn worker polls when a
        ``prefect.flow-run.Scheduled`` event names its pool (and every few seconds otherwise); the run's own
        event came before the limit was raised, so without this its pickup waited for the next poll."""
        try:
            if self.pool_id is None:
                self.pool_id = (await self.client.read_work_pool(self.pool)).id
            emit_event(
                event="prefect.flow-run.Scheduled",
                resource={"prefect.resource.id": f"sojourn.taskengine.slots.{self.pool_id}", "prefect.resource.name": "taskengine slots"},
                related=[{"prefect.resource.id": f"prefect.work-pool.{self.pool_id}", "prefect.resource.role": "work-pool",
                          "prefect.resource.name": self.pool}],
            )
        except Exception as exc:  # the workers' own poll picks the runs up a little later
            log.debug("taskengine: could not nudge the workers: %r", exc)

    async def step(self) -> None:
        """One round of the ``taskengine-slots`` service; after a failure the queues are looked up again."""
        try:
            await self.apply_once()
        except Exception as exc:
            self.limits.clear()
            self.queues = {} if isinstance(exc, ObjectNotFound) else self.queues
            raise
