"""When a job's results have expired: ``SOJOURN_RESULT_RETENTION_SECONDS`` after it ended (after it was accepted, for
a job that never ran). The rule, with nothing to do; :mod:`sojourn.services.retention` deletes what it says has
expired, and a process still holding an expired job in memory stops serving it at once (:meth:`expired`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from sojourn.store.clock import aware

if TYPE_CHECKING:
    from sojourn.services.job_view import JobView


class RetentionPolicy:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def cutoff(self) -> datetime:
        return datetime.now(timezone.utc) - timedelta(seconds=self.seconds)

    def may_have_expired(self, accepted_at: datetime) -> bool:
        """Accepted before the cutoff: it has expired if it also ended before it."""
        return aware(accepted_at) < self.cutoff()

    def expired(self, view: "JobView") -> bool:
        """A final job whose results are past their time (read from memory: the sweep may not have run yet)."""
        return view.final and aware(view.ended_at or view.created_at) < self.cutoff()
