"""One runner for every background service: the loop, logging with the service's name, backoff, overruns, stop.

A service is a named step (one round of its work) with its interval, an optional wake event, an enabled
check and a scope (see :class:`Scope`); or a named event handler fed by the process's Prefect event stream.
The runner owns what every copy of "step, log, sleep" used to write by hand (modelled on Prefect's own
``LoopService``): a round that raises is logged under the service's name and tried again after a backoff
that doubles up to ``max_backoff``; a round that took longer than the interval is reported; a round that
says there is more to do is followed at once; stopping cancels the loops and closes what they opened.

Cluster services run only while this process holds their lease (:mod:`sojourn.background.leases`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sojourn.background.cancelling import cancel_all
from sojourn.store.clock import aware, utcnow

if TYPE_CHECKING:
    from sojourn.background.leases import Leases
    from sojourn.services.events import EventHub

log = logging.getLogger("sojourn.services")
STOP_SECONDS = 5.0  # how long the loops get to end once cancelled; one that does not is left behind, named in the log


class Scope(str, enum.Enum):
    LOCAL = "local"  # part of serving this process's requests (the dispatcher its submissions wake, its /metrics): every API process
    REPLICA = "replica"  # safe side by side (row claims, idempotent writes): every process that runs services
    CLUSTER = "cluster"  # once per cluster: the process holding the service's lease in the facade database


@dataclass
class Service:
    name: str
    scope: Scope
    description: str
    # A periodic service: one round of its work.
    step: Callable[[], Awaitable[Any]] | None = None
    drains: bool = False  # a truthy result of a round means there is more right now: the next round follows at once
    every: float | Callable[[], float] = 1.0  # seconds between rounds when idle (a callable: read each round)
    wake: asyncio.Event | None = None  # set by whoever has work for it: the next round starts now
    settle: float = 0.0  # after a wake, this long for more wakes to arrive (one round for a burst)
    # An event service: called with every event of the process's Prefect event stream that ``accepts`` takes.
    handle: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
    accepts: Callable[[dict[str, Any]], bool] = lambda _item: True
    enabled: Callable[[], bool] = lambda: True
    max_backoff: float = 30.0
    close: Callable[[], Awaitable[Any]] | None = None  # what it opened (an HTTP client), closed when it stops

    def interval(self) -> float:
        return self.every() if callable(self.every) else self.every


@dataclass
class ServiceState:
    """How a service has done in this process."""
    running: bool = False
    runs: int = 0
    errors: int = 0
    last_run_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_seconds: float | None = None
    streak: int = 0  # failed rounds in a row
    overrun_logged: float = field(default=0.0)


class Runner:
    """Runs the services of the scopes this process takes, until :meth:`stop`."""

    def __init__(self, services: list[Service], *, scopes: set[Scope], hub: "EventHub | None" = None, leases: "Leases | None" = None,
                 registry: CollectorRegistry | None = None) -> None:
        names = [s.name for s in services]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"two background services are named {sorted(dup)}")
        self.services = services
        self.scopes = scopes
        self.hub = hub
        self.leases = leases
        self.state = {s.name: ServiceState() for s in services}
        self._tasks: list[asyncio.Task[None]] = []
        registry = registry if registry is not None else CollectorRegistry()
        self._runs = Counter("sojourn_service_runs", "Rounds (or events handled) of each background service in this process", ["service"], registry=registry)
        self._errors = Counter("sojourn_service_errors", "Rounds of each background service that failed", ["service"], registry=registry)
        self._seconds = Histogram("sojourn_service_round_seconds", "How long a round of each background service took", ["service"], registry=registry,
                                  buckets=(0.005, 0.02, 0.1, 0.5, 2, 10, 60))
        self._here = Gauge("sojourn_service_running", "1 where this process runs the service now (a cluster service: holds its lease)", ["service"],
                           registry=registry)
        for s in services:
            self._here.labels(s.name).set_function(lambda name=s.name: 1.0 if self.runs_here(name) else 0.0)

    def runs_here(self, name: str) -> bool:
        service = next(s for s in self.services if s.name == name)
        if service.scope not in self.scopes:
            return False
        if service.scope is Scope.CLUSTER:
            return self.leases is not None and self.leases.holds(name)
        return True

    # ------------------------------------------------------------------ start / stop
    async def start(self) -> None:
        mine = [s for s in self.services if s.scope in self.scopes]
        cluster = [s.name for s in mine if s.scope is Scope.CLUSTER]
        if cluster:
            if self.leases is None:
                raise ValueError("cluster services need leases")
            self.leases.want(cluster, stats=self._lease_stats)
            self._tasks.append(asyncio.ensure_future(self.leases.keep_forever()))
        for s in mine:
            if s.handle is not None:
                if self.hub is None:
                    raise ValueError(f"{s.name} handles events: the runner needs the event hub")
                queue = self.hub.listen()  # now, so no event after start is missed
                self._tasks.append(asyncio.ensure_future(self._events(s, queue)))
            else:
                self._tasks.append(asyncio.ensure_future(self._periodic(s)))
        log.debug("background services here: %s", ", ".join(s.name for s in mine))

    async def stop(self) -> None:
        await cancel_all(self._tasks, within=STOP_SECONDS, what="services")
        self._tasks.clear()
        for s in self.services:
            if s.close is not None:
                try:
                    await s.close()
                except Exception as exc:
                    log.debug("%s: closing: %r", s.name, exc)
        if self.leases is not None:
            await self.leases.release()  # another process takes over now, not when the leases run out

    # ------------------------------------------------------------------ the loops
    async def _periodic(self, s: Service) -> None:
        st = self.state[s.name]
        assert s.step is not None
        while True:
            if s.scope is Scope.CLUSTER:
                assert self.leases is not None
                st.running = False
                await self.leases.held(s.name).wait()
            st.running = True
            if s.wake is not None:
                s.wake.clear()  # a wake from now on asks for another round
            more = False
            if s.enabled():
                ok, more = await self._round(s, st, s.step)
                if not ok:
                    await asyncio.sleep(self.backoff(s, st.streak))
                    continue
            if more:
                await asyncio.sleep(0)
                continue
            await self._idle(s)

    @staticmethod
    def backoff(s: Service, streak: int) -> float:
        """After the ``streak``-th failed round in a row: half a second to a second (the interval, if shorter), doubling,
        at most ``max_backoff``; a sweep that runs once a minute tries again soon after a blip, not a minute later."""
        return min(min(max(s.interval(), 0.5), 1.0) * 2 ** (streak - 1), s.max_backoff)

    async def _idle(self, s: Service) -> None:
        if s.wake is None:
            await asyncio.sleep(s.interval())
            return
        try:
            await asyncio.wait_for(s.wake.wait(), timeout=s.interval())
        except asyncio.TimeoutError:
            return
        if s.settle:
            await asyncio.sleep(s.settle)

    async def _events(self, s: Service, queue: "asyncio.Queue[dict[str, Any]]") -> None:
        st = self.state[s.name]
        st.running = True
        assert s.handle is not None
        handle = s.handle
        while True:
            item = await queue.get()
            if s.accepts(item) and s.enabled():
                await self._round(s, st, lambda: handle(item), what=item.get("event"))

    async def _round(self, s: Service, st: ServiceState, call: Callable[[], Awaitable[Any]], what: Any = None) -> tuple[bool, bool]:
        started = time.perf_counter()
        try:
            result = await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            took = time.perf_counter() - started
            st.errors += 1
            st.streak += 1
            st.last_error, st.last_error_at = f"{type(exc).__name__}: {exc}"[:500], utcnow()
            self._errors.labels(s.name).inc()
            self._seconds.labels(s.name).observe(took)
            about = f" ({what})" if what else ""
            if st.streak == 1:
                log.warning("%s%s failed: %r", s.name, about, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            else:
                log.info("%s%s failed again (%d in a row): %r", s.name, about, st.streak, exc)
            return False, False
        took = time.perf_counter() - started
        if st.streak:
            log.info("%s works again after %d failed rounds", s.name, st.streak)
        st.streak = 0
        st.runs += 1
        st.last_run_at, st.last_seconds = utcnow(), took
        self._runs.labels(s.name).inc()
        self._seconds.labels(s.name).observe(took)
        interval = s.interval() if s.handle is None else 0.0
        if interval and took > max(interval, 1.0) and time.monotonic() - st.overrun_logged > 600:
            st.overrun_logged = time.monotonic()
            log.warning("%s: a round took %.1f s, longer than its interval of %.1f s", s.name, took, interval)
        return True, s.drains and bool(result)

    # ------------------------------------------------------------------ reporting
    def _lease_stats(self, name: str) -> dict[str, Any]:
        st = self.state[name]
        return {"runs": st.runs, "errors": st.errors, "last_run_at": st.last_run_at, "last_error": st.last_error}

    async def status(self) -> list[dict[str, Any]]:
        """Every service: its scope, whether it runs here, how it has done; a cluster service also says which
        process holds its lease (and how that one's rounds went)."""
        leases = await self.leases.read() if self.leases is not None else {}
        me = self.leases.holder if self.leases is not None else None
        out = []
        for s in self.services:
            st = self.state[s.name]
            item: dict[str, Any] = {
                "name": s.name, "scope": s.scope.value, "description": s.description, "runsHere": self.runs_here(s.name),
                "runs": st.runs, "errors": st.errors, "lastRunAt": _iso(st.last_run_at), "lastError": st.last_error,
                "lastErrorAt": _iso(st.last_error_at),
            }
            if s.scope is Scope.CLUSTER:
                lease = leases.get(s.name)
                item["heldBy"] = lease.holder if lease is not None and lease.holder and aware(lease.expires_at) > utcnow() else None
                item["leaseExpiresAt"] = _iso(lease.expires_at) if lease is not None else None
                if lease is not None and item["heldBy"] and lease.holder != me:
                    item.update(runs=lease.runs, errors=lease.errors, lastRunAt=_iso(lease.last_run_at), lastError=lease.last_error)
            out.append(item)
        return out


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return aware(dt).astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"  # type: ignore[union-attr]
