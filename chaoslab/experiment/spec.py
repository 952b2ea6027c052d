"""Experiment files: YAML, validated before any container starts.

Every problem is reported as one line naming the field (`hypothesis.publish_p99_ms_max: expected
a number, got 'fast'`), and the CLI exits 2. `${VAR:-default}` in the file is replaced from the
environment first, so `PULSAR_TO=3.3.2 make experiment` changes the version without editing it.

Shape (see experiments/transfer-shedder.yaml for a commented example):

    name, title, seed
    versions: {from, to, fixed}                     # Pulsar releases (X.Y.Z)
    lab: {pico_vms, nano_vms, scale_model: {factor, note}, broker_config: {}, proxy_config: {}}
    workload: {tenants, topics_per_tenant, partitioned_every, rate, payload_bytes,
               lookup_clients, lookup_topics, lookup_reconnect_secs}
    hypothesis: {window_secs, tolerance_secs, publish_success_rate_min, publish_p99_ms_max,
                 backlog_max, unowned_topics_max, pending_lookups_max, too_many_requests_max,
                 lookup_success_rate_min}
    phases: {steady_secs, settle_secs, after_secs}
    method: {type: rolling_upgrade, brokers, wait_for: shallow|functional, wait_timeout_secs}
    rollback: {revert: {key: value}, rollback_version: bool, wait_timeout_secs, recovery: bool,
               recovery_delete_topics: [...]}
    variants: [{name, role: primary|control|compare, to: from|to|fixed|X.Y.Z, broker_config: {}, description}]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from chaoslab.errors import LabError
from chaoslab.settings import DEFAULT_PULSAR_FIXED, DEFAULT_PULSAR_FROM, DEFAULT_PULSAR_TO, VERSION_RE


class SpecError(LabError):
    """A broken experiment file. Exit code 2, nothing started."""


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(match: re.Match) -> str:
        value = env.get(match.group(1))
        if value:
            return value
        if match.group(2) is not None:
            return match.group(2)
        raise SpecError(f"environment variable {match.group(1)} is used by the file but not set")
    return _VAR.sub(sub, text)


# -- sections ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Versions:
    from_: str = DEFAULT_PULSAR_FROM
    to: str = DEFAULT_PULSAR_TO
    fixed: str = DEFAULT_PULSAR_FIXED


@dataclass(frozen=True)
class ScaleModel:
    factor: float = 1.0
    note: str = ""


@dataclass(frozen=True)
class LabSection:
    pico_vms: int = 0
    nano_vms: int = 0
    scale_model: ScaleModel = field(default_factory=ScaleModel)
    broker_config: dict = field(default_factory=dict)
    proxy_config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    tenants: int = 10
    topics_per_tenant: int = 10
    partitioned_every: int = 5
    rate: float = 200.0
    payload_bytes: int = 200
    lookup_clients: int = 2
    lookup_topics: int = 200
    lookup_reconnect_secs: float = 5.0


@dataclass(frozen=True)
class Hypothesis:
    window_secs: float = 5.0
    tolerance_secs: float = 20.0
    publish_success_rate_min: float = 0.99
    publish_p99_ms_max: float = 2000.0
    backlog_max: int = 5000
    unowned_topics_max: int = 0
    pending_lookups_max: float = 40
    too_many_requests_max: int = 0
    lookup_success_rate_min: float = 0.9


@dataclass(frozen=True)
class Phases:
    steady_secs: float = 20.0
    settle_secs: float = 20.0
    after_secs: float = 30.0


@dataclass(frozen=True)
class Method:
    type: str = "rolling_upgrade"
    brokers: tuple = (1, 2, 3)
    wait_for: str = "shallow"
    wait_timeout_secs: float = 180.0


@dataclass(frozen=True)
class Rollback:
    revert: dict = field(default_factory=dict)
    rollback_version: bool = False
    wait_timeout_secs: float = 120.0
    recovery: bool = True
    recovery_delete_topics: tuple = ()


@dataclass(frozen=True)
class Variant:
    name: str
    role: str = "primary"
    to: str = "to"
    broker_config: dict = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    seed: int
    versions: Versions
    lab: LabSection
    workload: Workload
    hypothesis: Hypothesis
    phases: Phases
    method: Method
    rollback: Rollback
    variants: tuple
    source: str = ""  # the file's text as run (after interpolation)

    def version_of(self, variant: Variant) -> str:
        return {"from": self.versions.from_, "to": self.versions.to, "fixed": self.versions.fixed}.get(
            variant.to, variant.to)

    @property
    def primary(self) -> Variant:
        return next(v for v in self.variants if v.role == "primary")


# -- validation --------------------------------------------------------------------------------
def _number(value, where: str, kind=float, minimum=None, maximum=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise SpecError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(f"{where}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SpecError(f"{where}: must be <= {maximum}, got {value}")
    return kind(value)


LIMITS = {  # field -> (kind, min, max): absurd values are refused, not run
    "lab.pico_vms": (int, 0, 200), "lab.nano_vms": (int, 0, 200),
    "lab.scale_model.factor": (float, 1, 1e6),
    "workload.tenants": (int, 1, 1000), "workload.topics_per_tenant": (int, 1, 1000),
    "workload.partitioned_every": (int, 0, 1000), "workload.rate": (float, 1, 100_000),
    "workload.payload_bytes": (int, 80, 1_000_000), "workload.lookup_clients": (int, 0, 50),
    "workload.lookup_topics": (int, 1, 100_000), "workload.lookup_reconnect_secs": (float, 0.5, 3600),
    "hypothesis.window_secs": (float, 1, 600), "hypothesis.tolerance_secs": (float, 0, 3600),
    "hypothesis.publish_success_rate_min": (float, 0, 1), "hypothesis.publish_p99_ms_max": (float, 1, 600_000),
    "hypothesis.backlog_max": (int, 0, 10**9), "hypothesis.unowned_topics_max": (int, 0, 10**6),
    "hypothesis.pending_lookups_max": (float, 0, 10**7), "hypothesis.too_many_requests_max": (int, 0, 10**9),
    "hypothesis.lookup_success_rate_min": (float, 0, 1),
    "phases.steady_secs": (float, 0, 3600), "phases.settle_secs": (float, 0, 3600),
    "phases.after_secs": (float, 0, 3600), "method.wait_timeout_secs": (float, 5, 3600),
    "rollback.wait_timeout_secs": (float, 5, 3600),
}


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _config_map(value, where: str) -> dict:
    out = {}
    for key, val in _mapping(value, where).items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_.]*$", key):
            raise SpecError(f"{where}: {key!r} is not a Pulsar setting name")
        if isinstance(val, (dict, list)) or val is None:
            raise SpecError(f"{where}.{key}: expected a scalar value")
        out[key] = str(val).lower() if isinstance(val, bool) else str(val)
    return out


def _section(cls, raw, where: str, nested: dict | None = None, extra=None):
    raw = dict(_mapping(raw, where))
    known = {f.name.rstrip("_"): f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(known: {', '.join(sorted(known))})")
    kwargs = {}
    for key, value in raw.items():
        f = known[key]
        path = f"{where}.{key}"
        if nested and key in nested:
            kwargs[f.name] = nested[key](value, path)
        elif path in LIMITS:
            kind, lo, hi = LIMITS[path]
            kwargs[f.name] = _number(value, path, kind, lo, hi)
        elif extra and key in extra:
            kwargs[f.name] = extra[key](value, path)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


def _version(value, where: str) -> str:
    value = str(value)
    if not VERSION_RE.match(value):
        raise SpecError(f"{where}: '{value}' is not a Pulsar release number (X.Y.Z)")
    return value


def _str(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: expected a non-empty string")
    return value


def _choice(*options):
    def check(value, where):
        if value not in options:
            raise SpecError(f"{where}: must be one of {', '.join(options)}, got {value!r}")
        return value
    return check


def _brokers(value, where):
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: expected a non-empty list of broker numbers")
    for n in value:
        _number(n, where, int, 1, 3)
    if len(set(value)) != len(value):
        raise SpecError(f"{where}: a broker is listed twice")
    return tuple(value)


def _bool(value, where):
    if not isinstance(value, bool):
        raise SpecError(f"{where}: expected true or false, got {value!r}")
    return value


def _topics(value, where):
    if not isinstance(value, list) or not all(isinstance(t, str) and "://" in t for t in value):
        raise SpecError(f"{where}: expected a list of topic names like non-persistent://pulsar/system/x")
    return tuple(value)


def read_document(text: str, env: dict[str, str] | None, kind: str, allowed: set[str]) -> tuple[str, dict]:
    """Interpolate, parse YAML, check the top level: what every kind of experiment file shares.
    Returns (the text as run, the mapping)."""
    text = interpolate(text, dict(os.environ if env is None else env))
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise SpecError("the experiment file must be a YAML mapping (name:, method:, ...)")
    if raw.get("kind", "rolling-upgrade") != kind:
        raise SpecError(f"kind: must be rolling-upgrade or bus-outage, got {raw.get('kind')!r}")
    allowed = allowed | {"kind", "name", "title", "seed", "versions"}
    unknown = set(raw) - allowed
    if unknown:
        raise SpecError(f"unknown top-level field(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(known: {', '.join(sorted(allowed))})")
    name = _str(raw.get("name"), "name")
    if not re.match(r"^[a-z0-9][a-z0-9-]*$", name):
        raise SpecError("name: use lowercase letters, digits and dashes")
    return text, raw


def read_common(raw: dict) -> tuple[str, str, int, Versions]:
    """name, title, seed, versions: the fields every kind has."""
    versions = _section(Versions, raw.get("versions"), "versions",
                        extra={"from": _version, "to": _version, "fixed": _version})
    return raw["name"], str(raw.get("title", raw["name"])), _number(raw.get("seed", 0), "seed", int, 0), versions


def parse(text: str, env: dict[str, str] | None = None) -> Experiment:
    text, raw = read_document(text, env, "rolling-upgrade", {"lab", "workload", "hypothesis", "phases",
                                                             "method", "rollback", "variants"})
    name, title, seed, versions = read_common(raw)
    lab = _section(LabSection, raw.get("lab"), "lab", nested={
        "scale_model": lambda v, w: _section(ScaleModel, v, w),
        "broker_config": _config_map, "proxy_config": _config_map})
    method = _section(Method, raw.get("method"), "method", extra={
        "type": _choice("rolling_upgrade"), "brokers": _brokers, "wait_for": _choice("shallow", "functional")})
    rollback = _section(Rollback, raw.get("rollback"), "rollback", extra={
        "revert": _config_map, "rollback_version": _bool, "recovery": _bool,
        "recovery_delete_topics": _topics})
    raw_variants = raw.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise SpecError("variants: expected a non-empty list (each with name, role, to, broker_config)")
    variants = []
    for i, v in enumerate(raw_variants):
        if not isinstance(v, dict) or "name" not in v:
            raise SpecError(f"variants[{i}].name is required")
        variant = _section(Variant, v, f"variants[{i}]", extra={
            "name": _str, "role": _choice("primary", "control", "compare"),
            "broker_config": _config_map, "description": lambda x, w: str(x)})
        if variant.to not in ("from", "to", "fixed"):
            _version(variant.to, f"variants[{i}].to")
        variants.append(variant)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SpecError("variants: names must be unique")
    if sum(v.role == "primary" for v in variants) != 1:
        raise SpecError("variants: exactly one variant must have role: primary (it decides the verdict)")
    return Experiment(
        name=name, title=title, seed=seed, versions=versions, lab=lab,
        workload=_section(Workload, raw.get("workload"), "workload"),
        hypothesis=_section(Hypothesis, raw.get("hypothesis"), "hypothesis"),
        phases=_section(Phases, raw.get("phases"), "phases"), method=method, rollback=rollback,
        variants=tuple(variants), source=text,
    )


def load(path: str | Path, env: dict[str, str] | None = None) -> Experiment:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no experiment file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None
    try:
        from chaoslab.experiment import bus_outage_spec
        if bus_outage_spec.kind_of(text) == "bus-outage":
            return bus_outage_spec.parse(text, env)
        return parse(text, env)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
