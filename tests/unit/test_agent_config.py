"""The TOML the lab writes for a VM group, checked by the agent that runs it.

The agent (agent/, Rust) is the one parser of its config: `chaoslab-agent check-config --config
FILE` reads FILE and the environment as the agent would at start and prints what it read (one
JSON line), or exits 78 with the one-line error the agent would stop with. The spec's `buffer`
rules (chaoslab/workload/vm_agents.py) only reject a bad spec early; they are held to the agent's
here. The agent is built with cargo (debug) into build/agent-target; without cargo these skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from chaoslab.settings import BUILD_DIR, REPO_ROOT
from chaoslab.spec.experiment import load
from chaoslab.workload.vm_agents import Buffer, VmAgents, agent_toml

TOPIC = "persistent://public/default/x"


@pytest.fixture(scope="module")
def agent_bin() -> Path:
    cargo = shutil.which("cargo") or next(
        (str(p) for p in [Path.home() / ".cargo" / "bin" / "cargo"] if p.exists()), None)
    if cargo is None:
        pytest.skip("cargo is not installed: the agent (agent/) cannot be built to check its config")
    target = BUILD_DIR / "agent-target"
    proc = subprocess.run([cargo, "build", "--locked", "--quiet", "--manifest-path", str(REPO_ROOT / "agent" / "Cargo.toml"),
                           "--target-dir", str(target)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"cargo build of the agent failed:\n{proc.stderr[-3000:]}"
    return target / "debug" / "chaoslab-agent"


def check_config(agent_bin: Path, tmp_path: Path, text: str, env: dict[str, str] | None = None):
    """(exit code, what it read or None, stderr)."""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    proc = subprocess.run([str(agent_bin), "check-config", "--config", str(path)], capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ.get("PATH", ""), **(env or {})})
    read = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, read, proc.stderr.strip()


def vm_groups():
    """(experiment file, variant, VM group) for every vm-agents workload the shipped experiments run."""
    out = []
    for path in sorted((REPO_ROOT / "experiments").glob("*.yaml")):
        exp = load(path, env={})
        for v in exp.variants:
            workload = exp.plan(v).workload
            if isinstance(workload, VmAgents):
                out.append((path.name, v.name, workload))
    return out


def test_generated_agent_config_is_valid_for_the_agent(agent_bin, tmp_path):
    groups = vm_groups()
    assert {name for name, _, _ in groups} >= {"vector-buffer.yaml", "vector-buffer-fleet.yaml"}
    for name, variant, group in groups:
        code, read, err = check_config(agent_bin, tmp_path, agent_toml(group, variant, TOPIC),
                                       {"AGENT_DRAIN_SECS": str(group.drain_secs)})
        assert code == 0, f"{name} variant {variant}: the agent refuses the lab's config: {err}"
        assert read["sink"]["buffer"] == group.buffer.effective(), (name, variant)
        assert read["sink"]["topic"] == TOPIC and read["sink"]["inputs"] == ["app_logs"]
        assert read["sink"]["batch"] == {"max_events": 100, "timeout_secs": 1.0}
        app = read["sources"]["app_logs"]
        assert app["format"] == "shuffle" and app["sequence"] is True
        assert app["interval"] == pytest.approx(1.0 / group.rate, rel=1e-3)
        assert read["metrics_address"] == "0.0.0.0:9598"
        assert read["drain_secs"] == group.drain_secs


def test_the_agent_refuses_a_broken_config_with_the_key(agent_bin, tmp_path):
    good = agent_toml(VmAgents(), "g", TOPIC)
    assert check_config(agent_bin, tmp_path, good)[0] == 0
    code, read, err = check_config(agent_bin, tmp_path, good.replace('when_full = "block"', 'when_full = "overflow"'))
    assert (code, read) == (78, None)
    assert err == ("chaoslab-agent: configuration error: sinks.bus.buffer.when_full must be 'block' or "
                   "'drop_newest', not 'overflow'")
    code, _, err = check_config(agent_bin, tmp_path, good.replace(f'topic = "{TOPIC}"', 'topic = "${NOPE}"'))
    assert code == 78 and err.endswith("environment variable NOPE is not set")
    code, _, err = check_config(agent_bin, tmp_path, good, {"AGENT_DRAIN_SECS": "soon"})
    assert code == 78 and "AGENT_DRAIN_SECS" in err


def test_the_lab_image_config_is_valid_for_the_agent(agent_bin):
    proc = subprocess.run([str(agent_bin), "check-config", "--config", str(REPO_ROOT / "compose/vector/vector.toml")],
                          capture_output=True, text=True, timeout=30, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    read = json.loads(proc.stdout)
    assert read["sink"]["topic"] == "persistent://public/default/vm-telemetry"
    assert read["metrics_address"] == "0.0.0.0:9598"


BUFFERS = [
    ({}, None),
    ({"max_events": 10, "when_full": "drop_newest"}, None),
    ({"max_size": 1000}, None),
    ({"type": "disk", "max_size": 268_435_488}, None),
    ({"type": "disk", "max_size": 300_000_000, "when_full": "drop_newest"}, None),
    ({"foo": 1}, "unknown key(s) foo"),
    ({"type": "ram"}, "type must be 'memory' or 'disk'"),
    ({"when_full": "overflow_now"}, "when_full must be 'block' or 'drop_newest'"),
    ({"max_events": 10, "max_size": 1000}, "sinks.bus.buffer: max_events and max_size cannot be set together"),
    ({"type": "disk"}, "sinks.bus.buffer.max_size is required for disk buffers"),
    ({"type": "disk", "max_size": 1000}, "sinks.bus.buffer.max_size must be at least 268435488 bytes for disk buffers"),
    ({"type": "disk", "max_size": 268_435_487}, "sinks.bus.buffer.max_size must be at least 268435488 bytes"),
    ({"type": "disk", "max_events": 10, "max_size": 300_000_000}, "sinks.bus.buffer.max_events applies to memory buffers only"),
    ({"max_events": 0}, "sinks.bus.buffer.max_events must be a positive integer"),
    ({"max_size": -1}, "sinks.bus.buffer.max_size must be a positive integer"),
]


@pytest.mark.parametrize("table,agent_says", BUFFERS, ids=[json.dumps(t) for t, _ in BUFFERS])
def test_the_specs_buffer_rules_are_the_agents(agent_bin, tmp_path, table, agent_says):
    """The spec accepts exactly the buffer tables the agent accepts; on Vector's own rules (not the
    spec's key and value types) it says what the agent says."""
    text = agent_toml(VmAgents(), "g", TOPIC)
    head = text[:text.index("[sinks.bus.buffer]")]
    tail = text[text.index("[sinks.prometheus]"):]
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    code, read, err = check_config(agent_bin, tmp_path, f"{head}[sinks.bus.buffer]\n{lines}{tail}")
    try:
        spec = Buffer(**table)
    except ValidationError as exc:
        spec, spec_error = None, str(exc)
    if agent_says is None:
        assert code == 0, err
        assert spec is not None, f"the spec refuses a buffer the agent takes: {spec_error}"
        assert read["sink"]["buffer"] == spec.effective()
        return
    assert code == 78 and agent_says in err, err
    assert spec is None, f"the spec takes a buffer the agent refuses: {err}"
    if agent_says.startswith("sinks.bus.buffer") and "positive integer" not in agent_says:
        assert agent_says in spec_error
