"""Views of jobs that are still moving, served from memory while Prefect's event stream keeps them honest.

Reading a running job from Prefect costs a flow-run read and an artifact read,
and listing costs a query and a count; a hundred clients polling their jobs
spend the scheduler's whole capacity on that (bench/RESULTS.md, part g). The
API already follows Prefect's event stream (:class:`EventHub`), which reports
every state change and progress update of every job. So a view read once is
kept, and:

- a state-change event moves it to the new state in place; after a final
  state the next read completes it with the job's manifest from the artifact
  store (no Prefect read) and it joins the final jobs JobService keeps;
- a progress event updates its progress in place;
- it is trusted only while the stream is connected and only if it was read
  since the current connection began (events missed while disconnected cannot
  leave a stale view behind), and for at most ``max_age`` seconds as a last net.

A read that raced with an event (or a reconnection) is not kept: each read
takes a token before it asks Prefect and stores its answer only if no event for
that job came since, on the same connection.

Job lists are kept the same way per owner and query: a state event of any of
the owner's jobs, or a submission, drops that owner's lists (and the admin's).
Final jobs never change and are cached by :class:`JobService` itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable

from prefect.client.schemas.objects import StateType

from sojourn.services.events import EventHub
from sojourn.services.job_view import JobView
from sojourn.tags import tag_values

ALL = "*"  # the list scope of an admin: every owner's jobs


@dataclass
class _Entry:
    value: Any
    epoch: int
    at: float


class LiveViews:
    def __init__(self, hub: EventHub, *, max_age: float = 60.0, max_entries: int = 20_000) -> None:
        self.hub = hub
        self.max_age = max_age
        self.max_entries = max_entries
        self._views: OrderedDict[str, _Entry] = OrderedDict()
        self._lists: OrderedDict[tuple[str, Hashable], _Entry] = OrderedDict()
        self._seq = 0  # counts events and changes made here
        self._job_seq: OrderedDict[str, int] = OrderedDict()  # last event per job
        self._scope_seq: dict[str, int] = {}  # last change per list scope
        hub.observe(self.on_event)

    # ------------------------------------------------------------------ tokens
    def token(self) -> tuple[int, int]:
        """Take before reading from Prefect; hand back to ``put_*``. (connection, last event) when the read began."""
        return self.hub.epoch, self._seq

    def _storable(self, token: tuple[int, int], last_change: int) -> bool:
        """Nothing happened since the read began, under one unbroken connection."""
        epoch, seq = token
        return self.hub.connected.is_set() and epoch == self.hub.epoch and last_change <= seq

    def _usable(self, entry: _Entry | None) -> bool:
        return (
            entry is not None
            and self.hub.connected.is_set()
            and entry.epoch == self.hub.epoch
            and time.monotonic() - entry.at < self.max_age
        )

    # ------------------------------------------------------------------ views
    def view(self, job_id: str) -> JobView | None:
        entry = self._views.get(job_id)
        return entry.value if self._usable(entry) else None  # type: ignore[union-attr]

    def put_view(self, view: JobView, token: tuple[int, int]) -> None:
        if view.final or not self._storable(token, self._job_seq.get(view.id, -1)):
            return
        self._views[view.id] = _Entry(view, self.hub.epoch, time.monotonic())
        self._views.move_to_end(view.id)
        while len(self._views) > self.max_entries:
            self._views.popitem(last=False)

    def drop(self, job_id: str, owner: str | None = None) -> None:
        """This process changed the job (cancel, release): forget what it knew."""
        self.forget(job_id)
        self._touch_scopes(owner)

    def drop_lists(self, owner: str) -> None:
        """This process added jobs of ``owner`` (a submission): its lists (and the admin's) changed."""
        self._seq += 1
        self._touch_scopes(owner)

    # ------------------------------------------------------------------ lists
    def listing(self, scope: str, query: Hashable) -> Any | None:
        entry = self._lists.get((scope, query))
        if self._usable(entry) and self._scope_seq.get(scope, -1) <= entry.value[0]:  # type: ignore[union-attr]
            return entry.value[1]  # type: ignore[union-attr]
        return None

    def put_listing(self, scope: str, query: Hashable, value: Any, token: tuple[int, int]) -> None:
        if not self._storable(token, self._scope_seq.get(scope, -1)):
            return
        self._lists[(scope, query)] = _Entry((token[1], value), self.hub.epoch, time.monotonic())
        self._lists.move_to_end((scope, query))
        while len(self._lists) > self.max_entries:
            self._lists.popitem(last=False)

    # ------------------------------------------------------------------ events
    def on_event(self, item: dict[str, Any]) -> None:
        job_id = item.get("job_id")
        if job_id is None:
            return
        name: str = item["event"]
        if name == "sojourn.job.progress":  # lists show no progress: only the job's view changes
            entry = self._views.get(job_id)
            if entry is not None and entry.value.state_type in (StateType.RUNNING, StateType.CANCELLING):
                entry.value.progress = dict(item.get("payload") or {})
            else:  # held as not yet running: its state event is on its way; read it afresh
                self.forget(job_id)
            return
        if not name.startswith("prefect.flow-run."):
            return
        if not self._advance(job_id, item):
            self.forget(job_id)
        owners = tag_values(item.get("tags") or [], "owner")
        if owners:
            for owner in owners:
                self._touch_scopes(owner)
        else:  # whose it is is unknown: every list may have changed
            self._lists.clear()
            self._touch_scopes(None)

    def _advance(self, job_id: str, item: dict[str, Any]) -> bool:
        """Move a held view to the state the event reports, in place; False if it must be read afresh."""
        entry = self._views.get(job_id)
        resource = item.get("resource") or {}
        try:
            state_type = StateType(resource.get("prefect.state-type"))
        except ValueError:
            return False
        if entry is None or not entry.value.advance(state_type, resource.get("prefect.state-name") or state_type.value.title(),
                                                     resource.get("prefect.state-message") or None, item["occurred"]):
            return False
        rid = resource.get("prefect.resource.id") or ""
        if entry.value.flow_run_id is None and rid.startswith("prefect.flow-run."):
            entry.value.flow_run_id = rid[len("prefect.flow-run.") :]  # dispatched since it was read
        self._seq += 1
        self._note_job(job_id)  # a read that began before this event must not overwrite it
        return True

    def forget(self, job_id: str) -> None:
        """Drop what is known of this job's view (its lists are not affected)."""
        self._seq += 1
        self._note_job(job_id)
        self._views.pop(job_id, None)

    def _note_job(self, job_id: str) -> None:
        self._job_seq[job_id] = self._seq
        self._job_seq.move_to_end(job_id)
        while len(self._job_seq) > self.max_entries:
            self._job_seq.popitem(last=False)

    def _touch_scopes(self, owner: str | None) -> None:
        self._scope_seq[ALL] = self._seq
        if owner is not None:
            self._scope_seq[owner] = self._seq
        else:
            for scope in self._scope_seq:
                self._scope_seq[scope] = self._seq
