"""What a person sees on the run's page in the Prefect UI: the captures."""

from __future__ import annotations

import logging

from prefect.artifacts import MarkdownArtifact

from sojourn.blocks.artifact_store import Manifest
from sojourn.settings import get_settings

log = logging.getLogger(__name__)


def artifact_url(job_id: str, name: str) -> str:
    return f"{get_settings().public_base}/api/v1/jobs/{job_id}/artifacts/{name}"


def manifest_markdown(manifest: Manifest) -> str:
    lines = [f"### Job `{manifest.job_id}`: {manifest.status}", ""]
    if manifest.cached_from:
        lines += [f"Reused the result of job `{manifest.cached_from}` (cache).", ""]
    if manifest.error:
        lines += [f"**{manifest.error['code']}**: {manifest.error['message']}", ""]
    if manifest.steps:
        lines += ["| step | URL | HTTP | title | ms |", "|---|---|---|---|---|"]
        for s in manifest.steps:
            lines.append(f"| {s.index} | {s.final_url or s.url} | {s.status or ''} | {s.title} | {s.duration_ms} |")
        lines.append("")
    if manifest.artifacts:
        lines += ["| capture | size | details |", "|---|---|---|"]
        for a in manifest.artifacts:
            dims = f"{a.width}×{a.height}" if a.width else ""
            lines.append(f"| [{a.name}]({artifact_url(manifest.job_id, a.name)}) | {a.size:,} B | {a.kind} {dims} |")
        lines.append("")
    shot = manifest.artifact("screenshot")
    if shot:
        lines.append(f"![{shot.name}]({artifact_url(manifest.job_id, shot.name)})")
    return "\n".join(lines)


async def publish_to_ui(manifest: Manifest) -> None:
    """One markdown artifact (its image shows the screenshot); best effort, never fails the job."""
    try:
        from sojourn.progress import run_client

        await MarkdownArtifact(markdown=manifest_markdown(manifest), description="Sojourn job captures").acreate(client=run_client())
    except Exception as exc:
        log.warning("could not publish captures to the Prefect UI: %s", exc)
