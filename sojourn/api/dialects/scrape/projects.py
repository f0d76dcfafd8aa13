"""Projects and their targets (:class:`~sojourn.services.scrape.catalog.Catalog`).

The scrape service is optional here: a change refreshes the project's schedule when the service runs (``refresh``),
and a deletion asks for it only once the project is found, as the dialect always has."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from sojourn.api.dialects.scrape.dependencies import CatalogDep, Reader, ScrapeIfRunning, Writer, once_valid, reader, started, writer
from sojourn.api.dialects.scrape.requests import (BulkTargets, Paging, ProjectCreate, ProjectUpdate, TargetCreate, TargetQuery, TargetUpdate,
                                                  bulk_targets_body, project_create_body, project_update_body, target_create_body,
                                                  target_update_body)
from sojourn.services.principals import Principal
from sojourn.services.scrape import ScrapeService
from sojourn.services.scrape.conventions import page_of

router = APIRouter()


async def refresh(service: ScrapeService | None, project_id: str) -> None:
    """The project's targets or config changed: its schedule's runs take the new snapshot."""
    if service is not None:
        await service.schedules.refresh(project_id)


# ------------------------------------------------------------------ projects


@router.get("/projects", tags=["projects"], summary="List projects")
async def list_projects(q: Annotated[Paging, Depends()], p: Annotated[Principal, Depends(once_valid(Paging, reader))],
                        catalog: CatalogDep) -> dict[str, Any]:
    rows, total = await asyncio.to_thread(catalog.list_projects, p, q.page, q.per_page)
    return page_of([catalog.render_project(r) for r in rows], total, q.page, q.per_page)


@router.post("/projects", status_code=201, tags=["projects"], summary="Create a project")
async def create_project(body: Annotated[ProjectCreate, Depends(project_create_body)],
                         p: Annotated[Principal, Depends(once_valid(project_create_body, writer))], catalog: CatalogDep) -> dict[str, Any]:
    row = await asyncio.to_thread(catalog.create_project, p, body.name, body.description, body.config.values() if body.config else {})
    return catalog.render_project(row, {"targets_count": 0, "results_count": 0})


@router.get("/projects/{project_id}", tags=["projects"], summary="Get a project")
async def get_project(project_id: str, p: Reader, catalog: CatalogDep) -> dict[str, Any]:
    row = await asyncio.to_thread(catalog.project, project_id, p)
    return catalog.render_project(row, await asyncio.to_thread(catalog.counts, project_id))


@router.put("/projects/{project_id}", tags=["projects"], summary="Update a project (partial)")
async def update_project(project_id: str, body: Annotated[ProjectUpdate, Depends(project_update_body)],
                         p: Annotated[Principal, Depends(once_valid(project_update_body, writer))], catalog: CatalogDep,
                         scrape: ScrapeIfRunning) -> dict[str, Any]:
    row = await asyncio.to_thread(catalog.update_project, project_id, p, body.changes())
    if body.config is not None:
        await refresh(scrape, project_id)
    return catalog.render_project(row, await asyncio.to_thread(catalog.counts, project_id))


@router.delete("/projects/{project_id}", status_code=204, tags=["projects"], summary="Delete a project, its targets and results")
async def delete_project(project_id: str, p: Writer, catalog: CatalogDep, scrape: ScrapeIfRunning) -> Response:
    await asyncio.to_thread(catalog.project, project_id, p)
    await started(scrape).schedules.project_deleted(project_id)
    await asyncio.to_thread(catalog.delete_project, project_id, p)
    return Response(status_code=204)


# ------------------------------------------------------------------ targets


@router.get("/projects/{project_id}/targets", tags=["targets"], summary="List a project's targets")
async def list_targets(project_id: str, q: Annotated[TargetQuery, Depends()],
                       p: Annotated[Principal, Depends(once_valid(TargetQuery, reader))], catalog: CatalogDep) -> dict[str, Any]:
    rows, total = await asyncio.to_thread(catalog.list_targets, project_id, p, q.page, q.per_page, q.status)
    return page_of([catalog.render_target(r) for r in rows], total, q.page, q.per_page)


@router.post("/projects/{project_id}/targets", status_code=201, tags=["targets"], summary="Add a target")
async def create_target(project_id: str, body: Annotated[TargetCreate, Depends(target_create_body)],
                        p: Annotated[Principal, Depends(once_valid(target_create_body, writer))], catalog: CatalogDep,
                        scrape: ScrapeIfRunning) -> dict[str, Any]:
    data = body.data()
    (row,), _ = await asyncio.to_thread(catalog.create_targets, project_id, p, [data])
    await refresh(scrape, project_id)
    return catalog.render_target(row)


@router.post("/projects/{project_id}/targets/bulk", status_code=201, tags=["targets"], summary="Add many targets")
async def bulk_targets(project_id: str, body: Annotated[BulkTargets, Depends(bulk_targets_body)],
                       p: Annotated[Principal, Depends(once_valid(bulk_targets_body, writer))], catalog: CatalogDep,
                       scrape: ScrapeIfRunning) -> dict[str, Any]:
    bodies = body.data()
    rows, errors = await asyncio.to_thread(catalog.create_targets, project_id, p, bodies, bulk=True)
    if rows:
        await refresh(scrape, project_id)
    return {"created": len(rows), "failed": len(errors), "targets": [catalog.render_target(r) for r in rows], "errors": errors}


@router.get("/targets/{target_id}", tags=["targets"], summary="Get a target")
async def get_target(target_id: str, p: Reader, catalog: CatalogDep) -> dict[str, Any]:
    return catalog.render_target(await asyncio.to_thread(catalog.target, target_id, p))


@router.put("/targets/{target_id}", tags=["targets"], summary="Update a target (partial)")
async def update_target(target_id: str, body: Annotated[TargetUpdate, Depends(target_update_body)],
                        p: Annotated[Principal, Depends(once_valid(target_update_body, writer))], catalog: CatalogDep,
                        scrape: ScrapeIfRunning) -> dict[str, Any]:
    row = await asyncio.to_thread(catalog.update_target, target_id, p, body.changes())
    await refresh(scrape, row.project_id)
    return catalog.render_target(row)


@router.delete("/targets/{target_id}", status_code=204, tags=["targets"], summary="Delete a target")
async def delete_target(target_id: str, p: Writer, catalog: CatalogDep, scrape: ScrapeIfRunning) -> Response:
    row = await asyncio.to_thread(catalog.target, target_id, p)
    await asyncio.to_thread(catalog.delete_target, target_id, p)
    await refresh(scrape, row.project_id)
    return Response(status_code=204)
