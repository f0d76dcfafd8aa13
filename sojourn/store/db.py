"""The facade database: SQLite under SOJOURN_HOME by default, PostgreSQL via SOJOURN_DATABASE_URL."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from sojourn.store import models  # noqa: F401  (registers the tables)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, pool_pre_ping=True)
    SQLModel.metadata.create_all(engine)
    return engine


def session(url: str) -> Session:
    return Session(engine_for(url), expire_on_commit=False)
