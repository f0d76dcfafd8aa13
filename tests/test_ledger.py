"""The job ledger and its dispatcher, on SQLite and PostgreSQL, against the session's real Prefect server.

Jobs here are due tomorrow, so their runs wait in the pool (no worker takes them) and are deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import StateType
from sqlalchemy import update

from sojourn.deployments.bootstrap import bootstrap
from sojourn.services.dispatcher import REJECT_AFTER, Dispatcher
from sojourn.services.ledger import Ledger
from sojourn.services.job_view import JobView
from sojourn.store.db import session
from sojourn.store.jobs import Job
from tests.postgres import drop_facade_database, fresh_facade_database


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else fresh_facade_database("sojourn_ledger")
    if url is None:
        pytest.skip("no PostgreSQL on this machine (CI always has one)")
    yield Ledger(url)
    if request.param == "postgres":
        drop_facade_database(url)


@pytest.fixture()
async def prefect(prefect_server):
    async with get_client() as client:
        yield client


@pytest.fixture(scope="session")
async def deployments(prefect_server):
    return (await bootstrap()).deployments


def tomorrow_jobs(n: int, mark: str, **fields) -> list[Job]:
    run_at = datetime.now(timezone.utc) + timedelta(days=1)
    spec = {"steps": [{"url": "http://127.0.0.1:9/"}], "run_at": run_at.isoformat()}
    return [Job(id=str(uuid.uuid4()), owner="ledger-test", dialect="native", spec=json.dumps(spec), run_at=run_at,
                labels=json.dumps({"mark": mark}), **fields) for _ in range(n)]


async def runs_marked(client: PrefectClient, mark: str) -> list:
    runs, offset = [], 0
    while True:
        page = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"mark:{mark}"])), limit=200, offset=offset)
        runs += page
        if len(page) < 200:
            return runs
        offset += 200


async def drain(*dispatchers: Dispatcher) -> None:
    async def loop(d: Dispatcher) -> None:
        while await d.dispatch_once():
            pass

    await asyncio.gather(*(loop(d) for d in dispatchers))


async def cleanup(client: PrefectClient, mark: str) -> None:
    for run in await runs_marked(client, mark):
        await client.delete_flow_run(run.id)


async def test_two_dispatchers_make_exactly_one_run_per_job(ledger, prefect, deployments):
    mark = uuid.uuid4().hex
    jobs = tomorrow_jobs(150, mark)
    await ledger.accept(jobs)
    a = Dispatcher(ledger, prefect, lambda: deployments)
    b = Dispatcher(ledger, prefect, lambda: deployments)
    try:
        await drain(a, b)
        rows = await ledger.get_many(j.id for j in jobs)
        assert all(r.flow_run_id for r in rows.values())
        runs = await runs_marked(prefect, mark)
        assert len(runs) == 150 and a.created + b.created == 150
        by_job = {next(t[4:] for t in r.tags if t.startswith("job:")): r for r in runs}
        assert set(by_job) == {j.id for j in jobs}
        for job_id, run in by_job.items():
            assert rows[job_id].flow_run_id == str(run.id) and run.name == job_id
            assert run.state_type == StateType.SCHEDULED and run.work_queue_name == "normal"
            assert {"sojourn", "owner:ledger-test", "dialect:native", "priority:normal"} <= set(run.tags)
    finally:
        await cleanup(prefect, mark)


async def test_a_dispatcher_that_died_before_recording_leaves_no_second_run(ledger, prefect, deployments):
    mark = uuid.uuid4().hex
    jobs = tomorrow_jobs(5, mark)
    await ledger.accept(jobs)
    dead = Dispatcher(ledger, prefect, lambda: deployments)
    try:
        claimed = await asyncio.to_thread(ledger.claim, dead.name, 100, 30.0)
        created = await dead._create("browse", claimed)  # the runs exist; then the process dies before recording
        assert all(c.flow_run_id for c in created)
        with session(ledger.url) as db:  # its claims lapse
            db.execute(update(Job).where(Job.claimed_by == dead.name).values(claimed_until=datetime.now(timezone.utc) - timedelta(seconds=1)))
            db.commit()
        heir = Dispatcher(ledger, prefect, lambda: deployments)
        await drain(heir)
        rows = await ledger.get_many(j.id for j in jobs)
        assert {r.id: r.flow_run_id for r in rows.values()} == {c.job_id: c.flow_run_id for c in created}
        assert len(await runs_marked(prefect, mark)) == 5
    finally:
        await cleanup(prefect, mark)


async def test_a_job_cancelled_before_dispatch_gets_its_run_created_cancelled(ledger, prefect, deployments):
    mark = uuid.uuid4().hex
    job, = tomorrow_jobs(1, mark)
    await ledger.accept([job])
    try:
        assert await ledger.cancel_undispatched(job.id)
        assert not await ledger.cancel_undispatched(job.id)  # once
        view = JobView.of(await ledger.get(job.id), None)
        assert view.final and view.status == "cancelled" and view.error["code"] == "CANCELLED"
        await drain(Dispatcher(ledger, prefect, lambda: deployments))
        run, = await runs_marked(prefect, mark)
        assert run.state_type == StateType.CANCELLED
        assert (await ledger.get(job.id)).flow_run_id == str(run.id)
    finally:
        await cleanup(prefect, mark)


async def test_a_cancel_that_races_the_create_cancels_the_new_run(ledger, prefect, deployments):
    mark = uuid.uuid4().hex
    job, = tomorrow_jobs(1, mark)
    await ledger.accept([job])

    class Racing(Dispatcher):
        async def _create(self, flow, rows):
            assert await self.ledger.cancel_undispatched(job.id)  # the client cancels while the run is being made
            return await super()._create(flow, rows)

    try:
        await drain(Racing(ledger, prefect, lambda: deployments))
        run, = await runs_marked(prefect, mark)
        assert run.state_type == StateType.CANCELLED
        assert JobView.of(await ledger.get(job.id), run).status == "cancelled"
    finally:
        await cleanup(prefect, mark)


async def test_held_jobs_wait_until_released(ledger, prefect, deployments):
    mark = uuid.uuid4().hex
    free, held = tomorrow_jobs(1, mark), tomorrow_jobs(2, mark, held=True)
    await ledger.accept(free + held)
    d = Dispatcher(ledger, prefect, lambda: deployments)
    try:
        await drain(d)
        assert len(await runs_marked(prefect, mark)) == 1
        assert (await ledger.waiting_by_priority())[0] == {"held": 2}
        assert await ledger.release([held[0].id]) == 1
        await drain(d)
        assert len(await runs_marked(prefect, mark)) == 2
        assert (await ledger.get(held[1].id)).flow_run_id is None
    finally:
        await cleanup(prefect, mark)


async def test_a_run_prefect_refuses_fails_the_job_after_a_few_tries(ledger, prefect, deployments):
    """A deployment whose parameter schema the job cannot meet: Prefect answers FAILED for that run."""
    mark = uuid.uuid4().hex
    flow_id = await prefect.create_flow_from_name("browse")
    strict = await prefect.create_deployment(
        flow_id=flow_id, name=f"strict-{mark[:8]}", work_pool_name="browsers", entrypoint="sojourn.flows.browse:browse",
        parameter_openapi_schema={"type": "object", "properties": {"spec": {"type": "integer"}}, "required": ["spec"]},
        enforce_parameter_schema=True,
    )
    job, = tomorrow_jobs(1, mark)
    await ledger.accept([job])
    d = Dispatcher(ledger, prefect, lambda: {"browse": strict})
    try:
        for attempt in range(REJECT_AFTER):
            assert await d.dispatch_once() == 1
            row = await ledger.get(job.id)
            assert row.flow_run_id is None and row.attempts == attempt + 1 and "spec" in (row.last_error or "")
            assert row.rejected == (attempt + 1 == REJECT_AFTER)
            with session(ledger.url) as db:  # skip the back-off
                db.execute(update(Job).where(Job.id == job.id).values(claimed_until=None))
                db.commit()
        assert await d.dispatch_once() == 0  # given up
        view = JobView.of(await ledger.get(job.id), None)
        assert view.final and view.status == "failed" and view.error["code"] == "SCHEDULER_REJECTED"
        assert await runs_marked(prefect, mark) == []
    finally:
        await prefect.delete_deployment(strict)


async def test_a_passing_failure_inside_prefect_is_retried_and_never_fails_the_job(ledger, prefect, deployments):
    """Prefect's SQLite answers some bulk-create items with "database is locked" under load (injected here in
    place of Prefect's reply). A few quick retries happen within the round; past them the job is handed back
    uncounted, and the next round creates it. It is never rejected."""
    from sojourn.services.dispatcher import QUICK_RETRIES
    from sojourn.services.ledger import Created

    mark = uuid.uuid4().hex
    job, = tomorrow_jobs(1, mark)
    await ledger.accept([job])
    locked_answers = len(QUICK_RETRIES) + 2  # the whole first round (a try and its quick retries), and the first try of the second

    class Locked(Dispatcher):
        calls = 0

        async def _create(self, flow, rows):
            self.calls += 1
            if self.calls <= locked_answers:
                return [Created(r.id, error="(sqlite3.OperationalError) database is locked", transient=True) for r in rows]
            return await super()._create(flow, rows)

    d = Locked(ledger, prefect, lambda: deployments)
    try:
        assert await d.dispatch_once() == 1
        row = await ledger.get(job.id)
        assert d.calls == len(QUICK_RETRIES) + 1
        assert row.flow_run_id is None and row.attempts == 0 and not row.rejected and row.claimed_until is None
        assert await d.dispatch_once() == 1
        row = await ledger.get(job.id)
        assert row.flow_run_id and not row.rejected and row.attempts == 1 and d.calls == locked_answers + 1
        assert len(await runs_marked(prefect, mark)) == 1
    finally:
        await cleanup(prefect, mark)


async def test_with_prefect_unreachable_claims_are_handed_back_and_not_counted(ledger):
    job, = tomorrow_jobs(1, uuid.uuid4().hex)
    await ledger.accept([job])
    async with PrefectClient(api="http://127.0.0.1:9/api") as nowhere:
        d = Dispatcher(ledger, nowhere, lambda: {"browse": uuid.uuid4()})
        with pytest.raises(Exception):
            await d.dispatch_once()
    row = await ledger.get(job.id)
    assert row.flow_run_id is None and row.attempts == 0 and not row.rejected and row.claimed_by is None
    assert row.claimed_until is not None  # tried again after a short pause, by whichever dispatcher comes first
