"""Prometheus metrics at /metrics.

- job counts by status and queue depth by priority (jobs waiting in the
  ledger and in Prefect's queues): read when scraped (at most every 5 s,
  however often Prometheus asks);
- job duration histogram and finished-jobs counter: observed by the outcome
  listener as jobs end (per API process, as Prometheus counters are);
- reads by where their answer came from (memory, kept fresh by events, or
  Prefect): how much of the read load the scheduler is spared;
- browser pool gauges per worker: from the `sojourn.worker.stats` events each
  worker sends with its heartbeat (workers may be on other machines, so the
  API exports what they report, and forgets a worker gone quiet).
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from sojourn.services.job_view import PRIORITIES
from sojourn.services.stats import Stats

BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)


class _Reads:
    """Exports JobService's read counts (kept as plain numbers on the hot path)."""

    def __init__(self, reads: Mapping[str, int]) -> None:
        self.reads = reads

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("sojourn_api_reads", "Job and job-list reads by this API process, by where the answer came from", labels=["source"])
        for source in ("memory", "prefect"):
            family.add_metric([source], self.reads.get(source, 0))
        yield family


class Metrics:
    def __init__(self, stats: Stats, stale_after: float = 30.0, reads: Mapping[str, int] | None = None,
                 waiting: Callable[[], Awaitable[dict[str, int]]] | None = None, registry: CollectorRegistry | None = None) -> None:
        self.stats = stats
        self.waiting = waiting
        self.stale_after = stale_after
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Gauge("sojourn_jobs", "Jobs by status (all time, from Prefect)", ["status"], registry=r)
        self.queue = Gauge("sojourn_queue_depth", "Jobs due and waiting to start, by priority queue", ["priority"], registry=r)
        self.duration = Histogram("sojourn_job_duration_seconds", "Run time of finished jobs", ["status"], buckets=BUCKETS, registry=r)
        self.finished = Counter("sojourn_jobs_finished", "Jobs seen ending by this API process", ["status"], registry=r)
        self.workers = Gauge("sojourn_workers_reporting", "Workers that sent stats recently", registry=r)
        self.running = Gauge("sojourn_worker_running_jobs", "Jobs running on a worker", ["worker"], registry=r)
        self.slots = Gauge("sojourn_worker_slots", "Jobs a worker may run at once", ["worker"], registry=r)
        self.contexts = Gauge("sojourn_browser_contexts_open", "Browser contexts open on a worker", ["worker"], registry=r)
        self.launches = Gauge("sojourn_browser_launches", "Browsers a worker has launched since it started", ["worker"], registry=r)
        self.crashes = Gauge("sojourn_browser_crashes", "Browser crashes a worker has recovered from", ["worker"], registry=r)
        self.cpu = Gauge("sojourn_worker_cpu_percent", "CPU in use on a worker's machine", ["worker"], registry=r)
        self.memory = Gauge("sojourn_worker_memory_percent", "Memory in use on a worker's machine (of its cgroup's limit if any)", ["worker"], registry=r)
        # Figures other parts export (the pressure): each is refreshed with the job counts, at most every 5 s.
        self.refreshers: list[Callable[[], Awaitable[None]]] = []
        if reads is not None:
            r.register(_Reads(reads))  # type: ignore[arg-type]
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}
        self._refreshed = 0.0

    def observe(self, status: str, duration: float | None) -> None:
        """A job ended with ``status`` after running ``duration`` seconds (None: its start was not seen)."""
        self.finished.labels(status).inc()
        if duration is not None:
            self.duration.labels(status).observe(duration)

    def worker_report(self, name: str, payload: dict[str, Any]) -> None:
        self._reports[name] = (time.monotonic(), payload)

    def live_reports(self) -> dict[str, dict[str, Any]]:
        """The latest report of each worker heard from recently, by worker name."""
        now = time.monotonic()
        return {n: p for n, (t, p) in self._reports.items() if now - t < self.stale_after}

    async def render(self) -> bytes:
        if time.monotonic() - self._refreshed > 5:
            await self._refresh()
            self._refreshed = time.monotonic()
        self._export_workers()
        return generate_latest(self.registry)

    async def _refresh(self) -> None:
        for status, n in (await self.stats.counts(None)).items():
            self.jobs.labels(status).set(n)
        waiting = await self.waiting() if self.waiting is not None else {}
        for priority in PRIORITIES:
            self.queue.labels(priority).set(waiting.get(priority, 0))
        for refresh in self.refreshers:
            await refresh()

    def _export_workers(self) -> None:
        for gauge in (self.running, self.slots, self.contexts, self.launches, self.crashes, self.cpu, self.memory):
            gauge.clear()
        live = self.live_reports()
        self._reports = {n: v for n, v in self._reports.items() if n in live}
        self.workers.set(len(live))
        for name, p in live.items():
            self.running.labels(name).set(p.get("running", 0))
            self.slots.labels(name).set(p.get("slots", 0))
            self.contexts.labels(name).set(p.get("contexts_open", 0))
            self.launches.labels(name).set(p.get("browsers_launched", 0))
            self.crashes.labels(name).set(p.get("browser_crashes", 0))
            for gauge, key in ((self.cpu, "cpu"), (self.memory, "memory")):
                if p.get(key) is not None:
                    gauge.labels(name).set(p[key])
