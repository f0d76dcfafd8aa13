"""LiveViews: what the API answers from memory for jobs still moving, and when it must ask Prefect again.

Driven with real EventHub, JobView and Prefect FlowRun objects and event items
shaped as the hub passes them on; the end-to-end freshness over HTTP is in
test_native_api (progress, cancel) and test_load (most reads from memory).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from uuid import uuid4

from prefect.client.schemas.objects import FlowRun, State, StateType

from sojourn.services.events import EventHub
from sojourn.services.job_view import JobView
from sojourn.store.jobs import Job
from sojourn.services.job_view_cache import ALL, LiveViews

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def _hub() -> EventHub:
    hub = EventHub()
    hub.epoch = 1
    hub.connected.set()
    return hub


def _view(state: StateType = StateType.SCHEDULED, owner: str = "alice", at: datetime = T0) -> JobView:
    job_id = str(uuid4())
    run = FlowRun(id=uuid4(), flow_id=uuid4(), name=job_id, tags=["sojourn", f"job:{job_id}", f"owner:{owner}"],
                  state=State(type=state, name=state.value.title(), timestamp=at), state_type=state, state_name=state.value.title())
    row = Job(id=job_id, owner=owner, dialect="native", spec="{}", created_at=at - timedelta(seconds=1), flow_run_id=str(run.id))
    return JobView.of(row, run)


def _event(job_id: str, state: StateType, at: datetime, owner: str = "alice", name: str | None = None) -> dict:
    name = name or state.value.title()
    return {
        "event": f"prefect.flow-run.{name}",
        "occurred": at,
        "payload": {},
        "job_id": job_id,
        "resource": {"prefect.resource.id": f"prefect.flow-run.{job_id}", "prefect.state-type": state.value, "prefect.state-name": name},
        "tags": ["sojourn", f"owner:{owner}"],
    }


def _progress(job_id: str, step: str) -> dict:
    payload = {"currentStep": step, "stepsCompleted": 1, "totalSteps": 2, "percentage": 50}
    return {"event": "sojourn.job.progress", "occurred": T0, "payload": payload, "job_id": job_id, "resource": {}, "tags": []}


def test_a_view_follows_its_jobs_events_in_place_until_it_ends():
    hub = _hub()
    live = LiveViews(hub)
    view = _view()
    live.put_view(view, live.token())
    assert live.view(view.id) is view

    hub._dispatch_item(_event(view.id, StateType.RUNNING, T0 + timedelta(seconds=1)))
    held = live.view(view.id)
    assert held is not None and held.status == "processing" and held.state == "Running"
    assert held.started_at == T0 + timedelta(seconds=1)

    hub._dispatch_item(_progress(view.id, "Visiting page 1"))
    assert live.view(view.id).progress["currentStep"] == "Visiting page 1"  # type: ignore[union-attr]

    # an older event arriving late does not move it back (nor make it be read again)
    hub._dispatch_item(_event(view.id, StateType.PENDING, T0 + timedelta(milliseconds=500)))
    held = live.view(view.id)
    assert held is not None and held.status == "processing" and held.state == "Running"

    # the end too (JobService then reads the manifest once, from the artifact store, not Prefect)
    hub._dispatch_item(_event(view.id, StateType.COMPLETED, T0 + timedelta(seconds=2)))
    ended = live.view(view.id)
    assert ended is not None and ended.final and ended.status == "completed" and ended.progress is None
    assert ended.completed_at == T0 + timedelta(seconds=2) and ended.duration_ms == 1000


def test_a_read_that_raced_with_an_event_is_not_kept():
    hub = _hub()
    live = LiveViews(hub)
    view = _view()
    token = live.token()  # the read begins ...
    hub._dispatch_item(_event(view.id, StateType.RUNNING, T0 + timedelta(seconds=1)))  # ... the job moves ...
    live.put_view(view, token)  # ... and the read's older answer arrives
    assert live.view(view.id) is None
    live.put_view(_view(), live.token())  # an unrelated job's read is kept
    assert len(live._views) == 1


def test_nothing_is_trusted_while_the_stream_is_down_or_from_before_a_reconnect():
    hub = _hub()
    live = LiveViews(hub)
    view = _view()
    live.put_view(view, live.token())
    hub.connected.clear()
    assert live.view(view.id) is None
    hub.epoch += 1  # reconnected: events in between may have been missed
    hub.connected.set()
    assert live.view(view.id) is None
    token = live.token()  # a read that began before a reconnection is not kept either
    hub.epoch += 1
    live.put_view(view, token)
    assert live.view(view.id) is None


def test_views_expire_as_a_last_resort():
    hub = _hub()
    live = LiveViews(hub, max_age=0.05)
    view = _view()
    live.put_view(view, live.token())
    assert live.view(view.id) is view
    asyncio.run(asyncio.sleep(0.06))
    assert live.view(view.id) is None


def test_an_owners_job_moving_drops_that_owners_lists_and_the_admins_only():
    hub = _hub()
    live = LiveViews(hub)
    for scope in ("alice", "bob", ALL):
        live.put_listing(scope, ("q",), [scope], live.token())
    hub._dispatch_item(_event(str(uuid4()), StateType.RUNNING, T0, owner="alice"))
    assert live.listing("alice", ("q",)) is None
    assert live.listing(ALL, ("q",)) is None
    assert live.listing("bob", ("q",)) == ["bob"]
    # progress does not change lists
    live.put_listing("alice", ("q",), ["alice"], live.token())
    hub._dispatch_item(_progress(str(uuid4()), "x"))
    assert live.listing("alice", ("q",)) == ["alice"]
    # a submission by this process drops the owner's lists at once
    live.drop(str(uuid4()), "alice")
    assert live.listing("alice", ("q",)) is None and live.listing("bob", ("q",)) == ["bob"]


def test_final_views_are_never_held_here():
    hub = _hub()
    live = LiveViews(hub)
    done = _view(StateType.COMPLETED)
    live.put_view(done, live.token())
    assert live.view(done.id) is None
