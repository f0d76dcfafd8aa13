"""The tags Sojourn puts on flow runs (``owner:``, ``dialect:``, ``priority:``, ``type:``, ``batch-index:``) and reading them back."""

from __future__ import annotations

from typing import Iterable


def owner_tag(name: str) -> str:
    return f"owner:{name}"


def tag_values(tags: Iterable[str], prefix: str) -> list[str]:
    """The values of the ``prefix:value`` tags among ``tags``."""
    return [t[len(prefix) + 1 :] for t in tags if t.startswith(prefix + ":")]
