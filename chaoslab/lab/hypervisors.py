"""Hypervisors as kernel objects: one parent cgroup per hypervisor, holding its VMs' containers
(Docker's `cgroup_parent`), with its own memory budget (smaller than the sum of its VMs' caps:
the overcommit), its own disk-read budget and its own CPU share. A thrashing hypervisor then
degrades its own VMs, not the bus or the lab's probes, which live outside every hypervisor.

cgroup v1 here (one directory per controller: memory, blkio, cpu); v2 where the host has it (one
directory, memory.max / io.max / cpu.weight). The directories are
<controller>/chaoslab-<project>/<hypervisor>; the containers' own cgroups are created below them
by the engine. Figures are read from the same files: memory, major faults, disk reads, and the
tasks in D state with how long each has been there (/proc/<pid>/stat), which is what the
kernel's hung-task detector judges (/proc/sys/kernel/hung_task_timeout_secs, 120 s by default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chaoslab.errors import LabError

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "blkio", "cpu")


@dataclass(frozen=True)
class HypervisorSpec:
    name: str                       # e.g. "hv-fix-1"
    memory_bytes: int               # the hypervisor's memory budget (all its VMs together)
    read_bps: int | None = None     # disk reads per second, all its VMs together (None: unlimited)
    cpu_shares: int = 1024          # relative CPU weight against the other hypervisors (v1 cpu.shares)


def version(root: Path = ROOT) -> int:
    return 2 if (root / "cgroup.controllers").exists() else 1


def parent(project: str, name: str) -> str:
    """The cgroup_parent Docker is given for the hypervisor's VMs."""
    return f"/chaoslab-{project}/{name}"


def block_device(path: str = "/var/lib/docker") -> str:
    """MAJ:MIN of the disk the engine's storage lives on (what a read budget throttles)."""
    st = os.stat(path if os.path.exists(path) else "/")
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def device_path(path: str = "/var/lib/docker") -> str:
    """/dev/<name> of the disk block_device() names (what the engine's device_read_bps takes)."""
    for line in _read(Path("/sys/dev/block") / block_device(path) / "uevent").splitlines():
        if line.startswith("DEVNAME="):
            return "/dev/" + line.split("=", 1)[1]
    raise LabError(f"no block device found for {path}: a read budget cannot be set")


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise LabError(f"hypervisor cgroup: cannot write {value!r} to {path}: {exc.strerror or exc}") from None


def create(spec: HypervisorSpec, project: str, root: Path = ROOT, device: str | None = None) -> str:
    """Make the hypervisor's cgroup with its budgets; returns the cgroup_parent for its VMs."""
    rel = parent(project, spec.name).lstrip("/")
    device = device or block_device()
    try:
        if version(root) == 1:
            for ctrl in V1_CONTROLLERS:
                (root / ctrl / rel).mkdir(parents=True, exist_ok=True)
            mem = root / "memory" / rel
            _write(mem / "memory.limit_in_bytes", str(spec.memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():   # no swap beyond the budget
                _write(mem / "memory.memsw.limit_in_bytes", str(spec.memory_bytes))
            if spec.read_bps:   # v1 throttling is flat: this limits the hypervisor's own tasks; its VMs get their share
                _write(root / "blkio" / rel / "blkio.throttle.read_bps_device", f"{device} {spec.read_bps}")
            _write(root / "cpu" / rel / "cpu.shares", str(spec.cpu_shares))
        else:
            top = root / f"chaoslab-{project}"
            top.mkdir(exist_ok=True)
            for d in (root, top):
                if (d / "cgroup.subtree_control").exists():
                    _write(d / "cgroup.subtree_control", "+memory +io +cpu")
            hv = root / rel
            hv.mkdir(exist_ok=True)
            _write(hv / "memory.max", str(spec.memory_bytes))
            if (hv / "memory.swap.max").exists():
                _write(hv / "memory.swap.max", "0")
            if spec.read_bps:
                _write(hv / "io.max", f"{device} rbps={spec.read_bps}")
            _write(hv / "cpu.weight", str(max(1, min(10000, spec.cpu_shares * 100 // 1024))))
    except OSError as exc:
        raise LabError(f"hypervisor {spec.name}: cannot create its cgroup under {root}: {exc.strerror or exc}") from None
    return parent(project, spec.name)


def remove(project: str, name: str, root: Path = ROOT) -> None:
    """Remove the hypervisor's cgroup (its VMs' containers must be gone): deepest first."""
    rel = parent(project, name).lstrip("/")
    dirs = [root / ctrl / rel for ctrl in V1_CONTROLLERS] if version(root) == 1 else [root / rel]
    for d in dirs:
        if not d.exists():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass


def remove_all(project: str, root: Path = ROOT) -> None:
    """Remove every hypervisor of the project, and the project's own cgroup."""
    tops = [root / ctrl / f"chaoslab-{project}" for ctrl in V1_CONTROLLERS] if version(root) == 1 \
        else [root / f"chaoslab-{project}"]
    for top in tops:
        if top.exists():
            for hv in [d for d in top.iterdir() if d.is_dir()]:
                remove(project, hv.name, root)
            try:
                top.rmdir()
            except OSError:
                pass


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def tasks(project: str, name: str, root: Path = ROOT) -> list[int]:
    """Every process in the hypervisor (its VMs' containers included)."""
    rel = parent(project, name).lstrip("/")
    base = root / "memory" / rel if version(root) == 1 else root / rel
    pids: list[int] = []
    try:
        for procs in base.rglob("cgroup.procs"):
            pids += [int(x) for x in _read(procs).split() if x.isdigit()]
    except OSError:   # a VM's cgroup removed while the tree is walked: the tasks read so far
        pass
    return sorted(set(pids))


def figures(project: str, name: str, root: Path = ROOT) -> dict | None:
    """The hypervisor's own counters, hierarchical over its VMs (None: no such cgroup)."""
    rel = parent(project, name).lstrip("/")
    if version(root) == 1:
        mem = root / "memory" / rel
        if not mem.exists():
            return None
        stat = _kv(_read(mem / "memory.stat"))
        oom = _kv(_read(mem / "memory.oom_control"))
        reads = 0
        for line in _read(root / "blkio" / rel / "blkio.throttle.io_service_bytes_recursive").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read":
                reads += int(parts[2])
        return {"memory_bytes": _int(_read(mem / "memory.usage_in_bytes")),
                "memory_limit_bytes": _int(_read(mem / "memory.limit_in_bytes")),
                "memory_max_bytes": _int(_read(mem / "memory.max_usage_in_bytes")),
                "memory_failcnt": _int(_read(mem / "memory.failcnt")),
                "oom_kill": oom.get("oom_kill"),
                "pgmajfault": stat.get("total_pgmajfault"), "cache_bytes": stat.get("total_cache"),
                "rss_bytes": stat.get("total_rss"), "read_bytes": reads}
    hv = root / rel
    if not hv.exists():
        return None
    stat, events = _kv(_read(hv / "memory.stat")), _kv(_read(hv / "memory.events"))
    reads = sum(int(f.split("=")[1]) for line in _read(hv / "io.stat").splitlines()
                for f in line.split()[1:] if f.startswith("rbytes="))
    limit = _read(hv / "memory.max").strip()
    return {"memory_bytes": _int(_read(hv / "memory.current")),
            "memory_limit_bytes": int(limit) if limit.isdigit() else None,
            "memory_max_bytes": _int(_read(hv / "memory.peak")), "memory_failcnt": events.get("max"),
            "oom_kill": events.get("oom_kill"), "pgmajfault": stat.get("pgmajfault"),
            "cache_bytes": stat.get("file"), "rss_bytes": stat.get("anon"), "read_bytes": reads}


def hung_task_secs(proc: Path = Path("/proc")) -> float:
    """The host's hung-task threshold (the kernel reports a task in D state this long)."""
    value = _int(_read(proc / "sys" / "kernel" / "hung_task_timeout_secs"))
    return float(value) if value else 120.0
