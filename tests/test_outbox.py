"""The one outbox (sojourn/services/outbox.py) under each dialect's rules, against a real receiver and a real database.

End to end, each outbox is exercised by its dialect's tests (test_native_api: signed, retried, given up; test_taskengine:
callbacks in order; test_fastlane and test_services: webhookDispatch, two processes at once). Here: what each dialect
documents for answers that are not a plain 200, the backoff's cap, and a claim whose process died.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import update
from sqlmodel import select

from sojourn.services.fastlane.service import hook_rules
from sojourn.services.outbox import MAX_BACKOFF_SECONDS, Outbox, attempts_of
from sojourn.services.taskengine.callbacks import delivery_rules as callback_rules
from sojourn.services.webhooks import delivery_rules as webhook_rules
from sojourn.settings import Settings
from sojourn.store.clock import aware, utcnow
from sojourn.store.db import session
from sojourn.store.fastlane import FastlaneHookDelivery
from sojourn.store.taskengine import TaskEngineCallback
from sojourn.store.webhooks import WebhookDelivery


class Answers:
    """A receiver answering by path: /200, /302, /404, /500, and /slow (later than the outbox waits)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits.append(self.path)
                if self.path == "/slow":
                    time.sleep(2)
                code = 200 if self.path == "/slow" else int(self.path.strip("/"))
                self.send_response(code)
                if code == 302:
                    self.send_header("Location", "/200")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def answers():
    a = Answers()
    yield a
    a.server.shutdown()


@pytest.fixture()
def database(tmp_path):
    return f"sqlite:///{tmp_path / 'outbox.db'}"


SETTINGS = Settings(webhook_timeout=0.5, fastlane_webhook_timeout=0.5, webhook_retry_seconds=3.0, webhook_max_attempts=20)


def _row(kind: str, url: str, n: int, attempts: int = 0, retries: int = 30):
    common = {"id": f"{kind}-{n}", "url": url, "payload": '{"n": %d}' % n, "attempts": attempts}
    if kind == "webhook":
        return WebhookDelivery(webhook_id="wh_1", owner="o", event="job.completed", job_id="j", **common)
    if kind == "taskengine":
        return TaskEngineCallback(seq=1, ordinal=n, **common)
    return FastlaneHookDelivery(owner="o", execution_id="ex", job_id="j", event="finishes", retries=retries, **common)


RULES = {"webhook": webhook_rules, "taskengine": callback_rules, "fastlane": hook_rules}


def _store(database: str, rows: list) -> None:
    with session(database) as db:
        for r in rows:
            db.add(r)
        db.commit()


def _read(database: str, model, row_id: str):
    with session(database) as db:
        return db.get(model, row_id)


@pytest.mark.parametrize("kind", ["webhook", "taskengine", "fastlane"])
async def test_each_outbox_settles_every_kind_of_answer_as_its_dialect_documents(kind, answers, database):
    """Native webhooks and Task Engine callbacks are delivered on 2xx only; fastlane counts anything up to 399 as
    delivered, as fastlane does. Everything else (a 4xx, a 5xx, no answer in time) is tried again after the first
    delay; a refused address fails at once without a POST."""
    rules = RULES[kind](SETTINGS)
    paths = ["/200", "/302", "/404", "/500", "/slow"]
    _store(database, [_row(kind, answers.base + p, i) for i, p in enumerate(paths)] + [_row(kind, "http://169.254.169.254/latest", 9)])
    outbox = Outbox(database, rules)
    try:
        claimed = await outbox.claim()
        assert sorted(r.id for r in claimed) == sorted(f"{kind}-{i}" for i in [*range(len(paths)), 9])
        assert await Outbox(database, rules).claim() == []  # leased to the first
        before = utcnow()
        for row in claimed:
            await outbox.send(row, row.payload.encode(), {"Content-Type": "application/json"})
    finally:
        await outbox.close()
    delivered = {"/200"} | ({"/302"} if kind == "fastlane" else set())
    for i, path in enumerate(paths):
        row = _read(database, rules.model, f"{kind}-{i}")
        assert row.attempts == 1 and row.last_status_code == (None if path == "/slow" else int(path.strip("/"))), (path, row)
        if path in delivered:
            assert row.status == "delivered" and row.last_error is None and row.delivered_at is not None, (path, row)
        else:
            assert row.status == "pending" and row.delivered_at is None, (path, row)
            if path == "/slow":
                assert row.last_error.startswith("ReadTimeout"), row
            else:
                assert row.last_error == f"receiver answered {path.strip('/')}", (path, row)
            wait = (aware(row.next_attempt_at) - before).total_seconds()
            assert rules.first_delay <= wait <= rules.first_delay + 5, (path, wait)
    refused = _read(database, rules.model, f"{kind}-9")
    assert refused.status == "failed" and refused.last_error.startswith("blocked by the URL policy: ") and refused.attempts == 1
    assert sorted(answers.hits) == sorted(paths)  # one POST each; none to the refused address
    recorded = attempts_of(database, kind, [f"{kind}-{i}" for i in [*range(len(paths)), 9]])
    assert sorted((a.delivery_id, a.attempt, a.status_code) for a in recorded) == sorted(
        [(f"{kind}-{i}", 1, None if p == "/slow" else int(p.strip("/"))) for i, p in enumerate(paths)] + [(f"{kind}-9", 1, None)])


@pytest.mark.parametrize("kind", ["webhook", "fastlane"])
async def test_backoff_doubles_up_to_ten_minutes_and_the_last_attempt_gives_up(kind, answers, database):
    rules = RULES[kind](SETTINGS)
    # the 4th attempt fails: 4 × the first delay later; the 15th: capped; the last one allowed: given up
    last = 20 if kind == "webhook" else 7  # webhook_max_attempts; a fastlane hook with retries=6
    rows = [_row(kind, answers.base + "/500", n, attempts=a, retries=r) for n, a, r in ((1, 3, 30), (2, 14, 30), (3, last - 1, 6))]
    _store(database, rows)
    outbox = Outbox(database, rules)
    try:
        before = utcnow()
        for row in await outbox.claim():
            await outbox.send(row, b"{}", {})
    finally:
        await outbox.close()
    fourth, fifteenth, final = (_read(database, rules.model, r.id) for r in rows)
    assert (aware(fourth.next_attempt_at) - before).total_seconds() == pytest.approx(rules.first_delay * 8, abs=5)
    assert fifteenth.status == "pending" and (aware(fifteenth.next_attempt_at) - before).total_seconds() == pytest.approx(MAX_BACKOFF_SECONDS, abs=5)
    assert final.status == "failed" and final.attempts == last and final.last_error == "receiver answered 500"


async def test_a_row_claimed_by_a_process_that_died_is_delivered_once_after_its_lease(answers, database):
    rules = webhook_rules(SETTINGS)
    _store(database, [_row("webhook", answers.base + "/200", 1)])
    dead, alive = Outbox(database, rules), Outbox(database, rules)
    try:
        [claimed] = await dead.claim()  # ... and its process dies before it POSTs
        assert await alive.claim() == []
        lease_end = aware(_read(database, WebhookDelivery, claimed.id).next_attempt_at)
        assert (lease_end - utcnow()).total_seconds() > 60  # 60 s + the POST's timeout
        with session(database) as db:  # the lease lapses (the clock moved past it)
            db.execute(update(WebhookDelivery).where(WebhookDelivery.id == claimed.id).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
            db.commit()
        [again] = await alive.claim()
        assert again.id == claimed.id
        outcome = await alive.send(again, b"{}", {})
        assert outcome.delivered and await alive.claim() == [] and answers.hits == ["/200"]
        # Had the first process only stalled, its late outcome for the same attempt would be dropped, not doubled.
        await dead.settle(claimed, 1, claimed.url, 500, "receiver answered 500")
    finally:
        await dead.close()
        await alive.close()
    row = _read(database, WebhookDelivery, claimed.id)
    assert row.status == "delivered" and row.attempts == 1
    with session(database) as db:
        assert len(db.exec(select(WebhookDelivery)).all()) == 1
    assert [(a.attempt, a.status_code) for a in attempts_of(database, "webhook", [claimed.id])] == [(1, 200)]
