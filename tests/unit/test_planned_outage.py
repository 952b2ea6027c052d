"""A declared planned outage (restart-brokers): the service it takes is excused and measured,
nothing else is, and it never counts as evidence that the hypothesis held."""

import types

import fakelab
import pytest

from chaoslab.run.context import RunContext, Tracker
from chaoslab.run.runner import Sampler
from chaoslab.spec.base import Judgement, Violation


class Cond:
    def __init__(self, type_, outcome="holds"):
        self.type, self.outcome = type_, outcome

    def judge(self, sample):
        v = [Violation(self.type.replace("-", "_"), 1, 0)] if self.outcome == "violated" else []
        return Judgement(self.type, self.outcome, v, why="no figures" if self.outcome == "unknown" else "")


def ctx_with(conditions, phase="method"):
    ctx = types.SimpleNamespace(
        plan=types.SimpleNamespace(steady_state=types.SimpleNamespace(conditions=conditions, abort_on_violation=True,
                                                                      tolerance_secs=20)),
        phase=phase, tracker=Tracker(20), outage=None, journal=types.SimpleNamespace(write=lambda *a, **k: None),
        aborted=[], last_sample=None, sampler_tick=None)
    ctx.abort = lambda reason, **k: ctx.aborted.append(reason)
    ctx.begin_outage = types.MethodType(RunContext.begin_outage, ctx)
    ctx.end_outage = types.MethodType(RunContext.end_outage, ctx)
    return ctx


def tick(ctx, n=1, clock=None):
    """n sampler seconds; with `clock` (the fixture), the runner's clock moves one second each."""
    s = Sampler(ctx)
    s.sample = lambda: {}
    for _ in range(n):
        s.tick()
        if clock is not None:
            clock[0] += 1


@pytest.fixture
def clock(monkeypatch):
    t = [1000.0]
    monkeypatch.setattr("chaoslab.run.runner.time.time", lambda: t[0])
    return t


def test_without_an_outage_a_lost_service_aborts_after_the_tolerance(clock):
    ctx = ctx_with([Cond("publish-success-rate", "violated"), Cond("split-ownership")])
    tick(ctx, 25, clock)
    assert ctx.aborted


def test_the_declared_conditions_are_excused_counted_apart_and_never_held(clock):
    ctx = ctx_with([Cond("publish-success-rate", "violated"), Cond("split-ownership")])
    ctx.begin_outage("switch-all-brokers", ["publish-success-rate"])
    tick(ctx, 60, clock)
    assert not ctx.aborted and ctx.tracker.violated_seconds == 0
    cov = ctx.tracker.coverage_report(["publish-success-rate", "split-ownership"])
    assert cov["publish-success-rate"]["method_secs"] == 0      # not in the excused condition's coverage
    assert cov["split-ownership"] == {**cov["split-ownership"], "judged_secs": 60, "method_secs": 60, "share": 1.0}
    assert ctx.tracker.ok_since is None                   # an excused second is not a held one
    figures = ctx.end_outage()
    assert figures == {"secs": 60, "excused_secs": 60, "excused_conditions": {"publish_success_rate": 60}}
    assert ctx.outage is None


def test_a_condition_not_declared_is_judged_during_the_outage(clock):
    ctx = ctx_with([Cond("publish-success-rate", "violated"), Cond("split-ownership", "violated")])
    ctx.begin_outage("switch-all-brokers", ["publish-success-rate"])
    tick(ctx, 25, clock)
    assert ctx.aborted and "split_ownership" in ctx.aborted[0]
    assert ctx.tracker.violated_seconds == 25


def test_after_the_outage_the_ordinary_rules_apply_again(clock):
    ctx = ctx_with([Cond("publish-success-rate", "violated")])
    ctx.begin_outage("s", ["publish-success-rate"])
    tick(ctx, 5)
    ctx.end_outage()
    tick(ctx, 25, clock)
    assert ctx.aborted and ctx.tracker.coverage_report(["publish-success-rate"])["publish-success-rate"]["method_secs"] == 25


def test_an_outage_outside_the_method_excuses_nothing(monkeypatch):
    ctx = ctx_with([Cond("publish-success-rate", "violated")], phase="after")
    ctx.begin_outage("s", ["publish-success-rate"])
    tick(ctx, 3)
    assert ctx.tracker.violated_seconds == 3


def test_restart_brokers_refuses_a_condition_type_that_does_not_exist():
    from pydantic import ValidationError
    from chaoslab.steps.pulsar import RestartBrokers
    with pytest.raises(ValidationError, match="not condition types: publish-succes"):
        RestartBrokers(excuse=["publish-succes"])
    assert "split-ownership" not in RestartBrokers().excuse   # a split is never excused by default


class FakeLab(fakelab.FakeLab):
    """Broker 1 runs with a=1; every roll of several brokers at once is recorded in `recreated`
    as {broker number: change}."""
    def __init__(self):
        super().__init__(config={})
        self._configured["broker-1"]["config"] = {"a": "1"}
        self.recreated = []

    def roll(self, changes, wait=True, timeout=300):
        self.recreated.append({int(s.split("-")[1]): c for s, c in changes.items()})
        super().roll(changes, wait, timeout)


def restart_ctx(held=True):
    ctx = ctx_with([Cond("publish-success-rate", "violated")])
    ctx.lab, ctx.settings = FakeLab(), types.SimpleNamespace(brokers=3)
    ctx.release = lambda name: "3.2.3"
    ctx.event = lambda *a, **k: None
    ctx.should_stop = lambda: False
    ctx.interrupted = types.SimpleNamespace(is_set=lambda: False)
    if held:
        ctx.tracker.ok_since = 0.0
        ctx.tracker.held_for = lambda now: 999
    return ctx


def test_restart_brokers_recreates_all_at_once_and_measures_the_outage(monkeypatch):
    from chaoslab.wait import Waited
    from chaoslab.steps import pulsar
    from chaoslab.steps.pulsar import RestartBrokers
    monkeypatch.setattr(pulsar, "wait_for_broker", lambda ctx, n, how, timeout, stop=None: Waited(True, None, 1.0))
    monkeypatch.setattr(pulsar.RollBroker, "check_applied", lambda self, ctx, n, url, v: {"version_in_effect": v})
    ctx = restart_ctx()
    step = RestartBrokers(id="switch-all-brokers", broker_config={"loadManagerClassName": "X"})
    result = step.run(ctx)
    assert result["ok"] and list(ctx.lab.recreated[0]) == [1, 2, 3]          # one recreate for all three
    assert all(c == {"version": "3.2.3", "config": {"loadManagerClassName": "X"}} for c in ctx.lab.recreated[0].values())
    assert set(result["serving_after_secs"]) == {"broker-1", "broker-2", "broker-3"}
    assert "planned_outage" in result and ctx.outage is None
    undo = step.undo(ctx)
    assert ctx.lab.recreated[1][1] == {"config": {"a": "1"}, "replace_config": True, "version": None} and undo["ok"]


def test_restart_brokers_fails_when_a_broker_does_not_serve_within_the_budget(monkeypatch):
    from chaoslab.wait import Waited
    from chaoslab.steps import pulsar
    from chaoslab.steps.pulsar import RestartBrokers
    monkeypatch.setattr(pulsar, "wait_for_broker", lambda ctx, n, how, timeout, stop=None: Waited(n != 2, None, timeout))
    ctx = restart_ctx(held=False)
    ctx.aborted = types.SimpleNamespace(is_set=lambda: False)
    result = RestartBrokers(id="s", outage_budget_secs=30).run(ctx)
    assert result["ok"] is False and "broker-2 did not serve within the outage budget (30 s)" in result["error"]
    assert ctx.outage is None      # the window closes whatever happened


def test_a_condition_that_cannot_look_during_the_outage_is_unknown_not_excused(clock):
    from chaoslab.run.runner import inconclusive_reasons
    ctx = ctx_with([Cond("publish-success-rate", "violated"), Cond("split-ownership", "unknown")])
    ctx.begin_outage("switch-all-brokers", ["publish-success-rate"])
    tick(ctx, 30, clock)
    cov = ctx.tracker.coverage_report(["publish-success-rate", "split-ownership"])
    assert cov["split-ownership"]["unknown_secs"] == 30 and cov["split-ownership"]["share"] == 0.0
    reasons = inconclusive_reasons({"split-ownership": cov["split-ownership"]}, 0.95, [])
    assert reasons and reasons[0]["text"].startswith("split-ownership: judged 0 of 30 method seconds")
