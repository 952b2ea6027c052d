"""Checks on the VM containers and the host: agents keeping up (a steady-state condition), and
the final checks of a bus outage — OOM kills, host I/O pressure, events lost uncounted."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab.spec.base import CheckResult, Condition, FinalCheck, Unknown, Violation, register


@register("condition")
class AgentBufferEvents(Condition):
    """Every VM's agent keeps up: its buffer holds at most `max` events (an agent that cannot
    keep up with the bus up makes an outage result meaningless)."""
    type: Literal["agent-buffer-events"] = "agent-buffer-events"
    reads: ClassVar[tuple[str, ...]] = ("vm-agents",)
    max: Annotated[int, Field(ge=0)] = 1000

    def violations(self, sample: dict) -> list[Violation]:
        out, silent = [], []
        for name, vm in sorted(self.figures(sample, "vm-agents").vms.items()):
            size = vm.buffer_events
            if vm.agent_answered is False or size is None:
                silent.append(name)   # its last answer is not this second's
            elif size > self.max:
                out.append(Violation("agent_buffer_events", size, self.max, subject=name))
        if silent and not out:
            raise Unknown(f"no agent metrics this second from {', '.join(silent[:3])}"
                          + (f" and {len(silent) - 3} more" if len(silent) > 3 else ""))
        return out

    def reading(self, sample: dict) -> float | None:
        """The fullest buffer of the agents that answered this second."""
        sizes = [vm.buffer_events for vm in self.figures(sample, "vm-agents").vms.values()
                 if vm.agent_answered is not False and vm.buffer_events is not None]
        return max(sizes, default=None)


@register("check")
class OomKills(FinalCheck):
    type: Literal["oom-kills"] = "oom-kills"
    needs_workload: ClassVar[tuple[str, ...]] = ("vm-agents",)
    max: Annotated[int, Field(ge=0)] = 0

    def check(self, ctx) -> CheckResult:
        killed = (ctx.record.get("workload") or {}).get("oom_killed")
        if killed is None:
            return CheckResult("oom-kills", "unknown", evidence="no VM accounting was recorded")
        return CheckResult("oom-kills", "fail" if len(killed) > self.max else "pass", len(killed), self.max,
                           evidence=f"{len(killed)} VM(s) OOM-killed" + (f": {', '.join(killed[:5])}" if killed else ""))


@register("check")
class VmMajorFaults(FinalCheck):
    """Thrash, as the VM sees it: major page faults (pages read back from disk) per VM over the
    variant, from its cgroup's memory.stat. At most `max_vms` VMs may pass `max_per_vm`."""
    type: Literal["vm-major-faults"] = "vm-major-faults"
    needs_workload: ClassVar[tuple[str, ...]] = ("vm-agents",)
    max_per_vm: Annotated[int, Field(ge=0)] = 1000
    max_vms: Annotated[int, Field(ge=0)] = 0

    def check(self, ctx) -> CheckResult:
        per_vm = (ctx.record.get("workload") or {}).get("per_vm")
        if not per_vm:
            return CheckResult("vm-major-faults", "unknown", evidence="no VM accounting was recorded")
        faults = {name: vm.get("pgmajfault") for name, vm in per_vm.items() if vm.get("pgmajfault") is not None}
        if not faults:
            return CheckResult("vm-major-faults", "unknown", evidence="no VM's memory.stat was sampled")
        over = sorted((n for n, f in faults.items() if f > self.max_per_vm), key=lambda n: -faults[n])
        worst = max(faults, key=faults.get)
        return CheckResult("vm-major-faults", "fail" if len(over) > self.max_vms else "pass", len(over), self.max_vms,
                           evidence=f"{len(over)} of {len(faults)} VMs over {self.max_per_vm} major faults "
                                    f"(most: {faults[worst]:,} in {worst})",
                           data={"per_vm": faults, "over": over})


@register("check")
class HostIoPressure(FinalCheck):
    type: Literal["host-io-psi"] = "host-io-psi"
    max: Annotated[float, Field(ge=0, le=100)] = 25.0

    def check(self, ctx) -> CheckResult:
        peak = ((ctx.record.get("probes") or {}).get("host") or {}).get("host_peak", {}).get("io_some_avg10")
        if peak is None:
            return CheckResult("host-io-psi", "unknown", bound=self.max, evidence="no host PSI was sampled")
        return CheckResult("host-io-psi", "fail" if peak > self.max else "pass", peak, self.max,
                           evidence=f"host io PSI some avg10 peaked at {peak:.1f}")


@register("check")
class EventsLost(FinalCheck):
    """Events generated but never delivered and not accounted for by the agent (not dropped by policy,
    not given up by the sink, not held at stop): per event, per VM. `fail` only for events provably
    lost; when some VM's books could not close (the lab killed its agent, its files or the topic
    could not be read to the end: `unknown` events) and no more than `max` are lost, `unknown`."""
    type: Literal["events-lost"] = "events-lost"
    needs_workload: ClassVar[tuple[str, ...]] = ("vm-agents",)
    max: Annotated[int, Field(ge=0)] = 0
    include_crashes: bool = Field(False, description="count the events of VMs that died with their hypervisor "
                                                     "(lost_in_crash) as lost too; by default they are said apart")

    def check(self, ctx) -> CheckResult:
        w = ctx.record.get("workload") or {}
        totals = w.get("totals")
        if not totals:
            return CheckResult("events-lost", "unknown", evidence="no VM accounting was recorded")
        per_vm = w.get("per_vm") or {}
        in_crash = totals.get("lost_in_crash", 0)
        lost, unknown, generated = totals["lost"] + (in_crash if self.include_crashes else 0), totals.get("unknown", 0), totals["generated"]
        open_books = sorted(n for n, vm in per_vm.items() if not vm.get("books_closed", True))
        figures = (f"generated {generated}, delivered {totals['delivered']}, dropped by policy {totals['dropped_by_policy']}, "
                   f"failed sends {totals.get('failed_sends', 0)}, held at stop {totals.get('held_at_stop', 0)}, "
                   f"lost {totals['lost']}, lost in a hypervisor crash {in_crash}, unknown {unknown}; "
                   f"duplicates {totals.get('duplicates', 0)} apart")
        if lost > self.max:
            return CheckResult("events-lost", "fail", lost, self.max, data=totals,
                               evidence=f"{lost} events provably lost without being accounted for ({figures})")
        if generated == 0:
            return CheckResult("events-lost", "unknown", lost, self.max, data=totals,
                               evidence="the agents accounted for no event at all")
        if unknown or open_books or totals.get("unexpected", 0):
            reasons = sorted({vm.get("unknown_because") for vm in per_vm.values() if vm.get("unknown_because")})
            return CheckResult("events-lost", "unknown", lost, self.max, data={**totals, "books_open": open_books},
                               evidence=f"the books could not close for {len(open_books)} VM(s): {unknown} events unknown "
                                        f"({figures}); " + ("; ".join(reasons[:3]) or
                                                            f"{totals.get('unexpected', 0)} delivered events the agents never reported"))
        return CheckResult("events-lost", "pass", lost, self.max, data=totals,
                           evidence=f"{lost} events lost without being accounted for ({figures})")
