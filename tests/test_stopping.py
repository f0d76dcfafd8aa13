"""Every process Sojourn starts stops when asked, within a bound, whatever state Prefect is in (#15 item 1).

Each test runs its own Prefect server (SQLite, its own port and PREFECT_HOME), so it can kill or replace it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sojourn.deployments.prefect_server import server_command, server_env
from sojourn.readiness import wait_until_up
from tests import processes
from tests.test_cli import SOJOURN, _descendants, _free_port, _left_over, _running, _stat
from tests.test_runtime import submit, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _clean_env(**extra: str) -> dict[str, str]:
    """A newcomer's environment: none of the test session's Prefect or Sojourn settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SOJOURN_"))}
    env.update({"PYTHONUNBUFFERED": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return env


def _prefect(port: int, home: Path, log: Path) -> subprocess.Popen:
    env = server_env(_clean_env(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api"))
    proc = processes.start(server_command("--host", "127.0.0.1", "--port", str(port)), env=env, log=log)
    wait_until_up(f"http://127.0.0.1:{port}/api/health", timeout=90, proc=proc, what="a test's own Prefect server")
    return proc


def _worker(tmp_path: Path, port: int, name: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    env = _clean_env(PREFECT_API_URL=f"http://127.0.0.1:{port}/api", SOJOURN_HOME=str(tmp_path / "home"),
                     SOJOURN_WORKER_HEARTBEAT_SECONDS="1", SOJOURN_WORKER_SHUTDOWN_GRACE="5")
    proc = processes.start([*SOJOURN, "worker", "--name", name], env=env, log=log)
    return proc, log


def _started(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while "started on pool" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.3)


def test_workers_stop_on_sigterm_with_prefect_gone_and_when_their_prefect_server_is_replaced(tmp_path):
    """One Prefect server's life, two workers. The server dies: SIGTERM stops the first worker at once (status 0)
    although nothing answers it. Another Prefect server comes up on the same address (a new stack, a new database):
    the second worker must not feed it the old one's work and events; it notices the pool's id changed and stops,
    with status 1."""
    port = _free_port()
    first = _prefect(port, tmp_path / "prefect-1", tmp_path / "prefect-1.log")
    workers = [_worker(tmp_path, port, "w1"), _worker(tmp_path, port, "w2")]
    second = None
    try:
        for proc, log in workers:
            _started(proc, log)
        (w1, log1), (w2, log2) = workers
        processes.kill_group(first)  # returns once the server is gone: nothing answers w1 from here on
        w1.terminate()
        started = time.monotonic()
        try:
            status = w1.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM did not stop the worker within 20 s with Prefect gone:\n{log1.read_text()[-3000:]}")
        assert status == 0, log1.read_text()[-3000:]
        assert time.monotonic() - started < 15

        second = _prefect(port, tmp_path / "prefect-2", tmp_path / "prefect-2.log")
        started = time.monotonic()
        try:
            status = w2.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker was still running 60 s after its Prefect server was replaced:\n{log2.read_text()[-3000:]}")
        text = log2.read_text(errors="replace")
        assert status == 1, (status, text[-3000:])
        assert "is not the one this worker joined" in text, text[-3000:]
        print(f"stopped {time.monotonic() - started:.1f} s after the new server answered")
    finally:
        for p in (*(w for w, _ in workers), second, first):
            processes.stop(p, timeout=5)


def test_sigterm_with_jobs_running_prefect_dead_and_a_component_stuck_stops_everything(tmp_path, site):
    """`sojourn up` with jobs running; its Prefect server dies and its API hangs (SIGSTOP: it cannot act on any
    signal), then a service manager's SIGTERM. The worker stops by itself within its grace; the API is killed
    SHUTDOWN_GRACE + 15 s after the SIGTERM, with what it started; `up` exits 1 and nothing is left."""
    grace = 2
    bound = grace + 15
    home = tmp_path / "home"
    api_port = _free_port()
    prefect_port = _free_port((api_port,))
    ports = (api_port, prefect_port)
    base = f"http://127.0.0.1:{api_port}"
    env = _clean_env(SOJOURN_HOME=str(home), SOJOURN_API_PORT=str(api_port), SOJOURN_PREFECT_PORT=str(prefect_port),
                     SOJOURN_WORKER_SHUTDOWN_GRACE=str(grace))
    log_path = tmp_path / "up.log"
    seen: dict[int, str] = {}
    up = processes.start([*SOJOURN, "up"], env=env, cwd=tmp_path, log=log_path)
    try:
        wait_until_up(f"{base}/health", timeout=120, proc=up, what="`sojourn up`")
        key = (home / "admin.key").read_text().strip()
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as http:
            jobs = [submit(http, [{"url": site.url(f"/never?s=120&n={i}"), "timeout": 300}]) for i in range(2)]
            for job in jobs:
                wait_for(http, job, statuses=("processing",), timeout=90)
        seen.update(_descendants(up.pid))

        def child(part: str) -> int:
            found = [pid for pid in seen if part in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                     and (_stat(pid) or ("", 0))[1] == up.pid]
            assert found, (part, seen)
            return found[0]

        os.kill(child("prefect_server server start"), signal.SIGKILL)
        os.kill(child("sojourn.cli api"), signal.SIGSTOP)
        up.terminate()
        started = time.monotonic()
        try:
            rc = up.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`sojourn up` was still running 60 s after SIGTERM:\n{log_path.read_text()[-4000:]}")
        took = time.monotonic() - started
        deadline = time.monotonic() + 10
        while (left := _left_over(seen, home, ports, up.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        text = log_path.read_text(errors="replace")
        assert not left, f"left running ({took:.1f} s after SIGTERM, exit {rc}): {left}\n{text[-4000:]}"
        assert rc == 1, f"exit {rc}\n{text[-4000:]}"
        assert f"the api did not stop within {bound} s; killing it" in text, text[-4000:]
        assert "the worker did not stop" not in text, text[-4000:]  # it stopped by itself, jobs running, Prefect gone
        assert bound - 1 < took < bound + 5, f"took {took:.1f} s"  # killed at the bound, not before and not much after
        print(f"`sojourn up` stopped {took:.1f} s after SIGTERM with its Prefect server gone and its API stuck")
    finally:
        if up.poll() is None:
            seen.update(_descendants(up.pid))
            processes.kill_group(up)
        for pid, start in seen.items():
            if _running(pid, start):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
