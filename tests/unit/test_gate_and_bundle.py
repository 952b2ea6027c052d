import json
import time
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from chaoslab import bundle, ci, gate
from chaoslab.errors import LabError
from chaoslab.run.context import VariantResult
from chaoslab.run.journal import Journal
from chaoslab.spec.experiment import SpecError, parse, source


def test_broker_conf_lines(tmp_path):
    f = tmp_path / "change.conf"
    f.write_text("# my change\nloadBalancerDebugModeEnabled=true\n\n  maxConcurrentLookupRequest = 100\n")
    assert gate.read_broker_conf(f) == {"loadBalancerDebugModeEnabled": "true", "maxConcurrentLookupRequest": "100"}
    f.write_text("this is not a setting\n")
    with pytest.raises(SpecError, match="line 1: expected key=value"):
        gate.read_broker_conf(f)


def test_gate_experiment_is_a_model_copy_with_the_change():
    base = gate.load_base(None)
    exp = gate.gate_experiment(base, "3.2.2", "3.2.3", {"loadBalancerDebugModeEnabled": "true"})
    assert [v.name for v in exp.variants] == ["change"] and exp.primary.role == "primary"
    plan, base_plan = exp.plan("change"), base.plan("flip")
    assert all(s.broker_config == {"loadBalancerDebugModeEnabled": "true"} for s in plan.method if s.type == "roll-broker")
    assert exp.versions.from_ == "3.2.2" and exp.versions.to == "3.2.3"
    assert plan.steady_state.model_dump() == base_plan.steady_state.model_dump()
    assert plan.workload.model_dump() == base_plan.workload.model_dump()
    assert [s.id for s in plan.method] == [s.id for s in base_plan.method]
    assert plan.rollbacks == [] and base_plan.rollbacks  # the incident's recovery is not every gate's
    assert base.variants[1].name == "flip"  # the base is untouched
    with pytest.raises(LabError, match="not a Pulsar release"):
        gate.gate_experiment(base, None, "latest", {})


def test_a_no_op_change_is_a_rolling_restart():
    base = gate.load_base(None)
    assert gate.is_noop(gate.gate_experiment(base, "3.2.2", "3.2.2", {}), {})
    assert not gate.is_noop(gate.gate_experiment(base, "3.2.2", "3.2.3", {}), {})
    conf = {"loadBalancerDebugModeEnabled": "true"}
    assert not gate.is_noop(gate.gate_experiment(base, "3.2.2", "3.2.2", conf), conf)


def test_a_gate_needs_an_experiment_that_takes_the_change(tmp_path):
    f = tmp_path / "fixed.yaml"
    f.write_text("name: fixed\nvariants: [{name: a}]\nmethod: [{type: roll-broker, broker: 1}]\n")
    with pytest.raises(SpecError, match="must roll brokers with"):
        gate.gate_experiment(gate.load_base(f), None, None, {"x": "1"})


def test_junit_has_a_failure_with_the_evidence(tmp_path):
    r = VariantResult("change", "primary", "d", {}, verdict="FAIL", reasons=["aborted: x"], started=0, ended=5,
                      checks=[{"name": "no-loss", "outcome": "pass", "evidence": "0 lost"}],
                      steps=[{"type": "roll-broker", "broker": "broker-1", "wait_secs": 3, "functional_ok": False,
                              "shallow_ok": True, "functional_detail": "timed out"}])
    runner = SimpleNamespace(exp=SimpleNamespace(name="gate"), results=[r], error=None)
    ci.junit(tmp_path / "j.xml", runner, 1)
    suite = ET.parse(tmp_path / "j.xml").getroot()
    # the variant, its final check, the rolled broker; the check passed
    assert suite.get("tests") == "3" and suite.get("failures") == "2"
    assert [c.get("name") for c in suite] == ["change: d", "check no-loss", "broker-1 healthy after roll"]
    assert suite[1].find("failure") is None and suite[1].find("system-out").text == "pass: 0 lost"
    assert "aborted: x" in ET.tostring(suite).decode()


def test_bundle_excerpts_tar_and_reopen(tmp_path):
    run = tmp_path / "20260101T000000-x"
    (run / "logs" / "flip").mkdir(parents=True)
    j = Journal(run / "journal.jsonl")
    t = time.time()
    j.write("event", name="step-start", step="roll-broker-1", step_type="roll-broker", spec={"broker": 1})
    j.close()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    (run / "logs" / "flip" / "broker-1.log").write_text(
        f"{stamp}.000000000Z 2026 [main] WARN  something near the event\n1999-01-01T00:00:00.0Z far away\n")
    (run / "experiment.yaml").write_text("name: x\n")
    (run / "manifest.json").write_text(json.dumps({"seed": 1}))
    archive = bundle.finish(run, make_tar=True)
    excerpts = (run / "log-excerpts.md").read_text()
    assert "something near the event" in excerpts and "far away" not in excerpts
    opened = bundle.open_bundle(archive)
    assert (opened / "journal.jsonl").exists() and (opened / "BUNDLE.md").exists()
    with pytest.raises(LabError, match="no such bundle"):
        bundle.open_bundle(tmp_path / "nope")


def test_a_gate_bundle_replays_the_gate_not_the_base_experiment():
    exp = gate.gate_experiment(gate.load_base(None), None, None, {"loadBalancerDebugModeEnabled": "true"})
    again = parse(source(exp), env={})
    assert [v.name for v in again.variants] == ["change"]
    assert again.plan("change").method[0].broker_config == {"loadBalancerDebugModeEnabled": "true"}
    assert again.versions == exp.versions and again.plan("change").model_dump() == exp.plan("change").model_dump()
