"""What a person sees on the run's page in the Prefect UI: the captures."""

from __future__ import annotations

import logging

from prefect.artifacts import MarkdownArtifact

from sojourn.blocks.artifact_store import ArtifactRecord, ArtifactStore, Manifest
from sojourn.settings import get_settings
from sojourn.signed_links import MAX_PRESIGN_SECONDS, link_lifetime, signed_url

log = logging.getLogger(__name__)


def artifact_url(job_id: str, record: ArtifactRecord, store: ArtifactStore | None = None) -> str:
    """A link the person looking at the Prefect UI can open without an API key: presigned on S3, else signed by
    Sojourn for this one capture (:mod:`sojourn.signed_links`)."""
    settings = get_settings()
    if store is not None and store.is_remote:
        try:
            url = store.presign(record.path, min(link_lifetime(settings), MAX_PRESIGN_SECONDS))
            if url:
                return url
        except Exception as exc:  # a store that cannot presign: the API serves it instead
            log.warning("could not presign %s: %s", record.path, exc)
    return signed_url(settings, job_id, record.name)


def manifest_markdown(manifest: Manifest, store: ArtifactStore | None = None) -> str:
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
            lines.append(f"| [{a.name}]({artifact_url(manifest.job_id, a, store)}) | {a.size:,} B | {a.kind} {dims} |")
        lines.append("")
    shot = manifest.artifact("screenshot")
    if shot:
        lines.append(f"![{shot.name}]({artifact_url(manifest.job_id, shot, store)})")
    return "\n".join(lines)


async def publish_to_ui(manifest: Manifest, store: ArtifactStore | None = None) -> None:
    """One markdown artifact (its image shows the screenshot); best effort, never fails the job."""
    try:
        from sojourn.progress import run_client

        await MarkdownArtifact(markdown=manifest_markdown(manifest, store), description="Sojourn job captures").acreate(client=run_client())
    except Exception as exc:
        log.warning("could not publish captures to the Prefect UI: %s", exc)
