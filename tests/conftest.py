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
    }
)

import httpx  # noqa: E402
import pytest  # noqa: E402

from tests.site import Site  # noqa: E402


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("prefect server did not become healthy")


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """A real Prefect server (SQLite) for the whole session."""
    log = open(_TMP / "prefect-server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(_PREFECT_PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        _wait_healthy(os.environ["PREFECT_API_URL"], proc)
        yield os.environ["PREFECT_API_URL"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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


@pytest.fixture()
def store():
    from sojourn.blocks.artifact_store import ArtifactStore

    return ArtifactStore.from_settings()
