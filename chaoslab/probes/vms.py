"""Probes of the VM containers and of the host they share (the incident's hypervisor).

- `vm-agents` (key `vms`): per VM container, its cgroup's own files (memory.usage_in_bytes,
  failcnt, oom_kill, pgmajfault, blkio, throttling) and its agent's Vector buffer metrics.
- `host` (key `host`): /proc/pressure/{memory,io,cpu}, /proc/vmstat, disk bytes, load, tasks in
  D state (and the longest).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Literal

from pydantic import PrivateAttr

from chaoslab.observe import cgroups, host
from chaoslab.probes.figures import VmsFigures
from chaoslab.spec.base import Panel, Probe, StatusView, rate, register, status_view
from chaoslab.workload.vm_agents import scrape_agent


def _peaks(into: dict, values: dict) -> None:
    for k, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = max(into.get(k, v), v)


def _vcpus(c) -> float | None:
    hc = c.attrs.get("HostConfig") or {}
    if hc.get("NanoCpus"):
        return hc["NanoCpus"] / 1e9
    if hc.get("CpuQuota") and hc.get("CpuPeriod"):
        return hc["CpuQuota"] / hc["CpuPeriod"]
    return None


@register("probe")
class VmAgentsProbe(Probe):
    type: Literal["vm-agents"] = "vm-agents"
    key: ClassVar[str] = "vms"
    figures: ClassVar = VmsFigures
    needs_workload: ClassVar[tuple[str, ...]] = ("vm-agents",)
    _peak: dict = PrivateAttr(default_factory=dict)
    _load: dict = PrivateAttr(default_factory=dict)   # VM -> host.LoadAverage

    @classmethod
    def status(cls, figures: dict) -> str:
        vms = VmsFigures.model_validate(figures or {}).vms
        if not vms:
            return ""
        alive = sum(1 for x in vms.values() if x.alive)
        buf = max((x.buffer_events or 0) for x in vms.values())
        mem = max(((x.cgroup or {}).get("memory.usage_in_bytes") or 0) for x in vms.values()) / 2**20
        load = max((x.load1 or 0) for x in vms.values())
        return f"VMs alive {alive}/{len(vms)}, max buffer {buf:.0f} events, max memory {mem:.0f} MiB, max load1 {load:.1f}"

    @classmethod
    def panels(cls) -> list[Panel]:
        def per_vm(part, key, scale=1.0):
            def series(samples):
                names = sorted({n for s in samples for n in (s.get("vms") or {})})
                out = {}
                for n in names:
                    vals = []
                    for s in samples:
                        vm = (s.get("vms") or {}).get(n) or {}
                        v = (vm.get(part) or {}).get(key) if vm.get("alive", True) else None
                        vals.append(v * scale if isinstance(v, (int, float)) else None)
                    out[n] = vals
                return out
            return series

        def faults(samples):
            total = [sum(((vm.get("cgroup") or {}).get("total_pgmajfault") or 0) for vm in (s.get("vms") or {}).values())
                     for s in samples]
            return {"pgmajfault/s (group)": rate(total)}
        return [Panel("memory.usage_in_bytes per VM", "MiB", per_vm("cgroup", "memory.usage_in_bytes", 1 / 2**20)),
                Panel("agent buffer: vector_buffer_size_events per VM", "events", per_vm("agent", "vector_buffer_size_events")),
                Panel("major page faults of the group's VMs", "faults/s", faults)]

    def collect(self, ctx) -> dict:
        prev = self.latest()
        containers = list(ctx.workload.containers)
        # one look per VM, side by side: a VM whose agent does not answer costs its own timeout,
        # not every other VM's sampling (at fleet scale a serial scrape would stretch the period)
        with ThreadPoolExecutor(max_workers=min(32, max(1, len(containers)))) as pool:
            looks = list(pool.map(lambda c: self._look(ctx, c), containers))
        out = {}
        for c, (cg, agent, answer_secs, load) in zip(containers, looks):
            out[c.name] = {"cgroup": cg or (prev.get(c.name) or {}).get("cgroup"),
                           "agent": agent or (prev.get(c.name) or {}).get("agent"), "alive": cg is not None,
                           "agent_answered": agent is not None,   # this second; "agent" keeps the last answer
                           "agent_answer_secs": answer_secs, "vcpus": _vcpus(c), **load}
            _peaks(self._peak.setdefault(c.name, {}), {**(cg or {}), **(agent or {}), **{k: v for k, v in load.items() if k == "load1"}})
        with self._lock:
            self._latest = out
        return None

    def _look(self, ctx, c) -> tuple:
        parent = (c.attrs.get("HostConfig") or {}).get("CgroupParent") or None
        cg = cgroups.container_figures(c.id, parent=parent)
        load = {}
        tids = cgroups.container_threads(c.id, parent=parent) if cg is not None else None
        if tids is not None:
            r, d = host.runnable_or_blocked(tids)
            avg = self._load.setdefault(c.name, host.LoadAverage())
            load = {"tasks_running": r, "tasks_blocked": d, "load1": round(avg.add(r + d), 2)}
        ip = ctx.workload.ip(c)
        t0 = time.monotonic()
        agent = scrape_agent(ip) if ip else None
        return cg, agent, round(time.monotonic() - t0, 3) if ip else None, load

    def summary(self) -> dict:
        peak = self._peak
        return {"per_vm_peak": peak,
                "vm_memory_max_mib": round(max((p.get("memory.usage_in_bytes") or 0 for p in peak.values()), default=0) / 2**20, 1),
                "agent_buffer_events_max": max((p.get("vector_buffer_size_events") or 0 for p in peak.values()), default=0)}


@register("probe")
class HostProbe(Probe):
    type: Literal["host"] = "host"
    key: ClassVar[str] = "host"
    _d_state: host.DStateTracker = PrivateAttr(default_factory=host.DStateTracker)
    _peak: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def panels(cls) -> list[Panel]:
        def psi(samples):
            out = {}
            for key, label in (("psi_memory", "memory some"), ("psi_io", "io some"), ("psi_cpu", "cpu some")):
                out[label] = [((s.get("host") or {}).get(key) or {}).get("some_avg10") for s in samples]
            out["memory full"] = [((s.get("host") or {}).get("psi_memory") or {}).get("full_avg10") for s in samples]
            return out

        def reads(samples):
            vals = [(s.get("host") or {}).get("disk_read_bytes") for s in samples]
            return {"host disk read MiB/s": [None if v is None else v / 2**20 for v in rate(vals)]}

        def d_state(samples):
            return {"tasks in D state": [(s.get("host") or {}).get("d_state_tasks") for s in samples]}
        return [Panel("host pressure (/proc/pressure, avg10)", "%", psi),
                Panel("host disk reads", "MiB/s", reads),
                Panel("host tasks in uninterruptible sleep", "tasks", d_state)]

    def collect(self, ctx) -> dict:
        hs = host.host_sample(self._d_state)
        _peaks(self._peak, {"io_some_avg10": (hs["psi_io"] or {}).get("some_avg10"),
                            "memory_some_avg10": (hs["psi_memory"] or {}).get("some_avg10"),
                            "memory_full_avg10": (hs["psi_memory"] or {}).get("full_avg10"),
                            "d_state_longest_secs": hs["d_state_longest_secs"], "d_state_tasks": hs["d_state_tasks"]})
        with self._lock:
            self._latest = hs
        return None

    def summary(self) -> dict:
        return {"host_peak": dict(self._peak)}


@status_view("vms")
def vm_containers(vms: list) -> StatusView:
    """`chaoslab status`: the VM containers the lab runs."""
    return StatusView(title="VM containers", columns=["container", "flavour", "state", "memory cap", "cpus", "image"],
                      rows=[[v["container"], v["flavour"], v["state"], f"{v['memory_limit_mib']} MiB", str(v["cpus"]),
                             v["image"]] for v in vms or []])
