"""How Sojourn runs the Prefect server: the settings that make a short job cheap for it.

Measured on 2 cores with a browser in the loop (bench/RESULTS.md): the task-run
recorder writes one transaction per task-run event by default (1), which is
most of its cost; Prefect services that Sojourn does not use still wake up,
query and write. Every value here can be overridden by setting the variable
in the environment of the server process.

- task-run recorder and event persister: read and write in batches, flushed
  at least every second (task runs still appear in the UI within a second);
- late runs: off. It rewrites every run that waits past its time as "Late"
  (an extra state write and event per queued job under a backlog); a Sojourn
  job waiting for a slot is simply queued;
- pause expirations, cancellation cleanup: off (Sojourn flows never pause and
  have no subflows);
- triggers (automations): off unless ``SOJOURN_PREFECT_AUTOMATIONS=true``:
  they evaluate every event. Sojourn's own webhooks tell clients when jobs end.

Kept: the scheduler (deployment schedules), the foreman (worker status in the
UI), the repossessor, event retention and vacuum.

The server runs as ``python -m sojourn.deployments.prefect_server server start ...``: Prefect's own CLI,
after two fixes to its SQLite access that stop the default stack stalling (``prefect_sqlite.py``). Every
Sojourn command that starts a Prefect server uses :func:`server_command`.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "5",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "5",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
}


def redis_messaging(env: Mapping[str, str]) -> dict[str, str]:
    """Prefect's settings for Redis messaging (prefect-redis), when its database is PostgreSQL and a Redis is named
    (``SOJOURN_REDIS_URL``, or Prefect's own ``PREFECT_REDIS_MESSAGING_*``); else none.

    Needed as soon as more than one Prefect server process shares a database (``--no-services`` replicas and a
    services process): with the default in-memory broker an event emitted to one replica never reaches a
    websocket subscriber of another, and a concurrency lease taken on one is not released on another. Publishers
    flush every message (prefect-redis batches 5 or 10 s by default: the events a worker sends over its websocket
    reached subscribers 10 s late)."""
    database = env.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    url = env.get("SOJOURN_REDIS_URL")
    named = url or any(k.startswith("PREFECT_REDIS_MESSAGING_") for k in env)
    if not named or not database.startswith("postgresql"):
        return {}
    out = {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_PUBLISHER_BATCH_SIZE": "1",
    }
    if url:
        out["PREFECT_REDIS_MESSAGING_URL"] = url
        out["PREFECT_SERVER_DOCKET_URL"] = url
    return out


def server_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``prefect server start``: Sojourn's settings under whatever ``env`` sets itself."""
    env = dict(os.environ if env is None else env)
    automations = env.get("SOJOURN_PREFECT_AUTOMATIONS", "false").lower() in ("1", "true", "yes")
    defaults = {**SERVER_SETTINGS, "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true" if automations else "false", **redis_messaging(env)}
    return {**defaults, **env}


def server_command(*args: str) -> list[str]:
    """The command line of a Prefect server as Sojourn runs it: ``prefect server start`` with ``args``."""
    return [sys.executable, "-m", "sojourn.deployments.prefect_server", "server", "start", *args]


def services_command() -> list[str]:
    """Prefect's background services alone (``prefect server services start``), beside ``--no-services`` replicas."""
    return [sys.executable, "-m", "sojourn.deployments.prefect_server", "server", "services", "start"]


def prepare_command() -> list[str]:
    """Brings a PostgreSQL database up to Prefect's schema and registers its block types, once, under an advisory
    lock: replicas started at the same moment on a fresh database otherwise raced (both migrating: a unique
    violation on alembic_version; both registering block types: one on uq_block_type__slug), and one crashed."""
    return [sys.executable, "-m", "sojourn.deployments.prefect_server", "prepare"]


PREPARED = {"PREFECT_API_DATABASE_MIGRATE_ON_START": "false", "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false"}
_LOCK = 0x50524546  # "PREF": the advisory lock key of the preparation


async def _prepare() -> None:
    import asyncio

    import asyncpg
    from prefect.server.database import provide_database_interface
    from prefect.server.models.block_registration import run_block_auto_registration

    url = os.environ["PREFECT_API_DATABASE_CONNECTION_URL"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    try:
        # Tried, not waited for: a session waiting in pg_advisory_lock holds a snapshot, and Prefect's migrations build
        # indexes CONCURRENTLY, which wait for every older snapshot: the migrating process and the waiting ones stood
        # still for good.
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
            await asyncio.sleep(0.5)
        db = provide_database_interface()
        await db.create_db()
        async with await db.session() as session:
            await run_block_auto_registration(session=session)
    finally:
        await conn.close()  # the lock goes with the connection


SERVICES_STOP_SECONDS = 10.0


def _stop_services_on_sigterm() -> None:
    """Prefect's services process has no SIGTERM handler (it died at once, leaving its Redis consumers behind);
    Ctrl-C stops it cleanly, so a stop asked with SIGTERM is taken as one. Its clean stop waits for every service's
    task to end, and one that does not (seen once in CI, on a loaded machine) would hold the process forever: after
    SERVICES_STOP_SECONDS the stacks of every thread go to stderr, for the record, and the process exits."""
    import faulthandler
    import os
    import signal
    import threading

    def give_up() -> None:
        print(f"Prefect's services did not stop within {SERVICES_STOP_SECONDS:g} s of SIGTERM; exiting. Where they were:",
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)

    def on_sigterm(_signum: int, _frame: object) -> None:
        timer = threading.Timer(SERVICES_STOP_SECONDS, give_up)
        timer.daemon = True
        timer.start()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop at a time; the timer bounds it
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)


def main() -> None:
    """Prefect's CLI (``prefect ...``), with the SQLite fixes installed first; ``prepare``: see :func:`prepare_command`."""
    if sys.argv[1:] == ["prepare"]:
        import asyncio

        asyncio.run(_prepare())
        return
    if sys.argv[1:4] == ["server", "services", "start"]:
        _stop_services_on_sigterm()
    from sojourn.deployments.prefect_sqlite import install

    install()
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
