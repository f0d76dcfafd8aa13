"""The work pool, its priority queues and the deployments, created or updated idempotently.

Prefect serves priority 1 first. The pool's concurrency limit is the number of
jobs running at once across all workers (``SOJOURN_MAX_CONCURRENCY``).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.utilities.callables import parameter_schema

from sojourn.settings import Settings, get_settings

log = logging.getLogger(__name__)

# queue name → Prefect priority (1 is served first)
QUEUES: dict[str, int] = {"high": 1, "normal": 2, "low": 3}

# flow name → entrypoint the worker imports (module path, no file paths); a deployment is made for each.
# A job's ledger ``kind`` names one of these.
FLOWS: dict[str, str] = {
    "browse": "sojourn.flows.browse:browse",
    "agent": "sojourn.flows.agent:agent",
    "scrape": "sojourn.flows.scrape:scrape",
}


@dataclass
class Bootstrapped:
    pool: str
    deployments: dict[str, UUID]  # flow name → deployment id


async def ensure_pool(client: PrefectClient, settings: Settings, *, pool_type: str = "sojourn", name: str | None = None) -> None:
    from prefect.workers.process import ProcessWorker

    name = name or settings.work_pool
    # A Sojourn worker runs flows in its own process and uses no job variables, so its pool has no job
    # template (SojournWorker reports none either): Prefect then skips validating job variables on every
    # flow run it creates, which was most of the server's CPU per submission under load (bench part g).
    template = {} if pool_type == "sojourn" else ProcessWorker.get_default_base_job_template()
    try:
        pool = await client.read_work_pool(name)
        if pool.concurrency_limit != settings.max_concurrency:
            await client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=settings.max_concurrency))
        if pool.base_job_template != template:
            await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    except ObjectNotFound:
        create = WorkPoolCreate(name=name, type=pool_type, concurrency_limit=settings.max_concurrency, description="Sojourn browser jobs")
        create.base_job_template = template
        try:
            await client.create_work_pool(create)
        except ObjectAlreadyExists:
            pass
    for queue, priority in QUEUES.items():
        try:
            q = await client.read_work_queue_by_name(queue, work_pool_name=name)
            if q.priority != priority:
                await client.update_work_queue(q.id, priority=priority)
        except ObjectNotFound:
            try:
                await client.create_work_queue(name=queue, work_pool_name=name, priority=priority, description=f"{queue} priority jobs")
            except ObjectAlreadyExists:
                pass


async def ensure_deployments(client: PrefectClient, settings: Settings, *, pool: str | None = None, suffix: str = "") -> dict[str, UUID]:
    pool = pool or settings.work_pool
    out: dict[str, UUID] = {}
    for name, entrypoint in FLOWS.items():
        module, _, attr = entrypoint.partition(":")
        flow = getattr(importlib.import_module(module), attr)
        flow_id = await client.create_flow_from_name(flow.name)
        out[name] = await client.create_deployment(
            flow_id=flow_id,
            name=f"{name}{suffix}",
            work_pool_name=pool,
            work_queue_name="normal",
            entrypoint=FLOWS[name],
            parameter_openapi_schema=parameter_schema(flow).model_dump_for_openapi(),
            enforce_parameter_schema=False,
            description=(flow.description or "").strip() or None,
            tags=["sojourn"],
        )
    return out


def deployment_suffix(settings: Settings) -> str:
    """Deployments are named per pool, so two Sojourn installations (two pools) can share one Prefect server:
    ``browse/browse`` for the default pool, ``browse/browse-<pool>`` for any other."""
    return "" if settings.work_pool == "browsers" else f"-{settings.work_pool}"


async def bootstrap(settings: Settings | None = None) -> Bootstrapped:
    """Pool, queues, block types and deployments; safe to run any number of times."""
    from sojourn.blocks.artifact_store import ArtifactStore

    settings = settings or get_settings()
    async with get_client() as client:
        await ensure_pool(client, settings)
        deployments = await ensure_deployments(client, settings, suffix=deployment_suffix(settings))
    try:
        await ArtifactStore.aregister_type_and_schema()
    except Exception as exc:  # the UI's block catalogue is a nicety
        log.warning("could not register the artifact store block type: %s", exc)
    return Bootstrapped(settings.work_pool, deployments)


PROCESS_POOL_SUFFIX = "-process"


async def bootstrap_process_pool(settings: Settings | None = None) -> Bootstrapped:
    """A pool for Prefect's stock process worker running the same flows (a new Python per job).

    Not used by Sojourn itself: it shows the flows are plain Prefect flows, and
    it is the baseline the benchmark compares the sojourn worker against.
    """
    settings = settings or get_settings()
    pool = settings.work_pool + PROCESS_POOL_SUFFIX
    async with get_client() as client:
        await ensure_pool(client, settings, pool_type="process", name=pool)
        deployments = await ensure_deployments(client, settings, pool=pool, suffix=PROCESS_POOL_SUFFIX)
    return Bootstrapped(pool, deployments)


async def deployment_id(client: PrefectClient, flow: str = "browse", suffix: str = "") -> UUID:
    dep = await client.read_deployment_by_name(f"{flow}/{flow}{suffix}")
    return dep.id

