"""Run a `kind: bus-outage` experiment (vector-buffer): for each VM group in turn, start its VM
containers with the group's agent buffer settings, let them ship, take the bus away for a
declared time, bring it back, watch the backlog drain, then count what was generated, delivered,
dropped by policy and lost — by consuming the group's topic. Groups run one after another on the
same lab so that host-level effects (PSI, disk reads, D state) belong to one group.

Every second, per VM: the cgroup's own figures (memory.usage_in_bytes, memory.failcnt, oom_kill,
total_pgmajfault, blkio Read/Write, nr_throttled) and the agent's buffer metrics; for the host:
/proc/pressure/*, /proc/vmstat, disk bytes, load, tasks in D state.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaoslab import faults
from chaoslab.checks.delivery import count_delivered
from chaoslab.errors import LabError
from chaoslab.experiment.bus_outage_spec import OutageExperiment, VmGroup
from chaoslab.experiment.run import ExperimentRun
from chaoslab.lab import vms
from chaoslab.observe.vm_sampler import VmSampler
from chaoslab.settings import LabSettings

def agent_toml(group: VmGroup, topic: str) -> str:
    """A config valid for real Vector and for the stand-in."""
    b = group.buffer
    buffer_lines = [f'type = "{b.type}"', f'when_full = "{b.when_full}"']
    if b.max_events is not None and b.type == "memory":
        buffer_lines.append(f"max_events = {b.max_events}")
    if b.max_size is not None:
        buffer_lines.append(f"max_size = {b.max_size}")
    line = ("x" * max(0, group.line_bytes - 40)).join(["GET /api/v1/orders ", " 200"])
    return "\n".join([
        f"# VM group {group.name}: written by chaoslab for this run",
        'data_dir = "/var/lib/vector"',
        "[sources.app_logs]", 'type = "demo_logs"', 'format = "shuffle"', f"lines = [{json.dumps(line)}]",
        f"interval = {1.0 / group.rate:.6f}", "sequence = true",
        "[sources.agent_metrics]", 'type = "internal_metrics"',
        "[sinks.bus]", 'type = "pulsar"', 'inputs = ["app_logs"]', 'endpoint = "pulsar://proxy:6650"',
        f'topic = "{topic}"', 'encoding.codec = "json"', "batch.max_events = 100",
        "[sinks.bus.buffer]", *buffer_lines,
        "[sinks.prometheus]", 'type = "prometheus_exporter"', 'inputs = ["agent_metrics"]', 'address = "0.0.0.0:9598"', "",
    ])


@dataclass
class GroupResult:
    name: str
    role: str
    flavour: str
    count: int
    buffer: dict
    verdict: str = "ERROR"
    reasons: list = field(default_factory=list)
    oom_killed: list = field(default_factory=list)
    per_vm: dict = field(default_factory=dict)
    totals: dict = field(default_factory=dict)
    peaks: dict = field(default_factory=dict)
    drain_secs: dict = field(default_factory=dict)
    outage_start: float | None = None
    outage_end: float | None = None
    started: float = 0.0
    ended: float = 0.0


class OutageRunner(ExperimentRun):
    kind = "bus-outage"

    def __init__(self, experiment: OutageExperiment, run_dir: Path | None = None, keep: bool = False,
                 log=print, settings: LabSettings | None = None):
        super().__init__(experiment, run_dir, keep, log, settings, pico_vms=0, nano_vms=0)

    def execute(self) -> None:
        self.lab.down()
        self.lab.up(pico=0, nano=0, fresh=True)
        self.journal.event("lab-up")
        for group in self.exp.groups:
            self.check_interrupt()
            self.results.append(self.run_group(group))
            self.save_results()

    def results_payload(self) -> dict:
        return {"hypothesis": asdict(self.exp.hypothesis), "outage": asdict(self.exp.outage),
                "groups": [asdict(r) for r in self.results]}

    def cleanup(self) -> None:
        vms.remove_groups(self.lab)
        super().cleanup()

    def build_report(self) -> None:
        from chaoslab.report.bus_outage import build_outage_report
        build_outage_report(self.run_dir)

    # -- one group -------------------------------------------------------------------------------
    def run_group(self, group: VmGroup) -> GroupResult:
        j, o = self.journal, self.exp.outage
        result = GroupResult(group.name, group.role, group.flavour, group.count, asdict(group.buffer), started=time.time())
        topic = f"persistent://public/default/vm-{group.name}-{self.exp.seed}"
        config = self.run_dir / f"agent-{group.name}.toml"
        config.write_text(agent_toml(group, topic))
        j.event("group-start", group=group.name, flavour=group.flavour, count=group.count,
                buffer=asdict(group.buffer), rate=group.rate, line_bytes=group.line_bytes)
        self.log(f"[{group.name}] {group.count} {group.flavour} VMs, {group.buffer.type} buffer, "
                 f"when_full={group.buffer.when_full} ...")
        containers = vms.start_group(self.lab, vms.VmGroupSpec(group.name, group.flavour, group.count, config,
                                                               {"RESIDENT_MB": group.resident_mb}))
        sampler = VmSampler(self.journal, group.name, containers)
        sampler.start()
        bus_down = False
        try:
            self._wait_shipping(sampler, timeout=120)
            time.sleep(o.before_secs)
            backlog = max(((v.get("agent") or {}).get("vector_buffer_size_events") or 0)
                          for v in sampler.latest().values())
            if backlog > max(1000, group.rate * 5):
                # the agents cannot keep up even with the bus up: an outage result would be meaningless
                j.event("no-steady-state", group=group.name, buffer_events=backlog)
                result.reasons.append(f"agents could not keep up before the outage ({backlog:.0f} events buffered "
                                      f"at {group.rate}/s per VM): lower the rate for this machine")
            result.outage_start = time.time()
            j.event("outage-start", group=group.name, target=o.target)
            bus_down = True
            faults.bus_outage(self.lab, o.target, down=True)
            time.sleep(o.duration_secs)
            j.event("outage-end", group=group.name, target=o.target)
            result.outage_end = time.time()
            faults.bus_outage(self.lab, self.exp.outage.target, down=False)
            bus_down = False
            self._wait_drained(sampler, result, o.recovery_secs)
        except BaseException:
            if bus_down:  # the rollback of an outage: bring the bus back
                try:
                    j.event("outage-rollback", group=group.name)
                    faults.bus_outage(self.lab, self.exp.outage.target, down=False)
                except BaseException:
                    pass
            result.verdict, result.ended = "INTERRUPTED", time.time()
            self.results.append(result)
            raise
        finally:
            sampler.stop()
        final = sampler.latest()
        for c in containers:  # stop the agents gracefully so their in-flight batches complete
            try:
                c.stop(timeout=15)
            except Exception:
                pass
        delivered = count_delivered(self.lab.proxy_service_url, topic, [c.attrs["Config"]["Hostname"] for c in containers])
        hyp = self.exp.hypothesis
        totals = {"generated": 0, "delivered": 0, "dropped_by_policy": 0, "failed_sends": 0, "lost": 0}
        for c in containers:
            c.reload()
            vm = final.get(c.name, {})
            agent = vm.get("agent") or {}
            cg = vm.get("cgroup") or {}
            oom = bool(c.attrs["State"].get("OOMKilled")) or (cg.get("oom_kill") or 0) > 0
            if oom:
                result.oom_killed.append(c.name)
            generated = int(agent.get("vector_component_received_events_total", 0))
            dropped = int(agent.get("vector_buffer_discarded_events_total{intentional=true}", 0))
            failed = int(agent.get("vector_component_discarded_events_total{intentional=false}", 0))
            got = delivered.get(c.attrs["Config"]["Hostname"], 0)
            lost = max(0, generated - got - dropped - failed)
            result.per_vm[c.name] = {"generated": generated, "delivered": got, "dropped_by_policy": dropped,
                                     "failed_sends": failed, "lost": lost, "oom_killed": oom,
                                     "peak_memory_bytes": sampler.peak.get(c.name, {}).get("memory.usage_in_bytes"),
                                     "memory_limit_bytes": cg.get("memory.limit_in_bytes"),
                                     "pgmajfault": cg.get("total_pgmajfault"), "blkio_read_bytes": cg.get("blkio_read_bytes")}
            for k in totals:
                totals[k] += result.per_vm[c.name][k]
        result.totals = totals
        result.peaks = {"host_io_psi_some_avg10": sampler.host_peak.get("io_some_avg10"),
                        "host_memory_psi_some_avg10": sampler.host_peak.get("memory_some_avg10"),
                        "host_memory_psi_full_avg10": sampler.host_peak.get("memory_full_avg10"),
                        "d_state_longest_secs": sampler.host_peak.get("d_state_longest_secs"),
                        "d_state_tasks": sampler.host_peak.get("d_state_tasks"),
                        "vm_memory_max_mib": round(max((p.get("memory.usage_in_bytes") or 0 for p in sampler.peak.values()), default=0) / 2**20, 1),
                        "agent_buffer_events_max": max((p.get("vector_buffer_size_events") or 0 for p in sampler.peak.values()), default=0),
                        "pgmajfault_total": sum((v.get("pgmajfault") or 0) for v in result.per_vm.values()),
                        "blkio_read_mib_total": round(sum((v.get("blkio_read_bytes") or 0) for v in result.per_vm.values()) / 2**20, 1)}
        reasons = []
        if len(result.oom_killed) > hyp.oom_kills_max:
            reasons.append(f"{len(result.oom_killed)} VM(s) OOM-killed (> {hyp.oom_kills_max})")
        io_peak = result.peaks["host_io_psi_some_avg10"]
        if io_peak is not None and io_peak > hyp.host_io_psi_some_avg10_max:
            reasons.append(f"host io PSI some avg10 peaked at {io_peak:.1f} (> {hyp.host_io_psi_some_avg10_max})")
        if totals["lost"] > hyp.lost_events_max:
            reasons.append(f"{totals['lost']} events lost without being counted (> {hyp.lost_events_max})")
        if result.reasons:  # no steady state before the outage
            result.verdict, result.reasons = "ERROR", result.reasons + reasons
        else:
            result.verdict, result.reasons = ("FAIL" if reasons else "PASS"), reasons
        result.ended = time.time()
        self.lab.save_logs(self.run_dir / "logs" / group.name, since=result.started)
        for c in containers:
            try:
                (self.run_dir / "logs" / group.name / f"{c.name}.log").write_bytes(c.logs(timestamps=True))
                c.remove(force=True)
            except Exception:
                pass
        j.event("group-end", group=group.name, verdict=result.verdict, reasons=reasons, totals=totals,
                peaks=result.peaks, oom_killed=result.oom_killed, drain_secs=result.drain_secs)
        self.log(f"[{group.name}] {result.verdict}: {totals}" + (f" — {reasons[0]}" if reasons else ""))
        return result

    def _wait_shipping(self, sampler: "VmSampler", timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            latest = sampler.latest()
            if latest and all(((v.get("agent") or {}).get("vector_component_sent_events_total") or 0) > 0
                              for v in latest.values()):
                self.journal.event("agents-shipping")
                return
            time.sleep(1)
        raise LabError(f"the VM agents did not start shipping within {timeout:.0f} s")

    def _wait_drained(self, sampler: "VmSampler", result: GroupResult, recovery_secs: float) -> None:
        until = time.time() + recovery_secs
        while time.time() < until:
            latest = sampler.latest()
            for name, v in latest.items():
                size = (v.get("agent") or {}).get("vector_buffer_size_events")
                if name not in result.drain_secs and size is not None and size <= 200:
                    result.drain_secs[name] = round(time.time() - result.outage_end, 1)
            if len(result.drain_secs) == len(latest):
                time.sleep(5)
                return
            time.sleep(1)
