"""Every knob Sojourn has, read from the environment (prefix ``SOJOURN_``).

One settings object per process; tests and the CLI may replace it with
:func:`configure`. Limits that validation enforces live here so an operator
can raise or lower them without touching code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOJOURN_", extra="ignore")

    home: Path = Field(default=Path.home() / ".sojourn", description="State folder: database, artifacts, keys.")

    # Artifact store: a local folder by default, or s3://bucket/prefix.
    artifacts_url: str | None = Field(default=None, description="file path or s3:// URL; default $SOJOURN_HOME/artifacts")
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str | None = None

    # Browsers.
    chromium_executable: str | None = Field(default=None, description="Chromium to launch; default: Playwright's build, then /usr/bin/chromium")
    firefox_executable: str | None = Field(default=None, description="Firefox to launch; default: Playwright's build")
    contexts_per_browser: int = Field(default=200, ge=1, description="Relaunch a browser after this many job contexts")
    headless: bool = True

    # Job limits (validation).
    max_steps: int = Field(default=50, ge=1)
    max_actions_per_step: int = Field(default=100, ge=1)
    max_job_timeout: float = Field(default=900.0, gt=0, description="seconds")
    default_job_timeout: float = Field(default=300.0, gt=0, description="seconds")
    default_step_timeout: float = Field(default=30.0, gt=0, description="seconds, per navigation/action")
    max_retries: int = Field(default=10, ge=0)
    max_string_length: int = Field(default=100_000, ge=1)

    # Links shown in the Prefect UI, and the page the Tourist healthcheck visits, point here.
    public_url: str | None = Field(default=None, description="how browsers and people reach the API; default http://API_HOST:API_PORT")

    # Runtime.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    prefect_api_url: str | None = Field(default=None, description="use this Prefect server instead of starting one")
    prefect_port: int = Field(default=4200, description="port of the Prefect server `sojourn up` starts")
    database_url: str | None = Field(default=None, description="facade database; default SQLite under SOJOURN_HOME")
    database_migrate_on_start: bool = Field(default=True, description="a process that finds the facade database behind its schema migrates it (one at a time); false: it refuses to start and names `sojourn db upgrade` (replicas of a scaled-out deployment)")
    admin_key: SecretStr | None = Field(default=None, description="bootstrap admin key; generated and stored under SOJOURN_HOME when unset")
    work_pool: str = "browsers"
    max_concurrency: int = Field(default=4, ge=1, description="jobs running at once across the pool")
    worker_limit: int | None = Field(default=None, ge=1, description="jobs one worker runs at once (default: max_concurrency)")
    worker_heartbeat_seconds: int = Field(default=5, ge=1)
    worker_nice: int = Field(default=10, ge=0, le=19, description="CPU niceness the worker (and its browsers) runs at: on a machine it shares with the API, answering requests comes before browser work")
    worker_poll_seconds: float = Field(default=5.0, gt=0, description="fallback poll when no event arrives")
    worker_shutdown_grace: float = Field(default=30.0, ge=0, description="seconds in-flight jobs get to finish on shutdown")
    crash_after_seconds: float = Field(default=20.0, gt=0, description="a job whose worker sent no heartbeat for this long is run again or crashed")
    worker_lost_reruns: int = Field(default=1, ge=0, description="times a job whose worker died runs again on another worker (on top of its own retries) before it ends WORKER_LOST")
    service_lease_seconds: float = Field(default=15.0, ge=1, description="how long a process holds a cluster-wide background service (a sweep, cron firing, the reaper) without renewing; if it dies, another takes the service over after this (plus a third of it)")
    outbox_lease_seconds: float = Field(default=60.0, ge=1, description="how long a process holds the webhooks and callbacks it is sending (beyond their timeout); if it dies, another sends them again after this")
    dispatch_lease_seconds: float = Field(default=30.0, gt=0, description="how long an API process holds the jobs it is creating flow runs for; if it dies, another takes them over after this")
    tourist_auth: bool = Field(default=True, description="Tourist dialect: require visit tokens (false for private deployments)")
    tourist_secret: SecretStr | None = Field(default=None, description="signs Tourist tokens; generated and stored under SOJOURN_HOME when unset")
    result_retention_seconds: float = Field(default=7 * 24 * 3600, gt=0, description="how long job results stay readable")
    sync_wait_seconds: float = Field(default=120.0, gt=0, description="longest a sync request waits for its job")

    # What job browsers may reach (every request, through the worker's egress proxy).
    allow_loopback: bool = Field(default=False, description="let jobs reach 127.0.0.0/8 and ::1 (`sojourn up` turns it on for local development, and says so)")
    allow_private_networks: bool = Field(default=False, description="let jobs reach 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7")
    url_deny: list[str] = Field(default_factory=list, description="host patterns or CIDRs jobs may never reach (JSON list), on top of link-local and metadata addresses, which are always refused")

    # Plain-English (agent) jobs.
    agent_max_steps: int = Field(default=30, ge=1, le=200, description="actions an agent job may take")
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible server for the model planner, e.g. http://127.0.0.1:11434/v1 (built-in planner when unset)")
    llm_model: str | None = Field(default=None, description="model name the server knows")
    llm_key_block: str | None = Field(default="sojourn-llm-key", description="Prefect Secret block holding the model key (none needed for local servers)")
    llm_timeout: float = Field(default=60.0, gt=0, description="seconds one model call may take")

    # Native API limits and delivery.
    rate_limit: str = Field(default="600/minute", description="requests per API key (limits syntax: '100/minute', '10/second'); a key may carry its own")
    redis_url: str | None = Field(default=None, description="redis://host:6379/0: rate-limit counters shared by several API processes (memory when unset)")
    max_queued_jobs: int = Field(default=10_000, ge=1, description="past this many jobs waiting to start, submissions answer 503 QUEUE_FULL")
    pressure_max_cpu_percent: int = Field(default=99, ge=1, le=100, description="GET /pressure answers isAvailable false (reason cpu) past this mean CPU of the workers' machines")
    pressure_max_memory_percent: int = Field(default=99, ge=1, le=100, description="likewise for memory (reason memory)")
    pressure_public: bool = Field(default=False, description="GET /pressure answers without an API key (for a balancer's health check); otherwise any valid key, also as ?token=")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="largest request body the API reads (413 past it)")
    secret_key: SecretStr | None = Field(default=None, description="Fernet key that encrypts webhook secrets at rest; generated under SOJOURN_HOME when unset (set it when several API hosts share a database)")
    webhook_max_attempts: int = Field(default=8, ge=1, description="deliveries of one webhook event before it is given up")
    webhook_retry_seconds: float = Field(default=2.0, gt=0, description="first retry delay of a webhook delivery; doubles each attempt, at most 10 min")
    webhook_timeout: float = Field(default=10.0, gt=0, description="seconds a webhook receiver has to answer")

    # Scrape-jobs dialect (/scrape).
    scrape_daily_job_limit: int = Field(default=500, ge=1, description="scrape-jobs: jobs per project per day when the project sets no daily_job_limit")
    scrape_target_retries: int = Field(default=2, ge=0, description="scrape-jobs: retries of a failing target (exponential backoff)")
    scrape_retry_delay: float = Field(default=1.0, ge=0, description="scrape-jobs: first retry delay of a target, seconds (doubles each retry)")
    scrape_parallel_domains: int = Field(default=3, ge=1, description="scrape-jobs: domains one job reads at once (targets on one domain run one after another)")
    scrape_sweep_seconds: float = Field(default=30.0, gt=0, description="scrape-jobs: how often ended jobs whose results were not ingested yet are looked for")

    # Task Engine dialect (/taskengine).
    taskengine_queue_priority_base: int = Field(default=10, ge=4, description="Task Engine: Prefect priority of work queue te-1 is this + 1, ..., te-10 this + 10 (after the native high/normal/low)")
    taskengine_callback_secret: SecretStr | None = Field(default=None, description="Task Engine: signs callbacks (X-Sojourn-Signature) unless the `callback_secret` setting (POST /settings) replaces it")
    taskengine_controller_seconds: float = Field(default=2.0, gt=0, description="Task Engine: how often max_jobs / priority_slots are re-applied to the queues when no event says so sooner")

    # fastlane dialect (/fastlane).
    fastlane_auth: bool = Field(default=True, description="fastlane dialect: require an API key (Basic auth with the key as password, X-API-Key or Bearer); false for a private deployment")
    fastlane_image_aliases: dict[str, str] = Field(
        default_factory=lambda: {"browser": "chromium", "sojourn": "chromium", "mcr.microsoft.com/playwright": "chromium", "browserless/chrome": "chromium"},
        description="fastlane image names (with or without a tag) that mean a browser kind (JSON object: image → chromium | firefox)")
    fastlane_per_page: int = Field(default=10, ge=1, le=1000, description="fastlane task list page size")
    fastlane_webhook_timeout: float = Field(default=1.0, gt=0, description="seconds a fastlane webhook receiver has to answer (fastlane's own: 1)")

    @property
    def public_base(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def database_location(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'sojourn.db'}"

    @property
    def artifacts_location(self) -> str:
        return self.artifacts_url or str(self.home / "artifacts")


_current: Settings | None = None


def get_settings() -> Settings:
    """The process settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def configure(**overrides) -> Settings:
    """Replace the process settings (tests, CLI flags); unset fields still come from the environment."""
    global _current
    _current = Settings(**overrides)
    return _current
