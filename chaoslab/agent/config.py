"""Vector-style TOML configuration for the agent stand-in.

Reads the subset of Vector's config the lab uses, with Vector's rules: `${VAR}` / `${VAR:-default}`
environment interpolation, `sources.<id>` / `sinks.<id>` tables with `type` and `inputs`, and the
sink buffer table whose keys and limits follow Vector's documented ones (memory: max_events;
disk: max_size; when_full: block | drop_newest). Anything Vector
would reject is rejected here with a one-line message naming the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field

MIN_DISK_BUFFER_BYTES = 268_435_488  # two 128 MiB data files + 32-byte ledger (Vector's minimum)
DEFAULT_MAX_EVENTS = 500
BUFFER_KEYS = {"type", "max_events", "max_size", "when_full"}
WHEN_FULL = {"block", "drop_newest"}
SOURCE_TYPES = {"demo_logs", "internal_metrics"}
SINK_TYPES = {"pulsar", "prometheus_exporter"}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Vector's `${VAR}` rules. A copy of chaoslab.spec.experiment.interpolate on purpose: the
    agent ships alone into the VM image (chaoslab/agent only), without the rest of chaoslab."""
    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(f"environment variable {name} is not set")
            return default
        return value
    return _VAR.sub(sub, text)


@dataclass(frozen=True)
class BufferConfig:
    type: str = "memory"
    max_events: int | None = DEFAULT_MAX_EVENTS
    max_size: int | None = None
    when_full: str = "block"

    @classmethod
    def parse(cls, sink_id: str, table: dict | None) -> "BufferConfig":
        table = dict(table or {})
        where = f"sinks.{sink_id}.buffer"
        unknown = set(table) - BUFFER_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        kind = table.get("type", "memory")
        if kind not in ("memory", "disk"):
            raise ConfigError(f"{where}.type must be 'memory' or 'disk', not {kind!r}")
        when_full = table.get("when_full", "block")
        if when_full not in WHEN_FULL:
            raise ConfigError(f"{where}.when_full must be 'block' or 'drop_newest', not {when_full!r}")
        max_events, max_size = table.get("max_events"), table.get("max_size")
        for key, value in (("max_events", max_events), ("max_size", max_size)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{where}.{key} must be a positive integer")
        if kind == "disk":
            if max_events is not None:
                raise ConfigError(f"{where}.max_events applies to memory buffers only")
            if max_size is None:
                raise ConfigError(f"{where}.max_size is required for disk buffers")
            if max_size < MIN_DISK_BUFFER_BYTES:
                raise ConfigError(f"{where}.max_size must be at least {MIN_DISK_BUFFER_BYTES} bytes for disk buffers")
        elif max_events is not None and max_size is not None:
            raise ConfigError(f"{where}: max_events and max_size cannot be set together")
        elif max_size is None and max_events is None:
            max_events = DEFAULT_MAX_EVENTS
        return cls(kind, max_events, max_size, when_full)


@dataclass(frozen=True)
class DemoLogsSource:
    id: str
    format: str = "json"
    interval: float = 1.0
    sequence: bool = False
    count: int | None = None
    lines: tuple = ()


@dataclass(frozen=True)
class PulsarSink:
    id: str
    inputs: tuple[str, ...]
    endpoint: str
    topic: str
    producer_name: str | None = None
    batch_max_events: int = 100
    compression: str = "none"
    buffer: BufferConfig = field(default_factory=BufferConfig)
    connection_max_retries: int = 12
    connection_timeout_secs: float = 10.0


@dataclass(frozen=True)
class AgentConfig:
    data_dir: str
    sources: dict[str, DemoLogsSource]
    sink: PulsarSink
    metrics_address: str | None


def _require(table: dict, key: str, where: str):
    if key not in table:
        raise ConfigError(f"{where}.{key} is required")
    return table[key]


def parse(text: str, env: dict[str, str] | None = None) -> AgentConfig:
    env = dict(os.environ if env is None else env)
    try:
        doc = tomllib.loads(interpolate(text, env))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    sources: dict[str, DemoLogsSource] = {}
    for sid, table in (doc.get("sources") or {}).items():
        kind = _require(table, "type", f"sources.{sid}")
        if kind not in SOURCE_TYPES:
            raise ConfigError(f"sources.{sid}.type {kind!r} is not supported by the stand-in ({', '.join(sorted(SOURCE_TYPES))})")
        if kind == "demo_logs":
            interval = float(table.get("interval", 1.0))
            if interval < 0:
                raise ConfigError(f"sources.{sid}.interval must be >= 0")
            fmt = table.get("format", "json")
            lines = tuple(str(x) for x in table.get("lines", ()))
            if fmt == "shuffle" and not lines:
                raise ConfigError(f"sources.{sid}.lines is required with format = \"shuffle\"")
            sources[sid] = DemoLogsSource(sid, fmt, interval, bool(table.get("sequence", False)),
                                          table.get("count"), lines)
    pulsar_sinks, metrics_address = [], None
    for sid, table in (doc.get("sinks") or {}).items():
        kind = _require(table, "type", f"sinks.{sid}")
        if kind not in SINK_TYPES:
            raise ConfigError(f"sinks.{sid}.type {kind!r} is not supported by the stand-in ({', '.join(sorted(SINK_TYPES))})")
        if kind == "prometheus_exporter":
            metrics_address = table.get("address", "0.0.0.0:9598")
            continue
        inputs = tuple(_require(table, "inputs", f"sinks.{sid}"))
        missing = [i for i in inputs if i not in sources]
        if missing:
            raise ConfigError(f"sinks.{sid}.inputs: unknown component(s) {', '.join(missing)}")
        endpoint = table.get("endpoint", table.get("address"))
        if not endpoint:
            raise ConfigError(f"sinks.{sid}.endpoint is required")
        _require(table, "encoding", f"sinks.{sid}")
        batch = table.get("batch") or {}
        retry = table.get("connection_retry_options") or {}
        pulsar_sinks.append(PulsarSink(
            id=sid, inputs=inputs, endpoint=endpoint, topic=_require(table, "topic", f"sinks.{sid}"),
            producer_name=table.get("producer_name"),
            batch_max_events=int(batch.get("max_events", 100)),
            compression=table.get("compression", "none"),
            buffer=BufferConfig.parse(sid, table.get("buffer")),
            connection_max_retries=int(retry.get("max_retries", 12)),
            connection_timeout_secs=float(retry.get("connection_timeout_secs", 10)),
        ))
    if len(pulsar_sinks) != 1:
        raise ConfigError(f"exactly one pulsar sink is supported, found {len(pulsar_sinks)}")
    return AgentConfig(doc.get("data_dir", "/var/lib/vector"), sources, pulsar_sinks[0], metrics_address)


def load(path: str, env: dict[str, str] | None = None) -> AgentConfig:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse(text, env)
