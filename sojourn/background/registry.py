"""Every background service of Sojourn, in one place: its name, what it does, how often, and where it runs.

Scopes (:class:`~sojourn.background.runner.Scope`):

- ``local``: in every API process (the dispatcher, which the process's own submissions wake; the figures of its
  /metrics and estimates);
- ``replica``: in every process that runs services; safe side by side because their writes are claims of rows
  or idempotent (outbox deliveries, the event followers: a Prefect event reaches every process);
- ``cluster``: in one process of the cluster at a time, the holder of its lease (sweeps, cron firing, the Task
  Engine's slot controller and scheduler, retention, the reaper).

``sojourn api`` runs all of them (``sojourn up`` too); ``sojourn api --no-services`` runs only the local ones,
and ``sojourn services`` the rest, without serving HTTP (Prefect's ``--no-services`` split).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect.client.orchestration import PrefectClient

from sojourn.background.runner import Scope, Service
from sojourn.services.fastlane import background as fastlane_bg
from sojourn.services.fastlane.background import SWEEP_SECONDS as FASTLANE_SWEEP_SECONDS
from sojourn.services.fastlane.schedules import SWEEP_SECONDS as FASTLANE_CRON_SWEEP_SECONDS
from sojourn.services.outcomes import SWEEP_SECONDS as OUTCOME_SWEEP_SECONDS
from sojourn.services.prefect_made_runs import SWEEP_SECONDS as PREFECT_MADE_SWEEP_SECONDS
from sojourn.services.prefect_made_runs import PrefectMadeRuns
from sojourn.services.retention import Retention
from sojourn.services.scrape.schedules import TICK_SECONDS
from sojourn.worker.reaper import Reaper

if TYPE_CHECKING:
    from sojourn.services.fastlane.service import FastlaneService
    from sojourn.services.jobs import JobService
    from sojourn.services.outcomes import Outcomes
    from sojourn.services.scrape import ScrapeService
    from sojourn.services.taskengine.service import TaskEngine
    from sojourn.services.webhooks import WebhookService

LOCAL, REPLICA, CLUSTER = Scope.LOCAL, Scope.REPLICA, Scope.CLUSTER


def services(jobs: "JobService", outcomes: "Outcomes", webhooks: "WebhookService", scrape: "ScrapeService", te: "TaskEngine",
             fastlane: "FastlaneService", client: PrefectClient) -> list[Service]:
    s = jobs.settings
    fl = fastlane
    made = PrefectMadeRuns(jobs)
    retention = Retention(jobs)
    return [
        # ---- every job
        Service("dispatcher", LOCAL, "Creates the flow runs of accepted jobs (claims in the ledger keep processes apart)",
                step=jobs.dispatcher.step, every=jobs.dispatcher.poll, wake=jobs.dispatcher.woken, drains=True, max_backoff=10.0),
        Reaper(client, s, s.work_pool).service(CLUSTER),
        Service("job-metrics", LOCAL, "This process's /metrics and estimates from the event stream: workers' reports, jobs' run times",
                handle=outcomes.observe),
        Service("outcomes", REPLICA, "Job ends from the event stream: webhook deliveries owed, batches settled",
                handle=outcomes.on_event, accepts=outcomes.concerns),
        Service("outcome-sweep", CLUSTER, "Ends the event stream missed (a restart, an outage): their webhooks and batches",
                step=outcomes.sweep, every=OUTCOME_SWEEP_SECONDS),
        Service("webhooks", REPLICA, "Delivers native webhooks from the outbox (row claims with a lease)",
                step=webhooks.dispatch_due, every=1.0, wake=webhooks.woken, drains=True, close=webhooks.close),
        Service("prefect-made-runs", REPLICA, "Runs made in Prefect on the browse deployment (UI, CLI, schedules) become jobs",
                handle=made.on_event, accepts=made.concerns),
        Service("prefect-made-runs-sweep", CLUSTER, "Prefect-made runs of browse the events missed become jobs",
                step=made.sweep, every=PREFECT_MADE_SWEEP_SECONDS),
        Service("retention", CLUSTER, "Deletes jobs whose results are past SOJOURN_RESULT_RETENTION_SECONDS",
                step=retention.step, every=retention.every),
        # ---- scrape jobs
        Service("scrape-events", REPLICA, "Ingests a target's results when it ends, and the job's when the job ends",
                handle=scrape.jobs.on_event),
        Service("scrape-sweep", CLUSTER, "Ingests jobs that ended unseen", step=scrape.jobs.sweep_once, every=s.scrape_sweep_seconds),
        Service("scrape-schedule-firing", CLUSTER, "Makes the run of each schedule firing that comes due",
                step=scrape.schedules.tick, every=TICK_SECONDS),
        Service("scrape-schedule-events", REPLICA, "Adopts schedule runs as jobs as they come due",
                handle=scrape.schedules.on_event, accepts=scrape.schedules.concerns),
        Service("scrape-schedule-sweep", CLUSTER, "Adopts schedule runs the events missed",
                step=scrape.schedules.sweep_once, every=s.scrape_sweep_seconds),
        # ---- Task Engine
        Service("taskengine-slots", CLUSTER, "Keeps the te-N queue limits at max_jobs / priority_slots",
                step=te.controller.step, every=te.controller.interval, wake=te.controller.woken, settle=0.05, max_backoff=15.0),
        Service("taskengine-scheduler", CLUSTER, "Releases held jobs whose run_at has come (queue_scheduled_jobs)",
                step=te.schedule_step, every=lambda: te.schedule_interval, wake=te.scheduler_woken, close=te.close),
        Service("taskengine-events", REPLICA, "Task Engine runs that start or end: recount the slots, owe the callbacks",
                handle=te.on_event, accepts=te.concerns),
        Service("taskengine-task-events", REPLICA, "Task callbacks from Prefect's task-run events (a subscription of its own)",
                step=te.callbacks.follow_tasks, every=1.0),
        Service("taskengine-callbacks", REPLICA, "Delivers Task Engine callbacks, in order per URL",
                step=te.callbacks.deliver, every=1.0, wake=te.callbacks.woken, drains=True, close=te.callbacks.close),
        Service("taskengine-callback-sweep", CLUSTER, "Owes the callbacks of ends no process saw",
                step=te.callbacks.sweep_once, every=30.0),
        # ---- fastlane
        Service("fastlane-events", REPLICA, "Reads a fastlane execution when its run changes state",
                handle=lambda item: fastlane_bg.on_event(fl, item), accepts=fastlane_bg.concerns),
        Service("fastlane-sweep", CLUSTER, "Reads every unfinished execution; enforces expirations",
                step=lambda: fastlane_bg.sweep(fl), every=FASTLANE_SWEEP_SECONDS),
        Service("fastlane-cron", CLUSTER, "Fires cron jobs as they come due (a conditional claim per firing)",
                step=lambda: fastlane_bg.fire_due(fl), every=1.0),
        Service("fastlane-cron-events", REPLICA, "Adopts cron runs as executions as they come due",
                handle=fl.schedules.on_event, accepts=fl.schedules.concerns),
        Service("fastlane-cron-sweep", CLUSTER, "Adopts cron runs the events missed",
                step=fl.schedules.sweep_once, every=FASTLANE_CRON_SWEEP_SECONDS),
        Service("fastlane-hooks", REPLICA, "Delivers fastlane webhooks from the outbox",
                step=lambda: fastlane_bg.deliver(fl), every=1.0, wake=fl.hooks_woken, drains=True, close=fl.close),
    ]
