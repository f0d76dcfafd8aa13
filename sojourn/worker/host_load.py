"""How loaded the machine a worker runs on is: CPU and memory in percent, as ``/pressure`` reports them.

Read from ``/proc`` (and the cgroup's memory limit where one is set, as in a container), so no extra dependency;
``None`` where they cannot be read (not Linux), as browserless reports an unknown figure.
"""

from __future__ import annotations

from pathlib import Path


class HostLoad:
    def __init__(self, proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> None:
        self.proc = proc
        self.cgroup = cgroup
        self._last: tuple[int, int] | None = self._cpu_times()

    def _cpu_times(self) -> tuple[int, int] | None:
        """(busy, total) jiffies of all CPUs since boot."""
        try:
            fields = [int(v) for v in (self.proc / "stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        total = sum(fields[:8])  # guest time is already counted in user
        return total - idle, total

    def cpu_percent(self) -> int | None:
        """The CPU share used since the previous call (the first call: since this object was made)."""
        now = self._cpu_times()
        last, self._last = self._last, now
        if now is None or last is None or now[1] <= last[1]:
            return None
        return round(100 * (now[0] - last[0]) / (now[1] - last[1]))

    def memory_percent(self) -> int | None:
        """Memory in use: of the cgroup's limit when there is one, else of the machine (MemAvailable counts as free)."""
        try:
            limit = (self.cgroup / "memory.max").read_text().strip()
            if limit != "max":
                return round(100 * int((self.cgroup / "memory.current").read_text()) / int(limit))
        except (OSError, ValueError):
            pass
        try:
            info = dict(line.split(":", 1) for line in (self.proc / "meminfo").read_text().splitlines() if ":" in line)
            total, available = (int(info[k].split()[0]) for k in ("MemTotal", "MemAvailable"))
        except (OSError, ValueError, KeyError):
            return None
        return round(100 * (total - available) / total) if total else None
