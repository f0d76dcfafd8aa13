"""Results: a job's or a project's, a page at a time or exported whole (json, jsonl, csv, streamed); one at a time."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse

from sojourn.api.dialects.scrape.dependencies import (CatalogDep, Reader, Scrape, ScrapeIfRunning, Writer, once_valid, reader, scrape_service,
                                                      started)
from sojourn.api.dialects.scrape.requests import JobResultsQuery, ProjectResultsQuery
from sojourn.services.principals import Principal
from sojourn.services.scrape import ScrapeService
from sojourn.services.scrape.catalog import Catalog
from sojourn.services.scrape.conventions import page_of
from sojourn.services.scrape.results import render as render_result
from sojourn.services.service_error import ServiceError

router = APIRouter(tags=["results"])

MEDIA_TYPES = {"json": "application/json", "jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def export(scrape: ScrapeService, fmt: str, columns: list[str], name: str, **kw: Any) -> StreamingResponse:
    return StreamingResponse(scrape.results.export(fmt, columns, **kw), media_type=MEDIA_TYPES[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def columns(catalog: Catalog, targets: list[Any]) -> list[str]:
    """CSV columns beyond the result's own: every field the targets define (url, title, text for whole pages)."""
    out: list[str] = []
    for t in targets:
        ex = catalog.extract_of(t)
        names = list((ex.get("fields") or {}).keys()) if ex.get("item_selector") else ["url", "title", "text"]
        out += [n for n in names if n not in out]
    return out


async def one_result(scrape: ScrapeService, result_id: str, p: Principal) -> Any:
    row = await asyncio.to_thread(scrape.results.one, result_id)
    if row is None or not (p.is_admin or p.name == row.owner):
        raise ServiceError(404, "NOT_FOUND", f"Result '{result_id}' not found", {"id": result_id})
    return row


@router.get("/jobs/{job_id}/results", summary="A job's results, paged or exported")
async def job_results(job_id: str, q: Annotated[JobResultsQuery, Depends()],
                      p: Annotated[Principal, Depends(once_valid(JobResultsQuery, reader))],
                      scrape: Annotated[ScrapeService, Depends(once_valid(JobResultsQuery, scrape_service))], catalog: CatalogDep) -> Any:
    row = await asyncio.to_thread(scrape.jobs.row, job_id, p)
    if q.format:
        targets = await asyncio.to_thread(catalog.targets_of, row.project_id, json.loads(row.config).get("targets", []))
        return export(scrape, q.format, columns(catalog, targets), f"results-{job_id}", job_id=job_id, target_id=q.target_id)
    items, total = await asyncio.to_thread(scrape.results.page, job_id=job_id, target_id=q.target_id, page=q.page, per_page=q.per_page)
    return page_of(items, total, q.page, q.per_page)


@router.get("/projects/{project_id}/results", summary="A project's results, paged or exported")
async def project_results(project_id: str, q: Annotated[ProjectResultsQuery, Depends()],
                          p: Annotated[Principal, Depends(once_valid(ProjectResultsQuery, reader))], catalog: CatalogDep,
                          service: ScrapeIfRunning) -> Any:
    await asyncio.to_thread(catalog.project, project_id, p)
    scrape = started(service)  # (after the project: as the dialect has always checked them)
    if q.format:
        targets = await asyncio.to_thread(catalog.all_targets, project_id)
        return export(scrape, q.format, columns(catalog, targets), f"results-{project_id}", project_id=project_id, job_id=q.job_id,
                      target_id=q.target_id)
    items, total = await asyncio.to_thread(scrape.results.page, project_id=project_id, job_id=q.job_id, target_id=q.target_id, page=q.page,
                                           per_page=q.per_page, newest_first=q.sort == "-created_at")
    return page_of(items, total, q.page, q.per_page)


@router.get("/results/{result_id}", summary="Get one result")
async def get_result(result_id: str, p: Reader, scrape: Scrape) -> dict[str, Any]:
    return render_result(await one_result(scrape, result_id, p))


@router.delete("/results/{result_id}", status_code=204, summary="Delete one result")
async def delete_result(result_id: str, p: Writer, scrape: Scrape) -> Response:
    await one_result(scrape, result_id, p)
    await asyncio.to_thread(scrape.results.delete, result_id)
    return Response(status_code=204)
