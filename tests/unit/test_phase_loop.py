"""The runner's whole phase loop, driven with the fake lab driver (tests/unit/fakelab.py) and a
fake vocabulary (tests/unit/fakevocab.py): no engine, no containers. The runner receives its lab;
each test reads what happened from the journal and from what the driver was asked."""

from __future__ import annotations

import json

import pytest

from chaoslab.errors import LabError
from chaoslab.lab.driver import LabShape
from chaoslab.record import read
from chaoslab.run.runner import Runner
from chaoslab.settings import LabSettings
from chaoslab.spec.experiment import parse
from fakelab import FakeLab
from fakevocab import FakeCheck, FakeCondition, FakeProbe, FakeStep

EXP = """
name: loop
variants: [{name: a}]
lab: {rabbitmq_nodes: 1}
method:
  - {id: one, type: kill-service, service: proxy}
"""


@pytest.fixture(autouse=True)
def no_release_lookups(monkeypatch, tmp_path):
    monkeypatch.setattr("chaoslab.lab.broker_settings.check_broker_settings", lambda *a, **k: None)


def runner(tmp_path, lab: FakeLab, values=(5,), steps=None, rollbacks=(), checks=(), keep=False, secs=2.0):
    exp = parse(EXP, env={})
    plan = exp.plan("a")
    ss = plan.steady_state.model_copy(update={"hold_secs": 1.0, "grace_secs": 5.0, "tolerance_secs": 2.0,
                                              "min_coverage": 0.95, "conditions": [FakeCondition()]})
    plan = plan.model_copy(update={
        "method": steps or [FakeStep(id="change", secs=secs)], "rollbacks": list(rollbacks), "steady_state": ss,
        "probes": [FakeProbe(values=list(values))], "checks": list(checks),
        "after": plan.after.model_copy(update={"secs": 0.5})})
    object.__setattr__(exp, "plan", lambda v: plan)
    from chaoslab.report import build_report
    return Runner(exp, run_dir=tmp_path / "run", keep=keep, log=lambda m: None, lab=lab, finishers=[build_report])


def names(run: Runner) -> list[str]:
    return [r["name"] if r["type"] == "event" else r["type"] for r in read(run.run_dir / "journal.jsonl") if r["type"] != "sample"]


def in_order(seq: list[str], wanted: list[str]) -> bool:
    it = iter(seq)
    return all(w in it for w in wanted)


def test_the_runner_drives_the_lab_it_receives_through_every_phase(tmp_path):
    lab = FakeLab(LabSettings())
    run = runner(tmp_path, lab, checks=[FakeCheck()])
    assert run.lab is lab and run.run() == 0
    assert in_order(names(run), ["run-start", "variant-start", "lab-up", "steady-state-held", "step-start",
                                 "step-end", "check", "variant-end", "run-end"])
    # the lab: built, a fresh one brought up in the experiment's shape, removed at the end
    assert [c for c in lab.calls if isinstance(c, str)] == ["build", "down", "up", "remove-groups", "down"]
    assert lab.shapes == [LabShape(pulsar=True, rabbitmq_nodes=1, pico=0, nano=0, broker_config={}, proxy_config={})]
    results = json.loads((run.run_dir / "results.json").read_text())["variants"][0]
    assert results["verdict"] == "PASS" and results["reasons"] == []
    assert results["vocabulary"] == {"workload": "none", "probes": {"fake": "fake"}, "monitors": {}}
    assert (run.run_dir / "report.md").exists() and (run.run_dir / "manifest.json").exists()


def test_a_violation_aborts_undoes_what_was_applied_runs_the_rollback_then_judges(tmp_path):
    lab = FakeLab(LabSettings())
    values = [5, 5, 5, 50, 50, 50, 50, 50, 50, 50, 50, 5]
    step = FakeStep(id="change", secs=20, undo_when="on-abort")
    run = runner(tmp_path, lab, values=values, steps=[step], rollbacks=[FakeStep(id="recover", secs=0.1)],
                 checks=[FakeCheck()])
    assert run.run() == 1
    seq = names(run)
    assert in_order(seq, ["steady-state-held", "step-start", "abort", "rollback-start", "undo-start", "undo-end",
                          "rollback-done", "step-start", "step-end", "check", "variant-end"])
    r = run.results[0]
    assert r.verdict == "FAIL" and r.aborted
    kinds = [x["kind"] for x in r.reasons]
    assert kinds[0] == "aborted" and kinds[-1] == "first-violation"
    assert r.reasons[0]["short"] == "aborted: hypothesis violated for more than 2 s"
    assert r.reasons[0]["violations"][0] == {"name": "fake", "value": 50, "bound": 10, "subject": None, "detail": "",
                                               "condition": "fake-max"}   # Condition.judge names its condition
    assert [u["step"] for u in r.undone] == ["change"] and [x["id"] for x in r.rollbacks] == ["recover"]


def test_ctrl_c_during_the_method_undoes_and_exits_130_and_removes_the_lab(tmp_path):
    lab = FakeLab(LabSettings())
    run = runner(tmp_path, lab, steps=[FakeStep(id="first", secs=0.1), FakeStep(id="boom", interrupt=True)])
    assert run.run() == 130
    seq = names(run)
    assert "interrupted" in seq and in_order(seq, ["undo-start", "undo-end"])
    r = run.results[0]
    assert r.verdict == "INTERRUPTED" and r.reasons[0]["kind"] == "interrupted"
    assert lab.calls[-1] == "down" and "remove-groups" in lab.calls


def test_seconds_no_one_could_judge_make_it_inconclusive_not_pass(tmp_path):
    lab = FakeLab(LabSettings())
    run = runner(tmp_path, lab, values=[5, 5, 5] + ["absent"] * 10, secs=4)
    assert run.run() == 2
    r = run.results[0]
    assert r.verdict == "INCONCLUSIVE"
    assert r.reasons[0]["kind"] == "coverage" and r.reasons[0]["subject"] == "fake-max"
    assert "the figure is absent" in r.reasons[0]["text"]
    assert json.loads((run.run_dir / "results.json").read_text())["exit_code"] == 2


def test_an_unknown_final_check_is_inconclusive_with_its_reason(tmp_path):
    run = runner(tmp_path, FakeLab(LabSettings()), checks=[FakeCheck(outcome="unknown")])
    assert run.run() == 2
    assert [x["kind"] for x in run.results[0].reasons] == ["check-unknown"]


def test_a_steady_state_that_never_holds_is_error_before_anything_changes(tmp_path):
    lab = FakeLab(LabSettings())
    run = runner(tmp_path, lab, values=[50])
    assert run.run() == 2
    r = run.results[0]
    assert r.verdict == "ERROR" and r.reasons[0]["kind"] == "no-steady-state" and r.steps == []
    assert "step-start" not in names(run)


def test_a_lab_that_does_not_come_up_is_error_and_is_removed(tmp_path):
    lab = FakeLab(LabSettings())
    lab.up_error = LabError("broker-2 did not become healthy")
    run = runner(tmp_path, lab)
    assert run.run() == 2
    end = [r for r in read(run.run_dir / "journal.jsonl") if r["type"] == "run-end"][0]
    assert end["verdict"] == "ERROR" and "broker-2 did not become healthy" in end["error"]
    assert lab.calls[-1] == "down"


def test_keep_leaves_the_lab_running(tmp_path):
    lab = FakeLab(LabSettings())
    run = runner(tmp_path, lab, keep=True)
    assert run.run() == 0
    assert lab.calls.count("down") == 1 and lab.calls[-1] != "down"   # only the one before the fresh lab


def test_a_step_the_driver_cannot_do_is_refused_before_the_lab_is_touched(tmp_path):
    from chaoslab.steps.services import SlowService
    lab = FakeLab(LabSettings())
    lab.capabilities = frozenset()
    run = runner(tmp_path, lab, steps=[SlowService(id="slow", service="rabbitmq", pause_secs=0.1, for_secs=1)])
    assert run.run() == 2
    assert "pause" in run.error and "up" not in lab.calls
