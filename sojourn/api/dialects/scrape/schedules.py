"""Schedules: one per project, run by Prefect (:class:`~sojourn.services.scrape.schedules.Schedules`)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from sojourn.api.dialects.scrape.dependencies import Reader, Scrape, Writer, once_valid, reader, scrape_service, writer
from sojourn.api.dialects.scrape.requests import Paging, ScheduleCreate, ScheduleFields, schedule_create_body, schedule_update_body
from sojourn.services.principals import Principal
from sojourn.services.scrape import ScrapeService
from sojourn.services.scrape.conventions import page_of

router = APIRouter(tags=["schedules"])


@router.get("/schedules", summary="List schedules")
async def list_schedules(q: Annotated[Paging, Depends()], p: Annotated[Principal, Depends(once_valid(Paging, reader))],
                         scrape: Annotated[ScrapeService, Depends(once_valid(Paging, scrape_service))]) -> dict[str, Any]:
    schedules = scrape.schedules
    rows, total = await asyncio.to_thread(schedules.list_rows, p, q.page, q.per_page)
    return page_of([await asyncio.to_thread(schedules.render, r) for r in rows], total, q.page, q.per_page)


@router.post("/schedules", status_code=201, summary="Create a project's schedule (one per project)")
async def create_schedule(body: Annotated[ScheduleCreate, Depends(schedule_create_body)],
                          p: Annotated[Principal, Depends(once_valid(schedule_create_body, writer))],
                          scrape: Annotated[ScrapeService, Depends(once_valid(schedule_create_body, scrape_service))]) -> dict[str, Any]:
    return await scrape.schedules.create(p, body.project_id, body.model_dump(exclude={"project_id"}))


# (The service before the key on these: as the dialect has always checked them.)


@router.get("/schedules/project/{project_id}", summary="Get a project's schedule")
async def get_schedule(project_id: str, scrape: Scrape, p: Reader) -> dict[str, Any]:
    schedules = scrape.schedules
    return await asyncio.to_thread(schedules.render, await asyncio.to_thread(schedules.row, project_id, p))


@router.put("/schedules/project/{project_id}", summary="Update a project's schedule (partial)")
async def update_schedule(project_id: str, body: Annotated[ScheduleFields, Depends(schedule_update_body)],
                          scrape: Annotated[ScrapeService, Depends(once_valid(schedule_update_body, scrape_service))],
                          p: Annotated[Principal, Depends(once_valid(schedule_update_body, writer))]) -> dict[str, Any]:
    return await scrape.schedules.update(p, project_id, body.model_dump(exclude_unset=True))


@router.delete("/schedules/project/{project_id}", status_code=204, summary="Delete a project's schedule")
async def delete_schedule(project_id: str, scrape: Scrape, p: Writer) -> Response:
    await scrape.schedules.delete(p, project_id)
    return Response(status_code=204)


@router.post("/schedules/project/{project_id}/toggle", summary="Enable or disable a project's schedule")
async def toggle_schedule(project_id: str, scrape: Scrape, p: Writer) -> dict[str, Any]:
    return await scrape.schedules.toggle(p, project_id)


@router.post("/schedules/project/{project_id}/run", status_code=201, summary="Run a project's schedule now")
async def run_schedule(project_id: str, scrape: Scrape, p: Writer) -> dict[str, Any]:
    return await scrape.schedules.run_now(p, project_id)
