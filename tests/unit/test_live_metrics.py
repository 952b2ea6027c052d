"""Live metrics (chaoslab/live.py) read the way Prometheus reads them: over real HTTP on
127.0.0.1 (an ephemeral port), the text parsed with prometheus_client's own parser. Fed a fake
sequence of runner records, and fed by the runner itself driving the fake lab; a port that is
taken never fails a run. Also: each condition's second as data (value, bound, state), and the
step bands as Grafana annotations (chaoslab/report/annotations.py)."""

from __future__ import annotations

import json
import math
import re
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaoslab import cli
from chaoslab.errors import LabError
from chaoslab.live import DEFAULT_PORT, LiveMetrics, linger_secs, live_metrics, metrics_port, serve
from chaoslab.record import read
from chaoslab.report.annotations import FILE, annotations, write_annotations
from chaoslab.run.runner import Runner
from chaoslab.settings import REPO_ROOT, LabSettings
from chaoslab.spec.experiment import parse
from fakelab import FakeLab
from fakevocab import FakeCheck, FakeCondition, FakeProbe, FakeStep
import test_phase_loop

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # 127.0.0.1 is never proxied


def scrape(url: str) -> dict:
    """{(sample name, sorted labels): value} of one /metrics page."""
    text = NO_PROXY.open(url, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def v(metrics: dict, name: str, **labels) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]


def series(metrics: dict, name: str) -> dict:
    return {labels: value for (n, labels), value in metrics.items() if n == name}


def records(*items) -> list[dict]:
    return [{"t": t, **r} for t, r in items]


FAKE_RUN = records(
    (100.0, {"type": "run-start", "run_id": "20260101T000000-demo", "experiment": "demo", "variants": ["a", "b"]}),
    (101.0, {"type": "event", "variant": "a", "name": "variant-start", "role": "primary"}),
    (102.0, {"type": "event", "variant": "a", "name": "phase", "phase": "lab"}),
    (110.0, {"type": "event", "variant": "a", "name": "phase", "phase": "method"}),
    (111.0, {"type": "event", "variant": "a", "name": "step-start", "step": "roll", "step_type": "roll-broker",
             "index": 1, "band": "roll"}),
    (112.0, {"type": "sample", "variant": "a", "phase": "method",
             "conditions": {"p99": {"state": "violated", "value": 2500.0, "bound": 2000.0},
                            "rate": {"state": "holds", "value": 0.995, "bound": 0.99}}}),
    (113.0, {"type": "sample", "variant": "a", "phase": "method",
             "conditions": {"p99": {"state": "violated", "value": 3100.0, "bound": 2000.0},
                            "rate": {"state": "unknown", "value": None, "bound": 0.99}}}),
    (114.0, {"type": "event", "variant": "a", "name": "step-end", "step": "roll", "step_type": "roll-broker", "ok": True}),
    (115.0, {"type": "event", "variant": "a", "name": "undo-start", "step": "roll", "step_type": "roll-broker", "index": 1}),
    (116.0, {"type": "event", "variant": "a", "name": "undo-end", "step": "roll", "step_type": "roll-broker"}),
    (117.0, {"type": "sample", "variant": "a", "phase": "finish",     # stopping clients: not counted
             "conditions": {"p99": {"state": "violated", "value": 9000.0, "bound": 2000.0}}}),
    (118.0, {"type": "event", "variant": "a", "name": "variant-end", "verdict": "FAIL"}),
    (119.0, {"type": "event", "variant": "b", "name": "variant-start", "role": "compare"}),
    (120.0, {"type": "event", "variant": "b", "name": "phase", "phase": "method"}),
    (121.0, {"type": "event", "variant": "b", "name": "step-start", "step": "outage", "step_type": "kill-service",
             "index": 2, "band": "outage"}),
    (122.0, {"type": "sample", "variant": "b", "phase": "method",
             "conditions": {"p99": {"state": "excused", "value": 4000.0, "bound": 2000.0},
                            "rate": {"state": "holds", "value": 1.0, "bound": 0.99}}}),
)


def feed(live: LiveMetrics, recs: list[dict]) -> None:
    for r in recs:
        (live.on_sample if r["type"] == "sample" else live.on_event)(r)


@pytest.fixture
def served():
    """A LiveMetrics served on an ephemeral port; the server is closed afterwards."""
    live = LiveMetrics(run_dir="/runs/20260101T000000-demo", clock=lambda: 130.0)
    server = serve(live.registry, 0, log=lambda m: None)
    assert server is not None
    yield live, server.url
    server.close()


def test_fed_runner_records_it_exposes_the_run_as_it_is_now(served):
    live, url = served
    feed(live, FAKE_RUN)
    m = scrape(url)
    assert v(m, "chaoslab_run_info", run_id="20260101T000000-demo", run_dir="/runs/20260101T000000-demo",
             experiment="demo") == 1
    assert v(m, "chaoslab_run_elapsed_seconds") == 30.0          # the clock (130) - the run-start (100)
    # variant b runs, in phase method (one-hot); a has ended: none of its phases is current
    assert v(m, "chaoslab_variant_running", variant="a") == 0 and v(m, "chaoslab_variant_running", variant="b") == 1
    phases_b = {dict(k)["phase"]: x for k, x in series(m, "chaoslab_phase").items() if dict(k)["variant"] == "b"}
    assert phases_b["method"] == 1 and sum(phases_b.values()) == 1 and "steady" in phases_b
    assert all(x == 0 for k, x in series(m, "chaoslab_phase").items() if dict(k)["variant"] == "a")
    # steps: b's outage runs (2nd of its method); a's step and its undo have ended
    assert v(m, "chaoslab_step_running", variant="b", step="outage", step_type="kill-service", index="2", kind="step") == 1
    assert v(m, "chaoslab_step_running", variant="a", step="roll", step_type="roll-broker", index="1", kind="step") == 0
    assert v(m, "chaoslab_step_running", variant="a", step="roll", step_type="roll-broker", index="1", kind="undo") == 0
    # each condition's last judged second: value, bound, state (0 holds, 1 violated, 2 unknown, 3 excused)
    assert v(m, "chaoslab_condition_value", variant="a", condition="p99") == 9000.0
    assert v(m, "chaoslab_condition_bound", variant="a", condition="p99") == 2000.0
    assert v(m, "chaoslab_condition_state", variant="a", condition="p99") == 1
    assert math.isnan(v(m, "chaoslab_condition_value", variant="a", condition="rate"))
    assert v(m, "chaoslab_condition_state", variant="a", condition="rate") == 2
    assert v(m, "chaoslab_condition_state", variant="b", condition="p99") == 3
    assert v(m, "chaoslab_condition_value", variant="b", condition="rate") == 1.0
    # violated seconds: the two of the method; the finish phase and an excused second do not count
    assert v(m, "chaoslab_condition_violations_total", variant="a", condition="p99") == 2
    assert v(m, "chaoslab_condition_violations_total", variant="a", condition="rate") == 0
    assert v(m, "chaoslab_condition_violations_total", variant="b", condition="p99") == 0
    # verdicts: a's as its exit code; none yet for b, nor for the run
    assert series(m, "chaoslab_variant_verdict") == {(("variant", "a"), ("verdict", "FAIL")): 1}
    assert series(m, "chaoslab_run_verdict") == {}


def test_the_verdicts_at_the_end_and_a_new_run_begins_afresh(served):
    live, url = served
    feed(live, FAKE_RUN + records(
        (123.0, {"type": "event", "variant": "b", "name": "variant-end", "verdict": "INCONCLUSIVE"}),
        (124.0, {"type": "run-end", "exit_code": 1, "verdict": "FAIL", "error": None})))
    m = scrape(url)
    assert v(m, "chaoslab_variant_verdict", variant="b", verdict="INCONCLUSIVE") == 2
    assert v(m, "chaoslab_run_verdict", verdict="FAIL") == 1
    assert v(m, "chaoslab_run_elapsed_seconds") == 24.0          # frozen at the run's end
    assert v(m, "chaoslab_step_running", variant="b", step="outage", step_type="kill-service", index="2", kind="step") == 0
    # the next run of a series (--repeat, a gate's runs): only its own series
    feed(live, records((200.0, {"type": "run-start", "run_id": "r2", "experiment": "demo", "variants": ["c"]}),
                       (201.0, {"type": "event", "variant": "c", "name": "variant-start"})))
    m = scrape(url)
    assert {dict(k)["variant"] for k in series(m, "chaoslab_variant_running")} == {"c"}
    assert series(m, "chaoslab_condition_state") == {} and series(m, "chaoslab_run_verdict") == {}
    assert series(m, "chaoslab_variant_verdict") == {}
    assert [dict(k)["run_id"] for k in series(m, "chaoslab_run_info")] == ["r2"]


# -- fed by the runner itself (the fake lab) ----------------------------------------------------------
EXP = test_phase_loop.EXP   # the same one-step experiment


@pytest.fixture(autouse=True)
def no_release_lookups(monkeypatch):
    monkeypatch.setattr("chaoslab.lab.broker_settings.check_broker_settings", lambda *a, **k: None)


def fake_runner(tmp_path, live, values=(5,), steps=None, rollbacks=()):
    exp = parse(EXP, env={})
    plan = exp.plan("a")
    ss = plan.steady_state.model_copy(update={"hold_secs": 1.0, "grace_secs": 5.0, "tolerance_secs": 2.0,
                                              "min_coverage": 0.95, "conditions": [FakeCondition()]})
    plan = plan.model_copy(update={
        "method": steps or [FakeStep(id="change", secs=2.0)], "rollbacks": list(rollbacks), "steady_state": ss,
        "probes": [FakeProbe(values=list(values))], "checks": [FakeCheck()],
        "after": plan.after.model_copy(update={"secs": 0.5})})
    object.__setattr__(exp, "plan", lambda v: plan)
    return Runner(exp, run_dir=tmp_path / "run", log=lambda m: None, lab=FakeLab(LabSettings()),
                  handlers=[live] if live is not None else [], finishers=[write_annotations])


def test_the_runner_feeds_it_and_it_serves_what_the_journal_says(tmp_path):
    lines = []
    with live_metrics(0, linger=0, log=lines.append) as live:
        assert live is not None and live.url and lines == [f"live metrics: {live.url}"]
        values = [5, 5, 5, 50, 50, 50, 50, 50, 50, 50, 50, 5]
        run = fake_runner(tmp_path, live, values=values,
                          steps=[FakeStep(id="change", secs=20, undo_when="on-abort")],
                          rollbacks=[FakeStep(id="recover", secs=0.1)])
        live.run_dir = run.run_dir
        code = run.run()
        m = scrape(live.url)
    assert code == 1
    recs = read(run.run_dir / "journal.jsonl")
    samples = [r for r in recs if r["type"] == "sample"]
    # the journal: each condition's second as data, the phases as events, each step's place
    assert all(s["conditions"]["fake-max"]["bound"] == 10 for s in samples)
    violated = [s for s in samples if s["conditions"]["fake-max"]["state"] == "violated"]
    assert violated and all(s["conditions"]["fake-max"]["value"] == 50 for s in violated)
    phases = [r["phase"] for r in recs if r.get("name") == "phase"]
    assert phases == ["lab", "workload", "steady", "method", "rollback", "recovery", "after", "finish"]
    assert next(r for r in recs if r.get("name") == "step-start")["index"] == 1
    # the metrics: what the journal says
    assert v(m, "chaoslab_run_info", run_id=run.run_id, run_dir=str(run.run_dir), experiment="loop") == 1
    assert v(m, "chaoslab_run_verdict", verdict="FAIL") == 1
    assert v(m, "chaoslab_variant_verdict", variant="a", verdict="FAIL") == 1
    last = samples[-1]["conditions"]["fake-max"]
    assert v(m, "chaoslab_condition_bound", variant="a", condition="fake-max") == 10
    assert v(m, "chaoslab_condition_state", variant="a", condition="fake-max") == \
        {"holds": 0, "violated": 1, "unknown": 2}[last["state"]]
    counted = sum(1 for s in violated if s["phase"] != "finish")
    assert counted and v(m, "chaoslab_condition_violations_total", variant="a", condition="fake-max") == counted
    assert v(m, "chaoslab_step_running", variant="a", step="change", step_type="fake", index="1", kind="undo") == 0
    assert v(m, "chaoslab_step_running", variant="a", step="recover", step_type="fake", index="1", kind="step") == 0
    start, end = recs[0]["t"], recs[-1]["t"]
    assert v(m, "chaoslab_run_elapsed_seconds") == pytest.approx(end - start, abs=1e-6)
    # and the server is gone with the block
    with pytest.raises(urllib.error.URLError):
        scrape(live.url)
    # the finisher wrote the step bands for Grafana: the change and its undo
    bands = json.loads((run.run_dir / FILE).read_text())
    assert [(a["tags"], a["text"]) for a in bands][:2] == [
        (["loop", "a", "fake"], "loop / a: change (fake)"), (["loop", "a", "fake"], "loop / a: undo change (fake)")]


def test_a_busy_port_does_not_fail_the_run(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lines = []
        with live_metrics(port, linger=0, log=lines.append) as live:
            assert live is None
            assert fake_runner(tmp_path, live).run() == 0
        assert len(lines) == 1 and f"port {port}" in lines[0] and "without them" in lines[0]


def test_a_port_the_lab_publishes_is_never_taken():
    lines = []
    port = LabSettings().proxy_http_port
    with live_metrics(port, linger=0, log=lines.append) as live:
        assert live is None
    assert len(lines) == 1 and "the lab publishes" in lines[0]


def test_an_error_in_the_block_closes_the_server_at_once():
    with pytest.raises(KeyboardInterrupt):
        with live_metrics(0, linger=600, log=lambda m: None) as live:
            url = live.url
            assert scrape(url)[("chaoslab_run_elapsed_seconds", ())] == 0
            raise KeyboardInterrupt()   # no linger: the test would hang for 10 minutes
    with pytest.raises(urllib.error.URLError):
        scrape(url)


def test_the_port_flag_the_environment_and_the_default():
    assert metrics_port(None, {}) == DEFAULT_PORT
    assert metrics_port(None, {"CHAOSLAB_METRICS_PORT": "9999"}) == 9999
    assert metrics_port("12345", {"CHAOSLAB_METRICS_PORT": "9999"}) == 12345
    for off in ("0", "off", "OFF", " off "):
        assert metrics_port(off, {}) is None and metrics_port(None, {"CHAOSLAB_METRICS_PORT": off}) is None
    for bad in ("abc", "70000", "-1", "80.5"):
        with pytest.raises(LabError, match="--metrics-port"):
            metrics_port(bad, {})
    with pytest.raises(LabError, match="CHAOSLAB_METRICS_PORT"):
        metrics_port(None, {"CHAOSLAB_METRICS_PORT": "nine"})
    assert linger_secs(None) > 0 and linger_secs(0) == 0
    with pytest.raises(LabError):
        linger_secs(-1)


def test_the_default_port_is_none_the_lab_publishes():
    published = {int(p) for p in re.findall(r"127\.0\.0\.1:\$\{[A-Z0-9_]+:-(\d+)\}",
                                            (REPO_ROOT / "compose" / "lab.yaml").read_text())}
    assert len(published) >= 10   # the compose file's defaults were really read
    assert DEFAULT_PORT not in published | LabSettings().host_ports() | {9090}


def test_a_bad_port_is_one_line_before_anything_starts(capsys, monkeypatch):
    monkeypatch.setattr(cli, "make_runner", lambda *a, **k: pytest.fail("a runner was made"))
    experiment = str(REPO_ROOT / "experiments" / "rabbitmq-fallback.yaml")
    assert cli.main(["experiment", experiment, "--metrics-port", "nine"]) == 2
    err = capsys.readouterr().err
    assert "--metrics-port 'nine'" in err and len(err.strip().splitlines()) == 1
    args = cli.build_parser().parse_args(["replay", "x", "--metrics-port", "off", "--metrics-linger", "2"])
    assert (args.metrics_port, args.metrics_linger) == ("off", 2.0)
    assert cli.build_parser().parse_args(["gate", "--metrics-port", "19000"]).metrics_port == "19000"


# -- a condition's second as data ---------------------------------------------------------------------
def test_a_judgement_carries_the_figure_and_the_bound():
    from chaoslab.checks.rabbitmq import ConfirmP99
    cond = ConfirmP99(max=1000)
    fine = cond.judge({"elapsed": 30, "rabbitmq": {"confirms": 100, "confirm_p99_ms": 40.0, "window_secs": 5}})
    assert (fine.outcome, fine.value, fine.bound) == ("holds", 40.0, 1000.0)
    slow = cond.judge({"elapsed": 30, "rabbitmq": {"confirms": 100, "confirm_p99_ms": 4200.0, "window_secs": 5}})
    assert (slow.outcome, slow.value, slow.bound) == ("violated", 4200.0, 1000.0)
    # no confirm at all: violated, but there is no latency to show (not 0 ms)
    stuck = cond.judge({"elapsed": 30, "rabbitmq": {"confirms": 0, "confirm_p99_ms": None, "window_secs": 5}})
    assert (stuck.outcome, stuck.value, stuck.bound) == ("violated", None, 1000.0)
    assert (cond.judge({}).outcome, cond.judge({}).value, cond.judge({}).bound) == ("unknown", None, 1000.0)
    # a condition with no reading of its own: the worst violation's figure, nothing while it holds
    fake = FakeCondition(max=10)
    assert fake.judge({"fake": {"value": 5}}).value is None
    assert fake.judge({"fake": {"value": 50}}).value == 50.0


# -- the step bands as Grafana annotations ------------------------------------------------------------
JOURNAL = records(
    (1000.0, {"type": "run-start", "run_id": "r", "experiment": "shedder", "variants": ["flip", "control"]}),
    (1001.0, {"type": "event", "variant": "flip", "name": "variant-start"}),
    (1010.5, {"type": "event", "variant": "flip", "name": "step-start", "step": "roll-1", "step_type": "roll-broker",
              "band": "roll broker-1"}),
    (1012.0, {"type": "sample", "variant": "flip", "phase": "method"}),
    (1040.25, {"type": "event", "variant": "flip", "name": "step-end", "step": "roll-1", "step_type": "roll-broker", "ok": True}),
    (1041.0, {"type": "event", "variant": "flip", "name": "step-start", "step": "look", "step_type": "observe-broker",
              "band": None}),                                           # no band: not shaded, not annotated
    (1045.0, {"type": "event", "variant": "flip", "name": "step-end", "step": "look", "step_type": "observe-broker"}),
    (1050.0, {"type": "event", "variant": "flip", "name": "undo-start", "step": "roll-1", "step_type": "roll-broker"}),
    (1060.0, {"type": "event", "variant": "flip", "name": "undo-end", "step": "roll-1", "step_type": "roll-broker"}),
    (1070.0, {"type": "event", "variant": "control", "name": "step-start", "step": "kill", "step_type": "kill-service",
              "band": "kill"}),
    (1075.0, {"type": "event", "variant": "control", "name": "interrupted"}),   # never ended: up to the last event
    (1076.0, {"type": "run-end", "exit_code": 130, "verdict": "INTERRUPTED"}),
)


def test_the_step_bands_become_grafana_annotations(tmp_path):
    assert annotations(JOURNAL) == [
        {"time": 1010500, "timeEnd": 1040250, "tags": ["shedder", "flip", "roll-broker"],
         "text": "shedder / flip: roll broker-1 (roll-broker)"},
        {"time": 1050000, "timeEnd": 1060000, "tags": ["shedder", "flip", "roll-broker"],
         "text": "shedder / flip: undo roll-1 (roll-broker)"},
        {"time": 1070000, "timeEnd": 1075000, "tags": ["shedder", "control", "kill-service"],
         "text": "shedder / control: kill (kill-service)"},
    ]


def test_chaoslab_report_writes_them_for_an_old_run(tmp_path):
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in JOURNAL))
    (run / "results.json").write_text(json.dumps({"title": "t", "experiment": "shedder", "variants": []}))
    assert not (run / FILE).exists()
    assert cli.main(["report", str(run)]) == 0
    assert json.loads((run / FILE).read_text()) == annotations(JOURNAL)


def test_every_shipped_condition_says_its_figure():
    """docs/live-metrics.md says so: each registered condition has a reading of its own."""
    from chaoslab.spec.base import REGISTRY, Condition, load_package
    load_package("chaoslab.checks")
    conditions = REGISTRY["condition"]
    assert len(conditions) >= 12
    assert [t for t, cls in conditions.items() if cls.reading is Condition.reading] == []
    assert all(cls().bound() is not None for cls in conditions.values())
