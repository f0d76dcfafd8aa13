"""Cron expressions (UTC) for recurring fastlane jobs."""

from __future__ import annotations

from datetime import datetime

from cronsim import CronSim, CronSimError


def next_firing(expression: str, after: datetime) -> datetime:
    """The first firing strictly after ``after``; ValueError for an expression that is not cron."""
    try:
        return next(CronSim(expression, after.replace(second=after.second, microsecond=0)))
    except (CronSimError, StopIteration) as exc:
        raise ValueError(str(exc) or "no firing") from None
