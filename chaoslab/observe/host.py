"""Host figures for the lab machine (the incident's hypervisor): PSI, vmstat, disk I/O, load,
and tasks in uninterruptible sleep (D state), with the kernel's own names."""

from __future__ import annotations

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


class DStateTracker:
    """Counts tasks in D state and how long each has been there (khungtaskd fires at 120 s)."""

    def __init__(self) -> None:
        self._since: dict[int, float] = {}
        self.longest_secs = 0.0

    def sample(self) -> dict:
        now = time.time()
        current = set()
        for p in psutil.process_iter(["status"]):
            try:
                if p.info["status"] == psutil.STATUS_DISK_SLEEP:
                    current.add(p.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        for pid in list(self._since):
            if pid not in current:
                del self._since[pid]
        for pid in current:
            self._since.setdefault(pid, now)
        longest_now = max((now - t for t in self._since.values()), default=0.0)
        self.longest_secs = max(self.longest_secs, longest_now)
        return {"d_state_tasks": len(current), "d_state_longest_secs": round(longest_now, 1),
                "d_state_longest_ever_secs": round(self.longest_secs, 1)}


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
