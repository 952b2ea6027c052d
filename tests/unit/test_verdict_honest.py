"""No evidence, no PASS: each road to a false verdict, driven through the whole runner with a fake
lab (no containers). Each test names the road it closes."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from chaoslab import ci, cli, gate
from chaoslab.lab.lock import LabBusy, LabLock
from chaoslab.record import read
from chaoslab.run import runner as runner_mod
from chaoslab.run.context import Tracker
from chaoslab.run.runner import Runner, inconclusive_reasons
from chaoslab.settings import REPO_ROOT, LabSettings
from chaoslab.spec.base import CheckResult, Condition, FinalCheck, Probe, Step, Unknown, Violation
from chaoslab.spec.experiment import SpecError, load, parse
from fakelab import FakeLab

EXP = """
name: t
variants: [{name: a}]
method:
  - {id: one, type: kill-service, service: proxy}
"""


from fakevocab import FakeCheck, FakeCondition, FakeProbe, FakeStep  # noqa: E402


@pytest.fixture(autouse=True)
def fake_lab(monkeypatch, tmp_path):
    FakeLab.instances.clear()
    monkeypatch.setattr(runner_mod, "default_lab", lambda settings, log=print: FakeLab(settings, log))
    monkeypatch.setenv("CHAOSLAB_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr("chaoslab.lab.broker_settings.check_broker_settings", lambda *a, **k: None)


def make_runner(tmp_path, steps=None, values=(5,), checks=(), min_coverage=0.95, die_after=None, secs=2.0,
                conditions=None):
    exp = parse(EXP, env={})
    plan = exp.plan("a")
    ss = plan.steady_state.model_copy(update={
        "hold_secs": 1.0, "grace_secs": 6.0, "tolerance_secs": 2.0, "min_coverage": min_coverage,
        "conditions": [FakeCondition()] if conditions is None else conditions})
    plan = plan.model_copy(update={
        "method": steps or [FakeStep(id="change", secs=secs)], "steady_state": ss,
        "probes": [FakeProbe(values=list(values), die_after=die_after)],
        "after": plan.after.model_copy(update={"secs": 0.5}), "checks": list(checks)})
    object.__setattr__(exp, "plan", lambda v: plan)
    from chaoslab.report import build_report
    return Runner(exp, run_dir=tmp_path / "run", settings=LabSettings(), log=lambda m: None, finishers=[build_report])


def events(run: Runner) -> list[str]:
    return [r.get("name") or r["type"] for r in read(run.run_dir / "journal.jsonl")]


# -- the roads ----------------------------------------------------------------------------------------
def test_full_evidence_and_no_violation_is_pass(tmp_path):
    run = make_runner(tmp_path)
    assert run.run() == 0
    r = run.results[0]
    assert r.verdict == "PASS" and r.coverage["fake-max"]["share"] == 1.0


def test_a_violation_past_the_tolerance_is_fail(tmp_path):
    run = make_runner(tmp_path, values=[5, 5, 5, 50], secs=6)
    assert run.run() == 1 and run.results[0].verdict == "FAIL"


def test_missing_evidence_is_inconclusive_not_pass(tmp_path):
    """Road: a condition whose data is absent returned no violation, so PASS."""
    run = make_runner(tmp_path, values=[5, 5, 5, "absent"], secs=4)
    assert run.run() == 2
    r = run.results[0]
    assert r.verdict == "INCONCLUSIVE"
    assert "fake-max: judged" in r.reasons[0]["text"] and "the figure is absent" in r.reasons[0]["text"]
    end = [x for x in read(run.run_dir / "journal.jsonl") if x["type"] == "run-end"][0]
    assert end["verdict"] == "INCONCLUSIVE" and end["exit_code"] == 2


def test_a_probe_that_stops_answering_makes_its_conditions_unknown(tmp_path):
    """Road: stale figures (a probe that stopped answering) kept being judged as if current."""
    run = make_runner(tmp_path, values=[5, 5, 5, None], secs=10)
    assert run.run() == 2 and run.results[0].verdict == "INCONCLUSIVE"
    assert any("no answer for" in w for w in run.results[0].coverage["fake-max"]["unknown_because"])


def test_an_unknown_final_check_is_inconclusive(tmp_path):
    """Road: a no-loss check that found no history still gave PASS."""
    run = make_runner(tmp_path, checks=[FakeCheck(outcome="unknown")])
    assert run.run() == 2
    assert run.results[0].verdict == "INCONCLUSIVE"
    assert "fake-check could not judge: no history was recorded" in run.results[0].reasons[0]["text"]


def test_a_journal_that_cannot_be_written_is_error(tmp_path, monkeypatch):
    """Road: one failed journal write (ENOSPC) killed the sampler; the gate said SAFE with 0 samples."""
    run = make_runner(tmp_path, secs=4)
    real = runner_mod.Journal

    class FullDisk(real):
        def write(self, type_, **fields):
            if type_ == "sample" and self.handlers is not None and getattr(self, "_n", 0) > 3:
                real_write = self._fh.write
                self._fh.write = lambda s: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
                try:
                    return super().write(type_, **fields)
                finally:
                    self._fh.write = real_write
            self._n = getattr(self, "_n", 0) + (type_ == "sample")
            return super().write(type_, **fields)
    monkeypatch.setattr(runner_mod, "Journal", FullDisk)
    assert run.run() == 2
    assert run.results[0].verdict == "ERROR"
    assert "journal could not be written" in run.results[0].reasons[0]["text"]
    assert (run.run_dir / "results.json").exists() and (run.run_dir / "report.md").exists()


def test_a_dead_sampler_is_error(tmp_path, monkeypatch):
    """Road: the sampler thread died and nothing noticed."""
    run = make_runner(tmp_path, secs=5)
    calls = {"n": 0}
    real_tick = runner_mod.Sampler.tick

    def tick(self):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("sampler bug")
        real_tick(self)
    monkeypatch.setattr(runner_mod.Sampler, "tick", tick)
    assert run.run() == 2
    assert "the sampler thread died: RuntimeError: sampler bug" in run.results[0].reasons[0]["text"]


def test_a_stalled_sampler_is_error(tmp_path, monkeypatch):
    run = make_runner(tmp_path, secs=8)
    monkeypatch.setattr(runner_mod.RunContext, "SAMPLER_STALL_SECS", 2.0)
    calls = {"n": 0}
    real_tick = runner_mod.Sampler.tick

    def tick(self):
        calls["n"] += 1
        if calls["n"] > 3:
            time.sleep(6)
        real_tick(self)
    monkeypatch.setattr(runner_mod.Sampler, "tick", tick)
    assert run.run() == 2
    assert "stalled" in run.results[0].reasons[0]["text"]


def test_a_probe_thread_that_dies_is_error(tmp_path):
    """Road: a probe thread killed; its last figures kept being judged."""
    run = make_runner(tmp_path, die_after=3.5, secs=5)
    assert run.run() == 2
    assert "probe fake: thread" in run.results[0].reasons[0]["text"]


def test_a_step_that_raises_anything_is_error_not_fail(tmp_path):
    """Road: any exception that is not a LabError (pulsar, pika, docker) read as UNSAFE."""
    run = make_runner(tmp_path, steps=[FakeStep(id="change", crash=True)])
    assert run.run() == 2
    r = run.results[0]
    assert r.verdict == "ERROR" and "step change crashed: KeyError" in r.reasons[0]["text"]


def test_an_internal_error_outside_a_variant_is_exit_2_with_the_run_folder(tmp_path, monkeypatch):
    run = make_runner(tmp_path)
    monkeypatch.setattr(FakeLab, "build_images", lambda self, v, pulsar=True, agent=True: 1 / 0)
    assert run.run() == 2
    assert (run.run_dir / "error.txt").exists() and "internal-error" in events(run)
    assert "down" not in FakeLab.instances[-1].calls, "a lab the run never touched was torn down"


@pytest.mark.parametrize("phase_step", ["method", "steady"])
def test_ctrl_c_is_130_and_junit_says_error(tmp_path, monkeypatch, phase_step):
    if phase_step == "method":
        run = make_runner(tmp_path, steps=[FakeStep(id="change", interrupt=True)])
    else:
        run = make_runner(tmp_path)
        monkeypatch.setattr(runner_mod, "wait_until", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    code = run.run()
    assert code == 130
    ci.junit(tmp_path / "junit.xml", run, code)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert int(suite.get("errors")) >= 1, "an interrupted gate must not be green in CI"


def test_junit_of_inconclusive_and_of_no_result_are_errors(tmp_path):
    run = make_runner(tmp_path, checks=[FakeCheck(outcome="unknown")])
    code = run.run()
    ci.junit(tmp_path / "j1.xml", run, code)
    assert ET.parse(tmp_path / "j1.xml").getroot().find("testcase/error").get("type") == "INCONCLUSIVE"
    empty = make_runner(tmp_path / "x")
    ci.junit(tmp_path / "j2.xml", empty, 130)
    assert ET.parse(tmp_path / "j2.xml").getroot().get("errors") == "1"


def test_a_second_signal_during_the_clean_up_does_not_stop_it(tmp_path, monkeypatch):
    """Road: SIGTERM after SIGINT left rabbitmq-1 running and rabbitmq-2/3 stopped, not removed."""
    run = make_runner(tmp_path, steps=[FakeStep(id="change", interrupt=True)])
    done = []

    def slow_down(self):
        os.kill(os.getpid(), signal.SIGTERM)   # the CI runner's SIGTERM, mid clean-up
        time.sleep(0.2)
        done.append("down")
    monkeypatch.setattr(FakeLab, "down", slow_down)
    cli._on_sigterm()
    try:
        assert run.run() == 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert done == ["down"]


# -- validation ---------------------------------------------------------------------------------------
def test_a_condition_without_its_probe_is_refused_naming_both(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text("""
name: e
variants: [{name: a}]
probes: [{type: pulsar-brokers}]
steady_state: {conditions: [{type: unowned-topics}]}
method: [{type: kill-service, service: proxy}]
""")
    with pytest.raises(SpecError, match="unowned-topics reads the probe pulsar-cluster"):
        load(f)
    assert cli.main(["validate", str(f)]) == 2


def test_unknown_outranks_holds_in_the_tracker():
    tr = Tracker(tolerance_secs=5)
    tr.update(0, [], {}, ["c"], count=True)
    tr.update(1, [], {"c": "no figures"}, [], count=True)
    assert tr.held_for(2) == 0, "an unknown second is never a held second"
    cov = tr.coverage_report(["c"])["c"]
    assert (cov["judged_secs"], cov["method_secs"], cov["share"]) == (1, 2, 0.5)
    assert inconclusive_reasons({"c": cov}, 0.95, []) and not inconclusive_reasons({"c": cov}, 0.5, [])


def test_the_scale_model_translates_the_change_or_refuses_it():
    """Road: maxConcurrentLookupRequest=1 said SAFE 4 of 4 (in lab terms only 50x below baseline)."""
    base = load(REPO_ROOT / "experiments" / "transfer-shedder.yaml", env={})
    lab, translated, problems = gate.scale_change(base, {"maxConcurrentLookupRequest": "50000",
                                                         "loadBalancerSheddingEnabled": "false"})
    assert lab == {"maxConcurrentLookupRequest": "50", "loadBalancerSheddingEnabled": "false"} and not problems
    assert translated == {"maxConcurrentLookupRequest": "50000 -> 50"}
    _, _, problems = gate.scale_change(base, {"maxConcurrentLookupRequest": "1"})
    assert problems and "cannot represent" in problems[0] and "maxConcurrentLookupRequest" in problems[0]


def test_an_unrepresentable_change_makes_the_gate_inconclusive_before_anything_starts(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("maxConcurrentLookupRequest=1\n")
    code = cli.main(["gate", "--broker-conf", str(conf), "--json", "--junit", str(tmp_path / "j.xml")])
    assert code == 2
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "INCONCLUSIVE" and "maxConcurrentLookupRequest" in out["reason"]
    assert ET.parse(tmp_path / "j.xml").getroot().get("errors") == "1"
    assert FakeLab.instances == []


def test_too_many_requests_is_read_where_it_is_visible():
    """Road: the client retries TooManyRequests internally; the client-side counter stayed 0
    while the brokers rejected 122 lookups."""
    from chaoslab.checks.client import TooManyRequests
    now = time.time()
    sample = {"brokers": {"broker-1": {"log_new": {"too_many_pending_lookups": 7}, "log_new_t": now},
                          "broker-2": {"log_new": {}, "log_new_t": now},
                          "broker-3": {"log_new": {"too_many_pending_lookups": 99}, "log_new_t": now - 60}},
              "client": {"too_many_requests": 0}}
    j = TooManyRequests().judge(sample)
    assert j.outcome == "violated" and j.violations[0].value == 7 and j.violations[0].subject == "broker-1"
    # a count read a minute ago (broker-3 above) says nothing about now; no fresh count at all: unknown
    assert TooManyRequests().judge({"brokers": {"broker-1": {"log_counts": {}}}}).outcome == "unknown"
    old = {"brokers": {"broker-1": {"log_new": {"too_many_pending_lookups": 7}, "log_new_t": now - 60}}}
    assert TooManyRequests().judge(old).outcome == "unknown"


def test_limits_reached_are_said_even_when_the_hypothesis_held():
    from chaoslab.spec.base import probe_notes
    notes = probe_notes({"brokers": {"log_counts": {"broker-1": {"too_many_pending_lookups": 122}}}})
    assert notes and "122 lookups" in notes[0]


# -- one lab per engine -------------------------------------------------------------------------------
def test_the_lock_is_the_hosts_not_the_checkouts(tmp_path, monkeypatch):
    """Road: the lock lived in the checkout; a run from a second checkout tore down a running gate's lab."""
    monkeypatch.delenv("CHAOSLAB_LOCK_DIR")
    first = LabLock("unit-lock-test", run_dir=Path("/runs/gate-1"))
    assert REPO_ROOT not in first.path.parents
    with first:
        # a second checkout builds its own LabLock: same path, refused, told who holds it
        with pytest.raises(LabBusy, match=rf"lab busy: pid {os.getpid()}, .*run folder /runs/gate-1"):
            LabLock("unit-lock-test").acquire()
    LabLock("unit-lock-test").acquire().release()


def test_a_crash_in_the_cli_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_validate", lambda args: {}["boom"])
    monkeypatch.setattr(cli.build_parser().parse_args(["validate", "x"]), "func", None, raising=False)
    parser = cli.build_parser()
    args = parser.parse_args(["validate", "x"])
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, a: args})())
    args.func = lambda a: {}["boom"]
    assert cli.main(["validate", "x"]) == 2
    errline = capsys.readouterr().err.strip()
    assert errline.startswith("chaoslab: internal error: KeyError") and "\n" not in errline


def test_an_unresolvable_release_is_refused_before_the_lab_is_touched(tmp_path, monkeypatch):
    """Road: `gate --to 9.9.9` tore the lab down before it failed."""
    from chaoslab.errors import LabError
    from chaoslab.lab import releases

    def check_releases(self, wanted):
        if "9.9.9" in wanted:
            raise releases.UnresolvableRelease("Pulsar 9.9.9: not a release Maven can resolve")
    monkeypatch.setattr(FakeLab, "check_releases", check_releases)
    run = make_runner(tmp_path)
    run.exp.versions.to = "9.9.9"
    monkeypatch.setattr(run, "releases", lambda: ["3.2.2", "9.9.9"])
    with pytest.raises(LabError, match="9.9.9"):
        run.run()
    assert FakeLab.instances[-1].calls == [], "nothing may be built, started or removed"
    assert not (run.run_dir / "journal.jsonl").exists()


# -- found in review ----------------------------------------------------------------------------------
def test_unknown_seconds_do_not_break_a_violation_streak():
    """Road: one unknown second every 20 reset the streak: violated 190 of 200 s, and PASS."""
    tr = Tracker(tolerance_secs=20)
    exceeded = False
    for t in range(200):
        if t % 20 == 19:
            exceeded |= tr.update(t, [], {"c": "stale"}, [], count=True)
        else:
            exceeded |= tr.update(t, [{"name": "x"}], {}, ["c"], count=True)
    assert exceeded and tr.exceeded and tr.longest_secs >= 190
    assert tr.current_since is not None and tr.last_violations == [{"name": "x"}]


def test_a_lab_error_while_undoing_is_error_not_fail(tmp_path):
    from chaoslab.errors import LabError

    class BadUndo(FakeStep):
        def undo(self, ctx):
            raise LabError("compose: broker-1 could not be recreated")
    run = make_runner(tmp_path, steps=[BadUndo(id="change", secs=1, undo_when="at-end")])
    assert run.run() == 2
    assert run.results[0].verdict == "ERROR" and "could not be recreated" in run.results[0].reasons[0]["text"]


def test_nothing_to_judge_is_inconclusive(tmp_path):
    run = make_runner(tmp_path, conditions=[])
    assert run.run() == 2 and "nothing was judged" in run.results[0].reasons[0]["text"]


@pytest.mark.parametrize("change, match", [
    ("workload: {type: pulsar-topics, lookup_clients: 0}\nprobes: [{type: pulsar-client}]\n"
     "steady_state: {conditions: [{type: lookup-success-rate}]}", "lookup_clients: 0"),
    ("probes: [{type: pulsar-brokers}, {type: pulsar-cluster}]\nsteady_state: {conditions: [{type: split-ownership}]}",
     "ask_every_broker: true"),
    ("probes: [{type: pulsar-brokers, profile: metrics-only}]\nsteady_state: {conditions: [{type: too-many-requests}]}",
     "metrics-only"),
])
def test_a_condition_that_could_never_judge_is_refused(tmp_path, change, match):
    f = tmp_path / "e.yaml"
    f.write_text(f"name: e\nvariants: [{{name: a}}]\n{change}\nmethod: [{{type: kill-service, service: proxy}}]\n")
    with pytest.raises(SpecError, match=match):
        load(f)


def test_green_but_broken_and_agent_buffer_say_unknown_without_this_seconds_figures():
    from chaoslab.checks.brokers import GreenButBroken
    from chaoslab.checks.vms import AgentBufferEvents
    views = {"views": {"brokers": {"broker-1": {"state": "healthy"}, "broker-2": {"state": "unknown"}}}}
    for key in ("brokers", "cluster"):
        views[key] = {"x": 1}
    assert GreenButBroken().judge(views).outcome == "unknown"
    vms = {"vms": {"vm-1": {"agent": {"vector_buffer_size_events": 10}, "agent_answered": False}}}
    silent = AgentBufferEvents().judge(vms)
    assert silent.outcome == "unknown", "last second's answer judged as this second's"
    assert "no agent metrics this second from vm-1" in silent.why   # said as such, not as a NameError
    vms["vms"]["vm-1"]["agent_answered"] = True
    assert AgentBufferEvents().judge(vms).outcome == "holds"


def test_a_refused_gate_writes_junit_and_json(tmp_path, capsys, monkeypatch):
    from chaoslab.errors import UnknownSetting

    def unknown(*a, **k):
        raise UnknownSetting("'loadBalancerSheddingEnabeld' is not a setting of Pulsar 3.2.3 "
                             "(closest: loadBalancerSheddingEnabled)")
    monkeypatch.setattr("chaoslab.lab.broker_settings.check_broker_settings", unknown)
    conf = tmp_path / "c.conf"
    conf.write_text("loadBalancerSheddingEnabeld=false\n")
    code = cli.main(["gate", "--broker-conf", str(conf), "--json", "--junit", str(tmp_path / "j.xml")])
    assert code == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["verdict"] == "REFUSED"
    assert "closest: loadBalancerSheddingEnabled" in captured.err and captured.err.count("\n") == 1
    assert ET.parse(tmp_path / "j.xml").getroot().get("errors") == "1"
    assert FakeLab.instances == []


def test_a_shared_lock_folder_this_user_cannot_write_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    from chaoslab.errors import LabError
    from chaoslab.lab import lock
    monkeypatch.delenv("CHAOSLAB_LOCK_DIR")
    monkeypatch.setattr(lock.os, "access", lambda path, mode: "chaoslab" not in str(path))
    if not Path("/run/lock/chaoslab").is_dir():
        pytest.skip("no shared lock folder on this host yet")
    with pytest.raises(LabError, match="not writable"):
        lock.lock_dir()


def test_a_step_setting_the_release_does_not_have_is_refused_before_the_lab_is_touched(tmp_path, monkeypatch):
    """Road: a misspelt key reached the brokers, which ignored it: a change never made."""
    from chaoslab.errors import UnknownSetting
    from chaoslab.steps.pulsar import RollBroker

    def check(version, settings, resolve=True, log=print):
        if "loadBalancerSheddingEnabeld" in settings:
            raise UnknownSetting(f"'loadBalancerSheddingEnabeld' is not a setting of Pulsar {version}")
    monkeypatch.setattr("chaoslab.lab.broker_settings.check_broker_settings", check)
    run = make_runner(tmp_path, steps=[RollBroker(id="roll", broker=1, broker_config={"loadBalancerSheddingEnabeld": "false"})])
    assert run.run() == 2
    assert "not a setting of Pulsar 3.2.3" in run.error
    assert FakeLab.instances[-1].calls == ["build"], "the lab was touched"
