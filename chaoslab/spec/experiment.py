"""The experiment file, validated by pydantic before any container starts.

An experiment is data:

    name, title, seed
    versions:   {from, to, fixed}          Pulsar releases that `version: to` etc. refer to
    variants:   [{name, role: primary|control|compare, description, params: {...}}]
    lab:        {pico_vms, nano_vms, fresh: per-variant|once, scale_model, broker_config, proxy_config}
    workload:   {type: pulsar-topics | vm-agents | none, ...}
    probes:     [{type: ..., period_secs}]                   sampled into every second's sample
    monitors:   [{type: ...}]             run handlers: see every sample and event, may take evidence
    steady_state: {window_secs, hold_secs, grace_secs, tolerance_secs, abort_on_violation,
                   conditions: [{type: ..., min|max}]}
    method:     [{type: ..., id, after, delay_secs, at_secs, undo_when}]   the steps
    rollbacks:  [{type: ...}]             declared steps run after an abort (after every undo)
    after:      {secs, until_held_secs}
    checks:     [{type: ...}]             final checks
    report:     [{type: ...}]             report sections (stories) the experiment adds: incident-chain, ...

A string `$name` anywhere in lab/workload/probes/steady_state/method/rollbacks/after/checks is
the variant's parameter `name`; each variant's document is substituted and validated on its own
(`Experiment.plan`). `${VAR:-default}` in the file's text is replaced from the environment first,
so `PULSAR_TO=3.3.2 make experiment` changes the release without editing the file.

Every error is one line naming the field path (`method[1].broker: ...`); the CLI exits 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from chaoslab.errors import LabError
from chaoslab.settings import DEFAULT_PULSAR_FIXED, DEFAULT_PULSAR_FROM, DEFAULT_PULSAR_TO, RELEASE_PATTERN
from chaoslab.spec.base import NAME_RE, REGISTRY, Model, Secs, Settings, load_package

for _package in ("chaoslab.steps", "chaoslab.probes", "chaoslab.checks", "chaoslab.workload", "chaoslab.monitor",
                 "chaoslab.stories"):
    load_package(_package)


class SpecError(LabError):
    """A broken experiment file. Exit code 2, nothing started. Always one line."""

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))


# -- ${VAR:-default} -----------------------------------------------------------------------------
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """The one `${VAR}` / `${VAR:-default}` interpolator (the VM agent keeps its own copy only
    because it ships alone into the VM image)."""
    def sub(match: re.Match) -> str:
        value = env.get(match.group(1))
        if value:
            return value
        if match.group(2) is not None:
            return match.group(2)
        raise SpecError(f"environment variable {match.group(1)} is used by the file but not set")
    return _VAR.sub(sub, text)


# -- the vocabulary as discriminated unions --------------------------------------------------------
def _union(family: str):
    classes = tuple(REGISTRY[family].values())
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007


StepU = _union("step")
ProbeU = _union("probe")
ConditionU = _union("condition")
CheckU = _union("check")
WorkloadU = _union("workload")
MonitorU = _union("monitor")
StoryU = _union("story")


class ScaleModel(Model):
    """How the lab stands for production: its workload is 1/factor of production's, and so are
    the limits named in `settings`. A change to one of those settings is translated the same way
    (production value / factor) before it reaches the lab's brokers."""
    factor: Annotated[float, Field(ge=1, le=1e6)] = 1.0
    note: str = ""
    settings: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.]*$")]] = Field(
        [], description="broker settings the lab scales down by `factor` (e.g. maxConcurrentLookupRequest)")

    def to_lab(self, key: str, value: str) -> tuple[str, str | None]:
        """A production value in lab terms: (lab value, None), or (value, why it cannot be
        represented). Settings the model does not scale pass unchanged."""
        if key not in self.settings or self.factor == 1:
            return value, None
        try:
            number = float(value)
        except ValueError:
            return value, f"{key}={value} is not a number, but the lab scales {key} by 1/{self.factor:g}"
        lab = number / self.factor
        if number <= 0:
            return value, None if number == 0 else f"{key}={value}: a negative limit cannot be scaled"
        rounded = round(lab)
        if rounded < 1 or abs(rounded - lab) / lab > 0.1:
            return value, (f"{key}={value} in production is {lab:g} in the lab's terms (the lab runs 1/{self.factor:g} "
                           f"of production's load): the lab cannot represent it")
        return str(rounded), None


class LabSpec(Model):
    pulsar: bool = Field(True, description="start the Pulsar cluster (off: a RabbitMQ-only lab)")
    rabbitmq_nodes: Literal[1, 3] = Field(1, description="one RabbitMQ node, or a 3-node cluster joined "
                                                         "with a shared Erlang cookie")
    pico_vms: Annotated[int, Field(ge=0, le=200)] = 0
    nano_vms: Annotated[int, Field(ge=0, le=200)] = 0
    fresh: Literal["per-variant", "once"] = Field(
        "per-variant", description="a fresh lab for every variant, or one lab for all of them")
    scale_model: ScaleModel = ScaleModel()
    broker_config: Settings = {}
    proxy_config: Settings = {}

    def preflight(self, experiment) -> None:
        """The lab's broker settings must be the first release's own (checked before it starts)."""
        if self.pulsar and self.broker_config:
            from chaoslab.lab.broker_settings import check_broker_settings
            check_broker_settings(experiment.versions.from_, self.broker_config, resolve=False)


class SteadyState(Model):
    window_secs: Annotated[float, Field(ge=1, le=600)] = 5.0
    hold_secs: Secs = Field(20.0, description="the hypothesis must hold this long before the method")
    grace_secs: Secs = Field(90.0, description="how long it may take to establish itself")
    tolerance_secs: Secs = Field(20.0, description="violated longer than this during the method: abort")
    abort_on_violation: bool = True
    min_coverage: Annotated[float, Field(ge=0, le=1, description=(
        "share of the method's seconds each condition must have judged (holds or violated, not "
        "unknown) for a PASS; less is INCONCLUSIVE"))] = 0.95
    conditions: list[ConditionU] = []


class After(Model):
    secs: Secs = Field(30.0, description="after the method (and any rollback), watch this long")
    until_held_secs: Secs | None = Field(None, description="or stop earlier, once the hypothesis held this long")


class Plan(Model):
    """One variant's experiment, parameters substituted, fully typed."""
    lab: LabSpec = LabSpec()
    workload: WorkloadU = Field(default_factory=lambda: REGISTRY["workload"]["none"]())
    probes: list[ProbeU] = []
    monitors: list[MonitorU] = []
    steady_state: SteadyState = SteadyState()
    method: Annotated[list[StepU], Field(min_length=1)]
    rollbacks: list[StepU] = []
    after: After = After()
    checks: list[CheckU] = []

    @model_validator(mode="after")
    def _wire(self):
        # steps a variant leaves out (`enabled: $param`) are not part of its plan at all
        self.method = [s for s in self.method if s.enabled]
        self.rollbacks = [s for s in self.rollbacks if s.enabled]
        if not self.method:
            raise ValueError("method: every step is disabled in this variant")
        seen: list[str] = []
        for section, steps in (("method", self.method), ("rollbacks", self.rollbacks)):
            for i, step in enumerate(steps):
                if step.id is None:
                    step.id = f"{step.type}-{i + 1}" if section == "method" else f"rollback-{step.type}-{i + 1}"
                if step.id in seen:
                    raise ValueError(f"{section}[{i}].id: {step.id!r} is used twice")
                if step.after is not None and (section != "method" or step.after not in seen):
                    raise ValueError(f"{section}[{i}].after: {step.after!r} is not an earlier step of the method")
                seen.append(step.id)
        keys = [p.key for p in self.probes]
        if len(set(keys)) != len(keys):
            raise ValueError("probes: two probes of the same kind")
        types = {p.type for p in self.probes}
        for i, p in enumerate(self.probes):
            if p.needs_workload and self.workload.type not in p.needs_workload:
                raise ValueError(f"probes[{i}]: {p.type} needs a workload of type {' or '.join(p.needs_workload)}, "
                                 f"not {self.workload.type}")
            missing = [n for n in p.needs_probes if n not in types]
            if missing:
                raise ValueError(f"probes[{i}]: {p.type} reads the probes {', '.join(missing)}: add them")
        for i, c in enumerate(self.steady_state.conditions):
            problem = c.plan_problem(self)
            if problem:
                raise ValueError(f"steady_state.conditions[{i}]: {c.type} could never judge anything here: {problem}")
        for section, items in (("steady_state.conditions", self.steady_state.conditions), ("checks", self.checks)):
            for i, c in enumerate(items):
                missing = [n for n in c.reads if n not in types]
                if missing:
                    raise ValueError(f"{section}[{i}]: {c.type} reads the probe {', '.join(missing)}, which `probes` "
                                     f"does not declare: add {{type: {missing[0]}}} to probes, or remove the condition")
        for i, c in enumerate(self.checks):
            needs = getattr(c, "needs_workload", ())
            if needs and self.workload.type not in needs:
                raise ValueError(f"checks[{i}]: {c.type} needs a workload of type {' or '.join(needs)}")
        return self

    def steps(self) -> list:
        return [*self.method, *self.rollbacks]


class Versions(Model):
    from_: str = Field(DEFAULT_PULSAR_FROM, alias="from", pattern=RELEASE_PATTERN)
    to: str = Field(DEFAULT_PULSAR_TO, pattern=RELEASE_PATTERN)
    fixed: str = Field(DEFAULT_PULSAR_FIXED, pattern=RELEASE_PATTERN)
    model_config = {**Model.model_config, "populate_by_name": True}


class Variant(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    role: Literal["primary", "control", "compare"] = "primary"
    description: str = ""
    params: dict[str, Any] = Field({}, description="values for `$name` references in the experiment")


def services_named(step) -> list[tuple[str, str]]:
    """The lab services a step names, as (field, service) pairs: its own `services_named()`, or
    for a step with a `broker: N` field, broker-N."""
    named = getattr(step, "services_named", None)
    if callable(named):
        return list(named())
    broker = getattr(step, "broker", None)
    if isinstance(broker, int) and not isinstance(broker, bool):
        return [("broker", f"broker-{broker}")]
    return []


def _services_words(services: list[str]) -> str:
    """'zookeeper, bookie-1..2, broker-1..3, proxy, rabbitmq'"""
    out, groups = [], {}
    for s in services:
        m = re.match(r"^(bookie|broker)-(\d+)$", s)
        if m:
            if m.group(1) not in groups:
                groups[m.group(1)] = []
                out.append(m.group(1))
            groups[m.group(1)].append(int(m.group(2)))
        else:
            out.append(s)
    return ", ".join(f"{x}-{min(groups[x])}..{max(groups[x])}" if x in groups else x for x in out)


def topology_problem(plan: "Plan", doc: dict) -> str | None:
    """A step naming a service the plan's lab will not have (broker-7 of three brokers, a bookie
    the lab does not run, RabbitMQ node 3 of a one-node lab, a broker of a RabbitMQ-only lab):
    one line naming the step's field and what the lab has; None when every name exists."""
    from chaoslab.settings import LabSettings
    have = LabSettings().services(pulsar=plan.lab.pulsar, rabbitmq_nodes=plan.lab.rabbitmq_nodes)
    for section, steps in (("method", plan.method), ("rollbacks", plan.rollbacks)):
        raw = doc.get(section)
        raw = raw if isinstance(raw, list) else []
        # the plan leaves disabled steps out: name the step by its place in the file
        places = [i for i, s in enumerate(raw) if not (isinstance(s, dict) and s.get("enabled") is False)]
        for k, step in enumerate(steps):
            for field, service in services_named(step):
                if service not in have:
                    i = places[k] if k < len(places) else k
                    hint = ""
                    if service.startswith("rabbitmq"):
                        hint = f"; lab.rabbitmq_nodes is {plan.lab.rabbitmq_nodes}"
                    elif not plan.lab.pulsar:
                        hint = "; lab.pulsar is false"
                    return (f"{section}[{i}].{field}: {service} is not part of this lab (it has "
                            f"{_services_words(have)}{hint})")
    return None


SECTIONS = ("lab", "workload", "probes", "monitors", "steady_state", "method", "rollbacks", "after", "checks")
_PARAM = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


def substitute(value, params: dict, path: str, used: set):
    """Replace every string `$name` by params[name] (whole values only: a dict param can stand
    for a whole table)."""
    if isinstance(value, str):
        m = _PARAM.match(value)
        if m:
            if m.group(1) not in params:
                raise SpecError(f"{path}: ${m.group(1)} is not a parameter of this variant "
                                f"(its params: {', '.join(sorted(params)) or 'none'})")
            used.add(m.group(1))
            return params[m.group(1)]
        return value
    if isinstance(value, dict):
        return {k: substitute(v, params, f"{path}.{k}" if path else str(k), used) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, f"{path}[{i}]", used) for i, v in enumerate(value)]
    return value


class Experiment(Model):
    """The file as written. Sections stay plain data until a variant's plan is built."""
    name: str = Field(pattern=NAME_RE.pattern, description="lowercase letters, digits and dashes")
    title: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    versions: Versions = Versions()
    variants: Annotated[list[Variant], Field(min_length=1)]
    # sections: plain data (or a `$param` standing for the whole section) until a plan is built
    lab: dict | str = {}
    workload: dict | str = {}
    probes: list | str = []
    monitors: list | str = []
    steady_state: dict | str = {}
    method: list | str = []
    rollbacks: list | str = []
    after: dict | str = {}
    checks: list | str = []
    report: list[StoryU] = Field([], description="report sections this experiment adds (stories), e.g. "
                                                 "{type: incident-chain}; none by default")
    _source: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _variants(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variants: names must be unique")
        if sum(v.role == "primary" for v in self.variants) != 1:
            raise ValueError("variants: exactly one variant must have role: primary (it decides the verdict)")
        return self

    @property
    def primary(self) -> Variant:
        return next(v for v in self.variants if v.role == "primary")

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise LabError(f"unknown variant {name!r} (this experiment has {', '.join(v.name for v in self.variants)})")

    def release(self, name: str) -> str:
        return {"from": self.versions.from_, "to": self.versions.to, "fixed": self.versions.fixed}.get(name, name)

    def plan(self, variant: Variant | str) -> Plan:
        variant = self.variant(variant) if isinstance(variant, str) else variant
        used: set = set()
        doc = {}
        for section in SECTIONS:
            raw = getattr(self, section)
            if raw not in ({}, []):
                doc[section] = substitute(raw, variant.params, section, used)
        unused = set(variant.params) - used
        if unused:
            i = self.variants.index(variant)
            raise SpecError(f"variants[{i}].params: {', '.join(sorted(unused))} used nowhere in the experiment")
        where = f" (variant {variant.name})" if variant.params else ""
        try:
            plan = Plan.model_validate(doc)
        except ValidationError as exc:
            raise SpecError(describe(exc) + where) from None
        problem = topology_problem(plan, doc)
        if problem:
            raise SpecError(problem + where)
        return plan

    def releases(self) -> list[str]:
        """Every Pulsar release the experiment's variants run (for image builds and the manifest)."""
        out = [self.versions.from_]
        for v in self.variants:
            plan = self.plan(v)
            for item in [*plan.steps(), plan.workload]:
                out += [self.release(r) for r in item.pulsar_releases()]
        return list(dict.fromkeys(out))

    def document(self) -> dict:
        """The file's content as data (for the gate's own copy and replay)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=False)

    def to_yaml(self, header: str = "") -> str:
        return header + yaml.safe_dump(self.document(), sort_keys=False, width=120)


# -- errors ------------------------------------------------------------------------------------------
def _tags() -> set[str]:
    return {name for family in REGISTRY.values() for name in family}


def describe(exc: ValidationError) -> str:
    """A pydantic error as 'field.path: message' (the first one, and how many more)."""
    errors = exc.errors(include_url=False)
    tags = _tags()
    err = errors[0]

    def short(value) -> str:   # a value quoted from the file, never a page of it
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    parts = ""
    for item in err["loc"]:
        if isinstance(item, int):
            parts += f"[{item}]"
        elif item in tags or str(item).startswith(("function-", "json-or-python")):
            continue
        else:
            parts += f".{str(item)[:60]}" if parts else str(item)[:60]
    msg = err["msg"].removeprefix("Value error, ")
    ctx = err.get("ctx") or {}
    if err["type"] == "extra_forbidden":
        msg = "unknown field (`chaoslab schema` lists the known ones)"
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown type {short(ctx.get('tag'))} (known: {ctx.get('expected_tags')})"
        parts += ".type"
    elif err["type"] == "union_tag_not_found":
        msg = "`type` is required"
    elif err["type"] == "string_pattern_mismatch" and parts.endswith(("from", "to", "fixed", "version")):
        msg = f"{short(err.get('input'))} is not a Pulsar release number (X.Y.Z, or X.Y.Z-label for a supplied build)"
    elif err["type"] == "missing":
        msg = "required"
    line = f"{parts}: {msg}" if parts else msg
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return line + more


# -- reading -----------------------------------------------------------------------------------------
# Bounds on what a file may make the loader do: every hostile or broken file is refused with one
# line, fast (an alias bomb, a self-referencing alias, a 5,000-deep list, a 5,000-digit number, a
# 50 MB file). The shipped experiments are a few KiB, a few hundred values, five levels deep.
MAX_FILE_BYTES = 1 << 20        # 1 MiB, checked before reading (and again after ${VAR} substitution)
MAX_NODES = 20_000              # values in the document with every alias expanded
MAX_DEPTH = 64                  # nested mappings / lists
MAX_NUMBER_CHARS = 64           # an integer or float written with more characters than this is refused
MAX_EXTENDS = 8                 # files in an `extends:` chain, the first one included


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting while it composes: nesting depth, values with aliases
    expanded (an alias counts as everything its anchor holds), and aliases to a node that is
    still being composed (a recursive structure). Numbers are length-checked before int()."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[str, int] = {}     # anchor -> values it expands to
        self._open: set[str] = set()        # anchors of the collections being composed

    def _count(self, n: int, mark) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"the document expands to more than {MAX_NODES:,} values (aliases included)", mark)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} refers to a collection that contains it", event.start_mark)
            self._count(self._sizes.get(event.anchor, 1), event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        start = self._nodes
        self._count(1, event.start_mark)
        anchor = event.anchor
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open.discard(anchor)
            self._sizes[anchor] = self._nodes - start
        self._depth -= 1
        return node

    def _number(self, node, construct):
        if len(node.value) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number written with {len(node.value):,} characters (at most {MAX_NUMBER_CHARS})",
                node.start_mark)
        return construct(self, node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int",
                               lambda loader, node: loader._number(node, yaml.SafeLoader.construct_yaml_int))
_BoundedLoader.add_constructor("tag:yaml.org,2002:float",
                               lambda loader, node: loader._number(node, yaml.SafeLoader.construct_yaml_float))


def _one_line(text) -> str:
    return " ".join(str(text).split())


def read_text(path: str | Path, what: str = "", limit: int = MAX_FILE_BYTES) -> str:
    """A small UTF-8 text file (an experiment, an `extends:` base, a --broker-conf file): its size
    checked before it is read, its bytes decoded strictly. Every failure is one SpecError line
    starting with `what` (default: the path)."""
    path = Path(path)
    what = what or str(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise SpecError(f"{what}: {size:,} bytes; a file here may have at most {limit:,}")
            data = fh.read(limit + 1)   # a file that grows (or a pipe) is still read only this far
    except FileNotFoundError:
        raise SpecError(f"{what}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{what}: is a folder, not a file") from None
    except OSError as exc:
        raise SpecError(f"{what}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise SpecError(f"{what}: more than {limit:,} bytes; a file here may have at most {limit:,}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError(f"{what}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line})") from None


def _read_yaml(text: str) -> dict:
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(f"{len(text):,} characters; an experiment may have at most {MAX_FILE_BYTES:,}")
    try:
        raw = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"not valid YAML{where}: {_one_line(getattr(exc, 'problem', None) or exc)}") from None
    except (ValueError, RecursionError, MemoryError) as exc:   # a bound this loader does not know of
        raise SpecError(f"not a usable YAML document ({type(exc).__name__}: {_one_line(exc)[:120]})") from None
    if not isinstance(raw, dict):
        raise SpecError("the experiment file must be a YAML mapping (name:, variants:, method:, ...)")
    return raw


def _extends_chain(raw: dict, base_dir: Path, env: dict[str, str], first: str) -> dict:
    """`extends:` followed to its end: each file's sections replace those of the file it extends
    (a -> b -> c: c's sections, then b's over them, then a's). Paths are relative to the file
    that names them; a chain of more than MAX_EXTENDS files, or one that comes back to a file
    already in it, is refused."""
    chain = [first]
    seen = {first}
    layers = [raw]
    while "extends" in layers[-1]:
        target = layers[-1].pop("extends")
        if not isinstance(target, str) or not target.strip():
            raise SpecError(f"extends: must be the path of another experiment file, not {_one_line(repr(target))[:60]}")
        path = base_dir / target
        key = str(path.resolve())
        if key in seen:
            raise SpecError(f"extends: {' -> '.join([*chain, target])} comes back to a file already in the chain")
        if len(chain) >= MAX_EXTENDS:
            raise SpecError(f"extends: more than {MAX_EXTENDS} files in the chain ({' -> '.join(chain[:3])} -> ...)")
        chain.append(target)
        seen.add(key)
        text = read_text(path, f"extends: cannot read {path}")
        try:
            layers.append(_read_yaml(interpolate(text, env)))
        except SpecError as exc:
            raise SpecError(f"extends: {path}: {exc}") from None
        base_dir = path.parent
    merged: dict = {}
    for layer in reversed(layers):
        merged.update(layer)
    return merged


def parse(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None,
          name: str = "the file") -> Experiment:
    """`extends: FILE` (relative to the file) takes FILE's top-level sections (and, if FILE
    extends another, that one's too); the file's own sections replace them whole."""
    env = dict(os.environ if env is None else env)
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(f"{len(text):,} characters; an experiment may have at most {MAX_FILE_BYTES:,}")
    text = interpolate(text, env)
    raw = _read_yaml(text)
    extended = "extends" in raw
    if extended:
        raw = _extends_chain(raw, Path(base_dir or "."), env, name)
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(describe(exc)) from None
    except (ValueError, RecursionError) as exc:   # a value pydantic cannot even look at
        raise SpecError(f"not a usable experiment ({type(exc).__name__}: {_one_line(exc)[:120]})") from None
    if not exp.title:
        exp = exp.model_copy(update={"title": exp.name})
    for v in exp.variants:  # every variant's plan must be valid before anything starts
        exp.plan(v)
    exp._source = "" if extended else text   # an extending file is kept as one whole document
    return exp


def load(path: str | Path, env: dict[str, str] | None = None) -> Experiment:
    path = Path(path)
    if not path.exists():
        raise SpecError(f"no experiment file {path}")
    text = read_text(path)
    try:
        return parse(text, env, base_dir=path.parent, name=path.name)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def source(exp: Experiment) -> str:
    """The experiment's text as run: the file after interpolation, or (for one built in code,
    like the gate's) its YAML dump."""
    return getattr(exp, "_source", None) or exp.to_yaml("# written by chaoslab\n")


# -- JSON Schema for editors -------------------------------------------------------------------------
def json_schema(as_written: bool = True) -> dict:
    """The experiment file's JSON Schema. Section fields also accept a `$param` reference; with
    `as_written` (the file an editor sees), every typed scalar also a `${VAR}` interpolation."""
    class ExperimentFile(Plan):
        extends: str | None = Field(None, description="another experiment file (relative path) whose sections "
                                                      "this one takes; its own sections replace them whole")
        name: str = Field(pattern=NAME_RE.pattern)
        title: str = ""
        seed: Annotated[int, Field(ge=0)] = 0
        versions: Versions = Versions()
        variants: Annotated[list[Variant], Field(min_length=1)]
        report: list[StoryU] = Field([], description="report sections this experiment adds (stories)")

        @model_validator(mode="after")
        def _wire(self):
            return self

    schema = ExperimentFile.model_json_schema(by_alias=True)
    param = {"type": "string", "pattern": _PARAM.pattern, "description": "a variant parameter"}
    schema.setdefault("$defs", {})["ParamRef"] = param
    ref = {"$ref": "#/$defs/ParamRef"}
    keep = {"Variant", "Versions", *(cls.__name__ for cls in REGISTRY["story"].values())}
    for name, d in schema["$defs"].items():
        if name in keep or name == "ParamRef":
            continue
        for prop, sub in list((d.get("properties") or {}).items()):
            if prop != "type":
                d["properties"][prop] = {"anyOf": [sub, ref]}
    for prop in SECTIONS:
        if prop in schema["properties"]:
            schema["properties"][prop] = {"anyOf": [schema["properties"][prop], ref]}
    required = schema.pop("required", [])
    schema["required"] = ["name"]
    schema["if"] = {"not": {"required": ["extends"]}}
    schema["then"] = {"required": required}   # an extending file may leave the rest to its base
    schema["title"] = "chaoslab experiment"
    if not as_written:
        return schema
    # the loader replaces ${VAR} / ${VAR:-default} in the text before it is parsed, so any typed
    # scalar may be written as one in the file an editor sees: accept that string there too
    schema["$defs"]["Interpolation"] = {
        "type": "string", "pattern": _VAR.pattern,
        "description": "${VAR} or ${VAR:-default}: replaced from the environment before the file is read"}
    _accept_interpolation(schema, {"$ref": "#/$defs/Interpolation"})
    return schema


def _accept_interpolation(node, interp: dict, key: str | None = None) -> None:
    """Wrap every typed scalar of the schema (number, integer, boolean, a string with a pattern or
    an enum) as anyOf [itself, an interpolation]; a `type` discriminator stays literal."""
    if isinstance(node, list):
        for x in node:
            _accept_interpolation(x, interp)
        return
    if not isinstance(node, dict):
        return
    for k, v in list(node.items()):
        if k in ("properties", "$defs", "patternProperties"):
            for name, sub in list(v.items()):
                if k == "$defs" and name in ("Interpolation", "ParamRef"):
                    continue
                if isinstance(sub, dict) and _typed_scalar(sub) and not (k == "properties" and name == "type"):
                    v[name] = {"anyOf": [sub, interp]}
                else:
                    _accept_interpolation(sub, interp, name)
        elif k in ("anyOf", "oneOf", "allOf", "prefixItems"):
            node[k] = [{"anyOf": [x, interp]} if isinstance(x, dict) and _typed_scalar(x) else x for x in v]
            for x in v:
                if not _typed_scalar(x):
                    _accept_interpolation(x, interp)
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            if _typed_scalar(v):
                node[k] = {"anyOf": [v, interp]}
            else:
                _accept_interpolation(v, interp)
        elif isinstance(v, (dict, list)) and k not in ("default", "examples", "const", "enum"):
            _accept_interpolation(v, interp)


def _typed_scalar(node) -> bool:
    if not isinstance(node, dict) or "$ref" in node:
        return False
    t = node.get("type")
    if t in ("integer", "number", "boolean"):
        return True
    return "enum" in node or "const" in node or (t == "string" and "pattern" in node)
