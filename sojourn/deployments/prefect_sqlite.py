"""The Prefect server on SQLite, as Sojourn runs it: two fixes that keep the default stack from stalling (#22).

1. **A failed statement's cursor is closed on its own thread.** The Prefect server on SQLite runs each
   database connection in a thread of its own (aiosqlite), and SQLAlchemy's aiosqlite adapter (2.0.x)
   closes a statement's cursor on that thread, except when the statement failed: then the cursor is left
   to the garbage collector, held in a reference cycle by the exception's traceback. The cycle collector
   finalizes it on whatever thread allocates, which is the server's event loop thread. Finalizing a SQLite
   cursor resets its statement, which takes the connection's mutex; if that connection's thread is at that
   moment inside a statement waiting for the write lock (SQLite's busy handler, 60 s in Prefect), the event
   loop waits for it, while the write lock is held by a transaction whose coroutine needs the event loop to
   commit. Nothing moved until the busy timeout gave up, 60 s later ("↩ [60338ms]
   mark_work_queues_ready", "Worker channel heartbeat persistence failed ... database is locked").
   Seen with ``py-spy dump --native`` on the server during the freeze: the main thread in ``gc_collect_main
   -> cursor_clear -> stmt_reset -> sqlite3_reset -> pthread_mutex_lock``, connection threads in
   ``sqlite3_step -> sqlite3BtreeBeginTrans -> sqlite3InvokeBusyHandler``.

2. **Write transactions begin IMMEDIATE.** Prefect begins its transactions DEFERRED unless they read for
   update: one that reads and then writes fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT,
   no waiting) when another connection committed in between. The server answers that with 503, and
   Prefect's client retries after 2, 4, 8, 16 s: a job's state change or a worker's poll stood still for
   6-16 s at a time under a burst (bench/stall.py, client debug log). Begun IMMEDIATE, a transaction waits
   its turn for the write lock (milliseconds) instead; reads outside transactions are unaffected.

:func:`install` applies both before Prefect starts; the Prefect server Sojourn runs (``python -m
sojourn.deployments.prefect_server``) calls it. SQLAlchemy is pinned below 2.1 (Prefect 3.8.8 needs it),
and fix 1 applies to the 2.0 adapter only. On PostgreSQL neither is involved.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

log = logging.getLogger(__name__)


def install() -> None:
    """Both fixes (idempotent)."""
    close_failed_cursors()
    immediate_write_transactions()


def immediate_write_transactions() -> None:
    from prefect.server.database.configurations import AioSqliteConfiguration

    if getattr(AioSqliteConfiguration, "_immediate_writes", False):
        return
    begin = AioSqliteConfiguration.begin_transaction

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        return begin(self, session, with_for_update=True)  # (on SQLite it only chooses BEGIN IMMEDIATE)

    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]
    AioSqliteConfiguration._immediate_writes = True  # type: ignore[attr-defined]


def close_failed_cursors() -> bool:
    """Patch SQLAlchemy 2.0's aiosqlite cursor; returns whether it did (False on another SQLAlchemy)."""
    import sqlalchemy
    from sqlalchemy.dialects.sqlite import aiosqlite as adapter

    cursor_cls = adapter.AsyncAdapt_aiosqlite_cursor
    if getattr(cursor_cls, "_closes_failed_cursors", False):
        return True
    if not sqlalchemy.__version__.startswith("2.0."):
        log.warning("SQLAlchemy %s: the aiosqlite cursor fix (sojourn/deployments/prefect_sqlite.py) is for 2.0.x; not applied",
                    sqlalchemy.__version__)
        return False

    def execute(self: Any, operation: Any, parameters: Any = None) -> Any:
        _cursor = None
        try:
            _cursor = self.await_(self._connection.cursor())
            if parameters is None:
                self.await_(_cursor.execute(operation))
            else:
                self.await_(_cursor.execute(operation, parameters))
            if _cursor.description:
                self.description = _cursor.description
                self.lastrowid = self.rowcount = -1
                if not self.server_side:
                    self._rows = deque(self.await_(_cursor.fetchall()))
            else:
                self.description = None
                self.lastrowid = _cursor.lastrowid
                self.rowcount = _cursor.rowcount
            if not self.server_side:
                self.await_(_cursor.close())
            else:
                self._cursor = _cursor
        except Exception as error:
            _close(self, _cursor)
            self._adapt_connection._handle_exception(error)

    def executemany(self: Any, operation: Any, seq_of_parameters: Any) -> Any:
        _cursor = None
        try:
            _cursor = self.await_(self._connection.cursor())
            self.await_(_cursor.executemany(operation, seq_of_parameters))
            self.description = None
            self.lastrowid = _cursor.lastrowid
            self.rowcount = _cursor.rowcount
            self.await_(_cursor.close())
        except Exception as error:
            _close(self, _cursor)
            self._adapt_connection._handle_exception(error)

    cursor_cls.execute = execute
    cursor_cls.executemany = executemany
    cursor_cls._closes_failed_cursors = True
    return True


def _close(adapted: Any, cursor: Any) -> None:
    """Close a failed statement's cursor on its connection's own thread (never left to the collector)."""
    if cursor is None:
        return
    try:
        adapted.await_(cursor.close())
    except Exception:  # the connection itself may be gone; its own close finalizes what is left, on its thread
        pass
