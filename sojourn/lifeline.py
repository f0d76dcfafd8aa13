"""Children die with their supervisor: a process `sojourn up` starts must not outlive it.

`sojourn up` stops its children in order when it is asked to (Ctrl-C, SIGTERM). When it dies without
doing so (SIGKILL, the OOM killer, a supervisor that escalates after a timeout), each child still must go,
or the stack keeps its ports and the next `make up` refuses to start. Two mechanisms, both needed:

- on Linux the kernel sends the child a signal when the thread that forked it exits
  (``prctl(PR_SET_PDEATHSIG)``, set in the child between fork and exec: :func:`die_with_parent`);
- each Sojourn component also watches its parent itself (:func:`watch_parent`), for systems without
  PR_SET_PDEATHSIG and for the moment between fork and prctl, where the parent may already be gone.

SIGKILL is the signal: the stack's supervisor is gone, so nobody waits for a graceful stop, and SIGKILL
cannot be ignored or delayed by a stuck shutdown. What the children started themselves goes with them:
Playwright's driver exits when its pipe to the worker closes and takes its browsers along, and the
crash reaper marks the flow runs that were running as crashed when a stack starts on that database again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
SUPERVISOR_ENV = "SOJOURN_SUPERVISOR_PID"
# Loaded here, in the parent: the child between fork and exec must not load libraries.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: this child gets ``sig`` when its parent exits.

    Runs in the child after fork: only async-signal-safe work (a libc call, getppid, _exit).
    SIGINT is put back to its default, too: a supervisor started in the background by a non-interactive
    shell has it ignored, and children inherit that, so Ctrl-C would reach none of them.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if _LIBC is None:
        return
    parent = os.getppid()
    _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: no signal will come
        os._exit(1)


def watch_parent(every: float = 1.0, grace: float = 10.0) -> threading.Thread | None:
    """In a component started by `sojourn up` (``SOJOURN_SUPERVISOR_PID`` names it): when the supervisor is
    gone, stop as if asked (SIGTERM to ourselves), and exit outright if that has not worked ``grace`` s later."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not supervisor.isdigit():
        return None
    expected = int(supervisor)

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(every)
        log.warning("sojourn up (pid %d) is gone; stopping", expected)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(1)

    thread = threading.Thread(target=watch, name="sojourn-lifeline", daemon=True)
    thread.start()
    return thread
