"""`type: vm-agents`: a group of small-VM containers, each running the telemetry agent with the
group's buffer settings and a resident application, shipping `rate` events/s into Pulsar through
the proxy. Stopping the workload stops the agents gracefully and all at once: each gets the drain
its group declares (`drain_secs`, AGENT_DRAIN_SECS) plus the agent's shutdown slack (a send in
flight may take its 30 s send timeout) before the engine would kill it; each exit is read back.
Then the group's topic is read from the beginning to its end and the books close per VM and per
event (chaoslab.workload.accounting): events an agent could not account for because the lab killed
it are `unknown`, never `lost`."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal

import psutil
from pydantic import Field, PrivateAttr, model_validator

from chaoslab.errors import LabError
from chaoslab.lab import hypervisors as hv
from chaoslab.lab import vms
from chaoslab.observe.metrics import scrape
from chaoslab.settings import FLAVOURS
from chaoslab.workload import clientlog
from chaoslab.spec.base import Model, Secs, Workload, register
from chaoslab.wait import wait_until
from chaoslab.text import words
from chaoslab.workload.accounting import (BUCKETS, AgentEnd, close_books, read_agent_files, read_topic,
                                          unaccounted_are)

# what the hypervisors together may never take: the bus (ZooKeeper, bookies, brokers, proxy), the
# lab's probes and the engine live outside every hypervisor, in this much of the host's memory
RESERVED_FOR_LAB_BYTES = 6 * 2**30

AGENT_METRICS = ("vector_buffer_size_events", "vector_buffer_size_bytes", "vector_buffer_events",
                 "vector_buffer_received_events_total", "vector_buffer_sent_events_total",
                 "vector_buffer_discarded_events_total", "vector_component_received_events_total",
                 "vector_component_sent_events_total", "vector_component_discarded_events_total",
                 "vector_component_errors_total")


# agent/src/sink.rs: SEND_TIMEOUT and SHUTDOWN_SLACK (a send in flight, the last wait for events and
# the producer's close after the drain deadline). tests/unit/test_books_honest.py reads them there.
AGENT_SEND_TIMEOUT_SECS = 30.0
AGENT_SHUTDOWN_SLACK_SECS = 32.5
# The rest of a stop: writing down what the buffer holds (a disk buffer is scanned) and the engine's own work.
STOP_MARGIN_SECS = 10.0


def stop_grace_secs(drain_secs: float) -> int:
    """How long the lab waits for a stopped agent before the engine kills it: the drain the group
    declares plus everything the agent may still do after its drain deadline."""
    return math.ceil(drain_secs + AGENT_SHUTDOWN_SLACK_SECS + STOP_MARGIN_SECS)


def stop_agent(container, grace_secs: int) -> AgentEnd:
    """Stop one VM gracefully (SIGTERM; the engine kills it after `grace_secs`) and read how it ended."""
    end = AgentEnd(running_at_stop=None, stop_timeout_secs=grace_secs)
    try:
        container.reload()
        end.running_at_stop = container.attrs["State"].get("Status") == "running"
    except Exception:
        pass
    if end.running_at_stop is not False:
        began = time.monotonic()
        try:
            container.stop(timeout=grace_secs)
            end.stop_secs = round(time.monotonic() - began, 2)
        except Exception as exc:
            end.stop_error = f"{type(exc).__name__}: {exc}"[:200]
    try:
        container.reload()
        state = container.attrs["State"]
        end.status, end.exit_code, end.oom_killed = state.get("Status"), state.get("ExitCode"), bool(state.get("OOMKilled"))
    except Exception:
        pass
    return end


def container_ip(container) -> str | None:
    try:
        container.reload()
        return next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"] or None
    except Exception:
        return None


def cached_ip(cache: dict[str, str], container) -> str | None:
    """A VM container's address, looked up once (kept in `cache`, by container name)."""
    if container.name not in cache:
        ip = container_ip(container)
        if ip:
            cache[container.name] = ip
    return cache.get(container.name)


def scrape_agent(ip: str, timeout: float = 1.5) -> dict | None:
    """The agent's Vector metrics from its :9598 exporter."""
    return scrape(f"http://{ip}:9598/metrics", AGENT_METRICS, split_by=("intentional",), timeout=timeout)


# agent/src/config.rs: MIN_DISK_BUFFER_BYTES (two 128 MiB data files + a 32-byte ledger, Vector's
# minimum disk buffer) and DEFAULT_MAX_EVENTS (a memory buffer given neither limit).
MIN_DISK_BUFFER_BYTES = 268_435_488
DEFAULT_MAX_EVENTS = 500


class Buffer(Model):
    """The sink buffer, Vector's keys and rules. The agent's parser (agent/src/config.rs) decides
    what is valid; these checks only reject a bad spec before a lab starts, with the agent's
    messages. tests/unit/test_agent_config.py holds them to `chaoslab-agent check-config`."""
    type: Literal["memory", "disk"] = "memory"
    max_events: Annotated[int, Field(ge=1)] | None = None
    max_size: Annotated[int, Field(ge=1)] | None = None
    when_full: Literal["block", "drop_newest"] = "block"

    @model_validator(mode="after")
    def _vector_rules(self):
        where = "sinks.bus.buffer"
        if self.type == "disk":
            if self.max_events is not None:
                raise ValueError(f"{where}.max_events applies to memory buffers only")
            if self.max_size is None:
                raise ValueError(f"{where}.max_size is required for disk buffers")
            if self.max_size < MIN_DISK_BUFFER_BYTES:
                raise ValueError(f"{where}.max_size must be at least {MIN_DISK_BUFFER_BYTES} bytes for disk buffers")
        elif self.max_events is not None and self.max_size is not None:
            raise ValueError(f"{where}: max_events and max_size cannot be set together")
        return self

    def effective(self) -> dict:
        """The buffer as the agent runs it (its check-config's `sink.buffer`): a memory buffer
        given neither limit holds DEFAULT_MAX_EVENTS events."""
        max_events = self.max_events
        if self.type == "memory" and max_events is None and self.max_size is None:
            max_events = DEFAULT_MAX_EVENTS
        return {"type": self.type, "max_events": max_events, "max_size": self.max_size, "when_full": self.when_full}


def _kill_quietly(container) -> None:
    try:
        container.kill(signal="SIGKILL")
    except Exception:   # already dead: the crash took it anyway
        pass


def agent_toml(group: "VmAgents", name: str, topic: str) -> str:
    """A config valid for real Vector and for the agent (chaoslab-agent check-config)."""
    b = group.buffer.effective()
    buffer_lines = [f'type = "{b["type"]}"', f'when_full = "{b["when_full"]}"']
    if b["max_events"] is not None and b["type"] == "memory":
        buffer_lines.append(f"max_events = {b['max_events']}")
    if b["max_size"] is not None:
        buffer_lines.append(f"max_size = {b['max_size']}")
    line = ("x" * max(0, group.line_bytes - 40)).join(["GET /api/v1/orders ", " 200"])
    return "\n".join([
        f"# VM group {name}: written by chaoslab for this run",
        'data_dir = "/var/lib/vector"',
        "[sources.app_logs]", 'type = "demo_logs"', 'format = "shuffle"', f"lines = [{json.dumps(line)}]",
        f"interval = {1.0 / group.rate:.6f}", "sequence = true",
        "[sources.agent_metrics]", 'type = "internal_metrics"',
        "[sinks.bus]", 'type = "pulsar"', 'inputs = ["app_logs"]', 'endpoint = "pulsar://proxy:6650"',
        f'topic = "{topic}"', 'encoding.codec = "json"', "batch.max_events = 100", "batch.timeout_secs = 1",
        "[sinks.bus.buffer]", *buffer_lines,
        "[sinks.prometheus]", 'type = "prometheus_exporter"', 'inputs = ["agent_metrics"]', 'address = "0.0.0.0:9598"', "",
    ])


class Hypervisors(Model):
    """Where the group's VMs run: `count` hypervisors, each a parent cgroup (lab/hypervisors.py)
    holding every count-th VM, with a memory budget smaller than the sum of its VMs' caps (by
    `overcommit`), a disk-read budget and a CPU share of its own. The bus, the lab and its probes
    stay outside every hypervisor."""
    count: Annotated[int, Field(ge=1, le=64)] = 1
    overcommit: Annotated[float, Field(ge=1.0, le=8.0, description="the sum of a hypervisor's VMs' memory caps over "
                                                                   "its own memory budget")] = 1.5
    read_mib_per_sec: Annotated[float, Field(ge=1, le=100_000)] | None = Field(
        None, description="the hypervisor's disk reads per second, all its VMs together (none: the disk's own)")
    cpu_shares: Annotated[int, Field(ge=2, le=262_144)] = 1024

    def plan(self, group: str, vms_count: int, vm_mib: int) -> list[dict]:
        """Per hypervisor: its name, how many VMs, its memory budget (MiB) and read budget."""
        out = []
        for i in range(1, self.count + 1):
            n = len(range(i, vms_count + 1, self.count))
            out.append({"name": f"hv-{group}-{i}", "vms": n, "memory_mib": math.ceil(n * vm_mib / self.overcommit),
                        "read_bps": int(self.read_mib_per_sec * 2**20) if self.read_mib_per_sec else None,
                        "cpu_shares": self.cpu_shares})
        return out


def budget_refusal(plan: list[dict], available_bytes: int) -> str | None:
    """Why the planned hypervisors may not be made, or None when they fit: their memory budgets
    together must fit in the host's available memory beyond RESERVED_FOR_LAB_BYTES (the bus, the
    lab and its probes keep theirs; hypervisors never take it)."""
    budget = sum(h["memory_mib"] for h in plan) * 2**20
    spare = available_bytes - RESERVED_FOR_LAB_BYTES
    if budget > spare:
        return (f"the group's hypervisors would need {budget / 2**30:.1f} GiB; the host has "
                f"{max(0, spare) / 2**30:.1f} GiB beyond the {RESERVED_FOR_LAB_BYTES / 2**30:.0f} GiB "
                "kept for the bus and the lab: fewer VMs, or a higher overcommit")
    return None


def create_hypervisors(plan: list[dict], project: str) -> tuple[str, ...]:
    """Make each planned hypervisor's cgroup with its budgets (lab/hypervisors.py); the
    cgroup_parent of each, in the plan's order (what VmGroupSpec.cgroup_parents takes)."""
    return tuple(hv.create(hv.HypervisorSpec(h["name"], h["memory_mib"] * 2**20, h["read_bps"], h["cpu_shares"]), project)
                 for h in plan)


def vm_read_shares(plan: list[dict], cgroup_version: int) -> tuple[int | None, ...]:
    """Each hypervisor's per-VM read cap, in the plan's order (what VmGroupSpec.read_bps takes):
    cgroup v1 does not throttle a parent's children (flat throttling), so each VM gets an equal
    share of its hypervisor's read budget as its own cap; v2's io.max on the parent is
    hierarchical (None: no cap of the VM's own)."""
    return tuple(h["read_bps"] // h["vms"] if h["read_bps"] and cgroup_version == 1 else None for h in plan)


def agents_shipping(containers: list, ip) -> bool:
    """Every VM's agent has sent events to the bus (vector_component_sent_events_total > 0);
    `ip(container)` is its address (None: not known yet, so not shipping)."""
    return all(((scrape_agent(ip(c)) or {}) if ip(c) else {}).get(
        "vector_component_sent_events_total", 0) > 0 for c in containers)


@register("workload")
class VmAgents(Workload):
    type: Literal["vm-agents"] = "vm-agents"
    group: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$", description="default: the variant's name")
    flavour: Literal["pico", "nano"] = "pico"
    count: Annotated[int, Field(ge=1, le=500)] = 5
    rate: Annotated[float, Field(ge=0.1, le=20_000, description="events/s per VM")] = 200.0
    line_bytes: Annotated[int, Field(ge=16, le=1_000_000)] = 1024
    resident_mb: Annotated[int, Field(ge=0, le=4096, description="file-backed pages the VM's app keeps hot")] = 96
    memory_mib: Annotated[int, Field(ge=32, le=65536)] | None = Field(
        None, description="scale the flavour's memory cap (declared scaling, shown in the report); default: the flavour's")
    buffer: Buffer = Buffer()
    hypervisors: Hypervisors | None = Field(None, description="run the VMs inside hypervisors (parent cgroups with "
                                                              "budgets of their own); none: straight on the host")
    shipping_timeout_secs: Secs = 120.0
    drain_secs: Secs = Field(10.0, description="after SIGTERM the agent drains its buffer this long (AGENT_DRAIN_SECS); "
                                               "the stop waits for it plus the agent's in-flight send timeout")
    read_timeout_secs: Secs = Field(300.0, description="reading the group's topic to its end may take this long; "
                                                       "what is not read by then is unknown, not lost")
    _containers: list = PrivateAttr(default_factory=list)
    _hypervisors: list = PrivateAttr(default_factory=list)   # hypervisors.plan(), as created
    _crashed: dict = PrivateAttr(default_factory=dict)       # hypervisor -> {t, vms, reason}
    _project: str = PrivateAttr("chaoslab")
    _ips: dict = PrivateAttr(default_factory=dict)
    _name: str = PrivateAttr("")

    @classmethod
    def report_blocks(cls, summary: dict) -> list[tuple]:
        """The group's books per event and per VM."""
        w = summary or {}
        if not w.get("per_vm"):
            return []
        t = w["totals"]

        def natural(name: str) -> list:   # vm-x-2 before vm-x-10
            return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
        return [("p", f"VM group {w.get('group')}: {w.get('count')} {w.get('flavour')} VMs, buffer {words(w.get('buffer'))}. "
                      f"Per event: generated {t['generated']} = delivered {t['delivered']} + dropped by policy "
                      f"{t['dropped_by_policy']} + failed sends {t['failed_sends']} + held at stop {t.get('held_at_stop', 0)} "
                      f"+ lost {t['lost']} + lost in a hypervisor crash {t.get('lost_in_crash', 0)} + unknown {t.get('unknown', 0)} (books that could not close: "
                      f"{', '.join(w.get('books_open') or []) or 'none'}). Duplicates {t.get('duplicates', 0)}; the sink gave up on "
                      f"{t.get('failed_but_delivered', 0)} events the broker had stored; OOM-killed {len(w.get('oom_killed') or [])}."),
                ("table", ["VM", "hypervisor", "generated", "delivered", "dropped", "failed", "held", "lost", "lost in crash",
                           "unknown", "dup", "exit", "OOM", "peak MiB", "pgmajfault"],
                 [[n, x.get("hypervisor") or "-", x["generated"], x["delivered"], x["dropped_by_policy"], x["failed_sends"],
                   x.get("held_at_stop", 0), x["lost"], x.get("lost_in_crash", 0), x.get("unknown", 0), x.get("duplicates", 0), (x.get("agent_end") or {}).get("exit_code"),
                   "yes" if x["oom_killed"] else "no",
                   round((x.get("peak_memory_bytes") or 0) / 2**20, 1), x.get("pgmajfault")]
                  for n, x in sorted(w["per_vm"].items(), key=lambda kv: natural(kv[0]))])]
    _topic: str = PrivateAttr("")

    @model_validator(mode="after")
    def _fits(self):
        mib = self.memory_mib or FLAVOURS[self.flavour]["memory_mib"]
        if self.resident_mb >= mib:
            raise ValueError(f"resident_mb: {self.resident_mb} does not fit in a {self.flavour} VM ({mib} MiB)")
        if self.hypervisors and self.hypervisors.count > self.count:
            raise ValueError(f"hypervisors.count: {self.hypervisors.count} hypervisors for {self.count} VMs leaves some empty")
        return self

    def hypervisor_names(self) -> list[str]:
        return [h["name"] for h in self._hypervisors]

    @property
    def project(self) -> str:
        return self._project

    def crash_hypervisor(self, ctx, name: str, reason: str) -> list[str]:
        """What a panicking hypervisor does: every VM in it dies at once (SIGKILL, all together).
        The run goes on; their books count what they had not handed over as lost in the crash."""
        if name in self._crashed:
            return []
        victims = [c for c in self._containers if c.labels.get("org.chaoslab.hypervisor") == name]
        self._crashed[name] = {"t": time.time(), "vms": [c.name for c in victims], "reason": reason}
        with ThreadPoolExecutor(max_workers=max(1, len(victims))) as pool:
            list(pool.map(lambda c: _kill_quietly(c), victims))
        ctx.event("hypervisor-crash", hypervisor=name, vms=[c.name for c in victims], reason=reason)
        return [c.name for c in victims]

    @property
    def containers(self) -> list:
        return self._containers

    def ip(self, container) -> str | None:
        return cached_ip(self._ips, container)

    def needs(self) -> set[str]:
        return {"vm-groups"}

    def start(self, ctx) -> None:
        clientlog.to_file(ctx.run_dir / "pulsar-client.log")   # the client library's own lines
        self._name = self.group or ctx.variant.name
        # one topic per run: a topic left by an earlier run with the same seed would fill this run's gaps
        self._topic = f"persistent://public/default/vm-{self._name}-{ctx.experiment.seed}-{uuid.uuid4().hex[:8]}"
        config = ctx.run_dir / f"agent-{self._name}.toml"
        config.write_text(agent_toml(self, self._name, self._topic))
        memory = self.memory_mib or FLAVOURS[self.flavour]["memory_mib"]
        ctx.event("vm-group-start", group=self._name, flavour=self.flavour, count=self.count, memory_mib=memory,
                  scaled_memory=self.memory_mib is not None, resident_mb=self.resident_mb,
                  buffer=self.buffer.model_dump(), rate=self.rate, line_bytes=self.line_bytes)
        ctx.log(f"[{ctx.variant.name}] {self.count} {self.flavour} VMs, {self.buffer.type} buffer, "
                f"when_full={self.buffer.when_full} ...")
        parents: tuple[str, ...] = ()
        self._crashed, self._project = {}, ctx.lab.project
        if self.hypervisors:
            self._hypervisors = self.hypervisors.plan(self._name, self.count, memory)
            refused = budget_refusal(self._hypervisors, psutil.virtual_memory().available)
            if refused:   # the bus and the lab keep their memory: hypervisors never take it
                raise LabError(refused)
            parents = create_hypervisors(self._hypervisors, ctx.lab.project)
            ctx.event("hypervisors", group=self._name, overcommit=self.hypervisors.overcommit,
                      hypervisors=self._hypervisors, vm_memory_mib=memory)
        shares = vm_read_shares(self._hypervisors, hv.version()) if self._hypervisors else ()
        self._containers = vms.start_group(ctx.lab, vms.VmGroupSpec(
            self._name, self.flavour, self.count, config, {"RESIDENT_MB": self.resident_mb, "AGENT_DRAIN_SECS": self.drain_secs},
            self.memory_mib, parents, shares))

        def shipping():
            return agents_shipping(self._containers, self.ip)
        if not wait_until(shipping, self.shipping_timeout_secs, stop=ctx.interrupted.is_set).ok:
            ctx.check_interrupt()
            raise LabError(f"the VM agents did not start shipping within {self.shipping_timeout_secs:.0f} s")
        ctx.event("agents-shipping", group=self._name)

    def stop(self, ctx) -> dict:
        probe = ctx.probe("vms")
        final = probe.latest() if probe else {}
        peaks = probe.summary().get("per_vm_peak", {}) if probe else {}

        grace = stop_grace_secs(self.drain_secs)
        with ThreadPoolExecutor(max_workers=max(1, len(self._containers))) as pool:  # all at once
            ends = dict(zip((c.name for c in self._containers), pool.map(lambda c: stop_agent(c, grace), self._containers)))
        with ThreadPoolExecutor(max_workers=16) as pool:
            ledgers = dict(zip((c.name for c in self._containers), pool.map(read_agent_files, self._containers)))
        hosts = [c.attrs["Config"]["Hostname"] for c in self._containers]
        reading = read_topic(ctx.lab.proxy_service_url, self._topic, hosts, timeout_secs=self.read_timeout_secs)
        if not reading.complete:
            ctx.log(f"[{ctx.variant.name}] topic {self._topic} not read to its end within {self.read_timeout_secs:.0f} s "
                    f"({reading.error or 'still reading'}): events not found in it are unknown, not lost")
        totals = {k: 0 for k in BUCKETS}
        per_vm, oom_killed, books_open = {}, [], []
        for c in self._containers:
            end = ends[c.name]
            vm = final.get(c.name, {})
            cg = vm.get("cgroup") or {}
            oom = end.oom_killed or (cg.get("oom_kill") or 0) > 0
            if oom:
                oom_killed.append(c.name)
            host = c.attrs["Config"]["Hostname"]
            where = c.labels.get("org.chaoslab.hypervisor")
            crashed = where in self._crashed
            why = unaccounted_are(end, self.buffer.type)
            if why is None and not reading.complete:
                why = f"the topic was not read to its end within {self.read_timeout_secs:.0f} s"
            books = close_books(ledgers[c.name], reading.seqs.get(host, set()), reading.duplicates.get(host, 0),
                                unknown_because=why, crashed=crashed)
            if not books["books_closed"]:
                books_open.append(c.name)
            per_vm[c.name] = {**books, "hypervisor": where, "died_with_hypervisor": crashed,
                              "oom_killed": oom, "agent_end": end.summary(),
                              "peak_memory_bytes": peaks.get(c.name, {}).get("memory.usage_in_bytes"),
                              "memory_limit_bytes": cg.get("memory.limit_in_bytes"),
                              "pgmajfault": cg.get("total_pgmajfault"), "blkio_read_bytes": cg.get("blkio_read_bytes")}
            for k in totals:
                totals[k] += books[k]
        killed_by_stop = [n for n, e in ends.items() if e.running_at_stop and e.exit_code not in (0, None)]
        if killed_by_stop:
            ctx.log(f"[{ctx.variant.name}] {len(killed_by_stop)} agent(s) ended non-zero after the stop "
                    f"({', '.join(killed_by_stop[:5])}): see per_vm.agent_end")
        strangers = sorted(set(reading.seqs) - set(hosts))
        if reading.unparsed or strangers:
            ctx.log(f"[{ctx.variant.name}] topic {self._topic}: {reading.unparsed} events without a sequence number, "
                    f"events from unknown hosts {strangers}")
        self._remove(ctx)
        return {"group": self._name, "flavour": self.flavour, "count": self.count, "buffer": self.buffer.model_dump(),
                "memory_mib": self.memory_mib or FLAVOURS[self.flavour]["memory_mib"], "resident_mb": self.resident_mb,
                "rate": self.rate, "line_bytes": self.line_bytes,
                "topic": self._topic, "totals": totals, "per_vm": per_vm, "oom_killed": oom_killed,
                "books_open": books_open, "drain_secs": self.drain_secs, "stop_grace_secs": grace,
                "hypervisors": self._hypervisors, "hypervisor_crashes": self._crashed,
                "topic_messages": reading.messages, "topic_unparsed": reading.unparsed,
                "topic_read_complete": reading.complete, "topic_read_secs": reading.secs, "topic_read_error": reading.error}

    def _remove(self, ctx) -> None:
        folder = ctx.run_dir / "logs" / ctx.variant.name
        folder.mkdir(parents=True, exist_ok=True)
        for c in self._containers:
            try:
                (folder / f"{c.name}.log").write_bytes(c.logs(timestamps=True))
                c.remove(force=True)
            except Exception:
                pass

    def close(self, ctx) -> None:
        self._remove(ctx)
