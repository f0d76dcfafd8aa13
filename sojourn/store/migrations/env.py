"""Alembic's entry for the facade schema. Run through :mod:`sojourn.store.schema` (``sojourn db upgrade``), which
hands over a connection that already holds the migration lock."""

from alembic import context
from sqlmodel import SQLModel

from sojourn.store import db  # noqa: F401  (registers every table on SQLModel.metadata)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters a table by copying it
with context.begin_transaction():
    context.run_migrations()
