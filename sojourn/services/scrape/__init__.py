"""The scrape-jobs dialect's services: projects and targets (catalog), jobs, results, schedules."""

from __future__ import annotations

from sojourn.services.jobs import JobService
from sojourn.services.scrape.catalog import Catalog
from sojourn.services.scrape.jobs import ScrapeJobs
from sojourn.services.scrape.schedules import Schedules
from sojourn.settings import Settings


class ScrapeService:
    """Everything the /scrape dialect calls, built once the JobService exists."""

    def __init__(self, settings: Settings, svc: JobService) -> None:
        self.catalog = Catalog(settings)
        self.jobs = ScrapeJobs(settings, svc, self.catalog)
        self.results = self.jobs.results
        self.schedules = Schedules(settings, svc, self.catalog, self.jobs)


__all__ = ["Catalog", "Schedules", "ScrapeJobs", "ScrapeService"]
