"""How Sojourn runs the Prefect server: the settings that make a short job cheap for it.

Measured on 2 cores with a browser in the loop (bench/RESULTS.md): the task-run
recorder writes one transaction per task-run event by default (1), which is
most of its cost; Prefect services that Sojourn does not use still wake up,
query and write. Every value here can be overridden by setting the variable
in the environment of the server process.

- task-run recorder and event persister: read and write in batches, flushed
  at least every second (task runs still appear in the UI within a second);
- late runs: off. It rewrites every run that waits past its time as "Late"
  (an extra state write and event per queued job under a backlog); a Sojourn
  job waiting for a slot is simply queued;
- pause expirations, cancellation cleanup: off (Sojourn flows never pause and
  have no subflows);
- triggers (automations): off unless ``SOJOURN_PREFECT_AUTOMATIONS=true``:
  they evaluate every event. Sojourn's own webhooks tell clients when jobs end.

Kept: the scheduler (deployment schedules), the foreman (worker status in the
UI), the repossessor, event retention and vacuum.

The server runs as ``python -m sojourn.deployments.prefect_server server start ...``: Prefect's own CLI,
after two fixes to its SQLite access that stop the default stack stalling (``prefect_sqlite.py``). Every
Sojourn command that starts a Prefect server uses :func:`server_command`.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "5",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "5",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
}


def server_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``prefect server start``: Sojourn's settings under whatever ``env`` sets itself."""
    env = dict(os.environ if env is None else env)
    automations = env.get("SOJOURN_PREFECT_AUTOMATIONS", "false").lower() in ("1", "true", "yes")
    defaults = {**SERVER_SETTINGS, "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true" if automations else "false"}
    return {**defaults, **env}


def server_command(*args: str) -> list[str]:
    """The command line of a Prefect server as Sojourn runs it: ``prefect server start`` with ``args``."""
    return [sys.executable, "-m", "sojourn.deployments.prefect_server", "server", "start", *args]


def main() -> None:
    """Prefect's CLI (``prefect ...``), with the SQLite fixes installed first."""
    from sojourn.deployments.prefect_sqlite import install

    install()
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
