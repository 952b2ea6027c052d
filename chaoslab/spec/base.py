"""The vocabulary's base classes and its registry.

A step, probe, condition, final check or workload is a pydantic model whose `type` field (a
Literal) names it in the experiment file, and whose methods do the work. Registering it is the
decorator; the experiment schema builds its discriminated unions from the registry, so a new one
is one file in steps/, probes/, checks/ or workload/ and a line in an experiment file.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, WithJsonSchema

from chaoslab.lab.broker_settings import control_character

if TYPE_CHECKING:
    from chaoslab.run.context import RunContext
    from chaoslab.spec.planning import PlannedLab

REGISTRY: dict[str, dict[str, type]] = {"step": {}, "probe": {}, "condition": {}, "check": {}, "workload": {},
                                        "monitor": {}, "story": {}}


def register(family: str):
    def deco(cls):
        name = cls.model_fields["type"].default
        if name in REGISTRY[family]:
            raise RuntimeError(f"two {family}s are registered as {name!r}")
        REGISTRY[family][name] = cls
        return cls
    return deco


def load_package(package: str) -> None:
    """Import every module of a vocabulary package, so that each registers what it defines."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")


class Model(BaseModel):
    """Strict (no silent coercion of `true` to 1 or "3" to 3) and closed (unknown fields are errors)."""
    model_config = ConfigDict(strict=True, extra="forbid")


# -- field types shared by the vocabulary --------------------------------------------------------
def _setting_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return v


def _no_control_characters(v: str) -> str:
    where = control_character(v)
    if where:
        raise ValueError(f"a setting value must be one line of text; this one has {where}")
    return v


SettingName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.]*$")]
SettingValue = Annotated[str, BeforeValidator(_setting_value), AfterValidator(_no_control_characters),
                         WithJsonSchema({"type": ["string", "number", "boolean"]})]
Settings = dict[SettingName, SettingValue]    # broker.conf / proxy.conf key=value pairs
Secs = Annotated[float, Field(ge=0, le=86_400)]
Release = Annotated[str, Field(pattern=r"^(from|to|fixed|\d+\.\d+\.\d+(-[A-Za-z0-9][A-Za-z0-9.]*)?)$",
                               description="a Pulsar release X.Y.Z (X.Y.Z-label: a build supplied with "
                                           "PULSAR_DIST_<release>), or from/to/fixed from `versions`")]


# -- results the vocabulary produces -------------------------------------------------------------
@dataclass
class Violation:
    """One violated steady-state condition in one sample: machine-readable, not prose."""
    name: str
    value: Any
    bound: Any
    subject: str | None = None      # e.g. "broker-2"
    detail: str = ""                # evidence (e.g. which lookups failed and how)
    condition: str | None = None    # the condition type that found it (set by Condition.judge)

    def text(self) -> str:
        what = f"{self.name}[{self.subject}]" if self.subject else self.name
        value = f"{self.value:.3g}" if isinstance(self.value, float) else self.value
        return f"{what}: {value} vs bound {self.bound}" + (f" ({self.detail})" if self.detail else "")

    def plain(self) -> str:
        """For people: the subject first, the condition's name in words, the evidence after a dash."""
        def num(x):  # 1,070 and 0.909, never 1.07e+03
            if isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) >= 100:
                return f"{x:,.0f}"
            return f"{x:.3g}" if isinstance(x, float) else x
        who = f"{self.subject}: " if self.subject else ""
        return (f"{who}{self.name.replace('_', ' ')} {num(self.value)} (bound {num(self.bound)})"
                + (f" - {self.detail}" if self.detail else ""))

    def as_dict(self) -> dict:
        return asdict(self)


REASON_KINDS = ("aborted", "violated", "still-violated", "check-failed", "undo-failed", "rollback-failed",
                "first-violation", "coverage", "check-unknown", "nothing-judged", "no-steady-state",
                "lab-error", "interrupted", "note")


@dataclass
class Reason:
    """Why a variant got its verdict, as data: `kind` (one of REASON_KINDS), `text` the full
    sentence, `short` a headline for a first screen or a one-line summary, `subject` what it is
    about (a condition, check or step), `violations` the Violation dicts behind it. Nothing
    downstream parses `text`."""
    kind: str
    text: str
    short: str = ""
    subject: str | None = None
    violations: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in REASON_KINDS:
            raise ValueError(f"unknown reason kind {self.kind!r}")
        self.short = self.short or self.text

    def as_dict(self) -> dict:
        return asdict(self)


def as_reason(value) -> dict:
    """A reason from results.json as a dict; run folders written before reasons were structured
    hold plain sentences, which read as kind `note` with the sentence as both text and short."""
    if isinstance(value, Reason):
        return value.as_dict()
    if isinstance(value, dict) and "kind" in value and "text" in value:
        return {"short": value["text"], "subject": None, "violations": [], **value}
    return {"kind": "note", "text": str(value), "short": str(value), "subject": None, "violations": []}


@dataclass
class CheckResult:
    name: str
    outcome: Literal["pass", "fail", "unknown"]
    value: Any = None
    bound: Any = None
    evidence: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Change:
    """One thing a step changes, as `chaoslab plan` shows it: `service` (broker-1, proxy, a
    namespace...), `what` (release, setting, state, cpu, policy, topic, membership), `key` (the
    setting's name), `before` -> `after` as values, `source` where `before` comes from (the
    image's broker.conf, lab.broker_config, an earlier step). `lasting` False: the step puts it
    back itself before it ends (a timed outage, a slow spell)."""
    service: str
    what: str
    before: Any
    after: Any
    key: str | None = None
    source: str | None = None
    lasting: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepPlan:
    """What a step will do, from its spec alone (nothing is touched): `does` in words,
    `changes`, `undo` (what its undo puts back, in words; "" when it has none) and
    `undo_changes`, and how long it takes as the file bounds it: `secs` and `undo_secs`
    (low, high), high None when the file does not bound it."""
    does: str
    changes: list[Change] = field(default_factory=list)
    secs: tuple[float, float | None] = (0.0, None)
    undo: str = ""
    undo_changes: list[Change] = field(default_factory=list)
    undo_secs: tuple[float, float | None] = (0.0, None)


# -- the families --------------------------------------------------------------------------------
class Step(Model):
    """A fault or an operator action. `run` does it and returns what it did (journalled as
    step-end); `undo` puts back exactly what `run` changed (None: nothing to undo)."""
    type: str
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="default: <type>-<n>")
    after: str | None = Field(None, description="start when this earlier step has ended (default: the previous step)")
    delay_secs: Secs = Field(0, description="then wait this long before starting")
    at_secs: Secs | None = Field(None, description="or: start this long after the method began")
    undo_when: Literal["on-abort", "at-end", "never"] = Field(
        "on-abort", description="on-abort: undone by the rollback; at-end: undone when the method ends")
    description: str = ""
    ok_required: bool = Field(True, description="a step that does not succeed aborts the method")
    enabled: bool = Field(True, description="false: the step is left out (per variant: `enabled: $param`)")

    def run(self, ctx: "RunContext") -> dict:
        raise NotImplementedError

    def undo(self, ctx: "RunContext") -> dict | None:
        return None

    def needs(self) -> set[str]:
        """Lab driver capabilities this item needs beyond the interface's core (see
        chaoslab/lab/driver.py: e.g. "pause", "cpu-quota", "vm-groups"); refused before the lab is
        touched when the driver lacks one."""
        return set()

    def pulsar_releases(self) -> list[str]:
        """Releases (or from/to/fixed) this step needs images for."""
        return []

    def preflight(self, experiment) -> None:
        """Refuse (raise LabError) what cannot work before the lab is touched; called once the
        images are built. Default: nothing to check."""

    def band(self) -> str | None:
        """Label of the shaded band plots draw over this step's run (None: no band)."""
        return self.id

    def describe(self, lab: "PlannedLab") -> StepPlan:
        """What this step will change, as `chaoslab plan` shows it (a dry run: nothing is
        touched). `lab` is the lab as planned up to this step (chaoslab/spec/planning.py): each
        service's release and settings, and where they come from. Every step type says it
        (tests/unit/test_plan.py fails for one that does not)."""
        raise NotImplementedError(f"step type {self.type!r} has no describe(): chaoslab plan cannot say what it does")

    # -- presentation (the report reads a run folder: class methods, no instance) --
    @classmethod
    def changed(cls, result: dict) -> str:
        """What this step changed, in words, from its step-end result (the report's Steps
        table); "" (the default): the table shows the result's fields as they are."""
        return ""


class Probe(Model):
    """Sampled every `period_secs` in its own thread; never fatal. `latest()` is what goes into
    each second's sample under `key`."""
    type: str
    period_secs: Annotated[float, Field(ge=0.5, le=600)] = 1.0
    key: ClassVar[str] = ""
    figures: ClassVar[type[BaseModel] | None] = None   # the model of what it writes under `key`
    needs_workload: ClassVar[tuple[str, ...]] = ()
    needs_probes: ClassVar[tuple[str, ...]] = ()     # probe types this one reads
    _latest: dict = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _stop: Any = PrivateAttr(default_factory=threading.Event)
    _threads: list = PrivateAttr(default_factory=list)
    _answered: dict = PrivateAttr(default_factory=dict)   # loop function -> when it last completed

    def collect(self, ctx: "RunContext") -> dict:
        raise NotImplementedError

    @classmethod
    def panels(cls) -> list["Panel"]:
        """The plot panels this probe's figures make (the report draws them)."""
        return []

    def start(self, ctx: "RunContext") -> None:
        self.loop(ctx, self.collect, self.period_secs)

    def loop(self, ctx: "RunContext", fn, period: float, *args) -> None:
        def body():
            while not self._stop.is_set():
                started = _now()
                try:
                    out = fn(ctx, *args)
                    if out is not None:
                        self.update(out)
                    self._answered[(getattr(fn, "__name__", "collect"), *args)] = _now()
                except Exception as exc:  # a probe must never take the run down
                    self.update({"probe_error": f"{type(exc).__name__}: {exc}"[:200]})
                self._stop.wait(max(0.0, period - (_now() - started)))
        t = threading.Thread(target=body, daemon=True, name=f"probe-{self.type}")
        t.start()
        self._threads.append(t)

    def update(self, values: dict, under: str | None = None) -> None:
        """Merge values into the latest figures (into latest[under] when given)."""
        with self._lock:
            target = self._latest.setdefault(under, {}) if under else self._latest
            target.update(values)

    def latest(self) -> dict:
        with self._lock:
            return _copy(self._latest)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def dead_threads(self) -> list[str]:
        """Threads of this probe that ended while it was not told to stop (a dead observer)."""
        if self._stop.is_set():
            return []
        return [t.name for t in self._threads if not t.is_alive()]

    def staleness(self) -> float | None:
        """Seconds since any of this probe's loops last completed a collection (None: never
        yet). Older than max_staleness(), its figures say nothing about the current second
        (conditions reading it are unknown); which parts are missing, each condition judges."""
        with self._lock:
            if not self._answered:
                return None
            return _now() - max(self._answered.values())

    def max_staleness(self) -> float:
        return 2 * self.period_secs + 5.0

    def summary(self) -> dict:
        """Figures over the whole variant (peaks, totals) for the result; default none."""
        return {}

    # -- presentation: what the report, the console, the gate and `status` say about this
    # probe's figures. Class methods: a report is rebuilt from a run folder, with no instance. --
    @classmethod
    def report_blocks(cls, summary: dict, samples: list[dict], events: list[dict], variant: dict,
                      run_dir: Path) -> list[tuple]:
        """Report blocks (chaoslab/report/blocks.py) in the variant's detail: `summary` is what
        summary() returned (results.json), `samples` the variant's journal samples (this
        probe's figures under `cls.key`), `variant` its results.json entry."""
        return []

    @classmethod
    def why(cls, summary: dict) -> list[str]:
        """Lines for the report's first screen ("Why") and the gate's printout, from summary()."""
        return []

    @classmethod
    def notes(cls, summary: dict) -> list[str]:
        """Notes said beside the verdict even when the hypothesis held (a limit reached)."""
        return []

    @classmethod
    def status(cls, figures: dict) -> str:
        """A short console fragment from this probe's latest figures (one sample's value under
        `key`); "" says nothing."""
        return ""

    # keys of probes whose console fragment this probe's replaces (it says the same, better)
    status_replaces: ClassVar[tuple[str, ...]] = ()


class Unknown(Exception):
    """Raised by a condition that cannot judge this sample (its data is missing or incomplete)."""


@dataclass
class Judgement:
    """One condition, one second: holds, violated or unknown (unknown outranks holds)."""
    condition: str
    outcome: Literal["holds", "violated", "unknown"]
    violations: list[Violation] = field(default_factory=list)
    why: str = ""           # for unknown: what was missing
    # what the condition compared this second (for live metrics, never for the verdict): the
    # figure (None when it has no single number) and the condition's own bound
    value: float | None = None
    bound: float | None = None


class Condition(Model):
    """A steady-state condition: one sample in, violations out (a pure function).

    `reads` names the probe types whose figures it judges: a plan whose probes do not include
    them is refused, and a second in which one of them has no fresh figures is *unknown* for
    this condition, never *holds*. `violations` raises Unknown when the figures it needs are
    absent from an otherwise fresh sample."""
    type: str
    reads: ClassVar[tuple[str, ...]] = ()

    def violations(self, sample: dict) -> list[Violation]:
        raise NotImplementedError

    def plan_problem(self, plan) -> str | None:
        """Why this condition could never judge anything in `plan` (a probe configured so that
        its signal is not observed, a workload that does not produce it); None when it can."""
        return None

    @staticmethod
    def figures(sample: dict, probe_type: str):
        """The probe's figures in this sample as its typed model; Unknown when it has none or
        they do not have the model's shape."""
        from pydantic import ValidationError
        cls = REGISTRY["probe"].get(probe_type)
        raw = sample.get(probe_key(probe_type))
        if not raw:
            raise Unknown(f"{probe_type}: no figures")
        model = getattr(cls, "figures", None)
        if model is None:
            return raw
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise Unknown(f"{probe_type}: figures of an unexpected shape ({exc.errors()[0]['loc']})") from None

    def reading(self, sample: dict) -> float | None:
        """The figure this condition holds to its bound in this sample (the worst subject's when
        it judges several); None when it has no single figure. For the live metrics only: it
        never decides anything, and one that raises reads as None."""
        return None

    def bound(self) -> float | None:
        """The bound this condition holds its figure to: its `max` or its `min`."""
        for name in ("max", "min"):
            value = getattr(self, name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None

    def _value(self, sample: dict, found: list[Violation], bound: float | None) -> float | None:
        """The figure of a judged second: the condition's reading; without one, the worst
        violation that compares a number with the condition's own bound (the highest against a
        `max`, the lowest against a `min`)."""
        try:
            value = self.reading(sample)
        except Exception:   # Unknown or a bug: the second was judged all the same
            value = None
        if _number(value):
            return float(value)
        numbers = [float(v.value) for v in found if _number(v.value) and _number(v.bound) and float(v.bound) == bound]
        if not numbers:
            return None
        return max(numbers) if _number(getattr(self, "max", None)) else min(numbers)

    def judge(self, sample: dict) -> Judgement:
        stale = sample.get("stale") or {}
        bound = self.bound()
        for probe_type in self.reads:
            key = probe_key(probe_type)
            if key in stale:
                return Judgement(self.type, "unknown", why=f"{probe_type}: {stale[key]}", bound=bound)
            if not sample.get(key):
                return Judgement(self.type, "unknown", why=f"{probe_type}: no figures yet", bound=bound)
        try:
            found = self.violations(sample)
        except Unknown as exc:
            return Judgement(self.type, "unknown", why=str(exc)[:200], bound=bound)
        except Exception as exc:  # a broken condition cannot judge: unknown, with the error
            return Judgement(self.type, "unknown", why=f"the condition failed: {type(exc).__name__}: {exc}"[:200],
                             bound=bound)
        for v in found:
            v.condition = v.condition or self.type
        return Judgement(self.type, "violated" if found else "holds", found, value=self._value(sample, found, bound),
                         bound=bound)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x   # not NaN


def probe_key(probe_type: str) -> str:
    """The sample key a probe type writes under."""
    cls = REGISTRY["probe"].get(probe_type)
    return getattr(cls, "key", probe_type) if cls else probe_type


class FinalCheck(Model):
    """Judged once at the end of a variant, from what was recorded (and, for checks that say
    so, one last look at the lab). `reads` names the probe types it needs (checked by the plan);
    a check that found nothing to judge says unknown, never pass."""
    type: str
    reads: ClassVar[tuple[str, ...]] = ()

    def check(self, ctx: "RunContext") -> CheckResult:
        raise NotImplementedError


class Monitor(Model):
    """A run handler declared in the experiment: it receives every sample and event of a variant
    (after `start`) and may act on them — take evidence, count would-be remediations. A monitor
    that raises is journalled once and never stops the run."""
    type: str

    def start(self, ctx: "RunContext") -> None:
        pass

    def on_sample(self, sample: dict) -> None:
        pass

    def on_event(self, event: dict) -> None:
        pass

    def stop(self, ctx: "RunContext") -> dict:
        """What it saw, for the result."""
        return {}

    @classmethod
    def report_blocks(cls, summaries: dict[str, dict]) -> list[tuple]:
        """Report blocks for every monitor of this type in a variant: {name: what stop() returned}."""
        return []


class Workload(Model):
    """What the clients do during a variant: started before the steady state, stopped after the
    after-phase; `stop` returns its accounting for the result."""
    type: str

    def start(self, ctx: "RunContext") -> None:
        pass

    def stop(self, ctx: "RunContext") -> dict:
        return {}

    def close(self, ctx: "RunContext") -> None:
        """Release everything quickly (the run was interrupted or the lab failed)."""

    def needs(self) -> set[str]:
        """Lab driver capabilities this item needs beyond the interface's core (see
        chaoslab/lab/driver.py: e.g. "pause", "cpu-quota", "vm-groups"); refused before the lab is
        touched when the driver lacks one."""
        return set()

    def pulsar_releases(self) -> list[str]:
        return []

    @classmethod
    def report_blocks(cls, summary: dict) -> list[tuple]:
        """Report blocks for the variant's detail from what stop() returned (its accounting)."""
        return []


class Story(Model):
    """A report section an experiment declares (`report: [{type: ...}]`): it reads the run folder
    (RunView) and says what it found. It renders only when the experiment names it."""
    type: str

    def why(self, run: "RunView") -> list[str]:
        """Lines for the report's first screen ("Why")."""
        return []

    def blocks(self, run: "RunView") -> list[tuple]:
        """Its section: report blocks after the key times."""
        return []


@dataclass
class RunView:
    """A run folder as a story reads it: results.json's variants, the journal's records."""
    run_dir: Path
    results: dict
    records: list[dict]

    @property
    def variants(self) -> list[dict]:
        return self.results.get("variants") or []

    def samples(self, variant: str) -> list[dict]:
        return [r for r in self.records if r.get("type") == "sample" and r.get("variant") == variant]

    def events(self, variant: str) -> list[dict]:
        return [r for r in self.records if r.get("type") == "event" and r.get("variant") == variant]

    def event(self, name: str) -> dict:
        """The run's first event of this name ({} when none)."""
        return next((r for r in self.records if r.get("name") == name), {})


def probe_class(key: str) -> type | None:
    """The registered probe class that writes under `key` (a sample's or a summary's key)."""
    return next((cls for cls in REGISTRY["probe"].values() if getattr(cls, "key", None) == key), None)


def _each_probe(probes_summary: dict, hook: str) -> list[str]:
    """One presentation hook (notes, why) of every probe class behind a variant's summaries
    ({key: summary()}, as in results.json), in order."""
    out = []
    for key, summary in (probes_summary or {}).items():
        cls = probe_class(key)
        if cls is not None and isinstance(summary, dict):
            out += getattr(cls, hook)(summary)
    return out


def probe_notes(probes_summary: dict) -> list[str]:
    """The notes beside a verdict: each probe class's notes()."""
    return _each_probe(probes_summary, "notes")


def probe_why(probes_summary: dict) -> list[str]:
    """The first-screen lines of a variant's probes: each probe class's why()."""
    return _each_probe(probes_summary, "why")


def probe_status(sample: dict) -> str:
    """The console's health fragment of one sample: each probe's status(), those another
    probe's fragment replaces left out; "-" when none says anything."""
    present = [(key, cls) for key in sample if (cls := probe_class(key)) is not None and sample.get(key)]
    replaced = {k for _, cls in present for k in cls.status_replaces if k in sample}
    parts = [cls.status(sample[key]) for key, cls in present if key not in replaced]
    return "  ".join(p for p in parts if p) or "-"


@dataclass
class StatusView:
    """One role's part of `chaoslab status` (brokers, a RabbitMQ cluster, VMs...): a table
    (title, columns, rows) and/or lines; `healthy` False makes the command exit 1 (None: this
    part says nothing about health)."""
    title: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    healthy: bool | None = None


STATUS_VIEWS: dict[str, Any] = {}   # role (a key of the lab's status) -> fn(part) -> StatusView


def status_view(role: str):
    """Register how one role of the lab's status reads for people (the lab or probe layer that
    knows that role does it; the CLI only renders what it gets)."""
    def deco(fn):
        STATUS_VIEWS[role] = fn
        return fn
    return deco


def _now() -> float:
    import time
    return time.monotonic()


def _copy(value):
    import copy
    return copy.deepcopy(value)


NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass
class Panel:
    """One plot panel a probe declares: `series(samples)` -> {label: [value per sample]}, read
    from the journal's samples (so a report can be rebuilt from a run folder alone)."""
    title: str
    ylabel: str
    series: Any
    ylim: tuple | None = None


def rate(values: list) -> list:
    """Per-second rate of a counter sampled once a second (None where unknown or reset)."""
    out = [None]
    for a, b in zip(values, values[1:]):
        out.append(None if a is None or b is None or b < a else b - a)
    return out
