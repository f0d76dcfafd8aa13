"""The one outbox: claim, lease, URL policy, POST, backoff and settle, for every dialect's outgoing HTTP.

Native webhooks (:mod:`sojourn.services.webhooks`), Task Engine callbacks (:mod:`.taskengine.callbacks`) and
fastlane hooks (:mod:`.fastlane.background`) each keep their rows in a table of their own with the same column
set (:class:`~sojourn.store.deliveries.DeliveryColumns`) and supply what their dialect documents: the body and
headers of a POST, which status codes count as delivered, how many attempts a row gets and how far apart, and
(the Task Engine) an order to keep. The rest is here, once:

- **claim**: due rows are leased to this process by a conditional update of their due time (another process
  skips them meanwhile); a process that dies holding a lease has its rows delivered again once it lapses
  (``SOJOURN_OUTBOX_LEASE_SECONDS`` + the HTTP timeout), with the same ids, so receivers deduplicate on them.
- **the URL policy** applies as it does to job browsers: a row aimed at a refused address fails at once.
- **settle**: the row's state and a :class:`~sojourn.store.deliveries.DeliveryAttempt` row are written in one
  transaction; nothing is read-modified-written, so attempts settled side by side in several processes are
  all recorded.
- **backoff**: the dialect's delays, never more than ``MAX_BACKOFF_SECONDS`` apart.

Database work runs in threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Generic, TypeVar
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from sojourn.browser.url_policy import check_host
from sojourn.store.clock import utcnow
from sojourn.store.db import session
from sojourn.store.deliveries import DeliveryAttempt, DeliveryColumns

log = logging.getLogger(__name__)

Row = TypeVar("Row", bound=DeliveryColumns)

MAX_BACKOFF_SECONDS = 600.0


def two_xx(code: int) -> bool:
    return 200 <= code < 300


@dataclass(frozen=True)
class Rules(Generic[Row]):
    """What a dialect decides about its deliveries."""

    kind: str  # recorded on attempt rows: webhook | taskengine | fastlane
    model: type[Row]
    timeout: float  # of one POST, in seconds
    max_attempts: Callable[[Row], int]
    first_delay: float  # seconds before the second attempt; doubling after each failure
    delivered: Callable[[int], bool] = two_xx
    claim_limit: int = 20
    lease: float = 60.0  # how long a claim holds its rows, beyond the timeout (SOJOURN_OUTBOX_LEASE_SECONDS)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retry_at: datetime | None  # when it is tried again; None once delivered or given up
    status_code: int | None = None
    error: str | None = None


class Outbox(Generic[Row]):
    def __init__(self, database: str, rules: Rules[Row]) -> None:
        self.database = database
        self.rules = rules
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.rules.timeout, follow_redirects=False)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ claim
    async def claim(self) -> list[Row]:
        return await asyncio.to_thread(self._claim)

    def _claim(self) -> list[Row]:
        model = self.rules.model
        now = utcnow()
        lease = now + timedelta(seconds=self.rules.lease + self.rules.timeout)
        claimed: list[Row] = []
        with session(self.database) as db:
            due = list(db.exec(select(model).where(col(model.status) == "pending", col(model.next_attempt_at) <= now)
                               .order_by(col(model.next_attempt_at)).limit(self.rules.claim_limit)))
            for row in due:
                taken = db.execute(update(model).where(col(model.id) == row.id, col(model.status) == "pending",
                                                       col(model.next_attempt_at) == row.next_attempt_at).values(next_attempt_at=lease))
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(row)
            db.commit()
        return claimed

    # ------------------------------------------------------------------ send and settle
    async def send(self, row: Row, body: bytes, headers: dict[str, str], url: str | None = None) -> Outcome:
        """One attempt at a claimed row: the URL policy, the POST, and the row settled with its attempt recorded."""
        url = url or row.url
        attempt = row.attempts + 1
        decision = await check_host(urlsplit(url).hostname or "")
        if not decision.allowed:  # no deliveries into the private network, as for job browsers; no point retrying
            return await self.settle(row, attempt, url, None, f"blocked by the URL policy: {decision.reason}", final=True)
        code: int | None = None
        try:
            response = await self.http.post(url, content=body, headers=headers)
            code = response.status_code
            error = None if self.rules.delivered(code) else f"receiver answered {code}"
        except Exception as exc:  # noqa: BLE001 - every failure of the POST is the receiver's outcome
            error = f"{type(exc).__name__}: {exc}"[:500]
        return await self.settle(row, attempt, url, code, error)

    async def fail(self, row: Row, error: str) -> Outcome:
        """Give up on a row without trying it (what it was owed to is gone)."""
        return await self.settle(row, row.attempts + 1, row.url, None, error, final=True)

    async def settle(self, row: Row, attempt: int, url: str, code: int | None, error: str | None, *, final: bool = False) -> Outcome:
        if error is None:
            outcome = Outcome(True, None, code)
        elif final or attempt >= self.rules.max_attempts(row):
            log.warning("%s %s: giving up after %d attempts (%s)", self.rules.kind, row.id, attempt, error)
            outcome = Outcome(False, None, code, error)
        else:
            delay = min(self.rules.first_delay * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            outcome = Outcome(False, utcnow() + timedelta(seconds=delay), code, error)
        await asyncio.to_thread(self._settle, row, attempt, url, outcome)
        return outcome

    def _settle(self, row: Row, attempt: int, url: str, outcome: Outcome) -> None:
        model = self.rules.model
        now = utcnow()
        values: dict = {"attempts": attempt, "last_status_code": outcome.status_code, "last_error": outcome.error,
                        "status": "delivered" if outcome.delivered else ("pending" if outcome.retry_at else "failed")}
        if outcome.delivered:
            values["delivered_at"] = now
        if outcome.retry_at is not None:
            values["next_attempt_at"] = outcome.retry_at
        with session(self.database) as db:
            db.execute(update(model).where(col(model.id) == row.id).values(**values))
            db.add(DeliveryAttempt(kind=self.rules.kind, delivery_id=row.id, attempt=attempt, at=now, url=url,
                                   status_code=outcome.status_code, error=outcome.error))
            try:
                db.commit()
            except IntegrityError:  # this attempt was settled by another process (this one outlived its lease)
                db.rollback()
                log.warning("%s %s: attempt %d was settled elsewhere; this one's outcome is dropped", self.rules.kind, row.id, attempt)

    async def postpone(self, row: Row, until: datetime) -> None:
        """Put a claimed row back, untried, to be due at ``until`` (an ordering rule of its dialect)."""
        def write() -> None:
            model = self.rules.model
            with session(self.database) as db:
                db.execute(update(model).where(col(model.id) == row.id).values(next_attempt_at=until))
                db.commit()

        await asyncio.to_thread(write)


def attempts_of(database: str, kind: str, delivery_ids: list[str]) -> list[DeliveryAttempt]:
    """The attempts at these rows, in the order they were made."""
    if not delivery_ids:
        return []
    with session(database) as db:
        return list(db.exec(select(DeliveryAttempt).where(DeliveryAttempt.kind == kind, col(DeliveryAttempt.delivery_id).in_(delivery_ids))
                            .order_by(col(DeliveryAttempt.at), col(DeliveryAttempt.seq))))
