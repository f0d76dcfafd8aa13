"""Which process runs each cluster service: a lease row per service in the facade database.

A process that wants a service takes its lease when it is free or has run out (a conditional UPDATE, so of
several processes trying at once exactly one gets it), runs the service while it holds it, and renews every
third of the lease. A process that dies stops renewing: another one takes the service over once the lease
runs out, within ``SOJOURN_SERVICE_LEASE_SECONDS`` plus one renewal. One that stops releases its leases, so the
takeover is immediate. A holder that cannot renew (the database is away) stops running its services before
its leases can run out, so two processes never run one service at once.

The lease times are this process's clock: processes on several machines need their clocks in step (NTP) to
within a small part of the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from sojourn.store.clock import utcnow
from sojourn.store.db import session
from sojourn.store.leases import ServiceLease

log = logging.getLogger("sojourn.services")

NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Leases:
    def __init__(self, db_url: str, seconds: float, holder: str | None = None) -> None:
        self.db_url = db_url
        self.seconds = seconds
        self.renew_every = seconds / 3
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._wanted: list[str] = []
        self._held: dict[str, asyncio.Event] = {}
        self._stats: Callable[[str], dict[str, Any]] = lambda _n: {}
        self._renewed = 0.0  # monotonic time of the last round the database answered
        self._made = False

    def want(self, names: list[str], stats: Callable[[str], dict[str, Any]] | None = None) -> None:
        self._wanted = list(names)
        for n in names:
            self._held.setdefault(n, asyncio.Event())
        if stats is not None:
            self._stats = stats

    def held(self, name: str) -> asyncio.Event:
        return self._held.setdefault(name, asyncio.Event())

    def holds(self, name: str) -> bool:
        event = self._held.get(name)
        return event is not None and event.is_set()

    async def keep_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                mine = await asyncio.to_thread(self._round)
                self._renewed = started
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("service leases: could not renew (%r)", exc)
                if time.monotonic() - self._renewed > self.seconds - self.renew_every:
                    mine = set()  # they may run out before the next round: let another process have them
                else:
                    mine = {n for n in self._wanted if self.holds(n)}
            for name in self._wanted:
                event = self._held[name]
                if name in mine and not event.is_set():
                    log.info("this process now runs %s", name)
                    event.set()
                elif name not in mine and event.is_set():
                    log.warning("this process no longer holds the lease of %s; it stops running it", name)
                    event.clear()
            await asyncio.sleep(self.renew_every)

    def _round(self) -> set[str]:
        """Renew what this process holds, take what is free; what it holds afterwards."""
        now = utcnow()
        until = now + timedelta(seconds=self.seconds)
        if not self._made:
            self._make_rows()
        with session(self.db_url) as db:
            for name in self._wanted:
                if self.holds(name):
                    st = self._stats(name)
                    db.execute(update(ServiceLease).where(col(ServiceLease.name) == name, col(ServiceLease.holder) == self.holder)
                               .values(expires_at=until, **st))
            free = [n for n in self._wanted if not self.holds(n)]
            if free:
                db.execute(update(ServiceLease).where(col(ServiceLease.name).in_(free), col(ServiceLease.expires_at) < now)
                           .values(holder=self.holder, expires_at=until, acquired_at=now, runs=0, errors=0, last_run_at=None, last_error=None))
            db.commit()
            return set(db.exec(select(ServiceLease.name).where(col(ServiceLease.holder) == self.holder,
                                                                col(ServiceLease.name).in_(self._wanted))).all())

    def _make_rows(self) -> None:
        with session(self.db_url) as db:
            have = set(db.exec(select(ServiceLease.name).where(col(ServiceLease.name).in_(self._wanted))).all())
        for name in self._wanted:
            if name in have:
                continue
            try:
                with session(self.db_url) as db:
                    db.add(ServiceLease(name=name, holder=None, expires_at=NEVER))
                    db.commit()
            except IntegrityError:
                pass  # another process made it first
        self._made = True

    async def release(self) -> None:
        held = [n for n in self._wanted if self.holds(n)]
        for name in held:
            self._held[name].clear()
        if not held:
            return
        try:
            await asyncio.to_thread(self._release, held)
        except Exception as exc:  # they run out by themselves
            log.warning("service leases: could not release (%r)", exc)

    def _release(self, names: list[str]) -> None:
        with session(self.db_url) as db:
            db.execute(update(ServiceLease).where(col(ServiceLease.name).in_(names), col(ServiceLease.holder) == self.holder)
                       .values(holder=None, expires_at=NEVER))
            db.commit()

    async def read(self) -> dict[str, ServiceLease]:
        def rows() -> dict[str, ServiceLease]:
            with session(self.db_url) as db:
                return {r.name: r for r in db.exec(select(ServiceLease))}
        return await asyncio.to_thread(rows)
