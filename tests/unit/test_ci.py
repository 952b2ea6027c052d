"""Every run machine-readable (chaoslab/ci.py, docs/ci.md): JUnit for experiment and gate runs of
every verdict, `experiment --json`, the GitHub step summary and ::error annotations, their
escaping, and the composite action's script (scripts/ci-gate.sh) with a stub chaoslab. No engine:
the runner runs on the fake lab, or a stub stands for it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from chaoslab import ci, cli
from chaoslab.errors import LabError
from chaoslab.run import runner as runner_mod
from chaoslab.run.context import VariantResult
from chaoslab.run.runner import Runner
from chaoslab.settings import REPO_ROOT, LabSettings
from chaoslab.spec.base import Reason
from chaoslab.spec.experiment import parse
from fakelab import FakeLab
from fakevocab import FakeCheck, FakeCondition, FakeProbe, FakeStep

EXP = """
name: t
variants: [{name: a}]
method:
  - {id: one, type: kill-service, service: proxy}
"""
SCRIPT = REPO_ROOT / "scripts" / "ci-gate.sh"


@pytest.fixture(autouse=True)
def no_github(monkeypatch, tmp_path):
    """No test sees the GitHub Actions environment of whatever runs it, unless it sets it; runs
    go on the fake lab."""
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    FakeLab.instances.clear()
    monkeypatch.setattr(runner_mod, "default_lab", lambda settings, log=print: FakeLab(settings, log))
    monkeypatch.setenv("CHAOSLAB_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def on_github(monkeypatch, tmp_path):
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


# -- JUnit from results ------------------------------------------------------------------------------
def violation(name="lookup_success_rate", value=0.5, bound=0.99, condition="lookup-success-rate", detail=""):
    return {"name": name, "value": value, "bound": bound, "subject": None, "detail": detail, "condition": condition}


def result(name="flip", role="primary", verdict="PASS", reasons=(), checks=(), coverage=None, firsts=(), **kw):
    cov = coverage if coverage is not None else {
        "lookup-success-rate": {"judged_secs": 60, "unknown_secs": 0, "method_secs": 60, "share": 1.0,
                                "violated_secs": 0, "unknown_because": []},
        "unowned-topics": {"judged_secs": 60, "unknown_secs": 0, "method_secs": 60, "share": 1.0,
                           "violated_secs": 0, "unknown_because": []}}
    return VariantResult(name, role, f"the {name} variant", {}, verdict=verdict, reasons=list(reasons),
                         checks=list(checks), coverage=cov, first_violations=list(firsts), started=10.0, ended=70.0, **kw)


def stub(results, error=None, selected=None, name="transfer-shedder", run_dir=Path("/runs/x")):
    names = selected or [r.name for r in results]
    return SimpleNamespace(exp=SimpleNamespace(name=name), results=results, error=error, run_dir=run_dir,
                           selected=[SimpleNamespace(name=n) for n in names], journal=None)


def cases(root) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in root.iter("testcase")}


def write_and_parse(tmp_path, runner, code, **kw) -> ET.Element:
    ci.junit(tmp_path / "junit.xml", runner, code, **kw)
    return ET.parse(tmp_path / "junit.xml").getroot()


NO_LOSS = {"name": "no-loss", "outcome": "pass", "evidence": "0 of 9000 lost"}


def test_junit_of_a_pass_is_green_with_a_case_per_variant_condition_and_check(tmp_path):
    root = write_and_parse(tmp_path, stub([result(checks=[NO_LOSS])]), 0)
    assert root.tag == "testsuite" and root.get("name") == "chaoslab-transfer-shedder"
    assert list(cases(root)) == ["flip: the flip variant", "condition lookup-success-rate", "condition unowned-topics",
                                 "check no-loss"]
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("4", "0", "0", "0")
    said = cases(root)["condition unowned-topics"].find("system-out").text
    assert said.startswith("judged 60 of 60 method seconds (100%), violated 0 s")
    assert cases(root)["flip: the flip variant"].get("time") == "60.0"


def test_junit_of_a_fail_names_the_first_violation(tmp_path):
    first = violation(detail="42 lookups failed")
    abort = Reason("aborted", "aborted: hypothesis violated for more than 20 s: lookup_success_rate: 0.5 vs bound 0.99",
                   short="hypothesis violated for more than 20 s", violations=[first]).as_dict()
    failed_check = {"name": "no-loss", "outcome": "fail", "evidence": "12 lost"}
    r = result(verdict="FAIL", reasons=[abort], checks=[failed_check], firsts=[first])
    r.coverage["lookup-success-rate"]["violated_secs"] = 25
    root = write_and_parse(tmp_path, stub([r]), 1)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "3", "0")
    c = cases(root)
    want = "first violation: lookup_success_rate: 0.5 vs bound 0.99 (42 lookups failed)"
    assert c["flip: the flip variant"].find("failure").get("message") == \
        "hypothesis violated for more than 20 s; " + want
    assert c["condition lookup-success-rate"].find("failure").get("message") == want
    assert "violated 25 s" in c["condition lookup-success-rate"].find("system-out").text
    assert c["condition unowned-topics"].find("failure") is None, "a condition that was not violated passed"
    assert c["check no-loss"].find("failure").get("message") == "final check no-loss failed: 12 lost"


@pytest.mark.parametrize("verdict, code", [("ERROR", 2), ("INTERRUPTED", 130), ("INCONCLUSIVE", 2)])
def test_junit_of_a_run_that_could_not_tell_is_an_error_never_green(tmp_path, verdict, code):
    reason = {"ERROR": Reason("lab-error", "lab error: broker-2 never became healthy"),
              "INTERRUPTED": Reason("interrupted", "interrupted"),
              "INCONCLUSIVE": Reason("coverage", "unowned-topics: judged 30 of 60 method seconds (50% < 95%)",
                                     short="unowned-topics judged only 50% of the method", subject="unowned-topics")}
    root = write_and_parse(tmp_path, stub([result(verdict=verdict, reasons=[reason[verdict].as_dict()])]), code)
    assert int(root.get("errors")) >= 1 and root.get("failures") == "0"
    c = cases(root)
    err = c["flip: the flip variant"].find("error")
    assert err.get("type") == verdict and err.get("message").startswith(f"{verdict}: ")
    if verdict == "INCONCLUSIVE":   # the condition judged too little says so, the other passes
        assert c["condition unowned-topics"].find("error").get("message") == "unowned-topics judged only 50% of the method"
        assert c["condition lookup-success-rate"].find("error") is None
    else:   # not judged to the end: neither passed nor failed
        assert c["condition unowned-topics"].find("skipped") is not None


def test_only_the_deciding_variant_can_make_a_run_red(tmp_path):
    control = result("control", role="control", verdict="FAIL", firsts=[violation()],
                     reasons=[Reason("violated", "hypothesis violated for 30 s (> 20 s)", violations=[violation()]).as_dict()])
    root = write_and_parse(tmp_path, stub([control, result("fix")]), 0)
    assert (root.get("failures"), root.get("errors")) == ("0", "0"), "exit 0 must read green"
    assert cases(root)["control: the control variant"].find("system-out").text.startswith("FAIL (role control")
    # the same control failing, with no primary run (--variant control): it decides
    root = write_and_parse(tmp_path, stub([control]), 1)
    assert root.get("failures") == "2"


def test_a_run_that_ended_before_its_variants_reads_as_an_error(tmp_path):
    root = write_and_parse(tmp_path, stub([], error="lab busy: pid 7", selected=["control", "flip"]), 2)
    c = cases(root)
    assert root.get("errors") == "1" and root.get("skipped") == "2"
    assert c["transfer-shedder"].find("error").get("message") == "ERROR: lab busy: pid 7"
    assert c["flip"].find("skipped").get("message") == "not run: the run ended before this variant (exit 2)"
    root = write_and_parse(tmp_path, None, 130, name="gate")
    assert cases(root)["gate"].find("error").get("type") == "INTERRUPTED"
    # a journal that could not be written turns PASS results into exit 2: still an error
    root = write_and_parse(tmp_path, stub([result()], error="journal: No space left on device"), 2)
    assert root.get("errors") == "1" and "No space left" in ET.tostring(root).decode()


def test_a_series_is_one_file_with_a_suite_per_run(tmp_path):
    runs = [stub([result()]), stub([result(verdict="FAIL", firsts=[violation()])])]
    ci.junit_series(tmp_path / "series.xml", runs, [0, 1])
    root = ET.parse(tmp_path / "series.xml").getroot()
    assert root.tag == "testsuites" and [s.get("name") for s in root] == [
        "chaoslab-transfer-shedder run-1", "chaoslab-transfer-shedder run-2"]
    assert (root.get("tests"), root.get("failures")) == ("6", "1")


def test_control_characters_from_evidence_stay_valid_xml(tmp_path):
    check = {"name": "logs", "outcome": "fail", "evidence": "broker said \x1b[31mERROR\x1b[0m\x00"}
    root = write_and_parse(tmp_path, stub([result(verdict="FAIL", checks=[check])]), 1)
    assert "?[31mERROR" in cases(root)["check logs"].find("failure").get("message")


# -- GitHub: escaping, summary, annotation -------------------------------------------------------------
def test_workflow_command_escaping():
    assert ci.escape_data("100% down\r\nnext") == "100%25 down%0D%0Anext"
    assert ci.escape_property("a: b, c%\n") == "a%3A b%2C c%25%0A"
    line = ci.workflow_command("error", "first violation: x, 5%\nrun folder: /r", title="chaoslab t: FAIL, 1")
    assert line == "::error title=chaoslab t%3A FAIL%2C 1::first violation: x, 5%25%0Arun folder: /r"
    assert "\n" not in line


def test_nothing_is_written_for_github_outside_it(tmp_path, capsys):
    ci.github("## head", False, "t", "m", [])
    assert capsys.readouterr().out == "" and not list(tmp_path.iterdir())


def test_the_step_summary_is_appended_and_a_bad_path_is_only_said(on_github, tmp_path, capsys, monkeypatch):
    on_github.write_text("earlier step\n")
    ci.github("## one", True, "t", "m", [])
    ci.github("## two", False, "chaoslab t: FAIL", "why", [])
    assert on_github.read_text() == "earlier step\n## one\n\n## two\n\n"
    assert capsys.readouterr().out == "::error title=chaoslab t%3A FAIL::why\n"
    said = []
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no-such-folder" / "s.md"))
    ci.github("## three", True, "t", "m", [], log=said.append)
    assert said and "could not write the step summary" in said[0]


# -- experiment, end to end on the fake lab --------------------------------------------------------------
def fake_runner_maker(values=(5,), secs=2.0, checks=()):
    """cli.make_runner's stand-in: the experiment's plan with the fake vocabulary, on the fake lab."""
    def make(exp, args, run_dir=None, variants=None, keep=None, live=None):
        plan = exp.plan("a")
        ss = plan.steady_state.model_copy(update={"hold_secs": 1.0, "grace_secs": 6.0, "tolerance_secs": 2.0,
                                                  "conditions": [FakeCondition()]})
        plan = plan.model_copy(update={"method": [FakeStep(id="change", secs=secs)], "steady_state": ss,
                                       "probes": [FakeProbe(values=list(values))], "checks": list(checks),
                                       "after": plan.after.model_copy(update={"secs": 0.5})})
        object.__setattr__(exp, "plan", lambda v: plan)
        from chaoslab.report import build_report
        return Runner(exp, run_dir=run_dir, settings=LabSettings(), log=lambda m: None, finishers=[build_report])
    return make


@pytest.fixture
def exp_file(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(EXP)
    return f


def test_experiment_fail_json_junit_summary_and_annotation(tmp_path, exp_file, monkeypatch, capsys, on_github):
    monkeypatch.setattr(cli, "make_runner", fake_runner_maker(values=[5, 5, 5, 50], secs=6))
    run = tmp_path / "run"
    code = cli.main(["experiment", str(exp_file), "--out", str(run), "--json"])
    assert code == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)   # stdout is the one JSON object, nothing else
    assert (doc["experiment"], doc["run_folder"], doc["verdict"], doc["exit_code"]) == ("t", str(run), "FAIL", 1)
    assert doc["junit"] == str(run / "junit.xml") and doc["report"] == str(run / "report.md") and doc["not_run"] == []
    (v,) = doc["variants"]
    assert (v["name"], v["role"], v["verdict"], v["decides"]) == ("a", "primary", "FAIL", True)
    assert v["first_violation"]["violation"]["condition"] == "fake-max"
    assert v["first_violation"]["text"] == "fake: 50 vs bound 10" and v["reasons"] and v["checks"] == []
    assert v["coverage"]["fake-max"]["violated_secs"] >= 2
    # JUnit in the run folder: the variant and its condition fail on the first violation
    root = ET.parse(run / "junit.xml").getroot()
    assert cases(root)["condition fake-max"].find("failure").get("message") == "first violation: fake: 50 vs bound 10"
    assert root.get("failures") == "2"
    # with --json the annotation is on stderr, one line; human output too
    errors = [line for line in captured.err.splitlines() if line.startswith("::error")]
    assert errors == [errors[0]] and errors[0].startswith("::error title=chaoslab t%3A FAIL::a FAIL: ")
    assert "%0Afirst violation%3A" not in errors[0] and "%0Afirst violation: fake: 50 vs bound 10%0A" in errors[0]
    assert "VERDICT: FAIL" in captured.err
    summary = on_github.read_text()
    assert summary.startswith("# chaoslab: t\n\n**Verdict: FAIL (exit 1)**\n") and "\n## Why\n" in summary
    assert "| variant | role | verdict | reason |" in summary and "| a | primary | FAIL |" in summary
    assert "First violation" in summary and f"Run folder: `{run}`" in summary


def test_experiment_pass_is_quiet_on_github_and_prints_no_json_without_asking(tmp_path, exp_file, monkeypatch,
                                                                              capsys, on_github):
    monkeypatch.setattr(cli, "make_runner", fake_runner_maker())
    junit = tmp_path / "reports" / "chaoslab.xml"
    assert cli.main(["experiment", str(exp_file), "--out", str(tmp_path / "run"), "--junit", str(junit)]) == 0
    out = capsys.readouterr().out
    assert "::error" not in out and "VERDICT: PASS" in out and f"junit: {junit}" in " ".join(out.split())
    root = ET.parse(junit).getroot()
    assert (root.get("failures"), root.get("errors")) == ("0", "0") and (tmp_path / "run" / "junit.xml").exists()
    assert on_github.read_text().startswith("# chaoslab: t\n\n**Verdict: PASS (exit 0)**")


# -- experiment with a stub runner: lab errors, interrupts, refusals, series ----------------------------------
class StubRunner:
    """What the CLI reads of a Runner. run() ends with `code` (writing a journal, as a run that
    began does), or raises what it is given before the run begins."""

    def __init__(self, run_dir, code=0, results=(), raises=None):
        self.exp = SimpleNamespace(name="t")
        self.run_dir = Path(run_dir)
        self.results, self.code, self.raises = list(results), code, raises
        self.selected = [SimpleNamespace(name="a")]
        self.error = None
        self.journal = None

    def run(self):
        if self.raises is not None:
            raise self.raises
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "journal.jsonl").write_text("")
        self.journal = object()
        return self.code


def use_stubs(monkeypatch, *stubs_):
    made = iter(stubs_)

    def make(exp, args, run_dir=None, variants=None, keep=None, live=None):
        s = next(made)
        s.run_dir = Path(run_dir) if run_dir else s.run_dir
        return s
    monkeypatch.setattr(cli, "make_runner", make)
    monkeypatch.setattr(cli, "finish_bundle", lambda runner, tar: runner.run_dir)


def test_a_lab_busy_before_the_run_is_a_lab_error_in_junit_and_json(tmp_path, exp_file, monkeypatch, capsys):
    from chaoslab.lab.lock import LabBusy
    run = tmp_path / "run"
    use_stubs(monkeypatch, StubRunner(run, raises=LabBusy("lab busy: pid 7 runs chaoslab gate")))
    code = cli.main(["experiment", str(exp_file), "--out", str(run), "--json", "--junit", str(tmp_path / "j.xml")])
    assert code == 2
    doc = json.loads(capsys.readouterr().out)
    assert (doc["verdict"], doc["exit_code"], doc["error"]) == ("ERROR", 2, "lab busy: pid 7 runs chaoslab gate")
    assert doc["variants"] == [] and doc["not_run"] == ["a"]
    for path in (tmp_path / "j.xml", run / "junit.xml"):
        root = ET.parse(path).getroot()
        assert root.get("errors") == "1" and root.find("testcase/error").get("type") == "ERROR"


def test_a_run_folder_that_holds_another_run_is_left_alone(tmp_path, exp_file, monkeypatch, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "junit.xml").write_text("<testsuite name='the earlier run'/>")
    use_stubs(monkeypatch, StubRunner(used, raises=LabError(f"run folder {used} already holds a run: choose another --out")))
    code = cli.main(["experiment", str(exp_file), "--out", str(used), "--junit", str(tmp_path / "j.xml")])
    assert code == 2
    assert (used / "junit.xml").read_text() == "<testsuite name='the earlier run'/>"
    assert "already holds a run" in ET.parse(tmp_path / "j.xml").getroot().find("testcase/error").get("message")


def test_the_tracker_counts_the_seconds_each_condition_was_violated():
    from chaoslab.run.context import Tracker
    tr = Tracker(tolerance_secs=5)
    both = [violation(condition="a"), violation(name="x", condition="a"), violation(condition="b")]
    tr.update(0, both, {}, ["a", "b"], count=True)
    tr.update(1, [violation(condition="a")], {}, ["a", "b"], count=True)
    tr.update(2, [violation(condition="a")], {}, ["a", "b"], count=False)   # outside the method: not counted
    cov = tr.coverage_report(["a", "b", "c"])
    assert [cov[n]["violated_secs"] for n in "abc"] == [2, 1, 0]


def test_an_interrupted_run_is_130_and_an_error_in_junit(tmp_path, exp_file, monkeypatch, capsys):
    run = tmp_path / "run"
    interrupted = result("a", verdict="INTERRUPTED", reasons=[Reason("interrupted", "interrupted").as_dict()])
    use_stubs(monkeypatch, StubRunner(run, code=130, results=[interrupted]))
    assert cli.main(["experiment", str(exp_file), "--out", str(run), "--json"]) == 130
    assert json.loads(capsys.readouterr().out)["verdict"] == "INTERRUPTED"
    err = ET.parse(run / "junit.xml").getroot().find("testcase/error")
    assert err.get("type") == "INTERRUPTED"
    # Ctrl-C before the run could begin: still 130, still an error
    use_stubs(monkeypatch, StubRunner(tmp_path / "run2", raises=KeyboardInterrupt()))
    assert cli.main(["experiment", str(exp_file), "--out", str(tmp_path / "run2")]) == 130
    assert ET.parse(tmp_path / "run2" / "junit.xml").getroot().find("testcase/error").get("type") == "INTERRUPTED"


def test_a_refused_experiment_writes_junit_json_and_an_error_annotation(tmp_path, capsys, on_github):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvariants: []\n")
    code = cli.main(["experiment", str(bad), "--json", "--junit", str(tmp_path / "j.xml")])
    assert code == 2
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert (doc["experiment"], doc["verdict"], doc["exit_code"], doc["run_folder"]) == ("bad", "REFUSED", 2, None)
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.find("testcase/error").get("type") == "REFUSED" and root.get("errors") == "1"
    assert any(line.startswith("::error title=chaoslab experiment%3A REFUSED::") for line in captured.err.splitlines())
    assert on_github.read_text().startswith("## chaoslab experiment: REFUSED (exit 2)")


def test_a_repeated_experiment_writes_a_series_junit_and_json(tmp_path, exp_file, monkeypatch, capsys):
    failed = result("a", verdict="FAIL", firsts=[violation()],
                    reasons=[Reason("violated", "hypothesis violated for 30 s (> 20 s)", violations=[violation()]).as_dict()])
    use_stubs(monkeypatch, StubRunner(tmp_path, 0, [result("a")]), StubRunner(tmp_path, 1, [failed]))
    base = tmp_path / "series"
    code = cli.main(["experiment", str(exp_file), "--out", str(base), "--repeat", "2", "--json"])
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["verdict"], doc["exit_code"], doc["exit_codes"], doc["junit"]) == ("FAIL", 1, [0, 1], str(base / "junit.xml"))
    assert [r["run_folder"] for r in doc["runs"]] == [str(base / "run-1"), str(base / "run-2")]
    assert doc["runs"][1]["variants"][0]["first_violation"]["text"] == "lookup_success_rate: 0.5 vs bound 0.99"
    root = ET.parse(base / "junit.xml").getroot()
    assert root.tag == "testsuites" and len(root) == 2 and root.get("failures") == "2"
    assert ET.parse(base / "run-1" / "junit.xml").getroot().get("failures") == "0"


# -- gate -------------------------------------------------------------------------------------------------
@pytest.fixture
def gate_ready(monkeypatch):
    monkeypatch.setattr("chaoslab.lab.broker_settings.check_broker_settings", lambda *a, **k: None)
    monkeypatch.setattr("chaoslab.lab.releases.check_release_resolves", lambda *a, **k: None)


def test_an_unsafe_gate_annotates_on_stdout_and_summarises(tmp_path, monkeypatch, capsys, on_github, gate_ready):
    first = violation(detail="broker-2 owns nothing")
    failed = result("change", verdict="FAIL", firsts=[first],
                    reasons=[Reason("aborted", "aborted: hypothesis violated for more than 20 s",
                                    short="hypothesis violated for more than 20 s", violations=[first]).as_dict()])
    use_stubs(monkeypatch, StubRunner(tmp_path, 1, [failed]))
    code = cli.main(["gate", "--to", "3.2.3", "--repeat", "1", "--out", str(tmp_path / "g")])
    assert code == 1
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("::error")]
    assert line.startswith("::error title=chaoslab gate%3A UNSAFE::change FAIL: hypothesis violated for more than 20 s%0A"
                           "first violation: lookup_success_rate: 0.5 vs bound 0.99 (broker-2 owns nothing)%0A")
    summary = on_github.read_text()
    assert summary.startswith("## chaoslab gate: UNSAFE (exit 1)\n") and "1 run(s): 1 failed of 1 judged" in summary
    # the run's first screen below the gate's heading: its headings one level down
    assert "\n## chaoslab: g\n" in summary and "\n# " not in summary
    assert "First violation: lookup_success_rate: 0.5 vs bound 0.99 (broker-2 owns nothing)" in summary


def test_a_gate_series_writes_one_junit_at_the_path_given(tmp_path, monkeypatch, capsys, gate_ready):
    use_stubs(monkeypatch, StubRunner(tmp_path, 0, [result("change")]), StubRunner(tmp_path, 0, [result("change")]))
    junit = tmp_path / "gate.xml"
    code = cli.main(["gate", "--to", "3.2.3", "--repeat", "2", "--out", str(tmp_path / "g"), "--junit", str(junit),
                     "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "SAFE" and doc["junit"] == str(junit)
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and len(root) == 2 and (root.get("failures"), root.get("errors")) == ("0", "0")
    assert (tmp_path / "g" / "run-1" / "junit.xml").exists() and (tmp_path / "g" / "run-2" / "junit.xml").exists()


def test_an_inconclusive_gate_keeps_stdout_one_json_object_and_annotates_on_stderr(tmp_path, capsys, on_github):
    conf = tmp_path / "c.conf"
    conf.write_text("maxConcurrentLookupRequest=1\n")
    assert cli.main(["gate", "--broker-conf", str(conf), "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["verdict"] == "INCONCLUSIVE"
    assert any(x.startswith("::error title=chaoslab gate%3A INCONCLUSIVE::the lab cannot represent the change")
               for x in captured.err.splitlines())
    assert "maxConcurrentLookupRequest" in on_github.read_text()


# -- the action and its script -------------------------------------------------------------------------------
def stub_chaoslab(tmp_path: Path, code: int, verdict: str | None) -> Path:
    """A `chaoslab` that records its argv (one argument a line) and prints a --json object."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "chaoslab"
    body = f"echo '{json.dumps({'verdict': verdict, 'exit_code': code})}'" if verdict else "echo 'usage: ...' >&2"
    exe.write_text(f"#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$ARGV_FILE\"\n{body}\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def run_script(tmp_path, code, verdict, **inputs) -> tuple[subprocess.CompletedProcess, list[str], str]:
    bin_dir = stub_chaoslab(tmp_path, code, verdict)
    output = tmp_path / "github-output"
    output.write_text("")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_FILE": str(tmp_path / "argv"),
           "GITHUB_OUTPUT": str(output), **{f"INPUT_{k.upper()}": v for k, v in inputs.items()}}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return proc, (tmp_path / "argv").read_text().splitlines(), output.read_text()


@pytest.mark.parametrize("code, verdict", [(0, "SAFE"), (1, "UNSAFE"), (2, "LAB ERROR"), (130, "INTERRUPTED")])
def test_the_script_builds_the_gate_argv_and_passes_the_exit_code_through(tmp_path, code, verdict):
    proc, argv, outputs = run_script(tmp_path, code, verdict, FROM="3.2.2", TO="3.2.3",
                                     BROKER_CONF="pulsar/change with space.conf", EXPERIMENT="", REPEAT="3",
                                     JUNIT="reports/gate.xml", RUN_FOLDER="runs/gate-1")
    assert proc.returncode == code, proc.stderr
    assert argv == ["gate", "--json", "--out", "runs/gate-1", "--junit", "reports/gate.xml", "--from", "3.2.2",
                    "--to", "3.2.3", "--broker-conf", "pulsar/change with space.conf", "--repeat", "3"]
    assert outputs.splitlines() == [f"verdict={verdict}", f"exit-code={code}", "junit=reports/gate.xml",
                                    "run-folder=runs/gate-1"]
    assert json.loads(proc.stdout)["verdict"] == verdict   # the JSON object reaches the log as it is


def test_the_script_defaults_and_a_verdict_without_json(tmp_path):
    proc, argv, outputs = run_script(tmp_path, 2, None)
    assert proc.returncode == 2
    assert argv[:3] == ["gate", "--json", "--out"] and argv[3].startswith("chaoslab-runs/gate-")
    assert argv[4:] == ["--junit", f"{argv[3]}/junit.xml"], "no input, no option: chaoslab's own defaults"
    assert outputs.splitlines()[:2] == ["verdict=LAB ERROR", "exit-code=2"]


def test_the_action_sets_up_then_runs_the_script_with_every_input():
    action = yaml.safe_load((REPO_ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    setup, gate = action["runs"]["steps"]
    assert "make" in setup["run"] and "setup" in setup["run"] and "GITHUB_ACTION_PATH" in setup["run"]
    assert gate["run"] == 'bash "$GITHUB_ACTION_PATH/scripts/ci-gate.sh"' and gate["shell"] == "bash"
    for name in action["inputs"]:
        variable = "INPUT_" + name.upper().replace("-", "_")
        assert gate["env"][variable] == f"${{{{ inputs.{name} }}}}", name
        assert variable in SCRIPT.read_text(), f"{variable} is set by action.yml but the script never reads it"
    assert {"from", "to", "broker-conf", "experiment", "repeat", "junit"} <= set(action["inputs"])
    for name in ("verdict", "junit", "run-folder", "exit-code"):
        assert action["outputs"][name]["value"] == f"${{{{ steps.{gate['id']}.outputs.{name} }}}}"
        assert f"put {name} " in SCRIPT.read_text()


def test_the_ci_examples_run_the_script_on_a_broker_conf_or_release_change():
    gh = yaml.safe_load((REPO_ROOT / "docs" / "ci" / "github-workflow.yml").read_text())
    triggers = gh[True]   # YAML 1.1 reads the key `on` as true
    assert set(triggers["pull_request"]["paths"]) == {"**/broker.conf", "pulsar/RELEASE"}
    steps = gh["jobs"]["gate"]["steps"]
    assert any(s.get("uses") == "./.chaoslab" and s.get("id") == "gate" for s in steps)
    gl = yaml.safe_load((REPO_ROOT / "docs" / "ci" / "gitlab-ci.yml").read_text())["chaoslab-gate"]
    assert gl["rules"][0]["changes"] == ["**/broker.conf", "pulsar/RELEASE"]
    assert any("scripts/ci-gate.sh" in line for line in gl["script"])
    assert gl["artifacts"]["when"] == "always" and gl["artifacts"]["reports"]["junit"]


def test_broker_conf_change_lists_the_settings_a_commit_changes(tmp_path):
    def git(*a):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *a], cwd=tmp_path, check=True,
                       capture_output=True)
    git("init", "-q", ".")
    conf = tmp_path / "broker.conf"
    conf.write_text("# prod\nclusterName=prod\nloadBalancerSheddingEnabled=true\nold=1\n")
    git("add", ".")
    git("commit", "-qm", "base")
    conf.write_text("# prod\nclusterName = prod\nloadBalancerSheddingEnabled=false\r\nmaxConcurrentLookupRequest=50000\n")
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "broker-conf-change.sh"), "HEAD", "broker.conf"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["loadBalancerSheddingEnabled=false", "maxConcurrentLookupRequest=50000"]
    assert "cannot unset a setting): old" in proc.stderr
    from chaoslab.gate import read_broker_conf
    (tmp_path / "change.conf").write_text(proc.stdout)
    assert read_broker_conf(tmp_path / "change.conf") == {"loadBalancerSheddingEnabled": "false",
                                                          "maxConcurrentLookupRequest": "50000"}
