"""Native dialect, webhooks: register, list, delete, and read a webhook's delivery log."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from sojourn.services.principals import Principal
from sojourn.api.dialects.native.jobs import iso, reader, writer
from sojourn.services.webhooks import WebhookService
from sojourn.store.deliveries import DeliveryAttempt
from sojourn.store.webhooks import Webhook, WebhookDelivery

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

Event = Literal["job.completed", "job.failed", "job.cancelled"]


class NewWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl
    events: list[Event] = Field(default_factory=lambda: ["job.completed", "job.failed", "job.cancelled"], min_length=1)
    secret: str | None = Field(None, min_length=8, max_length=200, description="HMAC-SHA256 key for X-Sojourn-Signature; generated (and shown once) when omitted")


def webhooks(request: Request) -> WebhookService:
    return request.app.state.webhooks


def render_webhook(row: Webhook) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "events": row.events.split(","), "createdAt": iso(row.created_at)}


def render_delivery(row: WebhookDelivery, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {
        "id": row.id,
        "event": row.event,
        "jobId": row.job_id,
        "status": row.status,
        "attempts": row.attempts,
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "nextAttemptAt": iso(row.next_attempt_at) if row.status == "pending" else None,
        "createdAt": iso(row.created_at),
        "deliveredAt": iso(row.delivered_at),
        "attemptLog": [{"attempt": a.attempt, "at": iso(a.at), "statusCode": a.status_code, "error": a.error} for a in attempts],
    }


@router.post("/webhooks", status_code=201, summary="Register a webhook for job events")
async def register(body: NewWebhook, principal: Principal = Depends(writer), svc: WebhookService = Depends(webhooks)) -> dict[str, Any]:
    row, secret = svc.register(principal.name, str(body.url), sorted(set(body.events)), body.secret)
    out = render_webhook(row)
    if body.secret is None:
        out["secret"] = secret  # generated: shown this once
    return out


@router.get("/webhooks", summary="List webhooks")
async def index(principal: Principal = Depends(reader), svc: WebhookService = Depends(webhooks)) -> dict[str, Any]:
    rows = svc.visible(principal.owner_filter)
    return {"webhooks": [render_webhook(r) for r in rows], "total": len(rows)}


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Delete a webhook")
async def delete(webhook_id: str, principal: Principal = Depends(writer), svc: WebhookService = Depends(webhooks)) -> Response:
    svc.delete(webhook_id, principal.owner_filter)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", summary="A webhook's delivery log, newest first")
async def deliveries(
    webhook_id: str, limit: int = Query(100, ge=1, le=500), principal: Principal = Depends(reader), svc: WebhookService = Depends(webhooks),
) -> dict[str, Any]:
    rows, attempts = await asyncio.to_thread(svc.deliveries_with_attempts, webhook_id, principal.owner_filter, limit)
    return {"deliveries": [render_delivery(r, attempts.get(r.id, [])) for r in rows], "total": len(rows)}
