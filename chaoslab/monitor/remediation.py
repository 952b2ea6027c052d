"""`would-be-remediator`: the platform's monitoring, modelled on the post-mortem's (incident link
10). Every `every_secs` it judges each VM from what a real monitor sees — does its agent's
metrics endpoint answer within the health check's timeout, the guest's one-minute load average
(tasks running or in D state: a VM whose pages are being read back through a throttled hypervisor
has a high load while its vCPU idles), how busy is its vCPU — and records the action the platform
would have ordered: `unreachable -> redeploy`, `high load -> upscale`. Like a real orchestrator it
leaves a VM alone for `cooldown_secs` after ordering something for it, and does not judge a VM in
its first `startup_grace_secs`. It only counts; it never acts.

The post-mortem's fixes are its parameters: `missing_data_is_unreachable: false` (a VM whose
container runs but whose agent does not answer is "missing data", not unreachable) and
`maintenance_steps` (no action while those steps run: a maintenance window during the outage).
Several of them, with different `name`s, judge the same run side by side.

Its result: actions per minute before, during and after the steps named in `fault_steps` (the
outage), and the amplification: the rate during / the rate before.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr

from chaoslab.observe.host import LoadAverage
from chaoslab.spec.base import Monitor, register
from chaoslab.text import fmt, words


@register("monitor")
class WouldBeRemediator(Monitor):
    type: Literal["would-be-remediator"] = "would-be-remediator"
    name: str = "monitoring"
    every_secs: Annotated[int, Field(ge=1, le=600)] = 10
    high_cpu: Annotated[float, Field(gt=0, le=1, description="share of one vCPU over the period: high load")] = 0.9
    high_load_per_vcpu: Annotated[float | None, Field(gt=0, description="one-minute load average per vCPU at or above which a VM is 'high load' (None: not judged)")] = 1.0
    load_window_secs: Annotated[float | None, Field(gt=0, le=900, description=(
        "the period of the load average the monitor judges, computed from the VMs' running and D-state "
        "tasks each second (None: the kernel's own one-minute load1); a shorter one is a declared time "
        "compression, for an outage compressed from hours to a minute"))] = None
    health_timeout_secs: Annotated[float, Field(gt=0, le=60, description="an agent answering slower than this did not answer")] = 1.0
    cooldown_secs: Annotated[int, Field(ge=0, le=3600, description="no new action for a VM this long after one")] = 60
    startup_grace_secs: Annotated[int, Field(ge=0, le=600, description="a VM is not judged this long after it is first seen")] = 20
    missing_data_is_unreachable: bool = True
    maintenance_steps: list[str] = Field([], description="no action while these steps run")
    fault_steps: list[str] = Field([], description="the fault the rates before/during/after are about")
    _last: dict = PrivateAttr(default_factory=dict)      # vm -> (t, cpu_usage_ns)
    _judged_at: float | None = PrivateAttr(None)
    _running: set = PrivateAttr(default_factory=set)
    _fault: dict = PrivateAttr(default_factory=dict)     # start / end time of the fault
    _actions: list = PrivateAttr(default_factory=list)
    _first_t: float | None = PrivateAttr(None)
    _seen: dict = PrivateAttr(default_factory=dict)      # vm -> first time seen
    _acted: dict = PrivateAttr(default_factory=dict)     # vm -> time of its last action
    _load: dict = PrivateAttr(default_factory=dict)      # vm -> LoadAverage over load_window_secs
    _slow_looks: int = PrivateAttr(0)                     # judgements made from a look slower than the health timeout
    _looks: int = PrivateAttr(0)
    _last_t: float | None = PrivateAttr(None)

    def on_event(self, event: dict) -> None:
        name, step = event.get("name"), event.get("step")
        if name == "step-start":
            self._running.add(step)
            if step in self.fault_steps:
                self._fault.setdefault("start", event["t"])
        elif name == "step-end":
            self._running.discard(step)
            if step in self.fault_steps:
                self._fault["end"] = event["t"]

    def on_sample(self, sample: dict) -> None:
        vms = sample.get("vms")
        if not vms or sample.get("phase") == "finish":  # the run itself stops the VMs at the end
            return
        t = sample["t"]
        for vm, v in vms.items():
            self._seen.setdefault(vm, t)
            if self.load_window_secs and v.get("tasks_running") is not None and v.get("alive", True):
                self._load.setdefault(vm, LoadAverage(self.load_window_secs)).add(
                    v["tasks_running"] + (v.get("tasks_blocked") or 0), now=t)
        if self._first_t is None:
            self._first_t = t + self.startup_grace_secs   # the rates start when the first VMs are judged
        self._last_t = t
        if self._judged_at is not None and t - self._judged_at < self.every_secs:
            return
        self._judged_at = t
        look = max((v.get("look_secs") or 0) for v in vms.values())
        self._looks += 1
        if look > self.health_timeout_secs:
            self._slow_looks += 1
        for vm, v in sorted(vms.items()):
            if t - self._seen[vm] < self.startup_grace_secs:
                self.judge(vm, v, t)   # keeps its CPU reading; a booting VM is not judged
                continue
            action = self.judge(vm, v, t)
            if action and t - self._acted.get(vm, float("-inf")) >= self.cooldown_secs:
                self._acted[vm] = t
                self._actions.append({"t": t, "vm": vm, **action})

    def judge(self, vm: str, v: dict, t: float) -> dict | None:
        """The action a monitor would order for one VM now, or None."""
        cg = v.get("cgroup") or {}
        usage = cg.get("cpu_usage_ns")
        prev = self._last.get(vm)
        self._last[vm] = (t, usage)
        cpu = None
        if prev and usage is not None and prev[1] is not None and t > prev[0]:
            cpu = (usage - prev[1]) / 1e9 / (t - prev[0])
        held = bool(self.maintenance_steps and self._running & set(self.maintenance_steps))
        if not v.get("alive", True):
            what = {"action": "redeploy", "why": "unreachable: the VM is gone"}
        elif not v.get("agent_answered", True) or (v.get("agent_answer_secs") or 0) > self.health_timeout_secs:
            if not self.missing_data_is_unreachable:
                return None  # missing data is not unreachable
            what = {"action": "redeploy", "why": "unreachable: its agent's metrics did not answer within "
                                                 f"{self.health_timeout_secs:g} s"}
        elif self.high_load_per_vcpu is not None and (load := self._load_of(vm, v)) is not None and \
                load >= self.high_load_per_vcpu * (v.get("vcpus") or 1):
            what = {"action": "upscale", "why": f"high load: {self._load_name()} {load:.2f} on {v.get('vcpus') or 1:g} vCPU"}
        elif cpu is not None and cpu >= self.high_cpu:
            what = {"action": "upscale", "why": f"high load: {cpu:.2f} of its vCPU"}
        else:
            return None
        return None if held else what

    def _load_of(self, vm: str, v: dict) -> float | None:
        if self.load_window_secs:
            avg = self._load.get(vm)
            return avg.value if avg else None
        return v.get("load1")

    def _load_name(self) -> str:
        return f"load over {self.load_window_secs:g} s" if self.load_window_secs else "load1"

    def stop(self, ctx) -> dict:
        return self.summary()

    @classmethod
    def report_blocks(cls, summaries: dict[str, dict]) -> list[tuple]:
        found = {n: m for n, m in summaries.items() if isinstance(m, dict) and "rates" in m}
        if not found:
            return []
        return [("h3", "What the monitoring would have ordered (would-be remediations)"),
                ("table", ["monitor", "rules", "actions", "why", "per minute before", "during", "after",
                           "amplification (during / before)"],
                 [[n, words(m.get("rules")), words(m.get("by_action")) or "0", words(m.get("by_why")) or "-",
                   *[fmt(((m["rates"].get(p) or {}).get("per_minute")), 2) for p in ("before", "during", "after")],
                   fmt(m.get("amplification"), 2) if m.get("amplification") is not None else (m.get("amplification_note") or "-")]
                  for n, m in sorted(found.items())]),
                *[("p", f"{n}: {m['instrument_caveat']}.") for n, m in sorted(found.items()) if m.get("instrument_caveat")]]

    def summary(self) -> dict:
        start, end = self._fault.get("start"), self._fault.get("end")
        spans = {}
        if self._first_t is not None:
            if start is None:
                spans = {"whole run": (self._first_t, self._last_t)}
            else:
                spans = {"before": (self._first_t, start), "during": (start, end or self._last_t),
                         "after": (end or self._last_t, self._last_t)}
        rates = {}
        for phase, (a, b) in spans.items():
            n = sum(1 for x in self._actions if a <= x["t"] < b or (phase in ("after", "whole run") and x["t"] == b))
            minutes = max((b - a) / 60, 1e-9)
            rates[phase] = {"actions": n, "minutes": round((b - a) / 60, 2), "per_minute": round(n / minutes, 2) if b > a else None}
        before, during, after = (((rates.get(k) or {}).get("per_minute")) for k in ("before", "during", "after"))
        amplification = round(during / before, 2) if before and during is not None else None
        if amplification is not None:
            note = None
        elif start is None:
            note = "no fault step named"
        elif before is None:
            note = "no time judged before the fault (it began within the VMs' boot grace)"
        elif during or after:
            note = f"0 before the fault, {fmt(during, 2)} per minute during, {fmt(after, 2)} after: unbounded"
        else:
            note = "0 before, during and after the fault"
        caveat = None
        if self._looks and self._slow_looks / self._looks > 0.1:
            caveat = (f"in {self._slow_looks} of {self._looks} judgements the lab's own look at every VM took longer than "
                      f"the {self.health_timeout_secs:g} s health timeout: 'unreachable' then may be the lab's slowness, "
                      "not the VM's")
        return {"name": self.name, "actions": len(self._actions), "instrument_caveat": caveat,
                "by_action": dict(Counter(x["action"] for x in self._actions)),
                "rates": rates, "amplification": amplification,
                "amplification_after": round(after / before, 2) if before and after is not None else None,
                "amplification_note": note,
                "by_why": dict(Counter(x["why"].split(":")[0] for x in self._actions)),
                "rules": {"missing_data_is_unreachable": self.missing_data_is_unreachable,
                          "maintenance_steps": self.maintenance_steps, "high_cpu": self.high_cpu,
                          "high_load_per_vcpu": self.high_load_per_vcpu, "load_window_secs": self.load_window_secs,
                          "health_timeout_secs": self.health_timeout_secs,
                          "cooldown_secs": self.cooldown_secs}}
