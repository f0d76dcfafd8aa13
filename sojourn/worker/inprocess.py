"""The sojourn worker: a Prefect worker that runs flow runs in its own event loop.

Prefect's process worker starts a new Python per flow run (about 2 s of CPU
before the job does anything, DESIGN.md) and a cold browser. This worker
imports Sojourn's flows once and runs each flow run as a task in its event
loop, where the warm browser pool lives: every job still gets a fresh
context.

On top of :class:`~prefect.workers.base.BaseWorker` (pool sync, heartbeats,
limits, Pending/Running proposals) it adds:

* pickup by event: a ``prefect.flow-run.Scheduled`` event for the pool wakes
  the poll at once; the timed poll is the fallback;
* starting a prefetched run at its scheduled time, not before;
* cancelling runs that already started (BaseWorker only cancels pending ones):
  the run's task is cancelled, its context closed, the run ends Cancelled;
* graceful shutdown: in-flight runs get ``worker_shutdown_grace`` seconds,
  then are handed back to the pool (rescheduled) for another worker;
* the crash reaper (:mod:`sojourn.worker.reaper`) for runs of dead workers.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import random
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import AsyncClientContext
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_API_URL
from prefect.states import AwaitingRetry, Cancelled
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from sojourn import cancellation
from sojourn.settings import Settings, get_settings

log = logging.getLogger(__name__)
LOOPS_STOP_SECONDS = 2.0  # how long the worker's own loops get to end once cancelled (see sojourn.background.cancelling)
HAND_BACK_SECONDS = 5.0  # after the grace, how long handing unfinished runs back to Prefect may take

ALLOWED_ENTRYPOINT_PREFIX = "sojourn."


class SojournJobConfiguration(BaseJobConfiguration):
    pass


class SojournVariables(BaseVariables):
    pass


class SojournWorkerResult(BaseWorkerResult):
    pass


def sojourn_entrypoint(entrypoint: str) -> tuple[str, str]:
    """(module, attribute) of a Sojourn flow; anything else is refused.

    Accepts module paths (``sojourn.flows.browse:browse``, what bootstrap
    writes) and file paths inside the package (``sojourn/flows/browse.py:browse``,
    what ``prefect deploy`` writes from prefect.yaml).
    """
    path, _, attr = entrypoint.rpartition(":")
    if path.endswith(".py"):
        path = path[: -len(".py")].replace("/", ".")
    if not attr or not path.startswith(ALLOWED_ENTRYPOINT_PREFIX) or not all(p.isidentifier() for p in path.split(".")):
        raise RuntimeError(f"refusing to load entrypoint {entrypoint!r}: not a Sojourn flow")
    return path, attr


def default_worker_name() -> str:
    return f"sojourn-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SojournWorker(BaseWorker[SojournJobConfiguration, SojournVariables, SojournWorkerResult]):
    type = "sojourn"
    job_configuration = SojournJobConfiguration
    job_configuration_variables = SojournVariables

    @classmethod
    def get_default_base_job_template(cls) -> dict[str, Any]:
        """None: runs start in this process and take no job variables (see bootstrap.ensure_pool).

        Prefect fills an empty pool template from what workers report here, and
        with a template it validates job variables against it on every flow run
        it creates.
        """
        return {}
    _description = "Runs Sojourn browser jobs in-process, with a warm browser and a fresh context per job."
    _documentation_url = "https://github.com/sojourn"

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        self.settings = settings or get_settings()
        kwargs.setdefault("work_pool_name", self.settings.work_pool)
        kwargs.setdefault("name", default_worker_name())
        kwargs.setdefault("heartbeat_interval_seconds", self.settings.worker_heartbeat_seconds)
        kwargs.setdefault("limit", self.settings.worker_limit or self.settings.max_concurrency)
        kwargs.setdefault("prefetch_seconds", 10)
        super().__init__(*args, **kwargs)
        self._running: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self._cancel_requested: set[uuid.UUID] = set()
        self._cancelling: set[uuid.UUID] = set()
        self._stopping: asyncio.Event | None = None  # set to stop serving (signals, a replaced server)
        self._pool_id: uuid.UUID | None = None  # the pool's id when this worker joined it
        self.replaced = False  # the Prefect server was replaced under it (see _stop_if_server_replaced)
        self._in_engine: set[uuid.UUID] = set()  # runs Prefect's engine has taken over (a cancel then goes through the flow)
        self._handed_back: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self._flows: dict[str, Any] = {}
        self._accepting = True

    async def _worker_metadata(self) -> Any:
        """Prefect's worker channel sends this in every handshake, and computing it parses the metadata of every
        installed distribution (a sizeable share of an idle worker's CPU): compute it once."""
        if not hasattr(self, "_metadata_once"):
            self._metadata_once = await super()._worker_metadata()
        return self._metadata_once

    # ------------------------------------------------------------------ submitting a flow run
    async def _submit_run(self, flow_run: FlowRun) -> None:
        """BaseWorker's submission, without what only out-of-process infrastructure needs.

        The stock path reads the deployment twice and the flow once, builds a
        job configuration from the pool's template, labels the run and
        proposes a Submitting state: five API round trips per job that an
        in-process run has no use for (DESIGN.md: API round trips are the cost).
        Kept: Pending (the server's concurrency check), the owner mark
        (``infrastructure_pid``, which the crash reaper reads), the limit slot.
        """
        started = False
        try:
            if await self._propose_pending_state(flow_run):
                await self._runs_task_group.start(self._run_in_process, flow_run)  # type: ignore[union-attr]
                started = True
        except Exception as exc:
            log.exception("could not start flow run %s: %s", flow_run.id, exc)
        finally:
            if not started:
                self._release_limit_slot(flow_run.id)
            self._submitting_flow_run_ids.discard(flow_run.id)
            if not self._submitting_flow_run_ids:
                self._wake.set()  # the poll waits for the runs it fetched to be Pending (get_and_submit_flow_runs)
            if self._cancelling_observer is not None:
                self._cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)

    async def _run_in_process(self, flow_run: FlowRun, task_status: Any) -> None:
        try:
            try:
                await self.client.update_flow_run(flow_run_id=flow_run.id, infrastructure_pid=self.name)
            finally:
                task_status.started(self.name)
            await self.run(flow_run, SojournJobConfiguration())
        except Exception:
            log.exception("flow run %s failed in the worker", flow_run.id)
        finally:
            self._release_limit_slot(flow_run.id)

    # ------------------------------------------------------------------ running a flow run
    async def run(self, flow_run: FlowRun, configuration: SojournJobConfiguration, task_status: Any = None) -> SojournWorkerResult:
        identifier = self.name
        if task_status is not None:
            task_status.started(identifier)
        # One task from here on, so a cancel request finds the run even while it waits for its time.
        task = asyncio.ensure_future(self._execute(flow_run))
        self._running[flow_run.id] = task
        try:
            state = await asyncio.shield(task)
            if state is not None and hasattr(state, "is_final") and not state.is_final() and not state.is_scheduled():
                await self._hand_back_if_stranded(flow_run.id)
        except asyncio.CancelledError:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if flow_run.id not in self._cancel_requested and flow_run.id not in self._handed_back:
                raise
        except Exception as exc:  # the engine reports the state itself, unless it could not reach Prefect
            log.warning("flow run %s raised %r", flow_run.id, exc)
            await self._hand_back_if_stranded(flow_run.id)
        finally:
            self._running.pop(flow_run.id, None)
            self._wake.set()  # a slot is free: look for queued runs now
        if flow_run.id in self._cancel_requested:
            self._cancel_requested.discard(flow_run.id)
            await self.client.set_flow_run_state(flow_run.id, Cancelled(message="Cancelled by request."), force=True)
        return SojournWorkerResult(identifier=identifier, status_code=0)

    async def _hand_back_if_stranded(self, flow_run_id: uuid.UUID, patience: float = 300.0) -> None:
        """A run the engine could not carry through (Prefect unreachable) must not stay Pending or Running
        under this live worker, holding a pool slot no reaper frees: put it back in the queue."""
        deadline = asyncio.get_running_loop().time() + patience
        delay = 1.0
        while True:
            try:
                run = await self.client.read_flow_run(flow_run_id)
                if run.state is None or run.state.type not in (StateType.PENDING, StateType.RUNNING):
                    return
                await self.client.set_flow_run_state(
                    flow_run_id,
                    AwaitingRetry(message="The worker could not run it (the scheduler was unreachable); queued again.", scheduled_time=datetime.now(timezone.utc)),
                    force=True,
                )
                log.warning("flow run %s was stranded %s; queued again", flow_run_id, run.state.type.value)
                return
            except Exception as exc:
                if asyncio.get_running_loop().time() > deadline:
                    log.error("could not hand back flow run %s: %s", flow_run_id, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15)

    async def _execute(self, flow_run: FlowRun) -> Any:
        await self._wait_until_due(flow_run)
        flow = await self._load_flow(flow_run)
        self._in_engine.add(flow_run.id)
        try:
            return await run_flow(flow, flow_run=flow_run, return_type="state")  # type: ignore[misc]
        finally:
            self._in_engine.discard(flow_run.id)
            cancellation.forget(str(flow_run.id))

    async def _wait_until_due(self, flow_run: FlowRun) -> None:
        due = flow_run.next_scheduled_start_time or flow_run.expected_start_time
        if due is None:
            return
        delay = (due - datetime.now(timezone.utc)).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _load_flow(self, flow_run: FlowRun) -> Any:
        """Import the deployment's flow; only Sojourn's own flows are ever loaded."""
        if flow_run.deployment_id is None:
            raise RuntimeError("flow run has no deployment")
        key = str(flow_run.deployment_id)
        if key not in self._flows:
            deployment = await self.client.read_deployment(flow_run.deployment_id)
            module, attr = sojourn_entrypoint(deployment.entrypoint or "")
            self._flows[key] = getattr(importlib.import_module(module), attr)
        return self._flows[key]

    # ------------------------------------------------------------------ cancellation of started runs
    async def cancel_running(self, flow_run_id: uuid.UUID) -> None:
        task = self._running.get(flow_run_id)
        if task is None or task.done() or flow_run_id in self._cancelling:
            return  # not ours, over, or being cancelled already (the event and the poll may both report it)
        self._cancelling.add(flow_run_id)
        task.add_done_callback(lambda _t: self._cancelling.discard(flow_run_id))
        log.info("cancelling flow run %s", flow_run_id)
        in_engine = flow_run_id in self._in_engine
        if cancellation.request(str(flow_run_id), "cancel", early=in_engine):
            if in_engine:
                # The body takes the request up when it starts; a flow that never starts one is stopped below.
                asyncio.get_running_loop().call_later(10.0, self._stop_if_still_waiting, flow_run_id, task)
            return  # the flow ends itself Cancelled
        # Not started by the engine yet: stop it, then record Cancelled.
        self._stop(flow_run_id, task)

    def _stop(self, flow_run_id: uuid.UUID, task: asyncio.Future) -> None:
        self._cancel_requested.add(flow_run_id)
        task.cancel()

    def _stop_if_still_waiting(self, flow_run_id: uuid.UUID, task: asyncio.Future) -> None:
        if cancellation.waiting(str(flow_run_id)) and not task.done():
            cancellation.forget(str(flow_run_id))
            log.warning("flow run %s did not take up its cancellation; stopping its engine", flow_run_id)
            self._stop(flow_run_id, task)

    async def _watch_cancellations(self) -> None:
        """Cancel runs of this worker that are set to Cancelling: as their event arrives, and by a poll of
        this worker's own runs every few seconds as the net for events missed while disconnected.

        Prefect's ``FlowRunCancellingObserver`` was used before. It stops for good, and silently, when the
        server closes its event stream cleanly (a restarted Prefect server does): no event, no poll, no
        failure reported. Cancellations after a Prefect restart were then never seen (test_faults).
        """
        await asyncio.gather(self._cancellations_by_event(), self._cancellations_by_poll())

    async def _cancellations_by_event(self) -> None:
        event_filter = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.Cancelling"]),
            any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{self.work_pool.id}"]),
        )
        while True:
            try:
                async with get_events_subscriber(filter=event_filter, reconnect_on_clean_close=True) as events:
                    async for event in events:
                        rid = event.resource.id
                        if rid.startswith("prefect.flow-run."):
                            asyncio.ensure_future(self.cancel_running(uuid.UUID(rid[len("prefect.flow-run."):])))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poll keeps working meanwhile
                log.warning("cancellation events lost (%s); subscribing again", exc)
            await asyncio.sleep(2)

    async def _cancellations_by_poll(self, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            mine = [fid for fid, task in self._running.items() if not task.done()]
            if not mine:
                continue
            try:
                runs = await self.client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=mine), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING]))))
            except Exception as exc:
                log.debug("cancellation poll failed: %r", exc)
                continue
            for run in runs:
                await self.cancel_running(run.id)

    # ------------------------------------------------------------------ fast pickup
    async def _listen_for_scheduled(self) -> None:
        pool = self.work_pool
        event_filter = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.Scheduled"]),
            any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{pool.id}"]),
        )
        while True:
            try:
                async with get_events_subscriber(filter=event_filter, reconnect_on_clean_close=True) as events:
                    async for _event in events:
                        self._wake.set()
            except Exception as exc:  # the poll keeps working meanwhile
                log.warning("event subscription lost (%s); retrying", exc)
                await asyncio.sleep(2)

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        # With every slot taken there is nothing to fetch: skip the server's
        # scheduled-runs query (it grows with the queue); a finishing run wakes us.
        if self._limiter is not None and self._limiter.available_tokens < 1:
            self._last_polled_time = datetime.now(timezone.utc)
            return []
        # The runs of the last poll count against their work queue's concurrency limit only once they are Pending;
        # a poll before that is handed more runs than a queue allows (a Task Engine job took the slot reserved for
        # priority jobs). So one poll's runs go Pending before the next poll; the last of them wakes the loop.
        if self._submitting_flow_run_ids:
            self._last_polled_time = datetime.now(timezone.utc)
            return []
        return await super().get_and_submit_flow_runs()

    async def _poll_loop(self) -> None:
        while self._accepting:
            try:
                await self.get_and_submit_flow_runs()
            except Exception as exc:
                log.warning("poll failed: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.worker_poll_seconds)
                await asyncio.sleep(0.01)  # events of one burst arrive together: one poll, not one per event
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    # ------------------------------------------------------------------ lifecycle
    async def serve(self, *, stop: asyncio.Event | None = None, printer: Any = print) -> None:
        """Run until ``stop`` is set (or cancelled), then shut down gracefully."""

        stop = stop or asyncio.Event()
        with prefect_run_context():
            async with AsyncClientContext():
                await self._serve(stop, printer)
        printer(f"Worker {self.name!r} stopped")

    async def _serve(self, stop: asyncio.Event, printer: Any) -> None:
        from sojourn.background.cancelling import cancel_all
        from sojourn.background.runner import Runner, Scope
        from sojourn.browser.pool import get_pool
        from sojourn.worker.reaper import Reaper

        async with self:
            for _ in range(100):  # the pool must be known before events can be filtered by it
                if self._work_pool is not None:
                    break
                await asyncio.sleep(0.1)
                await self.sync_with_backend()
            self._stopping = stop
            self._pool_id = self._work_pool.id if self._work_pool is not None else None
            loops = [
                asyncio.ensure_future(self._heartbeat_loop()),
                asyncio.ensure_future(self._poll_loop()),
                asyncio.ensure_future(self._listen_for_scheduled()),
                asyncio.ensure_future(self._watch_cancellations()),
                asyncio.ensure_future(self._report_stats()),
            ]
            # Every worker sweeps for dead workers' runs too: one live process is enough to clean up after one.
            services = Runner([Reaper(self.client, self.settings, self.settings.work_pool).service(Scope.LOCAL)], scopes={Scope.LOCAL})
            await services.start()
            printer(f"Worker {self.name!r} started on pool {self.settings.work_pool!r} (limit {self._limit})")
            try:
                await stop.wait()
            finally:
                self._accepting = False
                loops[1].cancel()
                await self._drain()
                await cancel_all(loops, within=LOOPS_STOP_SECONDS, what="worker loops")
                await services.stop()
                await get_pool().close()

    async def _heartbeat_loop(self) -> None:
        """Heartbeats (and pool sync) for as long as the worker lives, whatever Prefect does.

        Prefect's own service loop gives up for good after a few failures in a
        row, and one call can sit in the client's retry back-off for a minute;
        after an outage the worker then looked dead and the reaper crashed its
        jobs. Here each attempt is bounded, and a failure only waits for the
        next beat.
        """
        interval = self.heartbeat_interval_seconds
        while True:
            try:
                await asyncio.wait_for(self.sync_with_backend(), timeout=2 * interval)
                self._stop_if_server_replaced()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("heartbeat failed (%r); next in %s s", exc, interval)
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    def _stop_if_server_replaced(self) -> None:
        """The pool this worker joined has another id now: the Prefect server at this address is not the one it
        started with (restarted on a new database, or another stack on the same port). Its runs and this
        worker's are strangers to each other; feeding it this worker's events corrupts its records, so stop."""
        pool = self._work_pool
        if self.replaced or pool is None or self._pool_id is None or pool.id == self._pool_id:
            return
        self.replaced = True
        log.error("the Prefect server at %s is not the one this worker joined (pool %r was %s, is now %s); stopping",
                  PREFECT_API_URL.value(), pool.name, self._pool_id, pool.id)
        if self._stopping is not None:
            self._stopping.set()

    async def _report_stats(self) -> None:
        """Each heartbeat, what this worker holds, as a Prefect event (the API's /metrics reads them)."""
        from prefect.events import emit_event

        from sojourn.browser.pool import get_pool
        from sojourn.worker.host_load import HostLoad

        host = HostLoad()
        while True:
            stats = get_pool().stats
            running = sum(1 for t in self._running.values() if not t.done())
            emit_event(
                event="sojourn.worker.stats",
                resource={"prefect.resource.id": f"sojourn.worker.{self.name}", "prefect.resource.name": self.name},
                payload={
                    "running": running,
                    "slots": self._limit,
                    "browsers_launched": stats.launches,
                    "browser_crashes": stats.crashes,
                    "contexts_open": stats.contexts_open,
                    "contexts_opened": stats.contexts_opened,
                    "cpu": host.cpu_percent(),  # of this machine, since the last report (percent)
                    "memory": host.memory_percent(),
                },
            )
            await asyncio.sleep(self.heartbeat_interval_seconds)

    async def _drain(self) -> None:
        """Let in-flight runs finish within the grace period; hand the rest back."""
        pending = [t for t in self._running.values() if not t.done()]
        if pending:
            log.info("waiting up to %.0f s for %d running job(s)", self.settings.worker_shutdown_grace, len(pending))
            await asyncio.wait(pending, timeout=self.settings.worker_shutdown_grace)
        left = [(fid, task) for fid, task in self._running.items() if not task.done()]
        if not left:
            return
        try:
            # Handing back writes a state to Prefect; with Prefect down its client retries for a minute. The
            # stop must not wait for that: what is not handed back in time is rescheduled by the crash reaper
            # once this worker's heartbeats have stopped.
            await asyncio.wait_for(asyncio.gather(*(self._hand_back(fid, task) for fid, task in left)), timeout=HAND_BACK_SECONDS)
        except asyncio.TimeoutError:
            log.warning("Prefect did not take %d run(s) back within %.0f s; the crash reaper will reschedule them", len(left), HAND_BACK_SECONDS)

    async def _hand_back(self, fid: uuid.UUID, task: asyncio.Task) -> None:
        self._handed_back.add(fid)
        if cancellation.request(str(fid), "handback"):
            await asyncio.gather(task, return_exceptions=True)  # the flow ends itself AwaitingRetry
        else:  # not in its body yet: stop it here and reschedule it
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.client.set_flow_run_state(
                fid, AwaitingRetry(message="Worker shut down; handed back to the pool.", scheduled_time=datetime.now(timezone.utc)), force=True
            )
        log.info("handed flow run %s back to the pool", fid)


@contextmanager
def prefect_run_context() -> Iterator[None]:
    """What every flow run of this worker shares, instead of setting it up per run:

    * one synchronous Prefect client (the engine asks for one per run, e.g. for the server's
      default result storage; a new client builds a new TLS context each time, even for http);
    * no flow-run heartbeat thread and event per run: nothing consumes them on a self-hosted
      server, and the worker's own heartbeats and the crash reaper already cover lost runs;
    * no suspension watch per run (:func:`without_suspension_observer`).

    The asynchronous client is shared the same way (``AsyncClientContext`` in :meth:`SojournWorker.serve`).
    """
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    without_suspension_observer()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), SyncClientContext():
        yield


def without_suspension_observer() -> None:
    """Prefect 3.8's engine watches every deployment run for a suspension request: per run it starts a
    thread with an event loop, a client and an events subscription, blocks the calling event loop until
    that subscription is up, and again (up to 0.2 s) joining the thread when the run ends. In a worker
    that runs many flows in one event loop, those waits stall every other job's browser work. Sojourn's
    flows never suspend (nothing calls ``suspend_flow_run``), so this worker runs them without the watch.
    (A suspension request would still be noticed at the next state change: the server answers it.)"""
    import prefect.flow_engine

    @contextmanager
    def no_watch(_flow_run_id: Any, _request: Any, polling_interval: float = 10) -> Iterator[None]:
        yield

    prefect.flow_engine.observe_flow_run_suspension = no_watch  # type: ignore[assignment]


def run_worker(settings: Settings | None = None, *, name: str | None = None, limit: int | None = None) -> None:
    """Entry point for ``sojourn worker``: runs until SIGINT/SIGTERM, then drains.

    The worker's event loop runs in a thread of its own. Prefect's flow engine
    installs a SIGTERM handler that raises inside whatever the main thread is
    doing when a flow runs there; off the main thread it leaves signals alone,
    and this thread turns them into a graceful stop.
    """
    import signal
    import threading

    settings = settings or get_settings()
    if settings.worker_nice:
        # Browser work is batch work: where the API shares the machine, requests get the CPU first.
        # Chromium and Playwright's driver, started from here, inherit it.
        os.nice(settings.worker_nice)
    kwargs: dict[str, Any] = {"settings": settings}
    if name:
        kwargs["name"] = name
    if limit:
        kwargs["limit"] = limit
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, asyncio.Event] = {}
    failure: list[BaseException] = []

    workers: list[SojournWorker] = []

    async def main() -> None:
        holder["stop"] = asyncio.Event()
        ready.set()
        workers.append(SojournWorker(**kwargs))
        await workers[0].serve(stop=holder["stop"])

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=target, name="sojourn-worker-loop")
    thread.start()
    ready.wait()

    asked: list[float] = []

    def stop(_sig: int, _frame: Any) -> None:
        asked.append(time.monotonic())
        if "stop" in holder and not loop.is_closed():
            loop.call_soon_threadsafe(holder["stop"].set)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Once asked, the worker is gone within its grace, the hand-back and a few seconds of teardown, whatever its
    # peers do: with Prefect down, a flow cancelled at the end still tries to report its state for a minute.
    bound = settings.worker_shutdown_grace + HAND_BACK_SECONDS + 3
    while thread.is_alive():
        thread.join(0.5)
        if asked and time.monotonic() - asked[0] > bound:
            log.warning("stopping did not finish within %.0f s (is Prefect reachable?); exiting now; still waiting:\n%s",
                        bound, _waiting_in(loop))
            _leave(1, flush_within=1.0)
    if failure:
        log.error("worker failed: %r", failure[0])
    _leave(1 if failure or (workers and workers[0].replaced) else 0)


def _waiting_in(loop: asyncio.AbstractEventLoop) -> str:
    """Where each task of ``loop`` waits (read from another thread, for the log of a stop that overran)."""
    from sojourn.background.cancelling import where_waiting

    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError as exc:  # the set changed under us: say so rather than fail the exit
        return f"(tasks unreadable: {exc})"
    return "\n".join(where_waiting(t) for t in tasks)[-8000:]


def _leave(status: int, flush_within: float = 5.0) -> None:
    """Exit now, giving Prefect's log and event queues ``flush_within`` seconds.

    Prefect drains those queues at interpreter exit for as long as sending takes; with its server already
    gone (a stack stopping together) that was 40-odd seconds of retries, seen as a worker that would not stop.
    """
    from prefect._internal.concurrency.services import _QueueServiceBase

    _done, unsent = _QueueServiceBase.drain_all(timeout=flush_within)  # type: ignore[misc]
    if unsent:
        log.warning("left %d queue(s) of Prefect logs/events unsent: the server did not take them within %.0f s", len(unsent), flush_within)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


__all__ = ["SojournWorker", "run_worker"]
