"""Per-container figures read straight from the kernel's cgroup (v1) files, with the kernel's
names: memory.usage_in_bytes, memory.failcnt, oom_kill, pgmajfault, pgpgin, blkio Read/Write,
cpu nr_throttled. The docker stats API lags and lacks failcnt, so the files are read directly.
The directory vanishes when the container dies: callers keep the last sample."""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _kv(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def container_figures(container_id: str, root: Path = ROOT, parent: str | None = None) -> dict | None:
    """`parent`: the container's cgroup parent when it has one (a VM inside a hypervisor,
    lab/hypervisors.py); by default the engine's own ("docker")."""
    under = (parent or "/docker").strip("/")
    mem = root / "memory" / under / container_id
    if not mem.exists():
        v2 = root / under / container_id if parent else root / "system.slice" / f"docker-{container_id}.scope"
        return _v2(v2) if v2.exists() else None
    stat = _kv(_read(mem / "memory.stat"))
    oom = _kv(_read(mem / "memory.oom_control"))
    blk = {"Read": 0, "Write": 0}
    for line in (_read(root / "blkio" / under / container_id / "blkio.throttle.io_service_bytes") or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in blk:
            blk[parts[1]] += int(parts[2])
    cpu = _kv(_read(root / "cpu" / under / container_id / "cpu.stat"))
    return {
        "memory.usage_in_bytes": _int(_read(mem / "memory.usage_in_bytes")),
        "memory.limit_in_bytes": _int(_read(mem / "memory.limit_in_bytes")),
        "memory.max_usage_in_bytes": _int(_read(mem / "memory.max_usage_in_bytes")),
        "memory.failcnt": _int(_read(mem / "memory.failcnt")),
        "oom_kill": oom.get("oom_kill"),
        "under_oom": oom.get("under_oom"),
        "total_rss": stat.get("total_rss"),
        "total_cache": stat.get("total_cache"),
        "total_mapped_file": stat.get("total_mapped_file"),
        "total_pgmajfault": stat.get("total_pgmajfault"),
        "total_pgpgin": stat.get("total_pgpgin"),
        "blkio_read_bytes": blk["Read"],
        "blkio_write_bytes": blk["Write"],
        "nr_throttled": cpu.get("nr_throttled"),
        "throttled_time": cpu.get("throttled_time"),
        "cpu_usage_ns": _int(_read(root / "cpuacct" / under / container_id / "cpuacct.usage")),
    }


def container_threads(container_id: str, root: Path = ROOT, parent: str | None = None,
                      processes: bool = False) -> list[int] | None:
    """Every thread of the container (what a guest's load average counts), from its cgroup's
    `tasks` (v1) or `cgroup.threads` (v2) - or with `processes`, every process (`cgroup.procs`);
    None when the cgroup is gone or cannot be read."""
    under = (parent or "/docker").strip("/")
    for path in (root / "memory" / under / container_id / ("cgroup.procs" if processes else "tasks"),
                 (root / under / container_id if parent else root / "system.slice" / f"docker-{container_id}.scope")
                 / ("cgroup.procs" if processes else "cgroup.threads")):
        text = _read(path)
        if text is not None:
            return [int(x) for x in text.split() if x.isdigit()]
    return None


def _v2(path: Path) -> dict:
    stat = _kv(_read(path / "memory.stat"))
    events = _kv(_read(path / "memory.events"))
    io = {"Read": 0, "Write": 0}
    for line in (_read(path / "io.stat") or "").splitlines():
        for field in line.split()[1:]:
            k, _, v = field.partition("=")
            if k == "rbytes":
                io["Read"] += int(v)
            elif k == "wbytes":
                io["Write"] += int(v)
    cpu = _kv(_read(path / "cpu.stat"))
    limit = (_read(path / "memory.max") or "").strip()
    return {
        "memory.usage_in_bytes": _int(_read(path / "memory.current")),
        "memory.limit_in_bytes": int(limit) if limit.isdigit() else None,
        "memory.max_usage_in_bytes": _int(_read(path / "memory.peak")),
        "memory.failcnt": events.get("max"), "oom_kill": events.get("oom_kill"), "under_oom": None,
        "total_rss": stat.get("anon"), "total_cache": stat.get("file"),
        "total_mapped_file": stat.get("file_mapped"), "total_pgmajfault": stat.get("pgmajfault"),
        "total_pgpgin": None, "blkio_read_bytes": io["Read"], "blkio_write_bytes": io["Write"],
        "nr_throttled": cpu.get("nr_throttled"), "throttled_time": cpu.get("throttled_usec"),
        "cpu_usage_ns": cpu["usage_usec"] * 1000 if "usage_usec" in cpu else None,
    }
