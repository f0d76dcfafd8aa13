"""The tags Sojourn puts on flow runs (``job:``, ``owner:``, ``dialect:``, ``priority:``, ``type:``, ...) and reading them back."""

from __future__ import annotations

from typing import Iterable


JOB_TAG_PREFIX = "job"  # job:<Sojourn job id>: which job a flow run (or an event of it) belongs to


def job_tag(job_id: str) -> str:
    return f"{JOB_TAG_PREFIX}:{job_id}"


def job_id_from_tags(tags: Iterable[str]) -> str | None:
    return next(iter(tag_values(tags, JOB_TAG_PREFIX)), None)


def owner_tag(name: str) -> str:
    return f"owner:{name}"


def tag_values(tags: Iterable[str], prefix: str) -> list[str]:
    """The values of the ``prefix:value`` tags among ``tags``."""
    return [t[len(prefix) + 1 :] for t in tags if t.startswith(prefix + ":")]
