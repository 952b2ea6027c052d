"""The `service-states` probe: one file (chaoslab/probes/services.py) plus a line in an experiment
file, with no edit to runner, report, console, CLI or gate; it reads the lab driver only."""

from types import SimpleNamespace

from fakelab import FakeLab

from chaoslab.lab.driver import LabShape
from chaoslab.probes.services import ServiceStates
from chaoslab.spec.base import REGISTRY, probe_class, probe_status, probe_why
from chaoslab.spec.experiment import parse


def test_it_counts_states_and_incarnations_from_the_driver():
    lab = FakeLab()
    lab.up(LabShape(pulsar=False, rabbitmq_nodes=3))
    probe, ctx = ServiceStates(), SimpleNamespace(lab=lab)
    first = probe.collect(ctx)
    assert first["rabbitmq-3"] == {"state": "running", "incarnation": "rabbitmq-3-1"}
    lab.pause("rabbitmq-3")
    probe.collect(ctx)
    lab.stop("rabbitmq-2")
    probe.collect(ctx)
    s = probe.summary()
    assert s["samples"]["rabbitmq-3"] == {"running": 1, "paused": 2} and s["samples"]["rabbitmq-2"]["exited"] == 1
    assert s["incarnations"] == {"rabbitmq": 1, "rabbitmq-2": 1, "rabbitmq-3": 1}
    assert ServiceStates.why(s) == []                       # nothing was replaced
    assert ServiceStates.why({"incarnations": {"broker-1": 3}}) == [
        "Services replaced during the variant (new incarnations): broker-1 2 times"]
    latest = probe.collect(ctx)
    assert ServiceStates.status(latest) == "1/3 running (rabbitmq-2:exited, rabbitmq-3:paused)"


def test_the_generic_parts_pick_it_up_by_its_key():
    assert REGISTRY["probe"]["service-states"] is ServiceStates and probe_class("services") is ServiceStates
    assert "1/2 running" in probe_status({"services": {"a": {"state": "running"}, "b": {"state": "exited"}}})
    assert probe_why({"services": {"incarnations": {"broker-2": 2}}})
    blocks = ServiceStates.report_blocks({"samples": {"a": {"running": 3}}, "incarnations": {"a": 1}, "period_secs": 2},
                                         [], [], {}, None)
    assert blocks[1][2] == [["a", 1, 6, 0, 0, 0]]


def test_an_experiment_turns_it_on_with_one_line():
    exp = parse("""
name: t
lab: {pulsar: false}
variants: [{name: a}]
probes: [{type: service-states, period_secs: 3}]
method: [{type: stop-service, service: rabbitmq}]
""", env={})
    assert [p.type for p in exp.plan("a").probes] == ["service-states"]
