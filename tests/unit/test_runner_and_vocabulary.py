"""The runner's phase loop and the vocabulary, with a fake lab (no containers)."""

import threading
import time
from typing import Literal

import fakelab
import pytest

from chaoslab.checks.brokers import PendingLookups, UnownedTopics
from chaoslab.checks.client import LookupSuccessRate, PublishSuccessRate
from chaoslab.record import read
from chaoslab.run.context import RunContext, Tracker, VariantResult
from chaoslab.run.journal import Journal
from chaoslab.run.runner import Runner
from chaoslab.settings import LabSettings
from chaoslab.spec.base import Step
from chaoslab.spec.experiment import parse
from chaoslab.steps import pulsar as pulsar_steps
from chaoslab.steps.pulsar import RollBroker

EXP = """
name: t
variants: [{name: a}]
method:
  - {id: one, type: kill-service, service: proxy}
  - {id: two, type: kill-service, service: proxy}
  - {id: three, type: kill-service, service: proxy, after: one}
"""


class FakeStep(Step):
    type: Literal["fake"] = "fake"
    secs: float = 0.0
    fail: bool = False

    def run(self, ctx):
        ctx.calls.append(("run", self.id, round(time.time() - ctx.t0, 1)))
        time.sleep(self.secs)
        return {"ok": not self.fail, "error": "it broke" if self.fail else None}

    def undo(self, ctx):
        ctx.calls.append(("undo", self.id))
        return {"ok": True}


def make(tmp_path, steps, **ss):
    exp = parse(EXP, env={})
    plan = exp.plan("a")
    plan = plan.model_copy(update={"method": steps,
                                   "steady_state": plan.steady_state.model_copy(update=ss)})
    runner = Runner(exp, run_dir=tmp_path, settings=LabSettings(), log=lambda m: None)
    runner.journal = Journal(tmp_path / "journal.jsonl")
    ctx = RunContext(runner.lab, runner.journal, tmp_path, exp, exp.variant("a"), plan, threading.Event())
    ctx.calls, ctx.t0 = [], time.time()
    return runner, ctx, VariantResult("a", "primary", "", {})


def test_steps_run_in_order_after_what_they_name(tmp_path):
    steps = [FakeStep(id="roll-1", secs=0.3), FakeStep(id="roll-2", secs=0.3),
             FakeStep(id="kill", after="roll-2"), FakeStep(id="roll-3", after="roll-2", secs=0.2),
             FakeStep(id="late", at_secs=1.5)]
    runner, ctx, result = make(tmp_path, steps)
    applied = []
    runner._method(ctx, result, applied)
    runs = {c[1]: c[2] for c in ctx.calls}
    assert runs["roll-1"] < runs["roll-2"] <= runs["kill"] and runs["kill"] == pytest.approx(runs["roll-3"], abs=0.3)
    assert runs["roll-2"] >= 0.3 and runs["late"] >= 1.5
    names = [(r["name"], r.get("step")) for r in read(tmp_path / "journal.jsonl")]
    for s in steps:  # every step journals its start and its end
        assert ("step-start", s.id) in names and ("step-end", s.id) in names
    assert [s["id"] for s in result.steps] and not result.aborted


def test_a_failed_step_aborts_skips_the_rest_and_the_undo_is_exactly_what_was_applied(tmp_path):
    steps = [FakeStep(id="a"), FakeStep(id="b", fail=True), FakeStep(id="c"),
             FakeStep(id="d", undo_when="at-end")]
    runner, ctx, result = make(tmp_path, steps)
    applied = []
    runner._method(ctx, result, applied)
    assert result.aborted and "step b did not succeed: it broke" in result.abort_reason
    assert [s.id for s in applied] == ["a", "b"]
    runner._roll_back(ctx, result, applied)
    assert [c for c in ctx.calls if c[0] == "undo"] == [("undo", "b"), ("undo", "a")]


def test_at_end_steps_are_undone_without_an_abort(tmp_path):
    steps = [FakeStep(id="a"), FakeStep(id="kill", undo_when="at-end"), FakeStep(id="never", undo_when="never")]
    runner, ctx, result = make(tmp_path, steps)
    applied = []
    runner._method(ctx, result, applied)
    runner._roll_back(ctx, result, applied)
    assert [c for c in ctx.calls if c[0] == "undo"] == [("undo", "kill")]
    assert [u["step"] for u in result.undone] == ["kill"]


class FakeLab(fakelab.FakeLab):
    """Broker 1 starts with `config`; rolls are recorded as (n, version, config, replace_config)."""
    def __init__(self, config):
        super().__init__(config=config)

    def roll(self, changes, wait=True, timeout=300):
        super().roll(changes, wait, timeout)
        self.calls.pop()
        for service, c in changes.items():
            self.calls.append((int(service.split("-")[1]), c.get("version"), dict(c.get("config") or {}),
                               bool(c.get("replace_config"))))


def test_roll_broker_undo_restores_exactly_the_settings_it_changed(tmp_path, monkeypatch):
    ok = type("P", (), {"ok": True, "detail": "ok"})()
    monkeypatch.setattr(pulsar_steps.health, "shallow", lambda *a, **k: ok)
    monkeypatch.setattr(pulsar_steps.health, "functional", lambda *a, **k: ok)
    runtime = {"managedLedgerDefaultEnsembleSize": "2", "loadManagerClassName": "Modular"}
    lab = FakeLab({"maxConcurrentLookupRequest": "50"})
    # the broker reports what it was last started with (the roll's read-back reads it)
    monkeypatch.setattr(pulsar_steps.http, "get_json",
                        lambda url, *a, **k: "3.2.3" if url.endswith("/brokers/version") else
                        {**runtime, **lab.configured("broker-1")["config"]} if lab.calls else runtime)
    ctx = type("Ctx", (), {})()
    ctx.lab, ctx.interrupted, ctx.aborted = lab, threading.Event(), threading.Event()
    ctx.release = lambda v: {"to": "3.2.3"}.get(v, v)
    ctx.event = lambda *a, **k: None
    ctx.should_stop = lambda: False
    ctx.watch = lambda secs, until_held_secs=None: True
    step = RollBroker(broker=1, broker_config={"managedLedgerDefaultEnsembleSize": "3"}, settle_secs=0)
    out = step.run(ctx)
    assert out["ok"] and out["previous"] == {"managedLedgerDefaultEnsembleSize": "2"}
    assert lab.configured("broker-1")["config"] == {"maxConcurrentLookupRequest": "50", "managedLedgerDefaultEnsembleSize": "3"}
    undone = step.undo(ctx)
    assert lab.calls[-1] == (1, None, {"maxConcurrentLookupRequest": "50"}, True)  # the user's key removed, nothing else
    assert undone["restored_values"] == {"managedLedgerDefaultEnsembleSize": "2"} and undone["serves"]
    assert "loadManagerClassName" not in str(lab.calls)  # never touches what it did not change
    assert RollBroker(broker=1).undo(ctx) is None  # never run: nothing to undo


def client(**kw):
    base = {"publish_ok": 100, "publish_failed": 0, "publish_success_rate": 1.0, "lookup_ok": 10, "lookup_failed": 0,
            "window_secs": 5, "lookups_expected": True}
    return {"elapsed": 30, "client": {**base, **kw}}


def test_conditions_give_structured_violations():
    assert PublishSuccessRate().violations(client()) == []
    v = PublishSuccessRate(min=0.99).violations(client(publish_success_rate=0.5))[0]
    assert (v.name, v.value, v.bound) == ("publish_success_rate", 0.5, 0.99)
    v = PublishSuccessRate().violations(client(publish_ok=0, publish_success_rate=None))[0]
    assert v.value is None and "no publish" in v.detail
    early = PublishSuccessRate().judge({"elapsed": 1, "client": client(publish_ok=0)["client"]})
    assert early.outcome == "unknown" and not early.violations
    v = LookupSuccessRate().violations(client(lookup_ok=0))[0]
    assert v.name == "lookups" and v.value == 0
    s = {"brokers": {"broker-2": {"metrics": {"pulsar_broker_lookup_pending_requests": 50.0}}}}
    v = PendingLookups(max=40).violations(s)[0]
    assert (v.name, v.subject, v.value, v.bound) == ("pending_lookups", "broker-2", 50, 40)
    assert "pending_lookups[broker-2]: 50 vs bound 40" in v.text()
    v = UnownedTopics().violations({"cluster": {"ownership": {"sampled": 10, "unowned": 2, "unowned_sample": ["t"]}}})[0]
    assert v.value == 2 and "2 of 10" in v.detail


def test_tracker_detects_aborts_and_resolves():
    tr = Tracker(tolerance_secs=3)
    assert not tr.update(0, [])
    assert not tr.update(1, [{"name": "x"}]) and tr.first_violation_t == 1
    assert not tr.update(3, [{"name": "x"}])
    assert tr.update(5, [{"name": "x"}])  # violated for 4 s > 3
    assert not tr.update(6, []) and tr.held_for(8) == 2
    assert tr.resolved_t == 6 and tr.exceeded and tr.longest_secs == 4


def test_a_failing_handler_is_logged_once_and_never_fatal(tmp_path):
    seen = []

    class Broken:
        def on_sample(self, s):
            raise RuntimeError("boom")

        def on_event(self, e):
            seen.append(e["name"])

    j = Journal(tmp_path / "j.jsonl", handlers=[Broken()])
    j.write("sample", x=1)
    j.write("sample", x=2)
    j.event("step-start", step="a")
    j.close()
    records = read(tmp_path / "j.jsonl")
    assert [r["type"] for r in records].count("handler-error") == 1
    assert "boom" in next(r for r in records if r["type"] == "handler-error")["error"]
    assert "step-start" in seen


def test_exit_code_when_the_primary_was_not_run(tmp_path):
    runner, ctx, _ = make(tmp_path, [FakeStep(id="a")])
    runner.results = [VariantResult("control", "control", "", {}, verdict="PASS")]
    assert runner.exit_code() == 0
    runner.results.append(VariantResult("x", "compare", "", {}, verdict="FAIL"))
    assert runner.exit_code() == 1
    runner.results.append(VariantResult("a", "primary", "", {}, verdict="PASS"))
    assert runner.exit_code() == 0  # the primary decides when it ran
