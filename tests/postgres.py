"""A fresh PostgreSQL database for a Prefect server (tests and the benchmark)."""

from __future__ import annotations

import asyncio
import os
import socket

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"


def required_in_ci(service: str) -> bool:
    """False where a service is genuinely absent (a laptop); under CI=true its absence is a failure, not a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(f"CI=true but {service} is not reachable: CI machines run it, and the tests that need it must not skip")
    return False


def postgres_available(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return required_in_ci(f"PostgreSQL ({host}:{port})")


def fresh_postgres_database(server_url: str = SERVER, prefix: str = "sojourn_tests") -> str:
    """Create an empty database; returns its SQLAlchemy URL."""
    import asyncpg

    name = f"{prefix}_{os.getpid()}"
    plain = server_url.replace("postgresql+asyncpg://", "postgresql://")

    async def create() -> None:
        conn = await asyncpg.connect(plain + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"{server_url}/{name}"


def drop_database(url: str) -> None:
    import asyncpg

    server, _, name = url.rpartition("/")

    async def drop() -> None:
        conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


FACADE_SERVER = os.environ.get("SOJOURN_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")


def fresh_facade_database(prefix: str = "sojourn_test") -> str | None:
    """An empty database for the facade (psycopg URL); None where no PostgreSQL runs (never in CI: there it raises)."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    plain = FACADE_SERVER.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain + "/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        required_in_ci(f"PostgreSQL ({FACADE_SERVER})")
        return None
    return f"{FACADE_SERVER}/{name}"


def drop_facade_database(url: str) -> None:
    import psycopg

    from sojourn.store.db import forget

    forget(url)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(FACADE_SERVER.replace("postgresql+psycopg://", "postgresql://") + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
