"""A Python client of Sojourn's native API: ``Sojourn`` (sync) and ``AsyncSojourn`` with the same methods.

    from sojourn.client import Sojourn

    with Sojourn("http://127.0.0.1:8000", api_key="sj_...") as sj:       # or SOJOURN_URL / SOJOURN_API_KEY
        job = sj.run({"steps": [{"url": "https://example.com"}], "capture": ["screenshot"]})
        sj.download_screenshot(job["result"]["screenshots"][0], "shot.png")

Answers come back as pydantic models (:mod:`sojourn.client_models`: jobs, batches, screenshots, templates, webhooks,
keys, the status) that keep every field they do not know, so a newer server's additions never break an older
client, and read like the JSON too (``job["status"]`` as well as ``job.status``); log lines are dicts. An error answer
raises :class:`SojournError` with the API's ``code``, ``message`` and ``details``. Reads, cancels and deletes are
retried on connection errors, 429 and 5xx, honouring ``Retry-After``; a job's creation is retried only with an
``Idempotency-Key`` (the API answers the job it already made for that key).

Covered: jobs (create, get, wait, run, cancel, retry, list, logs, screenshots), batches, templates, webhooks,
the system status, and keys (admin), scrape exports and any capture's download.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import quote

import httpx

from sojourn.client_models import Answer, ApiKey, Batch, Job, JobRef, Profile, Retried, Screenshot, SystemStatus, Template, Webhook

__all__ = ["Sojourn", "AsyncSojourn", "SojournError", "Answer", "ApiKey", "Batch", "Job", "JobRef", "Profile", "Retried", "Screenshot", "SystemStatus",
           "Template", "Webhook"]

FINAL = ("completed", "failed", "cancelled")
RETRIED = (429, 500, 502, 503, 504)


class SojournError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def _error(response: httpx.Response) -> SojournError:
    try:
        body = response.json().get("error") or {}
    except ValueError:
        body = {}
    return SojournError(response.status_code, body.get("code") or f"HTTP_{response.status_code}", body.get("message") or response.text[:500],
                        body.get("details"))


def _delay(response: httpx.Response | None, attempt: int) -> float:
    after = response.headers.get("Retry-After") if response is not None else None
    if after is not None:
        try:
            return min(float(after), 60.0)
        except ValueError:
            pass
    return min(0.5 * 2 ** attempt, 10.0)


def _newly_ended(batch: dict[str, Any], told: set[str]) -> list[dict[str, Any]]:
    """The batch's jobs that ended and were not yet told (noted as told now)."""
    new = [job for job in batch["jobs"] if job["status"] in FINAL and job["id"] not in told]
    told.update(job["id"] for job in new)
    return new


def _batch_over(batch: dict[str, Any], told: set[str], batch_id: str, deadline: float, timeout: float) -> bool:
    """Every job of the batch told; TimeoutError once ``deadline`` passed without."""
    if len(told) == len(batch["jobIds"]):
        return True
    if time.monotonic() >= deadline:
        raise TimeoutError(f"batch {batch_id}: {len(told)} of {len(batch['jobIds'])} jobs ended after {timeout} s")
    return False


def _results_of(project_id: str | None, job_id: str | None, format: str) -> tuple[str, dict[str, str]]:
    """The scrape API's export: a project's results (of one of its jobs, with both), or a job's."""
    if project_id:
        return f"/projects/{quote(project_id)}/results", {"format": format, **({"job_id": job_id} if job_id else {})}
    if job_id:
        return f"/jobs/{quote(job_id)}/results", {"format": format}
    raise ValueError("name a project or a job")


class _Common:
    def __init__(self, base_url: str | None, api_key: str | None, timeout: float, retries: int) -> None:
        base = (base_url or os.environ.get("SOJOURN_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.base = base if base.endswith("/api/v1") else base + "/api/v1"
        self.api_key = api_key or os.environ.get("SOJOURN_API_KEY")
        if not self.api_key:
            raise ValueError("no API key: pass api_key or set SOJOURN_API_KEY")
        self.timeout, self.retries = timeout, retries

    @property
    def _scrape(self) -> str:
        """The scrape-jobs dialect beside the native API."""
        return self.base.removesuffix("/api/v1") + "/scrape/api/v1"

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key or "", "User-Agent": "sojourn-client/1"}

    @staticmethod
    def _body(spec_or_type: dict[str, Any] | str, input: dict[str, Any] | None, options: dict[str, Any] | None) -> dict[str, Any]:
        if isinstance(spec_or_type, str):  # a plain-English type with its input
            return {"type": spec_or_type, "input": input or {}, **({"options": options} if options else {})}
        return {"type": "browse", "input": spec_or_type, **({"options": options} if options else {})}


class Sojourn(_Common):
    """The native API, synchronously."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0, retries: int = 4) -> None:
        super().__init__(base_url, api_key, timeout, retries)
        self._http = httpx.Client(headers=self._headers(), timeout=timeout)

    def __enter__(self) -> "Sojourn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, retry: bool = True, **kw: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.request(method, self.base + path, **kw)
                if response.status_code not in RETRIED or not retry or attempt == self.retries:
                    break
            except httpx.TransportError:
                if not retry or attempt == self.retries:
                    raise
            time.sleep(_delay(response, attempt))
        assert response is not None
        if response.status_code >= 400:
            raise _error(response)
        return response

    # -------------------------------------------------------------- jobs
    def create(self, spec_or_type: dict[str, Any] | str, input: dict[str, Any] | None = None, *, options: dict[str, Any] | None = None,
               idempotency_key: str | None = None) -> JobRef:
        """Submit a job: a JobSpec (dict), or a plain-English type with its ``input``. Retried (on a dropped connection,
        429 or 5xx) under an Idempotency-Key, one of its own unless given, so a retry never makes a second job."""
        key = idempotency_key or str(uuid.uuid4())
        return JobRef.model_validate(self._call("POST", "/jobs", json=self._body(spec_or_type, input, options), headers={"Idempotency-Key": key}).json())

    def get(self, job_id: str, *, wait: float = 0) -> Job:
        return Job.model_validate(self._call("GET", f"/jobs/{job_id}", params={"wait": wait} if wait else None,
                                             timeout=self.timeout + wait).json())

    def wait(self, job_id: str, timeout: float = 300) -> Job:
        """The job once it has ended (the API's long poll, 30 s at a time); TimeoutError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id, wait=max(0.0, min(30.0, deadline - time.monotonic())))
            if job["status"] in FINAL:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")

    def run(self, spec_or_type: dict[str, Any] | str, input: dict[str, Any] | None = None, *, timeout: float = 300, **kw: Any) -> Job:
        return self.wait(self.create(spec_or_type, input, **kw)["jobId"], timeout)

    def cancel(self, job_id: str) -> JobRef:
        return JobRef.model_validate(self._call("POST", f"/jobs/{job_id}/cancel").json())

    def list(self, *, status: str | None = None, page_size: int = 100, **filters: Any) -> Iterator[Job]:
        """Every job the key may see, newest first, fetched a page at a time."""
        offset = 0
        while True:
            params = {k: v for k, v in {"status": status, "limit": page_size, "offset": offset, **filters}.items() if v is not None}
            page = self._call("GET", "/jobs", params=params).json()
            yield from (Job.model_validate(job) for job in page["jobs"])
            if not page.get("hasMore") or not page["jobs"]:
                return
            offset += len(page["jobs"])

    def _save(self, url: str, path: str | Path) -> Path:
        with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            with open(path, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return Path(path)

    def download_screenshot(self, screenshot_id: str, path: str | Path) -> Path:
        return self._save(f"{self.base}/screenshots/{screenshot_id}", path)

    def download(self, job_id: str, name: str, path: str | Path) -> Path:
        """One capture of a job (its ``name`` as ``result.metadata.artifacts`` lists it: PDF, video, HTML ...), streamed
        to ``path``."""
        return self._save(f"{self.base}/jobs/{job_id}/artifacts/{quote(name, safe='')}", path)

    def export_results(self, project_id: str | None = None, *, job_id: str | None = None, format: str = "csv") -> Iterator[bytes]:
        """A scrape project's results (with ``job_id`` too: of that job of it), or one scrape job's, exported whole:
        csv, jsonl or json, streamed."""
        path, params = _results_of(project_id, job_id, format)
        with self._http.stream("GET", self._scrape + path, params=params) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            yield from response.iter_bytes()

    def retry(self, job_id: str) -> Retried:
        """A new job with the ended job's spec (not retried by the client: the API takes no idempotency key for it)."""
        return Retried.model_validate(self._call("POST", f"/jobs/{job_id}/retry", retry=False).json())

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/jobs/{job_id}/logs").json()["logs"]

    def screenshots(self, job_id: str) -> list[Screenshot]:
        return [Screenshot.model_validate(x) for x in self._call("GET", f"/jobs/{job_id}/screenshots").json()["screenshots"]]

    # -------------------------------------------------------------- batches, templates, webhooks, status
    def create_batch(self, jobs: list[dict[str, Any]], *, max_concurrent: int | None = None) -> Batch:
        """Submit jobs (each ``{"type", "input", "options"}``) as one batch; not retried (no idempotency key)."""
        body: dict[str, Any] = {"jobs": jobs, **({"options": {"maxConcurrent": max_concurrent}} if max_concurrent else {})}
        return Batch.model_validate(self._call("POST", "/jobs/batch", json=body, retry=False).json())

    def batch(self, batch_id: str) -> Batch:
        return Batch.model_validate(self._call("GET", f"/jobs/batch/{batch_id}").json())

    def wait_batch(self, batch_id: str, timeout: float = 600) -> Iterator[Job]:
        """The batch's jobs, each as soon as a poll (every second) finds it ended; TimeoutError past ``timeout``."""
        deadline, told = time.monotonic() + timeout, set()
        while True:
            view = self.batch(batch_id)
            for job in _newly_ended(view, told):
                yield job
            if _batch_over(view, told, batch_id, deadline, timeout):
                return
            time.sleep(1.0)

    def create_template(self, name: str, type: str, default_input: dict[str, Any], *, variables: list[str] | None = None, **more: Any) -> Template:
        body = {"name": name, "type": type, "defaultInput": default_input, "variables": variables or [], **more}
        return Template.model_validate(self._call("POST", "/templates", json=body, retry=False).json())

    def execute_template(self, template_id: str, variables: dict[str, Any] | None = None) -> JobRef:
        return JobRef.model_validate(self._call("POST", f"/templates/{template_id}/execute", json={"variables": variables or {}}, retry=False).json())

    def create_webhook(self, url: str, events: list[str], *, secret: str | None = None) -> Webhook:
        body = {"url": url, "events": events, **({"secret": secret} if secret else {})}
        return Webhook.model_validate(self._call("POST", "/webhooks", json=body, retry=False).json())

    def webhooks(self) -> list[Webhook]:
        return [Webhook.model_validate(w) for w in self._call("GET", "/webhooks").json()["webhooks"]]

    def delete_webhook(self, webhook_id: str) -> None:
        self._call("DELETE", f"/webhooks/{webhook_id}")

    def status(self) -> SystemStatus:
        """The system status (``GET /system/status``): workers, queue, services."""
        return SystemStatus.model_validate(self._call("GET", "/system/status").json())

    # -------------------------------------------------------------- profiles
    def create_profile(self, name: str, storage_state: dict[str, Any] | None = None) -> Profile:
        body = {"name": name, **({"storageState": storage_state} if storage_state is not None else {})}
        return Profile.model_validate(self._call("POST", "/profiles", json=body, retry=False).json())

    def profiles(self) -> list[Profile]:
        return [Profile.model_validate(p) for p in self._call("GET", "/profiles").json()["profiles"]]

    def profile(self, name: str) -> Profile:
        return Profile.model_validate(self._call("GET", f"/profiles/{name}").json())

    def delete_profile(self, name: str) -> None:
        self._call("DELETE", f"/profiles/{name}")

    # -------------------------------------------------------------- keys (admin)
    def create_key(self, name: str, *, principal: str | None = None, scopes: list[str] | None = None, **more: Any) -> ApiKey:
        body = {"name": name, **({"principal": principal} if principal else {}), **({"scopes": scopes} if scopes else {}), **more}
        return ApiKey.model_validate(self._call("POST", "/keys", json=body, retry=False).json())

    def keys(self) -> list[ApiKey]:
        return [ApiKey.model_validate(k) for k in self._call("GET", "/keys").json()["keys"]]

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/keys/{key_id}")


class AsyncSojourn(_Common):
    """The native API, for asyncio (a Prefect flow of your own, say): the same methods as :class:`Sojourn`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0, retries: int = 4) -> None:
        super().__init__(base_url, api_key, timeout, retries)
        self._http = httpx.AsyncClient(headers=self._headers(), timeout=timeout)

    async def __aenter__(self) -> "AsyncSojourn":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, retry: bool = True, **kw: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = await self._http.request(method, self.base + path, **kw)
                if response.status_code not in RETRIED or not retry or attempt == self.retries:
                    break
            except httpx.TransportError:
                if not retry or attempt == self.retries:
                    raise
            await asyncio.sleep(_delay(response, attempt))
        assert response is not None
        if response.status_code >= 400:
            raise _error(response)
        return response

    async def create(self, spec_or_type: dict[str, Any] | str, input: dict[str, Any] | None = None, *, options: dict[str, Any] | None = None,
                     idempotency_key: str | None = None) -> JobRef:
        key = idempotency_key or str(uuid.uuid4())
        return JobRef.model_validate((await self._call("POST", "/jobs", json=self._body(spec_or_type, input, options), headers={"Idempotency-Key": key})).json())

    async def get(self, job_id: str, *, wait: float = 0) -> Job:
        return Job.model_validate((await self._call("GET", f"/jobs/{job_id}", params={"wait": wait} if wait else None, timeout=self.timeout + wait)).json())

    async def wait(self, job_id: str, timeout: float = 300) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(job_id, wait=max(0.0, min(30.0, deadline - time.monotonic())))
            if job["status"] in FINAL:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")

    async def run(self, spec_or_type: dict[str, Any] | str, input: dict[str, Any] | None = None, *, timeout: float = 300, **kw: Any) -> Job:
        return await self.wait((await self.create(spec_or_type, input, **kw))["jobId"], timeout)

    async def cancel(self, job_id: str) -> JobRef:
        return JobRef.model_validate((await self._call("POST", f"/jobs/{job_id}/cancel")).json())

    async def list(self, *, status: str | None = None, page_size: int = 100, **filters: Any) -> AsyncIterator[Job]:
        offset = 0
        while True:
            params = {k: v for k, v in {"status": status, "limit": page_size, "offset": offset, **filters}.items() if v is not None}
            page = (await self._call("GET", "/jobs", params=params)).json()
            for job in page["jobs"]:
                yield Job.model_validate(job)
            if not page.get("hasMore") or not page["jobs"]:
                return
            offset += len(page["jobs"])

    async def _save(self, url: str, path: str | Path) -> Path:
        async with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            with open(path, "wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        return Path(path)

    async def download_screenshot(self, screenshot_id: str, path: str | Path) -> Path:
        return await self._save(f"{self.base}/screenshots/{screenshot_id}", path)

    async def download(self, job_id: str, name: str, path: str | Path) -> Path:
        """One capture of a job, streamed to ``path`` (see :meth:`Sojourn.download`)."""
        return await self._save(f"{self.base}/jobs/{job_id}/artifacts/{quote(name, safe='')}", path)

    async def export_results(self, project_id: str | None = None, *, job_id: str | None = None, format: str = "csv") -> AsyncIterator[bytes]:
        """A scrape project's (or one scrape job's) results, exported whole, streamed (see :meth:`Sojourn.export_results`)."""
        path, params = _results_of(project_id, job_id, format)
        async with self._http.stream("GET", self._scrape + path, params=params) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            async for chunk in response.aiter_bytes():
                yield chunk

    async def retry(self, job_id: str) -> Retried:
        """A new job with the ended job's spec (not retried by the client: the API takes no idempotency key for it)."""
        return Retried.model_validate((await self._call("POST", f"/jobs/{job_id}/retry", retry=False)).json())

    async def logs(self, job_id: str) -> list[dict[str, Any]]:
        return (await self._call("GET", f"/jobs/{job_id}/logs")).json()["logs"]

    async def screenshots(self, job_id: str) -> list[Screenshot]:
        return [Screenshot.model_validate(x) for x in (await self._call("GET", f"/jobs/{job_id}/screenshots")).json()["screenshots"]]

    # -------------------------------------------------------------- batches, templates, webhooks, status
    async def create_batch(self, jobs: list[dict[str, Any]], *, max_concurrent: int | None = None) -> Batch:
        """Submit jobs (each ``{"type", "input", "options"}``) as one batch; not retried (no idempotency key)."""
        body: dict[str, Any] = {"jobs": jobs, **({"options": {"maxConcurrent": max_concurrent}} if max_concurrent else {})}
        return Batch.model_validate((await self._call("POST", "/jobs/batch", json=body, retry=False)).json())

    async def batch(self, batch_id: str) -> Batch:
        return Batch.model_validate((await self._call("GET", f"/jobs/batch/{batch_id}")).json())

    async def wait_batch(self, batch_id: str, timeout: float = 600) -> AsyncIterator[Job]:
        """The batch's jobs, each as soon as a poll (every second) finds it ended; TimeoutError past ``timeout``."""
        deadline, told = time.monotonic() + timeout, set()
        while True:
            view = await self.batch(batch_id)
            for job in _newly_ended(view, told):
                yield job
            if _batch_over(view, told, batch_id, deadline, timeout):
                return
            await asyncio.sleep(1.0)

    async def create_template(self, name: str, type: str, default_input: dict[str, Any], *, variables: list[str] | None = None, **more: Any) -> Template:
        body = {"name": name, "type": type, "defaultInput": default_input, "variables": variables or [], **more}
        return Template.model_validate((await self._call("POST", "/templates", json=body, retry=False)).json())

    async def execute_template(self, template_id: str, variables: dict[str, Any] | None = None) -> JobRef:
        return JobRef.model_validate((await self._call("POST", f"/templates/{template_id}/execute", json={"variables": variables or {}}, retry=False)).json())

    async def create_webhook(self, url: str, events: list[str], *, secret: str | None = None) -> Webhook:
        body = {"url": url, "events": events, **({"secret": secret} if secret else {})}
        return Webhook.model_validate((await self._call("POST", "/webhooks", json=body, retry=False)).json())

    async def webhooks(self) -> list[Webhook]:
        return [Webhook.model_validate(w) for w in (await self._call("GET", "/webhooks")).json()["webhooks"]]

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call("DELETE", f"/webhooks/{webhook_id}")

    async def status(self) -> SystemStatus:
        """The system status (``GET /system/status``): workers, queue, services."""
        return SystemStatus.model_validate((await self._call("GET", "/system/status")).json())

    # -------------------------------------------------------------- profiles
    async def create_profile(self, name: str, storage_state: dict[str, Any] | None = None) -> Profile:
        body = {"name": name, **({"storageState": storage_state} if storage_state is not None else {})}
        return Profile.model_validate((await self._call("POST", "/profiles", json=body, retry=False)).json())

    async def profiles(self) -> list[Profile]:
        return [Profile.model_validate(p) for p in (await self._call("GET", "/profiles")).json()["profiles"]]

    async def profile(self, name: str) -> Profile:
        return Profile.model_validate((await self._call("GET", f"/profiles/{name}")).json())

    async def delete_profile(self, name: str) -> None:
        await self._call("DELETE", f"/profiles/{name}")

    # -------------------------------------------------------------- keys (admin)
    async def create_key(self, name: str, *, principal: str | None = None, scopes: list[str] | None = None, **more: Any) -> ApiKey:
        body = {"name": name, **({"principal": principal} if principal else {}), **({"scopes": scopes} if scopes else {}), **more}
        return ApiKey.model_validate((await self._call("POST", "/keys", json=body, retry=False)).json())

    async def keys(self) -> list[ApiKey]:
        return [ApiKey.model_validate(k) for k in (await self._call("GET", "/keys")).json()["keys"]]

    async def revoke_key(self, key_id: str) -> None:
        await self._call("DELETE", f"/keys/{key_id}")
