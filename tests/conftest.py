"""Session-wide parts: one Prefect server, one browser pool, one test site.

Prefect reads its settings from the environment, so the server's address is
chosen and exported before anything imports prefect.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TMP = Path(tempfile.mkdtemp(prefix="sojourn-tests-"))
_PREFECT_PORT = _free_port()
os.environ.update(
    {
        "PREFECT_HOME": str(_TMP / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{_PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
        "SOJOURN_HOME": str(_TMP / "home"),
        # The test site is on 127.0.0.1; the URL policy refuses loopback unless told otherwise
        # (tests/test_security.py turns it off again where that is the point).
        "SOJOURN_ALLOW_LOOPBACK": "true",
    }
)

import httpx  # noqa: E402
import pytest  # noqa: E402

from sojourn.deployments.prefect_server import server_command, server_env  # noqa: E402
from sojourn.readiness import wait_until_up  # noqa: E402
from tests import processes  # noqa: E402
from tests.postgres import drop_database, fresh_postgres_database, postgres_available, required_in_ci  # noqa: E402
from tests.site import Site  # noqa: E402


class PrefectServer:
    """The session's Prefect server process, which a fault test may stop and start again (same port, same database)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._log = _TMP / "prefect-server.log"
        self.database: str | None = None

    def choose_database(self) -> None:
        """PostgreSQL where it runs (CI, this machine kind): the backend Sojourn recommends past one
        machine, and one that keeps up with the load test. SQLite elsewhere (a laptop)."""
        if os.environ.get("SOJOURN_TEST_PREFECT_DB", "postgres") == "postgres" and postgres_available():
            self.database = fresh_postgres_database()
            os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database

    def start(self) -> None:
        self.proc = processes.start(
            server_command("--host", "127.0.0.1", "--port", str(_PREFECT_PORT)),
            log=self._log,
            env=server_env(),  # the settings `sojourn up` runs it with
        )
        wait_until_up(f"{os.environ['PREFECT_API_URL']}/health", timeout=90, proc=self.proc, what="prefect server")

    def stop(self) -> None:
        processes.stop(self.proc, timeout=15)


_PREFECT = PrefectServer()


# `make test` runs the suite on two workers, a file at a time (pytest-xdist: -n 2 --dist loadfile); each worker is
# a session of its own (its Prefect server, stack and browser). The heaviest files go first (seconds in a serial
# run here), so the long ones start early and the short ones fill in beside them, instead of one long file
# running alone at the end. (xdist would reorder files by their number of tests: the Makefile says
# --no-loadscope-reorder, else the two-test HA file, the longest, started last.)
HEAVY_FIRST = ["test_native_api", "test_fastlane", "test_scale_out", "test_prefect_ha", "test_runtime", "test_taskengine",
               "test_services", "test_scrape", "test_stopping", "test_cli", "test_tourist", "test_agent", "test_firefox",
               "test_planner_corpus", "test_faults", "test_browse", "test_load", "test_ledger"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))


_SECONDS_BY_FILE: dict[str, float] = {}
_SECONDS_BY_WORKER: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Where the suite's time goes, per file and per xdist worker (printed at the end, with --durations)."""
    name = report.nodeid.split("::", 1)[0]
    _SECONDS_BY_FILE[name] = _SECONDS_BY_FILE.get(name, 0.0) + report.duration
    gateway = getattr(getattr(report, "node", None), "gateway", None)
    worker = getattr(gateway, "id", "main")
    _SECONDS_BY_WORKER[worker] = _SECONDS_BY_WORKER.get(worker, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _SECONDS_BY_FILE or getattr(terminalreporter, "_sojourn_seconds_shown", False):
        return  # (once: this module is also imported by name, which registers its hooks a second time)
    terminalreporter._sojourn_seconds_shown = True
    terminalreporter.section("seconds per file (setup + call + teardown), and per worker")
    for name, seconds in sorted(_SECONDS_BY_FILE.items(), key=lambda kv: -kv[1])[:15]:
        terminalreporter.write_line(f"{seconds:8.1f}s {name}")
    terminalreporter.write_line("  ".join(f"{w}: {s:.0f}s" for w, s in sorted(_SECONDS_BY_WORKER.items())))


def pytest_sessionfinish(session, exitstatus):
    """Nothing the tests started outlives them, whatever a test did (each test also stops its own)."""
    left = processes.stop_all()
    if left:
        print(f"\nkilled at the end of the session, still running: {left}")


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """A real Prefect server (PostgreSQL where available, else SQLite) for the whole session."""
    _PREFECT.choose_database()
    _PREFECT.start()
    try:
        yield os.environ["PREFECT_API_URL"]
    finally:
        _PREFECT.stop()
        if _PREFECT.database:
            drop_database(_PREFECT.database)


@pytest.fixture()
def restart_prefect():
    """``with restart_prefect(): ...``: the body runs while the Prefect server is down."""
    from contextlib import contextmanager

    @contextmanager
    def outage():
        _PREFECT.stop()
        try:
            yield
        finally:
            _PREFECT.start()

    return outage


@pytest.fixture(scope="session")
def site():
    with Site() as s:
        yield s


@pytest.fixture(scope="session")
def tmp_home() -> Path:
    return _TMP / "home"


@pytest.fixture(scope="session")
async def pool():
    """The browser pool of the session's event loop (the one flows use)."""
    from sojourn.browser.pool import get_pool

    p = get_pool()
    yield p
    await p.close()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server mode speaks the S3 wire protocol (what s3fs's own tests use)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def store():
    from sojourn.blocks.artifact_store import ArtifactStore

    return ArtifactStore.from_settings()


# ------------------------------------------------------------------ the running stack

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    """Redis answering PING on 127.0.0.1:6379; absent (or answering anything else, e.g. -NOAUTH) it is a skip on a
    laptop and a failure under CI=true."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
    except OSError:
        return required_in_ci("Redis (127.0.0.1:6379)")
    return answer.startswith(b"+PONG") or required_in_ci(f"Redis (127.0.0.1:6379 answered {answer[:40]!r} to PING)")


class Stack:
    """The API and one sojourn worker as real processes, against the session's Prefect server."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.api_port = _free_port()
        self.admin_key = "sj_test_admin_" + os.urandom(8).hex()
        self.env = os.environ.copy()
        self.env.update(
            {
                "SOJOURN_API_PORT": str(self.api_port),
                "SOJOURN_ADMIN_KEY": self.admin_key,
                "SOJOURN_MAX_CONCURRENCY": "4",
                "SOJOURN_WORKER_HEARTBEAT_SECONDS": "2",
                "SOJOURN_CRASH_AFTER_SECONDS": "8",
                "SOJOURN_WORKER_SHUTDOWN_GRACE": "5",
                "SOJOURN_SYNC_WAIT_SECONDS": "20",
                # Tests poll with the admin key; per-key limits are tested with keys of their own.
                "SOJOURN_RATE_LIMIT": "100000/minute",
                "PREFECT_LOGGING_LEVEL": "INFO",
            }
        )
        if redis_available():
            # Rate-limit counters shared by API processes (tests start a second one against it).
            self.env["SOJOURN_REDIS_URL"] = REDIS_URL
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.env["SOJOURN_PUBLIC_URL"] = self.base
        self.api: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._n = 0

    def _spawn(self, what: str) -> subprocess.Popen:
        self._n += 1
        return processes.start([sys.executable, "-m", "sojourn.cli", what], env=self.env, log=self.tmp / f"{what}-{self._n}.log")

    def start_api(self) -> None:
        self.api = self._spawn("api")
        wait_until_up(f"{self.base}/health", timeout=60, proc=self.api, what=f"the API (logs in {self.tmp})")

    def stop_api(self) -> None:
        assert self.api is not None
        processes.stop(self.api, timeout=30)

    def extra_api(self, **env: str) -> tuple[subprocess.Popen, str]:
        """Another API process on its own port, same Prefect and database (scale-out)."""
        port = _free_port()
        self._n += 1
        proc = processes.start([sys.executable, "-m", "sojourn.cli", "api"], env={**self.env, "SOJOURN_API_PORT": str(port), **env},
                               log=self.tmp / f"api-extra-{self._n}.log")
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/health", timeout=60, proc=proc, what="the second API")
        return proc, base

    def start_worker(self) -> None:
        """Returns once the worker has joined its pool (Prefect lists it ONLINE from then on)."""
        self.worker = self._spawn("worker")
        log, deadline = self.tmp / f"worker-{self._n}.log", time.monotonic() + 60
        while "started on pool" not in (log.read_text(errors="replace") if log.exists() else ""):
            assert self.worker.poll() is None and time.monotonic() < deadline, f"the worker did not start (logs in {log})"
            time.sleep(0.2)

    def stop_worker(self, timeout: float = 60) -> int:
        """SIGTERM, as a service manager stops it; returns the exit status."""
        assert self.worker is not None
        self.worker.terminate()
        return self.worker.wait(timeout)

    def kill_worker(self) -> None:
        assert self.worker is not None
        processes.kill_group(self.worker)

    def stop(self) -> None:
        for p in (self.worker, self.api):
            if p is not None and p.poll() is None:
                p.terminate()
        for p in (self.worker, self.api):
            processes.stop(p, timeout=20)

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"X-API-Key": key or self.admin_key}, timeout=30)


@pytest.fixture(scope="session")
def stack(prefect_server):
    s = Stack(_TMP)
    s.start_api()  # bootstraps the pool and deployments
    s.start_worker()
    yield s
    s.stop()
