"""A fresh PostgreSQL database for a Prefect server (tests and the benchmark)."""

from __future__ import annotations

import asyncio
import os
import socket

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"


def postgres_available(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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
