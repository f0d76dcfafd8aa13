"""Waiting for a service we started (Prefect server, API) to answer."""

from __future__ import annotations

import subprocess
import time

import httpx


class NotReady(RuntimeError):
    pass


def wait_until_up(url: str, *, timeout: float, proc: subprocess.Popen | None = None, what: str = "the service") -> None:
    """Until ``url`` answers below 500; fails early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise NotReady(f"{what} exited with status {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise NotReady(f"{what} did not answer at {url} within {timeout:.0f} s")
