"""Which job a running flow is for, and how its own events say so.

A job accepted through the API has its own id (the job ledger's); its flow
run carries it as a ``job:`` tag. A flow called directly (plain Python, or a
run made by hand in the Prefect UI) has no such tag, and its flow run id is
its job id. Events a job emits (progress, screenshots) are about its flow run
and carry the job tag, so listeners can tell the job either way.
"""

from __future__ import annotations

from typing import Any

from sojourn.tags import job_id_from_tags, job_tag


def current_job_id() -> str:
    from prefect.runtime import flow_run

    return job_id_from_tags(flow_run.get_tags() or []) or str(flow_run.get_id())


def emit_job_event(job_id: str, event: str, payload: dict[str, Any]) -> None:
    """A ``sojourn.job.*`` event about the running flow run of ``job_id``."""
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    emit_event(
        event=event,
        resource={"prefect.resource.id": f"prefect.flow-run.{flow_run.get_id() or job_id}"},
        related=[{"prefect.resource.id": f"prefect.tag.{job_tag(job_id)}", "prefect.resource.role": "tag"}],
        payload=payload,
    )
