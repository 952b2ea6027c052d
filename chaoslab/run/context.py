"""What a running variant shares with its steps, probes, checks and workload (RunContext), how
violations are tracked over time (Tracker), and the one result type every variant produces."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaoslab.errors import LabError
from chaoslab.wait import sleep_unless, wait_until

if TYPE_CHECKING:
    from chaoslab.lab.driver import LabDriver
    from chaoslab.run.journal import Journal
    from chaoslab.spec.experiment import Experiment, Plan, Variant


class Interrupted(Exception):
    """Ctrl-C / SIGTERM reached the run."""


class ObserverFailed(LabError):
    """The lab's own instrument failed (sampler or probe thread dead or stalled, journal not
    writable): nothing it says about the run can be trusted, so the run ends ERROR."""


@dataclass
class Tracker:
    """Per-second judgements -> the KPIs: first violation (detection), a violation longer than
    the tolerance (abort), the hypothesis holding again (resolution), and per condition the
    seconds it could judge (coverage). The hypothesis *holds* in a second only when every
    condition was judged and none was violated: an unknown second is never a held one."""
    tolerance_secs: float
    first_violation_t: float | None = None
    current_since: float | None = None
    longest_secs: float = 0.0
    violated_seconds: int = 0
    first_violations: list[dict] = field(default_factory=list)
    last_violations: list[dict] = field(default_factory=list)
    resolved_t: float | None = None
    ok_since: float | None = None
    counted_seconds: int = 0                                    # seconds whose coverage was counted
    coverage: dict[str, dict] = field(default_factory=dict)     # condition -> {judged, unknown, violated, why}
    exempt_secs: dict[str, int] = field(default_factory=dict)   # condition -> seconds a planned outage excused

    def update(self, t: float, violations: list[dict], unknown: dict[str, str] | None = None,
               judged: list[str] | None = None, count: bool = False, excused: bool = False,
               exempt: list[str] | None = None) -> bool:
        """Feed one second: the violations found, the conditions that could not be judged
        ({condition: why}), the conditions judged; `count` adds it to the coverage; `exempt`: the
        conditions a declared planned outage excuses this second (left out of their coverage; every
        other condition's coverage counts it as ever); `excused`: their violations were excused (the
        second is not violated, and not held either). True when the ongoing violation exceeds the
        tolerance."""
        unknown = unknown or {}
        if count:
            self.counted_seconds += 1
            for name in exempt or []:
                self.exempt_secs[name] = self.exempt_secs.get(name, 0) + 1
            for name in judged or []:
                self.coverage.setdefault(name, {"judged": 0, "unknown": 0, "violated": 0, "why": {}})["judged"] += 1
            for name in dict.fromkeys(v.get("condition") for v in violations if isinstance(v, dict)):
                if name:   # the seconds each condition found a violation (Condition.judge names it)
                    c = self.coverage.setdefault(name, {"judged": 0, "unknown": 0, "violated": 0, "why": {}})
                    c["violated"] = c.get("violated", 0) + 1
            for name, why in unknown.items():
                c = self.coverage.setdefault(name, {"judged": 0, "unknown": 0, "violated": 0, "why": {}})
                c["unknown"] += 1
                c["why"][why] = c["why"].get(why, 0) + 1
        if excused and not violations:
            unknown = {**unknown, "planned outage": "excused"}
        if violations or not unknown:
            self.last_violations = violations
        if violations:
            self.ok_since = None
            self.violated_seconds += 1
            if self.first_violation_t is None:
                self.first_violation_t = t
                self.first_violations = violations
            if self.current_since is None:
                self.current_since = t
                self.resolved_t = None
            self.longest_secs = max(self.longest_secs, t - self.current_since)
            return t - self.current_since > self.tolerance_secs
        if unknown:
            # not violated, but not known to hold either: an ongoing violation carries through
            # (only a second that is known to hold ends it), and nothing counts as held
            self.ok_since = None
            if self.current_since is None:
                return False
            self.longest_secs = max(self.longest_secs, t - self.current_since)
            return t - self.current_since > self.tolerance_secs
        if self.current_since is not None:
            self.resolved_t = t
        self.current_since = None
        self.ok_since = self.ok_since or t
        return False

    @property
    def exceeded(self) -> bool:
        return self.longest_secs > self.tolerance_secs

    def held_for(self, now: float) -> float:
        return now - self.ok_since if self.ok_since is not None else 0.0

    def coverage_report(self, conditions: list[str]) -> dict[str, dict]:
        """Per condition: seconds judged of the seconds counted, the share, the seconds it found
        a violation (tolerated or not), and the main reasons it could not judge the rest."""
        out = {}
        for name in conditions:
            c = self.coverage.get(name, {"judged": 0, "unknown": 0, "violated": 0, "why": {}})
            counted = self.counted_seconds - self.exempt_secs.get(name, 0)
            share = c["judged"] / counted if counted else 0.0
            why = sorted(c["why"].items(), key=lambda kv: -kv[1])
            out[name] = {"judged_secs": c["judged"], "unknown_secs": counted - c["judged"],
                         "method_secs": counted, "share": round(share, 3), "violated_secs": c.get("violated", 0),
                         "unknown_because": [f"{w} ({n} s)" for w, n in why[:3]]}
        return out


@dataclass
class VariantResult:
    """The one result type: every experiment's variants produce this."""
    name: str
    role: str
    description: str
    params: dict
    verdict: str = "ERROR"                 # PASS | FAIL | INCONCLUSIVE | ERROR | INTERRUPTED
    reasons: list[dict] = field(default_factory=list)     # Reason dicts (spec.base.Reason): kind, text, short, ...
    steps: list[dict] = field(default_factory=list)       # step-end records, in order
    aborted: bool = False
    abort_reason: str | None = None
    undone: list[dict] = field(default_factory=list)      # what the rollback undid
    rollbacks: list[dict] = field(default_factory=list)   # declared rollback steps
    checks: list[dict] = field(default_factory=list)      # final checks
    workload: dict = field(default_factory=dict)          # the workload's accounting
    probes: dict = field(default_factory=dict)            # probe summaries (peaks, totals)
    monitors: dict = field(default_factory=dict)          # what the monitors saw
    observer: dict = field(default_factory=dict)          # HTTP requests the lab itself sent, per broker
    kpis: dict = field(default_factory=dict)
    longest_violation_secs: float = 0.0
    violated_seconds: int = 0
    first_violations: list[dict] = field(default_factory=list)
    coverage: dict = field(default_factory=dict)           # per condition: method seconds judged
    notes: list[str] = field(default_factory=list)         # said beside the verdict (e.g. a limit reached)
    vocabulary: dict = field(default_factory=dict)         # the types behind it: workload, probes {key: type}, monitors {name: type}
    started: float = 0.0
    ended: float = 0.0


class RunContext:
    def __init__(self, lab: "LabDriver", journal: "Journal", run_dir: Path, experiment: "Experiment",
                 variant: "Variant", plan: "Plan", interrupted: threading.Event, log=print):
        self.lab = lab
        self.settings = lab.settings
        self.journal = journal
        self.run_dir = Path(run_dir)
        self.experiment = experiment
        self.variant = variant
        self.plan = plan
        self.log = log
        self.interrupted = interrupted
        self.workload = plan.workload
        self.probes = {p.key: p for p in plan.probes}
        self._phase = "start"
        self.running_steps: list[str] = []
        self.abort_reason: str | None = None
        self.abort_t: float | None = None
        self.abort_short: str | None = None
        self.abort_violations: list[dict] = []
        self.aborted = threading.Event()
        self.step_threads: list[threading.Thread] = []
        self.record: dict = {}      # what final checks read: the workload's accounting, probe summaries
        self.tracker = Tracker(plan.steady_state.tolerance_secs)
        self.last_sample: dict = {}
        self.started = time.time()
        self.observer_failure: str | None = None    # set once: the run ends ERROR
        self.sampler_tick: float | None = None      # monotonic time of the sampler's last second
        self.outage: dict | None = None             # a planned outage a step declared (begin_outage)

    @property
    def phase(self) -> str:
        """Where the variant is: start, lab, workload, steady, method, rollback, recovery, after,
        finish. Each change is journalled (event `phase`), so handlers see it as it happens,
        not only in the next second's sample."""
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        if value != self._phase:
            self._phase = value
            self.journal.event("phase", phase=value)

    # -- planned outages -------------------------------------------------------------------------
    def begin_outage(self, step: str, excuse: list[str]) -> None:
        """From now until end_outage, violations of the `excuse` conditions (and their unknown
        seconds) are excused: a procedure that stops every broker on purpose (a full restart)
        declares the service it expects to lose. Other conditions are judged as ever, and their
        coverage counts these seconds (one that cannot look then is unknown, never excused); the
        excused conditions' seconds are counted apart and left out of theirs."""
        self.outage = {"step": step, "excuse": set(excuse), "started": time.time(), "secs": 0,
                       "excused_secs": 0, "violations": {}}

    def end_outage(self) -> dict:
        """The planned outage's figures; the window closes."""
        out, self.outage = self.outage or {}, None
        return {"secs": out.get("secs", 0), "excused_secs": out.get("excused_secs", 0),
                "excused_conditions": dict(sorted(out.get("violations", {}).items()))}

    # -- journal -------------------------------------------------------------------------------
    def event(self, name: str, **fields) -> dict:
        return self.journal.event(name, **fields)

    # -- releases --------------------------------------------------------------------------------
    def release(self, name: str) -> str:
        """A Pulsar release number from X.Y.Z or from/to/fixed (the experiment's `versions`)."""
        return self.experiment.release(name)

    # -- stopping ----------------------------------------------------------------------------------
    SAMPLER_STALL_SECS = 15.0
    WATCHED_PHASES = ("steady", "method", "rollback", "recovery", "after")

    def check_interrupt(self) -> None:
        """Raise when the run was interrupted, or when the observer is dead or stalled."""
        if self.interrupted.is_set():
            raise Interrupted()
        failure = self.observer_problem()
        if failure:
            raise ObserverFailed(failure)

    def observer_problem(self) -> str | None:
        if self.observer_failure is None and getattr(self.journal, "failure", None):
            self.fail_observer(self.journal.failure)
        if self.observer_failure is None and self.sampler_tick is not None and self.phase in self.WATCHED_PHASES:
            quiet = time.monotonic() - self.sampler_tick
            if quiet > self.SAMPLER_STALL_SECS:
                self.fail_observer(f"the sampler has not judged a second for {quiet:.0f} s (stalled)")
        return self.observer_failure

    def fail_observer(self, reason: str) -> None:
        if self.observer_failure is None:
            self.observer_failure = f"observer failed: {reason}"
            self.abort(self.observer_failure)

    def should_stop(self) -> bool:
        """For steps' waits: give up when the run aborts or is interrupted."""
        return self.aborted.is_set() or self.interrupted.is_set() or self.observer_problem() is not None

    def abort(self, reason: str, short: str | None = None, violations: list[dict] | None = None) -> None:
        """Stop the method: the first call wins. `short` is the reason's headline, `violations`
        the Violation dicts behind it (the verdict's reasons carry both as data)."""
        if not self.aborted.is_set():
            self.abort_reason = reason
            self.abort_short = short
            self.abort_violations = list(violations or [])
            self.abort_t = time.time()
            self.aborted.set()

    def watch(self, secs: float, until_held_secs: float | None = None) -> bool:
        """Let `secs` pass while the hypothesis is checked; False if the run aborted meanwhile.
        With `until_held_secs`, stop earlier once the hypothesis has held that long since the call
        (a declared stable window instead of a fixed sleep)."""
        if until_held_secs is None:
            done = sleep_unless(secs, self.should_stop)
        else:
            since = time.time()
            wait_until(lambda: min(self.tracker.held_for(time.time()), time.time() - since) >= until_held_secs,
                       secs, interval=0.5, stop=self.should_stop)
            done = not self.should_stop()
        self.check_interrupt()
        return done and not self.aborted.is_set()

    def probe(self, key: str) -> Any:
        return self.probes.get(key)
