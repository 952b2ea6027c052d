"""`chaoslab plan`: a dry run that says, per variant, what each step will change (service, release,
settings before -> after and where "before" comes from), when, what the run needs and how long it
should take. Every registered step type describes itself; nothing is started (no engine, no
Maven with --offline)."""

import json
from pathlib import Path
from typing import Literal

import pytest

from chaoslab import cli, plan
from chaoslab.errors import EngineUnavailable
from chaoslab.lab import pulsar_dist, releases
from chaoslab.reference import first_paragraph
from chaoslab.spec.base import REGISTRY, Step
from chaoslab.spec.experiment import load, parse
from chaoslab.spec.planning import IMAGE_DEFAULT, PlannedLab

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "experiments").glob("*.yaml"))
EXTENSIBLE = "org.apache.pulsar.broker.loadbalance.extensions.ExtensibleLoadManagerImpl"
MODULAR = "org.apache.pulsar.broker.loadbalance.impl.ModularLoadManagerImpl"
TRANSFER = "org.apache.pulsar.broker.loadbalance.extensions.scheduler.TransferShedder"
THRESHOLD = "org.apache.pulsar.broker.loadbalance.impl.ThresholdShedder"

# one spec per registered step type: a new type fails test_every_step_type_describes_itself
# until it has a sample here, a docstring and its own describe()
SAMPLES = {
    "roll-broker": {"broker": 2, "version": "to", "broker_config": {"loadManagerClassName": EXTENSIBLE}},
    "restart-brokers": {"version": "to", "broker_config": {"loadManagerClassName": EXTENSIBLE}},
    "recover-system-topics": {"delete_topics": ["persistent://pulsar/system/x"]},
    "observe-broker": {"broker": 1, "secs": 30},
    "namespace-persistence": {"ensemble": 3, "write_quorum": 3, "ack_quorum": 3},
    "concurrent-lookups": {"partitions": 4, "clients": 2},
    "lookup-every-bundle": {"broker": 1},
    "stop-service": {"service": "proxy", "for_secs": 60},
    "kill-service": {"service": "bookie-2"},
    "slow-service": {"service": "broker-1", "cpus": 0.1, "pause_secs": 2, "every_secs": 5, "for_secs": 30},
    "wait": {"secs": 45},
    "remove-rabbitmq-node": {"node": 3, "via": 1},
}


@pytest.fixture(autouse=True)
def no_engine_no_build(tmp_path, monkeypatch):
    """No real engine, no assembled classpaths, no runs: every test says what it gives."""
    def refuse(timeout=120):
        raise EngineUnavailable("no container engine answers (a test)")
    monkeypatch.setattr("chaoslab.lab.cluster.engine", refuse)
    monkeypatch.setattr(pulsar_dist, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(plan, "RUNS_DIR", tmp_path / "runs")
    for var in ("PULSAR_FROM", "PULSAR_TO", "PULSAR_FIXED", "PULSAR_DOSE", "PULSAR_UNMODIFIED", "PULSAR_KNOCKOUT"):
        monkeypatch.delenv(var, raising=False)


def no_maven(monkeypatch):
    monkeypatch.setattr(releases.subprocess, "run", lambda *a, **k: pytest.fail("Maven was run"))


def lab_for(text: str, variant: str | None = None) -> tuple:
    exp = parse(text, env={})
    p = exp.plan(variant or exp.primary)
    return exp, PlannedLab(exp, p, broker_defaults={"loadManagerClassName": MODULAR})


def row(variant: dict, step_id: str) -> dict:
    return next(r for r in variant["rows"] if r["id"] == step_id)


def changes(r: dict, what: str, key: str | None = None) -> list[dict]:
    return [c for c in r["changes"] if c["what"] == what and (key is None or c["key"] == key)]


# -- the vocabulary: every step says what it does --------------------------------------------------------
def undescribed(registry: dict[str, type]) -> list[str]:
    """Step types without their own description: a class docstring and a describe()."""
    return sorted(name for name, cls in registry.items()
                  if not first_paragraph(cls) or cls.describe is Step.describe)


def test_every_step_type_describes_itself():
    assert not undescribed(REGISTRY["step"]), "step types without a docstring or describe()"
    assert set(SAMPLES) == set(REGISTRY["step"]), "add a SAMPLES entry for every registered step type"
    _exp, lab = lab_for("name: t\nvariants: [{name: a}]\nlab: {rabbitmq_nodes: 3}\n"
                        "method: [{type: wait, secs: 1}]\n")
    for name, spec in SAMPLES.items():
        step = REGISTRY["step"][name].model_validate({"type": name, **spec})
        d = step.describe(lab)
        assert d.does.strip(), name
        lo, hi = d.secs
        assert lo >= 0 and (hi is None or hi >= lo), (name, d.secs)
        for c in [*d.changes, *d.undo_changes]:
            assert c.service and c.what and c.before != c.after, (name, c)


def test_a_step_type_without_a_description_is_caught():
    class Quiet(Step):
        type: Literal["quiet"] = "quiet"

    class Documented(Step):
        """Does a thing."""
        type: Literal["documented"] = "documented"

    class Described(Step):
        """Does a thing."""
        type: Literal["described"] = "described"

        def describe(self, lab):
            return None
    assert undescribed({"quiet": Quiet, "documented": Documented, "described": Described}) == ["documented", "quiet"]
    with pytest.raises(NotImplementedError, match="has no describe"):
        Documented().describe(None)


# -- what the shipped headline experiment changes ----------------------------------------------------------
def test_the_flip_changes_the_load_manager_and_the_release():
    result = plan.build(ROOT / "experiments/transfer-shedder.yaml", offline=True)
    assert result["exit_code"] == 0 and not result["problems"]
    flip = next(v for v in result["variants"] if v["name"] == "flip")
    assert flip["lab"]["broker_config"] == {"maxConcurrentLookupRequest": "50", "maxConcurrentTopicLoadRequest": "5"}
    for n in (1, 2, 3):
        r = row(flip, f"roll-broker-{n}")
        assert r["phase"] == "method"
        [release] = changes(r, "release")
        assert (release["service"], release["before"], release["after"]) == (f"broker-{n}", "3.2.2", "3.2.3")
        [lm] = changes(r, "setting", "loadManagerClassName")
        assert (lm["before"], lm["after"], lm["source"]) == (MODULAR, EXTENSIBLE, IMAGE_DEFAULT)
        [shed] = changes(r, "setting", "loadBalancerLoadSheddingStrategy")
        assert (shed["before"], shed["after"]) == (THRESHOLD, TRANSFER)
        undo = row(flip, f"undo roll-broker-{n}")
        assert undo["phase"] == "rollback" and undo["when"] == "on abort"
        assert {(c["key"], c["before"], c["after"]) for c in undo["changes"]} == {
            ("loadManagerClassName", EXTENSIBLE, MODULAR), ("loadBalancerLoadSheddingStrategy", TRANSFER, THRESHOLD)}
    control = next(v for v in result["variants"] if v["name"] == "control")
    assert not changes(row(control, "roll-broker-1"), "setting")
    assert changes(row(control, "roll-broker-1"), "release")[0]["after"] == "3.2.3"
    fixed = next(v for v in result["variants"] if v["name"] == "flip-fixed")
    assert changes(row(fixed, "roll-broker-3"), "release")[0]["after"] == "3.3.2"
    # the phases in the runner's order; the steps in the file's
    phases = [r["phase"] for r in flip["rows"]]
    assert phases == sorted(phases, key=["before", "method", "rollback", "after"].index)
    assert [r["id"] for r in flip["rows"] if r["phase"] == "method"] == [
        "roll-broker-1", "lookup-every-bundle", "roll-broker-2", "roll-broker-3"]
    assert {r["release"] for r in result["releases"]} == {"3.2.2", "3.2.3", "3.3.2", "3.0.0"}


def test_the_human_plan_names_the_change(capsys, monkeypatch):
    no_maven(monkeypatch)
    assert cli.main(["plan", str(ROOT / "experiments/transfer-shedder.yaml"), "--offline", "--variant", "flip"]) == 0
    text = capsys.readouterr().out
    assert "variant flip (primary)" in text and "variant control" not in text
    assert "broker-1 release 3.2.2 -> 3.2.3" in text
    assert "loadManagerClassName: ModularLoadManagerImpl (image default) -> ExtensibleLoadManagerImpl" in text
    assert "publish-success-rate ≥ 0.99" in text
    assert "plan ok" in text


def test_a_later_step_starts_from_what_an_earlier_one_set():
    result = plan.build(ROOT / "experiments/late-rollback.yaml", offline=True)
    v = result["variants"][0]
    [back] = changes(row(v, "rollback-broker-1"), "setting", "loadManagerClassName")
    assert (back["before"], back["after"], back["source"]) == (EXTENSIBLE, MODULAR, "flip-broker-1")


def test_the_method_is_laid_out_as_the_runner_starts_it():
    text = ("name: t\nvariants: [{name: a}]\n"
            "method:\n"
            "  - {id: one, type: wait, secs: 10}\n"
            "  - {id: two, type: wait, secs: 20, delay_secs: 5}\n"
            "  - {id: beside, type: kill-service, service: bookie-2, after: one, undo_when: at-end}\n"
            "  - {id: late, type: wait, secs: 1, at_secs: 100}\n")
    exp = parse(text, env={})
    p = exp.plan("a")
    lab = PlannedLab(exp, p)
    times = plan.schedule(p.method, {s.id: s.describe(lab).secs for s in p.method})
    assert times["one"]["start"] == (0, 0)
    assert times["two"]["start"] == (15, 15)          # after `one` (10 s) plus its 5 s delay
    assert times["beside"]["start"] == (10, 10)       # beside `two`, after `one`
    assert times["late"]["start"] == (100, 100)       # at_secs, whatever came before
    result_rows = plan.variant_plan(exp, exp.variant("a"), None, lab.settings, first=True)[0]["rows"]
    undo = next(r for r in result_rows if r["id"] == "undo beside")
    assert undo["when"] == "at the end" and undo["changes"][0]["after"] == "running"


def test_a_setting_unset_everywhere_is_pulsars_default():
    _exp, lab = lab_for("name: t\nvariants: [{name: a}]\n"
                        "method: [{type: roll-broker, broker: 1, broker_config: {brokerShutdownTimeoutMs: 1000}}]\n")
    d = REGISTRY["step"]["roll-broker"](broker=1, broker_config={"brokerShutdownTimeoutMs": "1000"}).describe(lab)
    [setting] = [c for c in d.changes if c.what == "setting"]
    assert setting.before is None and setting.source == "Pulsar's default"
    assert d.undo_changes[0].after is None


# -- every shipped file, offline ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_experiment_plans_offline(path, tmp_path, monkeypatch, capsys):
    no_maven(monkeypatch)
    exp = load(path)
    for release in exp.releases():   # a labelled release is a build the user supplies
        if "-" in release:
            lib = tmp_path / release / "lib"
            lib.mkdir(parents=True)
            (lib / f"pulsar-broker-{release}.jar").write_bytes(b"PK")
            monkeypatch.setenv(releases.supplied.env_name(release), str(lib))
    assert cli.main(["plan", str(path), "--offline", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["experiment"] == exp.name
    assert [v["name"] for v in result["variants"]] == [v.name for v in exp.variants]
    for v in result["variants"]:
        assert any(r["phase"] == "method" for r in v["rows"]), v["name"]
        assert all(r["does"] for r in v["rows"])
    assert all(i["status"] == "unknown (no engine)" for i in result["images"])


# -- refusals ------------------------------------------------------------------------------------------------
def test_an_invalid_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nvariants: [{name: a}]\nmethod: [{type: roll-broker, broker: 12}]\n")
    assert cli.main(["plan", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "method[0].broker" in captured.err
    assert cli.main(["plan", str(tmp_path / "absent.yaml"), "--json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_build_nobody_supplied_is_a_problem(monkeypatch, capsys):
    monkeypatch.delenv("PULSAR_DIST_3_3_1_KNOCKOUT", raising=False)
    no_maven(monkeypatch)
    assert cli.main(["plan", str(ROOT / "experiments/store-knockout.yaml"), "--offline"]) == 2
    out = capsys.readouterr().out
    assert "PROBLEM: Pulsar 3.3.1-knockout" in out and "PULSAR_DIST_3_3_1_KNOCKOUT=" in out


def test_a_release_maven_cannot_resolve_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("PULSAR_TO", "9.9.7")
    monkeypatch.setattr(releases, "_local_jar", lambda *a: Path("/nonexistent/x.jar"))
    monkeypatch.setattr(releases.shutil, "which", lambda *_: "/usr/bin/mvn")

    class Missing:
        returncode, stdout, stderr = 1, "", "[ERROR] Could not find artifact org.apache.pulsar:pulsar-broker:jar:9.9.7"

    class Found:
        returncode, stdout, stderr = 0, "", ""
    asked = []

    def maven(argv, **kw):
        asked.append(argv[-2])
        return Missing() if "9.9.7" in argv[-2] else Found()
    monkeypatch.setattr(releases.subprocess, "run", maven)
    assert cli.main(["plan", str(ROOT / "experiments/bookie-loss-mid-upgrade.yaml"), "--json"]) == 2
    result = json.loads(capsys.readouterr().out)
    bad = [r for r in result["releases"] if r["ok"] is False]
    assert [r["release"] for r in bad] == ["9.9.7"] and "not a release Maven can resolve" in bad[0]["detail"]
    assert "-Dartifact=org.apache.pulsar:pulsar-broker:9.9.7" in asked
    # offline, the same release is only not known
    monkeypatch.setattr(releases.subprocess, "run", lambda *a, **k: pytest.fail("Maven was run"))
    assert cli.main(["plan", str(ROOT / "experiments/bookie-loss-mid-upgrade.yaml"), "--json", "--offline"]) == 0
    statuses = {r["release"]: r["status"] for r in json.loads(capsys.readouterr().out)["releases"]}
    assert statuses["9.9.7"] == "unknown (offline)"


def test_a_setting_the_release_lacks_is_a_problem_when_its_list_is_at_hand(tmp_path):
    settings = pulsar_dist.classpath_dir("3.2.3") / "broker-settings.txt"
    settings.parent.mkdir(parents=True)
    settings.write_text("loadManagerClassName\nmaxConcurrentLookupRequest\n")
    result = plan.build(ROOT / "experiments/transfer-shedder.yaml", offline=True, variants=["flip"])
    on_323 = next(s for s in result["broker_settings"] if s["release"] == "3.2.3")
    assert on_323["ok"] is False and "loadBalancerLoadSheddingStrategy" in on_323["detail"]
    assert result["exit_code"] == 2


# -- images and the last run -----------------------------------------------------------------------------------
class FakeImages:
    def __init__(self, present):
        self.present = present

    def get(self, tag):
        if tag not in self.present:
            raise type("ImageNotFound", (Exception,), {})(tag)
        return object()


def test_images_are_looked_up_when_an_engine_answers():
    class Client:
        images = FakeImages({"chaoslab/pulsar:3.2.2", "chaoslab/base:bookworm"})
    result = plan.build(ROOT / "experiments/bookie-loss-mid-upgrade.yaml", offline=True, engine=lambda: Client())
    status = {i["image"]: i["status"] for i in result["images"]}
    assert status["chaoslab/pulsar:3.2.2"] == "present"
    assert status["chaoslab/pulsar:3.2.3"] == "missing: the run builds it"
    assert result["engine"] == "answers" and result["exit_code"] == 0


def write_run(runs: Path, folder: str, run_id: str, experiment: str, roll_secs: float, lab_secs: float) -> None:
    d = runs / folder
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"run_id": run_id, "experiment": experiment, "variants": []}))
    t = 1000.0
    recs = [{"t": t, "type": "run-start", "run_id": run_id, "experiment": experiment},
            {"t": t, "type": "event", "variant": "flip", "name": "variant-start"},
            {"t": t + lab_secs, "type": "event", "variant": "flip", "name": "lab-up", "secs": lab_secs},
            {"t": t + lab_secs + 20, "type": "event", "variant": "flip", "name": "steady-state-held", "secs": 20},
            {"t": t + lab_secs + 21, "type": "sample", "variant": "flip", "phase": "method"},
            {"t": t + lab_secs + 20 + roll_secs, "type": "event", "variant": "flip", "name": "step-end",
             "step": "roll-broker-1", "secs": roll_secs},
            {"t": t + lab_secs + 60 + roll_secs, "type": "event", "variant": "flip", "name": "variant-end",
             "verdict": "PASS"},
            {"t": t + lab_secs + 61 + roll_secs, "type": "run-end", "verdict": "PASS"}]
    (d / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"torn')


def test_the_last_run_of_the_same_experiment_gives_the_timings(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "old", "20240101T000000-transfer-shedder", "transfer-shedder", roll_secs=99, lab_secs=90)
    write_run(runs, "new", "20250101T000000-transfer-shedder", "transfer-shedder", roll_secs=24.6, lab_secs=38)
    write_run(runs, "other", "20260101T000000-late-rollback", "late-rollback", roll_secs=1, lab_secs=1)
    result = plan.build(ROOT / "experiments/transfer-shedder.yaml", offline=True, runs_dir=runs, variants=["flip"])
    assert result["last_run"]["run_id"] == "20250101T000000-transfer-shedder"
    flip = result["variants"][0]
    assert row(flip, "roll-broker-1")["last_run_secs"] == 24.6
    assert row(flip, "lab")["last_run_secs"] == 38
    assert row(flip, "steady-state")["last_run_secs"] == 20
    assert "last_run_secs" not in row(flip, "roll-broker-2")
    assert flip["last_run"]["total_secs"] == 38 + 60 + 24.6 and flip["last_run"]["verdict"] == "PASS"
    assert result["duration"]["last_run_secs"] == 38 + 60 + 24.6


def test_the_files_bounds_add_up():
    result = plan.build(ROOT / "experiments/rabbitmq-fallback.yaml", offline=True, variants=["slow-node-removed"])
    v = result["variants"][0]
    remove = row(v, "remove-node")
    assert remove["start"] == {"min_secs": 30, "max_secs": 30}     # at_secs: 30
    d = v["duration"]
    # steady 20..110, method: slow-node 0..155 beside remove-node 30 + 0..160, after exactly 20
    assert d["method"] == {"min_secs": 30, "max_secs": 190}
    assert d["total_without_lab_start"] == {"min_secs": 20 + 30 + 20, "max_secs": 110 + 190 + 20}
    assert not result["releases"]   # a RabbitMQ-only lab needs no Pulsar release
