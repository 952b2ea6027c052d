"""`hypervisors` (key `hypervisors`): each hypervisor of the VM group (a parent cgroup, see
chaoslab/lab/hypervisors.py) every second: its memory against its budget, major faults and disk
reads over all its VMs, and its tasks in D state with the longest time one has been there (what
the kernel's hung-task detector judges)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import PrivateAttr

from chaoslab.lab import hypervisors as hv
from chaoslab.observe.host import DState
from chaoslab.spec.base import Panel, Probe, register

MIB = 2 ** 20


@register("probe")
class HypervisorsProbe(Probe):
    """Per hypervisor: memory (MiB) of its budget, major faults, disk reads, D-state tasks."""
    type: Literal["hypervisors"] = "hypervisors"
    key: ClassVar[str] = "hypervisors"
    needs_workload: ClassVar[tuple[str, ...]] = ("vm-agents",)
    _d: dict = PrivateAttr(default_factory=dict)
    _first: dict = PrivateAttr(default_factory=dict)
    _last: dict = PrivateAttr(default_factory=dict)
    _peak_memory: dict = PrivateAttr(default_factory=dict)
    _peak_reads: dict = PrivateAttr(default_factory=dict)
    _peak_faults: dict = PrivateAttr(default_factory=dict)
    _looked: dict = PrivateAttr(default_factory=dict)     # hypervisor -> looks that read its tasks

    def collect(self, ctx) -> dict:
        out = {}
        for name in ctx.workload.hypervisor_names():
            f = hv.figures(ctx.workload.project, name)
            if f is None:       # gone (the group was stopped): its last figures stand
                continue
            pids = hv.tasks(ctx.workload.project, name)
            # a hypervisor whose VMs run has tasks: none read means D state could not be looked at (unknown, not 0)
            d = self._d.setdefault(name, DState()).look(pids) if pids else \
                {"d_state_tasks": None, "d_state_longest_secs": None, "d_state_longest_ever_secs": None}
            self._looked[name] = self._looked.get(name, 0) + bool(pids)
            out[name] = {**f, **d, "tasks": len(pids)}
            self._first.setdefault(name, f)
            self._last[name] = out[name]
            self._peak_memory[name] = max(self._peak_memory.get(name, 0), f.get("memory_bytes") or 0)
            # the subtree's counters fall when a VM's cgroup goes (the group's stop): the peak is the total
            self._peak_reads[name] = max(self._peak_reads.get(name, 0), f.get("read_bytes") or 0)
            self._peak_faults[name] = max(self._peak_faults.get(name, 0), f.get("pgmajfault") or 0)
        return out

    def summary(self) -> dict:
        per = {}
        for name, last in self._last.items():
            first = self._first.get(name, {})
            per[name] = {"memory_peak_mib": round(self._peak_memory.get(name, 0) / MIB, 1),
                         "memory_limit_mib": round((last.get("memory_limit_bytes") or 0) / MIB, 1),
                         "pgmajfault": max(0, self._peak_faults.get(name, 0) - (first.get("pgmajfault") or 0)),
                         "read_mib": round(max(0, self._peak_reads.get(name, 0) - (first.get("read_bytes") or 0)) / MIB, 1),
                         "oom_kill": last.get("oom_kill"),
                         "d_state_longest_secs": round(self._d[name].longest_ever, 1) if self._looked.get(name) else None}
        return {"hypervisors": per}

    @classmethod
    def panels(cls) -> list[Panel]:
        def field(name, scale=1.0):
            def one(s, h):   # a sample may hold a probe_error (a string) instead of figures
                x = (s.get("hypervisors") or {}).get(h)
                v = x.get(name) if isinstance(x, dict) else None
                return v * scale if isinstance(v, (int, float)) else None

            def series(samples):
                names = sorted({h for s in samples for h, x in (s.get("hypervisors") or {}).items() if isinstance(x, dict)})
                return {h: [one(s, h) for s in samples] for h in names}
            return series
        return [Panel("memory per hypervisor (its budget is the overcommitted sum of its VMs' caps)", "MiB",
                      field("memory_bytes", 1 / MIB)),
                Panel("longest time a hypervisor's task has been in D state", "s", field("d_state_longest_secs"))]

    @classmethod
    def report_blocks(cls, summary, samples, events, variant, run_dir) -> list[tuple]:
        per = (summary or {}).get("hypervisors") or {}
        if not per:
            return []
        crashes = {e.get("hypervisor") for e in events if e.get("name") == "hypervisor-crash"}
        return [("h3", "Hypervisors (parent cgroups; figures over all their VMs)"),
                ("table", ["hypervisor", "peak memory MiB", "budget MiB", "major faults", "disk reads MiB",
                           "longest D state s", "crashed"],
                 [[h, x["memory_peak_mib"], x["memory_limit_mib"], x["pgmajfault"], x["read_mib"],
                   "not read" if x["d_state_longest_secs"] is None else x["d_state_longest_secs"],
                   "yes" if h in crashes else "no"] for h, x in sorted(per.items())])]

    @classmethod
    def why(cls, summary: dict) -> list[str]:
        per = (summary or {}).get("hypervisors") or {}
        worst = max(per.items(), key=lambda kv: kv[1].get("d_state_longest_secs") or 0, default=None)
        if not worst or not worst[1].get("d_state_longest_secs"):
            return []
        return [f"Longest D state in a hypervisor: {worst[1]['d_state_longest_secs']:.1f} s ({worst[0]})"]

    @classmethod
    def status(cls, figures: dict) -> str:
        per = {h: x for h, x in (figures or {}).items() if isinstance(x, dict)}
        if not per:
            return ""
        longest = max((x.get("d_state_longest_secs") or 0) for x in per.values())
        full = sum(1 for x in per.values() if x.get("memory_limit_bytes") and
                   (x.get("memory_bytes") or 0) >= 0.95 * x["memory_limit_bytes"])
        return f"hypervisors {len(per)}, at their memory budget {full}, longest D state {longest:.0f} s"
