"""A job as every dialect reads it: the ledger's facts (id, owner, spec, when it was accepted) joined with
its flow run's state once it has one, plus progress, the stored manifest and the error.

Before its flow run exists a job is ``submitted`` (state ``Accepted``, or ``Held`` in a batch waiting
for a slot), or ``cancelled`` if it was cancelled then. After that Prefect's state decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import FlowRun, StateType

from sojourn.blocks.artifact_store import Manifest
from sojourn.job_errors import parse_error
from sojourn.store.clock import aware
from sojourn.store.jobs import Job

FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
FINAL_EVENTS = {f"prefect.flow-run.{t.value.title()}" for t in FINAL}

STATUS = {
    StateType.SCHEDULED: "submitted",
    StateType.PENDING: "submitted",
    StateType.PAUSED: "submitted",
    StateType.RUNNING: "processing",
    StateType.CANCELLING: "processing",
    StateType.COMPLETED: "completed",
    StateType.FAILED: "failed",
    StateType.CRASHED: "failed",
    StateType.CANCELLED: "cancelled",
}
STATE_TYPES_FOR_STATUS: dict[str, list[StateType]] = {}
for _t, _s in STATUS.items():
    STATE_TYPES_FOR_STATUS.setdefault(_s, []).append(_t)

PRIORITIES = ["high", "normal", "low"]

ACCEPTED = "Accepted"  # in the ledger, its flow run not created yet
HELD = "Held"  # in the ledger, waiting for its batch to release it
CANCELLED_BEFORE_START = "Cancelled by request before it started."
REJECTED = "SCHEDULER_REJECTED"


def run_error(state_type: StateType | None, message: str | None) -> dict[str, Any]:
    """The error of a finished run from its state alone (the manifest, when there is one, knows better)."""
    if state_type == StateType.CANCELLED:
        return {"code": "CANCELLED", "message": message or "cancelled", "details": {}}
    parsed = parse_error(message)
    if parsed:
        return {**parsed, "details": {}}
    if state_type == StateType.CRASHED:
        return {"code": "WORKER_LOST", "message": message or "the worker running this job stopped", "details": {}}
    return {"code": "BROWSER_ERROR", "message": message or "failed", "details": {}}


@dataclass
class JobView:
    id: str
    owner: str
    dialect: str
    priority: str
    labels: dict[str, str]
    spec: dict[str, Any]
    created_at: datetime
    status: str
    state: str
    state_type: StateType | None = None
    state_at: datetime | None = None
    state_message: str | None = None
    flow_run_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    run_count: int = 0
    seq: int | None = None
    external_id: str | None = None
    group_id: str | None = None
    progress: dict[str, Any] | None = None
    manifest: Manifest | None = None
    error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: Job, run: FlowRun | None) -> "JobView":
        """The job from its ledger row and, once it exists, its flow run (without manifest or progress)."""
        view = cls(
            id=row.id, owner=row.owner, dialect=row.dialect, priority=row.priority, labels=json.loads(row.labels or "{}"),
            spec=json.loads(row.spec), created_at=aware(row.created_at),  # type: ignore[arg-type]
            status="submitted", state=HELD if row.held else ACCEPTED, flow_run_id=row.flow_run_id,
            seq=row.seq, external_id=row.external_id, group_id=row.group_id,
        )
        if row.cancel_requested_at is not None:
            # Cancelled before it started: the ledger's word is final, whatever its run (if made) says yet.
            view.status, view.state, view.state_type = "cancelled", "Cancelled", StateType.CANCELLED
            view.state_at = view.ended_at = aware(row.cancel_requested_at)
            view.state_message = CANCELLED_BEFORE_START
            view.error = run_error(StateType.CANCELLED, CANCELLED_BEFORE_START)
        elif row.rejected:
            view.status, view.state, view.state_type = "failed", "Failed", StateType.FAILED
            view.state_message = f"{REJECTED}: {row.last_error or 'the scheduler refused the job'}"
            view.error = {"code": REJECTED, "message": row.last_error or "the scheduler refused the job", "details": {}}
        elif run is not None:
            view.follow_run(run)
        return view

    def follow_run(self, run: FlowRun) -> None:
        state_type = run.state_type or StateType.SCHEDULED
        self.flow_run_id = str(run.id)
        self.state_type = state_type
        self.status = STATUS.get(state_type, "submitted")
        self.state = run.state_name or state_type.value.title()
        self.state_at = run.state.timestamp if run.state else None
        self.state_message = run.state.message if run.state else None
        self.started_at = run.start_time
        self.ended_at = run.end_time
        self.run_count = run.run_count
        if self.final:
            self.error = run_error(state_type, self.state_message) if state_type != StateType.COMPLETED else None

    @property
    def final(self) -> bool:
        return self.state_type in FINAL

    @property
    def dispatched(self) -> bool:
        return self.flow_run_id is not None

    def advance(self, state_type: StateType, name: str, message: str | None, at: datetime) -> bool:
        """Take a state change reported by an event, in place.

        An event older than what the view shows (events can arrive out of order)
        changes nothing. A final state makes the view final but not complete:
        its manifest is read once, by whoever reads the job next
        (:meth:`JobService.get`). False if the view is final already.
        """
        if self.final:
            return False
        if self.state_at is not None and at < self.state_at:
            return True  # it already shows something newer
        self.state_type, self.state, self.state_message, self.state_at = state_type, name, message, at
        self.status = STATUS.get(state_type, "submitted")
        if state_type == StateType.RUNNING and self.started_at is None:
            self.started_at = at
        if state_type in FINAL:
            self.ended_at = at
            self.error = run_error(state_type, message) if state_type != StateType.COMPLETED else None
            self.progress = None
        elif state_type not in (StateType.RUNNING, StateType.CANCELLING):
            self.progress = None
        return True

    def tag(self, prefix: str) -> str | None:
        """A fact about the job by name: owner, dialect, priority, or one of its labels (type, batch, ...)."""
        if prefix in ("owner", "dialect", "priority"):
            return getattr(self, prefix)  # type: ignore[no-any-return]
        return self.labels.get(prefix)

    @property
    def completed_at(self) -> datetime | None:
        return self.ended_at if self.final else None

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.completed_at:
            return int((self.completed_at - self.started_at).total_seconds() * 1000)
        return None
