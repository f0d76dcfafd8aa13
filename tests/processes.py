"""Processes the tests start: each ends on every path, failure included, and none outlives the test session.

- Started in a session of its own (what it starts itself is in its process group), with SIGINT at its default
  (a suite launched in the background by a non-interactive shell has SIGINT ignored, and children inherit it)
  and tied to the test process's life (PR_SET_PDEATHSIG: a killed pytest leaves nothing behind).
- :func:`stop` asks (SIGTERM), waits, then kills the whole process group.
- Whatever is still running when the session ends is killed by :func:`stop_all` (conftest calls it).

Start processes from the main thread: the kernel's parent-death signal follows the thread that forked.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

from sojourn.lifeline import die_with_parent

_started: list[subprocess.Popen] = []


def start(cmd: list[str], *, env: dict[str, str] | None = None, log: Path | IO[bytes] | None = None, cwd: Path | str | None = None,
          supervised: bool = True, **popen: Any) -> subprocess.Popen:
    """``subprocess.Popen`` in its own session, SIGINT at its default, dying with this process unless ``supervised`` is
    False (a test that kills the test's child on purpose to see what its own children do)."""
    out: Any = subprocess.DEVNULL
    if isinstance(log, Path):
        out = open(log, "ab")
    elif log is not None:
        out = log
    popen.setdefault("stdout", out)
    popen.setdefault("stderr", subprocess.STDOUT)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True,
                            preexec_fn=die_with_parent if supervised else _sigint_default, **popen)
    if isinstance(log, Path):
        out.close()
    _started.append(proc)
    return proc


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def stop(proc: subprocess.Popen | None, timeout: float = 20) -> int | None:
    """SIGTERM, up to ``timeout`` s for it to exit, then SIGKILL to its process group (what it started goes too).
    Returns its exit status when it stopped by itself, None when it had to be killed."""
    if proc is None:
        return None
    status = proc.poll()
    if status is None:
        proc.terminate()
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            status = None
    kill_group(proc)  # its children, even when it stopped by itself
    return status


def stop_all() -> list[str]:
    """Kill what is still running of everything the tests started; returns what that was."""
    left = []
    for proc in _started:
        if proc.poll() is None:
            left.append(" ".join(map(str, proc.args))[:120])  # type: ignore[arg-type]
        kill_group(proc)
    _started.clear()
    return left
