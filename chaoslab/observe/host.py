"""Host figures for the lab machine (the incident's hypervisor): PSI, vmstat, disk I/O, load,
and tasks in uninterruptible sleep (D state), with the kernel's own names."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import psutil


def psi(resource: str) -> dict | None:
    """/proc/pressure/<resource> as {'some_avg10': .., 'some_total': .., 'full_avg10': ..}."""
    try:
        text = Path(f"/proc/pressure/{resource}").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for f in fields:
            k, _, v = f.partition("=")
            out[f"{kind}_{k}"] = float(v)
    return out


VMSTAT_KEYS = ("pgmajfault", "pgpgin", "pgpgout", "pswpin", "pswpout", "workingset_refault_file",
               "allocstall_normal", "allocstall_movable", "pgscan_direct", "pgsteal_direct", "oom_kill")


def vmstat() -> dict:
    out = {}
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            k, _, v = line.partition(" ")
            if k in VMSTAT_KEYS:
                out[k] = int(v)
    except OSError:
        pass
    return out


def proc_state(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The one-letter state of a task from /proc/<pid>/stat (R, S, D, ...); None when it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    if ")" not in text:
        return None
    rest = text.rsplit(")", 1)[1].split()
    return rest[0] if rest else None


def context_switches(pid: int, proc: Path = Path("/proc")) -> int | None:
    """voluntary + nonvoluntary context switches of a task (/proc/<pid>/status); None when unread."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    n = [int(line.split()[1]) for line in text.splitlines()
         if line.split(":")[0] in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")]
    return sum(n) if len(n) == 2 else None


class DState:
    """How long each task of a set (the host's, a hypervisor's) has been in D state, from successive
    looks, the way the kernel's hung-task detector counts it: a task seen in D that was switched in
    and out since the last look (its context-switch count moved) made progress, so its time starts
    again. A task reading page after page through a throttled disk is in D at every look but is not
    hung. Where the count cannot be read, time in D at successive looks is counted as one stretch."""

    def __init__(self) -> None:
        self._since: dict[int, float] = {}
        self._switches: dict[int, int | None] = {}
        self.longest_ever = 0.0

    def look(self, pids: list[int], state=proc_state, now: float | None = None, switches=context_switches) -> dict:
        now = time.time() if now is None else now
        current = {p for p in pids if state(p) == "D"}
        self._since = {p: t for p, t in self._since.items() if p in current}
        for p in current:
            n = switches(p)
            if p in self._since and n is not None and self._switches.get(p) is not None and n != self._switches[p]:
                self._since[p] = now   # it ran since the last look: not one stretch in D
            self._since.setdefault(p, now)
            self._switches[p] = n
        self._switches = {p: n for p, n in self._switches.items() if p in current}
        longest = max((now - t for t in self._since.values()), default=0.0)
        self.longest_ever = max(self.longest_ever, longest)
        return {"d_state_tasks": len(current), "d_state_longest_secs": round(longest, 1),
                "d_state_longest_ever_secs": round(self.longest_ever, 1)}


def runnable_or_blocked(tids: list[int], state=proc_state) -> tuple[int, int]:
    """(R, D): the tasks a Linux load average counts - running or runnable, and uninterruptible."""
    states = [state(t) for t in tids]
    return sum(1 for x in states if x == "R"), sum(1 for x in states if x == "D")


def process_cost(pid: int, proc: Path = Path("/proc")) -> dict | None:
    """A process's resident memory (VmRSS) and CPU time so far (utime + stime); None when gone."""
    try:
        status = (proc / str(pid) / "status").read_text()
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    rss = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), None)
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"rss_bytes": rss, "cpu_secs": (int(fields[11]) + int(fields[12])) / ticks}


def command_line(pid: int, proc: Path = Path("/proc")) -> list[str]:
    try:
        return [x for x in (proc / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0") if x]
    except OSError:
        return []


class LoadAverage:
    """A one-minute load average the way the kernel computes it (loadavg.c: an exponentially
    decaying mean of the tasks in R or D state), from looks at any interval: what a monitor
    reading a guest's `load1` sees, computed for one container from its cgroup's tasks."""

    def __init__(self, period_secs: float = 60.0) -> None:
        self.period = period_secs
        self.value: float | None = None
        self._t: float | None = None

    def add(self, active: int, now: float | None = None) -> float:
        now = time.time() if now is None else now
        if self.value is None or self._t is None:
            self.value = 0.0   # the kernel starts from 0 too; the first minute under-reads, like a fresh guest
        dt = max(now - self._t, 0.0) if self._t is not None else 1.0
        decay = math.exp(-dt / self.period)
        self.value = self.value * decay + active * (1 - decay)
        self._t = now
        return self.value


class DStateTracker(DState):
    """Every task of the host in D state, and how long each has been there (khungtaskd fires at 120 s)."""

    def sample(self) -> dict:
        current = []
        for p in psutil.process_iter(["status"]):
            try:
                if p.info["status"] == psutil.STATUS_DISK_SLEEP:
                    current.append(p.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return self.look(current, state=lambda pid: "D")


def host_sample(d_state: DStateTracker) -> dict:
    disk = psutil.disk_io_counters()
    return {
        "psi_memory": psi("memory"), "psi_io": psi("io"), "psi_cpu": psi("cpu"),
        "vmstat": vmstat(), "loadavg": os.getloadavg(),
        "disk_read_bytes": disk.read_bytes if disk else None,
        "disk_write_bytes": disk.write_bytes if disk else None,
        "mem_available_bytes": psutil.virtual_memory().available,
        **d_state.sample(),
    }
