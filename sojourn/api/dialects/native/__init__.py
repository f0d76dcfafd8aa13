"""The native dialect: the browsing-agent API at /api/v1, extended with `browse` jobs of explicit steps."""

from fastapi import APIRouter

from sojourn.api.dialects.native import batches, jobs, keys, profiles, streams, system, templates, webhooks

router = APIRouter()
# Batch routes first: `/jobs/batch` must not be read as a job id.
for module in (batches, jobs, streams, templates, webhooks, profiles, system, keys):
    router.include_router(module.router)
