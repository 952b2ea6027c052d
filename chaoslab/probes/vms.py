"""Probes of the VM containers and of the host they share (the incident's hypervisor).

- `vm-agents` (key `vms`): per VM container, its cgroup's own files (memory.usage_in_bytes,
  failcnt, oom_kill, pgmajfault, blkio, throttling) and its agent's Vector buffer metrics.
- `host` (key `host`): /proc/pressure/{memory,io,cpu}, /proc/vmstat, disk bytes, load, tasks in
  D state (and the longest).
"""

from __future__ import annotations

import statistics
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


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"looks": len(values), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def agent_cost(cost: dict[str, list[tuple]]) -> dict | None:
    """Per VM, the agent's median RSS and its CPU share of one core over the steady state (the bus
    up, the agent keeping up): what one more VM's agent costs. None when it could not be read."""
    rss, cpu = [], []
    for looks in cost.values():
        rss.append(statistics.median(x[1] for x in looks))
        if len(looks) >= 2 and looks[-1][0] > looks[0][0]:
            cpu.append((looks[-1][2] - looks[0][2]) / (looks[-1][0] - looks[0][0]))
    if not rss:
        return None
    return {"vms": len(rss), "rss_mib_median": round(statistics.median(rss) / 2**20, 2),
            "rss_mib_max": round(max(rss) / 2**20, 2),
            "cpu_share_median": round(statistics.median(cpu), 4) if cpu else None,
            "cpu_share_max": round(max(cpu), 4) if cpu else None,
            "cpu_share_total": round(sum(cpu), 3) if cpu else None}


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
    _agent_pid: dict = PrivateAttr(default_factory=dict)   # VM -> the agent's pid (host namespace)
    _cost: dict = PrivateAttr(default_factory=dict)   # VM -> [(t, rss_bytes, cpu_secs)] with the bus up
    _look_secs: list = PrivateAttr(default_factory=list)   # how long one look at every VM took

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

    @classmethod
    def report_blocks(cls, summary, samples, events, variant, run_dir) -> list[tuple]:
        cost, look = (summary or {}).get("agent_cost"), (summary or {}).get("look_secs")
        group = ((variant or {}).get("workload") or {})
        if not cost and not look:
            return []
        lines = []
        if cost:
            cpu = cost.get("cpu_share_median")
            lines.append(f"The agent's cost per VM with the bus up (steady state, {cost['vms']} VMs"
                         + (f", {group.get('rate'):g} events/s of {group.get('line_bytes')} bytes each" if group.get("rate") else "")
                         + f"): RSS median {cost['rss_mib_median']} MiB (max {cost['rss_mib_max']}), CPU "
                         + (f"median {cpu * 100:.1f} % of one core (max {cost['cpu_share_max'] * 100:.1f} %, "
                            f"all agents together {cost['cpu_share_total']:.2f} cores)" if cpu is not None else "not read")
                         + ". The VM's application is not counted.")
        else:
            lines.append("The agent's cost per VM: not read (its process was not found in the VMs' cgroups).")
        if look:
            lines.append(f"The lab's own look at every VM (cgroup files, threads, the agent's metrics) took median "
                         f"{look['median']:.3f} s, max {look['max']:.3f} s over {look['looks']} looks (the probes sample every 1 s).")
        return [("h3", "The agent's cost and the lab's look"), *[("p", x) for x in lines]]

    def collect(self, ctx) -> dict:
        prev = self.latest()
        containers = list(ctx.workload.containers)
        t0 = time.monotonic()
        # one look per VM, side by side: a VM whose agent does not answer costs its own timeout,
        # not every other VM's sampling (at fleet scale a serial scrape would stretch the period)
        with ThreadPoolExecutor(max_workers=min(32, max(1, len(containers)))) as pool:
            looks = list(pool.map(lambda c: self._look(ctx, c), containers))
        look = round(time.monotonic() - t0, 3)
        if containers:
            self._look_secs.append(look)
        out = {}
        now, steady = time.time(), getattr(ctx, "phase", None) == "steady"
        for c, (cg, agent, answer_secs, load, cost) in zip(containers, looks):
            out[c.name] = {"cgroup": cg or (prev.get(c.name) or {}).get("cgroup"),
                           "agent": agent or (prev.get(c.name) or {}).get("agent"), "alive": cg is not None,
                           "agent_answered": agent is not None,   # this second; "agent" keeps the last answer
                           "agent_answer_secs": answer_secs, "vcpus": _vcpus(c), **load,
                           "look_secs": look,   # the lab's whole look at every VM, this one included
                           "agent_rss_bytes": (cost or {}).get("rss_bytes"), "agent_cpu_secs": (cost or {}).get("cpu_secs")}
            if steady and cost and cost.get("rss_bytes") is not None:
                self._cost.setdefault(c.name, []).append((now, cost["rss_bytes"], cost["cpu_secs"]))
            _peaks(self._peak.setdefault(c.name, {}), {**(cg or {}), **(agent or {}), **{k: v for k, v in load.items() if k == "load1"}})
        with self._lock:
            self._latest = out
        return None

    def _look(self, ctx, c) -> tuple:
        parent = (c.attrs.get("HostConfig") or {}).get("CgroupParent") or None
        cg = cgroups.container_figures(c.id, parent=parent)
        load, cost = {}, None
        tids = cgroups.container_threads(c.id, parent=parent) if cg is not None else None
        if tids is not None:
            r, d = host.runnable_or_blocked(tids)
            avg = self._load.setdefault(c.name, host.LoadAverage())
            load = {"tasks_running": r, "tasks_blocked": d, "load1": round(avg.add(r + d), 2)}
            cost = self._agent_cost(c, parent)
        ip = ctx.workload.ip(c)
        t0 = time.monotonic()
        agent = scrape_agent(ip) if ip else None
        return cg, agent, round(time.monotonic() - t0, 3) if ip else None, load, cost

    def _agent_cost(self, c, parent) -> dict | None:
        """The agent process's own RSS and CPU time (not the VM's application): its per-VM cost."""
        pid = self._agent_pid.get(c.name)
        if pid is None:
            for p in cgroups.container_threads(c.id, parent=parent, processes=True) or []:
                argv = host.command_line(p)
                if argv and argv[0].endswith("chaoslab-agent") and "--config" in argv:
                    pid = self._agent_pid[c.name] = p
                    break
        return host.process_cost(pid) if pid else None

    def summary(self) -> dict:
        peak = self._peak
        return {"per_vm_peak": peak, "agent_cost": agent_cost(self._cost),
                "look_secs": _spread(self._look_secs),
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
