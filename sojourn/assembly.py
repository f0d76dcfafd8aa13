"""What one Sojourn process runs: its services, built once, and their background work started by scope.

``sojourn api`` serves HTTP over these parts; ``sojourn services`` runs them without HTTP. Either way the parts
are made here, in one order, and the background services are the ones :mod:`sojourn.background.registry`
lists.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
from prefect.client.orchestration import get_client
from prometheus_client import CollectorRegistry

from sojourn.background.leases import Leases
from sojourn.background.registry import services
from sojourn.background.runner import Runner, Scope
from sojourn.blocks.artifact_store import ArtifactStore
from sojourn.services.batches import BatchService
from sojourn.services.events import EventHub
from sojourn.services.fastlane.service import FastlaneService
from sojourn.services.jobs import JobService
from sojourn.services.metrics import Metrics
from sojourn.services.outcomes import Outcomes
from sojourn.services.pressure import Pressure
from sojourn.services.profiles import ProfileService
from sojourn.services.principals import ensure_admin_key
from sojourn.services.scrape import ScrapeService
from sojourn.services.stats import Stats
from sojourn.services.taskengine.service import TaskEngine
from sojourn.services.job_view import JobView
from sojourn.services.webhooks import WebhookService
from sojourn.settings import Settings

# Prefect's client keeps 8 of its 16 connections alive; under load the rest were reopened per call.
PREFECT_HTTP = {"limits": httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=25)}

ALL = frozenset(Scope)
HTTP_ONLY = frozenset({Scope.LOCAL})  # `sojourn api --no-services`


@dataclass
class Parts:
    settings: Settings
    hub: EventHub
    jobs: JobService
    stats: Stats
    metrics: Metrics
    webhooks: WebhookService
    batches: BatchService
    outcomes: Outcomes
    scrape: ScrapeService
    taskengine: TaskEngine
    fastlane: FastlaneService
    runner: Runner
    pressure: Pressure
    profiles: ProfileService


@asynccontextmanager
async def running(settings: Settings, renderer: Callable[[JobService], Callable[[JobView], Awaitable[dict[str, Any]]]], *,
                  scopes: frozenset[Scope] = ALL, registry: CollectorRegistry | None = None) -> AsyncIterator[Parts]:
    """The parts of a process, with the background services of ``scopes`` running until the block ends.

    ``renderer``: how a job view becomes a webhook body (the native dialect's job document)."""
    registry = registry if registry is not None else CollectorRegistry()
    ensure_admin_key(settings)
    hub = EventHub()
    hub.start()
    try:
        async with get_client(httpx_settings=PREFECT_HTTP) as client, get_client(httpx_settings=PREFECT_HTTP) as dispatch_client:
            jobs = JobService(settings, client, hub, ArtifactStore.from_settings(settings), dispatch_client=dispatch_client)
            jobs.profiles = profiles = ProfileService(settings, jobs.store)
            await jobs.start()
            stats = Stats(client, settings.work_pool, jobs.ledger)
            metrics = Metrics(stats, stale_after=max(3 * settings.worker_heartbeat_seconds, 15), reads=jobs.reads, waiting=jobs.waiting.get,
                              registry=registry)
            webhooks = WebhookService(settings)
            batches = BatchService(jobs)
            outcomes = Outcomes(jobs, webhooks, batches, metrics, renderer(jobs))
            pressure = Pressure(settings, jobs, client, metrics)
            scrape = ScrapeService(settings, jobs)
            te = TaskEngine(settings, jobs)
            te.scrape_jobs = lambda: scrape.jobs
            fastlane = FastlaneService(settings, jobs)
            runner = Runner(services(jobs, outcomes, webhooks, scrape, te, fastlane, client), scopes=set(scopes), hub=hub,
                            leases=Leases(settings.database_location, settings.service_lease_seconds), registry=registry)
            await runner.start()
            try:
                yield Parts(settings, hub, jobs, stats, metrics, webhooks, batches, outcomes, scrape, te, fastlane, runner, pressure, profiles)
            finally:
                await runner.stop()
    finally:
        await hub.stop()
