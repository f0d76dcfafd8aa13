"""Every process Sojourn starts stops when asked, within a bound, whatever state Prefect is in (#15 item 1).

Each test runs its own Prefect server (SQLite, its own port and PREFECT_HOME), so it can kill or replace it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sojourn.deployments.prefect_server import server_env
from sojourn.readiness import wait_until_up
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
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until_up(f"http://127.0.0.1:{port}/api/health", timeout=90, proc=proc, what="a test's own Prefect server")
    return proc


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def _worker(tmp_path: Path, port: int) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "worker.log"
    env = _clean_env(PREFECT_API_URL=f"http://127.0.0.1:{port}/api", SOJOURN_HOME=str(tmp_path / "home"),
                     SOJOURN_WORKER_HEARTBEAT_SECONDS="1", SOJOURN_WORKER_SHUTDOWN_GRACE="5")
    with open(log, "wb") as out:
        proc = subprocess.Popen([*SOJOURN, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "started on pool" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.3)
    return proc, log


def test_a_worker_stops_when_its_prefect_server_is_replaced(tmp_path):
    """Another Prefect server on the same address (a new stack, a new database): the worker must not feed it
    the old one's work and events. It notices the pool's id changed and stops, with status 1."""
    port = _free_port()
    first = _prefect(port, tmp_path / "prefect-1", tmp_path / "prefect-1.log")
    worker = second = None
    try:
        worker, log = _worker(tmp_path, port)
        _kill_group(first)
        second = _prefect(port, tmp_path / "prefect-2", tmp_path / "prefect-2.log")
        started = time.monotonic()
        try:
            status = worker.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker was still running 60 s after its Prefect server was replaced:\n{log.read_text()[-3000:]}")
        text = log.read_text(errors="replace")
        assert status == 1, (status, text[-3000:])
        assert "is not the one this worker joined" in text, text[-3000:]
        print(f"stopped {time.monotonic() - started:.1f} s after the new server answered")
    finally:
        for p in (worker, second, first):
            if p is not None and p.poll() is None:
                _kill_group(p)


def test_a_worker_stops_on_sigterm_with_prefect_gone(tmp_path):
    port = _free_port()
    server = _prefect(port, tmp_path / "prefect", tmp_path / "prefect.log")
    worker = None
    try:
        worker, log = _worker(tmp_path, port)
        _kill_group(server)
        time.sleep(2)  # it notices: heartbeats fail
        worker.terminate()
        started = time.monotonic()
        try:
            status = worker.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM did not stop the worker within 20 s with Prefect gone:\n{log.read_text()[-3000:]}")
        assert status == 0, log.read_text()[-3000:]
        assert time.monotonic() - started < 15
    finally:
        for p in (worker, server):
            if p is not None and p.poll() is None:
                _kill_group(p)


def test_ctrl_c_with_jobs_running_and_prefect_dying_first_stops_everything(tmp_path, site):
    """`sojourn up` with jobs running; its Prefect server dies, then Ctrl-C. Everything is gone within the
    worker's grace plus the bound, and `up` exits 1 (a component exited on its own)."""
    home = tmp_path / "home"
    api_port = _free_port()
    prefect_port = _free_port((api_port,))
    ports = (api_port, prefect_port)
    base = f"http://127.0.0.1:{api_port}"
    env = _clean_env(SOJOURN_HOME=str(home), SOJOURN_API_PORT=str(api_port), SOJOURN_PREFECT_PORT=str(prefect_port),
                     SOJOURN_WORKER_SHUTDOWN_GRACE="5")
    log_path = tmp_path / "up.log"
    seen: dict[int, str] = {}
    with open(log_path, "wb") as log:
        up = subprocess.Popen([*SOJOURN, "up"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"{base}/health", timeout=120, proc=up, what="`sojourn up`")
        key = (home / "admin.key").read_text().strip()
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as http:
            jobs = [submit(http, [{"url": site.url(f"/never?s=120&n={i}"), "timeout": 300}]) for i in range(2)]
            for job in jobs:
                wait_for(http, job, statuses=("processing",), timeout=90)
        seen.update(_descendants(up.pid))
        prefect = [pid for pid in seen if "prefect server start" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                   and (_stat(pid) or ("", 0))[1] == up.pid]
        assert prefect, seen
        os.kill(prefect[0], signal.SIGKILL)
        os.killpg(up.pid, signal.SIGINT)
        started = time.monotonic()
        try:
            rc = up.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`sojourn up` was still running 60 s after Ctrl-C:\n{log_path.read_text()[-4000:]}")
        took = time.monotonic() - started
        deadline = time.monotonic() + 10
        while (left := _left_over(seen, home, ports, up.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"left running ({took:.1f} s after Ctrl-C, exit {rc}): {left}\n{log_path.read_text()[-4000:]}"
        assert rc == 1, f"exit {rc}\n{log_path.read_text()[-4000:]}"
        assert took < 5 + 15 + 5, f"took {took:.1f} s"  # the worker's grace, up's bound past it, and slack
        print(f"`sojourn up` stopped {took:.1f} s after Ctrl-C with its Prefect server gone")
    finally:
        if up.poll() is None:
            seen.update(_descendants(up.pid))
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        for pid, start in seen.items():
            if _running(pid, start):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
