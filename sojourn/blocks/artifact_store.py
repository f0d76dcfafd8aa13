"""Where captures live: an fsspec store (local folder or S3), as a Prefect block.

Layout::

    jobs/<job id>/manifest.json
    jobs/<job id>/<artifact name>     (screenshot.png, page.pdf, video.webm, ...)
    cache/                            Prefect result records for job-level caching

The job id is the Prefect flow run id. The worker needs nothing but this
store and the Prefect API, so workers can run anywhere that reaches both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from datetime import datetime, timezone
from typing import Any

import fsspec
from prefect.filesystems import WritableFileSystem
from pydantic import BaseModel, Field, SecretStr

from sojourn.settings import Settings, get_settings


class ArtifactRecord(BaseModel):
    id: str
    kind: str  # screenshot | pdf | video | html | text | console | alerts | trace | extract
    name: str
    path: str  # relative to the store root
    content_type: str
    size: int
    sha256: str
    step: int | None = None
    step_name: str | None = None
    width: int | None = None
    height: int | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class StepRecord(BaseModel):
    index: int
    name: str | None = None
    url: str
    final_url: str = ""
    title: str = ""
    status: int | None = None
    duration_ms: int = 0


class Manifest(BaseModel):
    job_id: str
    status: str  # completed | failed
    kind: str = "browse"
    browser: str = "chromium"
    spec_sha256: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    artifacts: list[ArtifactRecord] = Field(default_factory=list)
    data: dict[str, Any] | None = None  # extract results
    answer: str | None = None  # agent jobs
    messages: list[str] | None = None  # alert() texts (Tourist READ_ALERTS)
    console: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None
    cached_from: str | None = None
    blocked_requests: list[dict[str, Any]] = Field(default_factory=list)  # refused by the URL policy

    def artifact(self, kind: str) -> ArtifactRecord | None:
        return next((a for a in self.artifacts if a.kind == kind), None)


_saved: dict[str, "ArtifactStore"] = {}


def _safe_key(key: str) -> str:
    if not key or "/" in key or key.startswith("."):
        raise ValueError(f"bad result key {key!r}")
    return key


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return struct.unpack(">II", data[16:24])


class ArtifactStore(WritableFileSystem):
    """Job outputs on a local folder or any fsspec URL (``s3://bucket/prefix``)."""

    _block_type_name = "Sojourn Artifact Store"
    _block_type_slug = "sojourn-artifact-store"
    _description = "Where Sojourn keeps screenshots, PDFs, videos and manifests."

    url: str = Field(description="a local folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto, ...)")
    access_key: str | None = None
    secret_key: SecretStr | None = None
    region: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "ArtifactStore":
        s = settings or get_settings()
        return cls(
            url=s.artifacts_location,
            endpoint_url=s.s3_endpoint_url,
            access_key=s.s3_access_key,
            secret_key=s.s3_secret_key,
            region=s.s3_region,
        )

    # ----------------------------------------------------------------- plumbing
    @property
    def is_remote(self) -> bool:
        return "://" in self.url and not self.url.startswith("file://")

    def storage_options(self) -> dict[str, Any]:
        if not self.url.startswith("s3://"):
            return {}
        # SigV4 throughout, presigned URLs included (botocore would presign with the deprecated SigV2 otherwise).
        opts: dict[str, Any] = {"config_kwargs": {"signature_version": "s3v4"}}
        if self.access_key:
            opts["key"] = self.access_key
        if self.secret_key:
            opts["secret"] = self.secret_key.get_secret_value()
        client: dict[str, Any] = {}
        if self.endpoint_url:
            client["endpoint_url"] = self.endpoint_url
        if self.region:
            client["region_name"] = self.region
        if client:
            opts["client_kwargs"] = client
        return opts

    def _fs(self) -> tuple[Any, str]:
        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options())
        return fs, root.rstrip("/")

    def _full(self, rel: str) -> tuple[Any, str]:
        fs, root = self._fs()
        return fs, f"{root}/{rel}"

    @staticmethod
    def job_path(job_id: str, name: str = "") -> str:
        if "/" in job_id or ".." in job_id or "/" in name or name.startswith("."):
            raise ValueError("bad job id or artifact name")
        return f"jobs/{job_id}/{name}" if name else f"jobs/{job_id}"

    # ----------------------------------------------------------------- Prefect result storage
    # Job-level caching persists the cached task's result here, under cache/.
    async def read_path(self, path: str) -> bytes:
        return await self.read_bytes(f"cache/{_safe_key(path)}")

    async def write_path(self, path: str, content: bytes) -> None:
        await self.write_bytes(f"cache/{_safe_key(path)}", content)

    async def as_result_storage(self) -> "ArtifactStore":
        """This store, saved as a block document (Prefect requires that for result storage)."""
        if getattr(self, "_block_document_id", None) is not None:
            return self
        name = "store-" + hashlib.sha256(f"{self.url}|{self.endpoint_url}".encode()).hexdigest()[:16]
        cached = _saved.get(name)
        if cached is None:
            await self.save(name, overwrite=True)
            _saved[name] = cached = self
        return cached

    # ----------------------------------------------------------------- bytes
    def _write(self, rel: str, data: bytes) -> None:
        fs, path = self._full(rel)
        parent = path.rsplit("/", 1)[0]
        if not self.is_remote:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(data)

    def _read(self, rel: str) -> bytes:
        fs, path = self._full(rel)
        with fs.open(path, "rb") as fh:
            return fh.read()

    async def write_bytes(self, rel: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, rel, data)

    async def read_bytes(self, rel: str) -> bytes:
        return await asyncio.to_thread(self._read, rel)

    def exists(self, rel: str) -> bool:
        fs, path = self._full(rel)
        return fs.exists(path)

    def presign(self, rel: str, seconds: int) -> str | None:
        """A URL that reads this object without credentials for ``seconds`` (S3 stores; None for a local folder)."""
        if not self.url.startswith("s3://"):
            return None
        fs, path = self._full(rel)
        return fs.sign(path, expiration=seconds)

    async def delete(self, rel: str) -> None:
        fs, path = self._full(rel)
        await asyncio.to_thread(fs.rm, path, recursive=True)

    # ----------------------------------------------------------------- artifacts
    async def put(
        self,
        job_id: str,
        *,
        kind: str,
        name: str,
        data: bytes,
        content_type: str,
        step: int | None = None,
        step_name: str | None = None,
        index: int = 0,
    ) -> ArtifactRecord:
        rel = self.job_path(job_id, name)
        await self.write_bytes(rel, data)
        size = png_size(data) if content_type == "image/png" else None
        return ArtifactRecord(
            id=f"{job_id}_{index}",
            kind=kind,
            name=name,
            path=rel,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            step=step,
            step_name=step_name,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )

    async def write_manifest(self, manifest: Manifest) -> None:
        data = manifest.model_dump_json(indent=2).encode()
        await self.write_bytes(self.job_path(manifest.job_id, "manifest.json"), data)

    async def read_manifest(self, job_id: str) -> Manifest | None:
        try:
            raw = await self.read_bytes(self.job_path(job_id, "manifest.json"))
        except FileNotFoundError:
            return None
        return Manifest.model_validate(json.loads(raw))
