"""`kind: bus-outage` experiment files (experiments/vector-buffer.yaml): groups of small-VM
containers, each with its own agent buffer settings, through an outage of the bus.

    kind: bus-outage
    name, title, seed
    versions: {from}
    vm_groups: [{name, role: primary|control|compare, flavour: pico|nano, count, rate, line_bytes,
                 resident_mb, buffer: {type, max_events, max_size, when_full}}]
    outage: {target: proxy, before_secs, duration_secs, recovery_secs}
    hypothesis: {oom_kills_max, host_io_psi_some_avg10_max, lost_events_max}

Validation rules and messages as in chaoslab.experiment.spec (same helpers); the buffer table is
checked with the agent's own rules (Vector's), so a group the agent would refuse is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from chaoslab.agent.config import BufferConfig, ConfigError
from chaoslab.experiment.spec import (SpecError, Versions, _choice, _mapping, _number, _section, _str,
                                      read_common, read_document)
from chaoslab.lab.vms import FLAVOURS


@dataclass(frozen=True)
class VmGroup:
    name: str
    role: str = "compare"
    flavour: str = "pico"
    count: int = 5
    rate: float = 200.0           # events per second per VM
    line_bytes: int = 1024        # size of each generated log line
    resident_mb: int = 96         # the VM's resident application (file-backed pages kept hot)
    buffer: BufferConfig = field(default_factory=BufferConfig)


@dataclass(frozen=True)
class Outage:
    target: str = "proxy"
    before_secs: float = 20.0
    duration_secs: float = 120.0
    recovery_secs: float = 90.0


@dataclass(frozen=True)
class VmHypothesis:
    oom_kills_max: int = 0
    host_io_psi_some_avg10_max: float = 25.0
    lost_events_max: int = 0


@dataclass(frozen=True)
class OutageExperiment:
    name: str
    title: str
    seed: int
    versions: Versions
    groups: tuple
    outage: Outage
    hypothesis: VmHypothesis
    source: str = ""

    @property
    def primary(self) -> VmGroup:
        return next(g for g in self.groups if g.role == "primary")


def _buffer(value, where):
    try:
        name = where.split("[")[1].split("]")[0] if "[" in where else "sink"
        return BufferConfig.parse(name, _mapping(value, where))
    except ConfigError as exc:
        raise SpecError(f"{where}: {exc}") from None


def parse(text: str, env: dict[str, str] | None = None) -> OutageExperiment:
    text, raw = read_document(text, env, "bus-outage", {"vm_groups", "outage", "hypothesis"})
    name, title, seed, versions = read_common(raw)
    groups_raw = raw.get("vm_groups")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise SpecError("vm_groups: expected a non-empty list")
    groups = []
    for i, g in enumerate(groups_raw):
        where = f"vm_groups[{i}]"
        if not isinstance(g, dict) or "name" not in g:
            raise SpecError(f"{where}.name is required")
        g = dict(g)
        for key, (kind, lo, hi) in {"count": (int, 1, 100), "rate": (float, 0.1, 20000),
                                    "line_bytes": (int, 16, 1_000_000), "resident_mb": (int, 0, 4096)}.items():
            if key in g:
                g[key] = _number(g[key], f"{where}.{key}", kind, lo, hi)
        groups.append(_section(VmGroup, g, where, extra={
            "name": _str, "role": _choice("primary", "control", "compare"),
            "flavour": _choice(*FLAVOURS), "buffer": _buffer,
            "count": lambda v, w: v, "rate": lambda v, w: v, "line_bytes": lambda v, w: v,
            "resident_mb": lambda v, w: v}))
        flavour_mib = FLAVOURS[groups[-1].flavour]["memory_mib"]
        if groups[-1].resident_mb >= flavour_mib:
            raise SpecError(f"{where}.resident_mb: {groups[-1].resident_mb} does not fit in a {groups[-1].flavour} VM ({flavour_mib} MiB)")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise SpecError("vm_groups: names must be unique")
    if sum(g.role == "primary" for g in groups) != 1:
        raise SpecError("vm_groups: exactly one group must have role: primary (it decides the verdict)")
    if sum(g.count for g in groups) > 100:
        raise SpecError("vm_groups: at most 100 VMs in all")
    outage = _section(Outage, raw.get("outage"), "outage", extra={
        "target": _choice("proxy", "brokers"),
        "before_secs": lambda v, w: _number(v, w, float, 0, 3600),
        "duration_secs": lambda v, w: _number(v, w, float, 1, 3600),
        "recovery_secs": lambda v, w: _number(v, w, float, 1, 3600)})
    hyp = _section(VmHypothesis, raw.get("hypothesis"), "hypothesis", extra={
        "oom_kills_max": lambda v, w: _number(v, w, int, 0, 10**6),
        "host_io_psi_some_avg10_max": lambda v, w: _number(v, w, float, 0, 100),
        "lost_events_max": lambda v, w: _number(v, w, int, 0, 10**12)})
    return OutageExperiment(name=name, title=title, seed=seed, versions=versions,
                            groups=tuple(groups), outage=outage, hypothesis=hyp, source=text)


def kind_of(text: str) -> str:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return "rolling-upgrade"
    return (raw or {}).get("kind", "rolling-upgrade") if isinstance(raw, dict) else "rolling-upgrade"
