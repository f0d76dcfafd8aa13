"""Files of jobs for ``sojourn run``: reading a JSON Lines file, and writing each ended job to a folder of its own
(``OUT/<line>/job.json`` and its captures) so that a second run skips what completed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"  # written last: its presence means the line's captures are all there


def read_jobs(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, job) of each non-blank line; ValueError naming the line that is not a JSON object."""
    jobs = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc.msg}") from None
        if not isinstance(job, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object (a job), got {type(job).__name__}")
        jobs.append((n, job))
    if not jobs:
        raise ValueError(f"{path} has no jobs")
    return jobs


def already_done(out: Path, lines: list[int]) -> set[int]:
    """The lines whose job completed in an earlier run into ``out``."""
    done = set()
    for n in lines:
        try:
            if json.loads((out / str(n) / JOB_FILE).read_text()).get("status") == "completed":
                done.add(n)
        except (OSError, ValueError):
            pass
    return done


def save_job(client: Any, job: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Each capture of the ended ``job`` (a :class:`sojourn.client.Sojourn` read), then the job itself, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for artifact in ((job.get("result") or {}).get("metadata") or {}).get("artifacts") or []:
        name = os.path.basename(artifact["name"])  # a name is the server's, but a folder is the user's: nothing outside it
        client.download(job["id"], artifact["name"], folder / name)
    temporary = folder / f".{JOB_FILE}.tmp"
    temporary.write_text(json.dumps(job, indent=2, default=lambda answer: answer.to_dict()))  # (the client's models)
    temporary.replace(folder / JOB_FILE)
    return job
