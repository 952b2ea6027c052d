import json
import time

from chaoslab.checks.hypothesis import Tracker, evaluate
from chaoslab.experiment.spec import Hypothesis
from chaoslab.observe import pulsar_metrics
from chaoslab.observe.journal import Journal, read
from chaoslab.report import build_report
from chaoslab.workload.stats import ClientStats, error_kind

H = Hypothesis()


def sample(**client):
    base = {"publish_ok": 100, "publish_failed": 0, "publish_success_rate": 1.0, "publish_p99_ms": 50,
            "lookup_ok": 10, "lookup_failed": 0, "too_many_requests": 0, "backlog": 0}
    base.update(client)
    return {"client": base, "brokers": {"broker-1": {"metrics": {"pulsar_broker_lookup_pending_requests": 0}}},
            "ownership": {"sampled": 10, "unowned": 0}, "expect_publishes": True, "expect_lookups": True}


def test_a_healthy_sample_holds():
    assert evaluate(sample(), H) == []


def test_each_condition_can_fail():
    assert "publish_success_rate" in evaluate(sample(publish_success_rate=0.5, publish_failed=100), H)[0]
    assert "publish_p99_ms" in evaluate(sample(publish_p99_ms=9000), H)[0]
    assert "backlog" in evaluate(sample(backlog=10**6), H)[0]
    assert "too_many_requests" in evaluate(sample(too_many_requests=3), H)[0]
    assert "none completed" in evaluate(sample(lookup_ok=0, lookup_failed=0), H)[0]
    assert "no publish completed" in evaluate(sample(publish_ok=0, publish_failed=0, publish_success_rate=None), H)[0]
    s = sample()
    s["brokers"]["broker-1"]["metrics"]["pulsar_broker_lookup_pending_requests"] = 50
    assert evaluate(s, H) == ["pending_lookups[broker-1]: 50 > 40"]
    s = sample()
    s["ownership"]["unowned"] = 2
    assert "unowned_topics" in evaluate(s, H)[0]


def test_tracker_detects_aborts_and_resolves():
    tr = Tracker(tolerance_secs=3)
    assert not tr.update(0, [])
    assert not tr.update(1, ["x"]) and tr.first_violation_t == 1
    assert not tr.update(3, ["x"])
    assert tr.update(5, ["x"])  # violated for 4 s > 3
    assert not tr.update(6, [])
    assert tr.resolved_t == 6 and tr.exceeded and tr.longest_secs == 4


def test_client_stats_window_and_error_kinds():
    st = ClientStats()
    for ms in range(1, 101):
        st.publish(True, ms)
    st.publish(False, error="TooManyLookupRequestException")
    st.lookup(False, error=TimeoutError("Timeout"))
    w = st.window(10)
    assert w["publish_ok"] == 100 and w["publish_failed"] == 1
    assert w["publish_p99_ms"] == 100 and w["too_many_requests"] == 1
    assert w["errors"] == {"TooManyRequests": 1, "Timeout": 1}
    assert error_kind("Failed due to too many pending lookup requests") == "TooManyRequests"


def test_pulsar_metric_names_are_kept():
    text = """# TYPE pulsar_broker_lookup_pending_requests gauge
pulsar_broker_lookup_pending_requests{cluster="lab"} 7.0
# TYPE pulsar_broker_lookup_answers counter
pulsar_broker_lookup_answers_total{cluster="lab"} 3.0
pulsar_broker_lookup_answers_created{cluster="lab"} 1.7e9
pulsar_topics_other 5
"""
    got = pulsar_metrics.parse(text, pulsar_metrics.BROKER_METRICS)
    assert got == {"pulsar_broker_lookup_pending_requests": 7.0, "pulsar_broker_lookup_answers_total": 3.0}


def test_report_from_a_journal_alone_and_a_torn_last_line(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    j.write("run-start", run_id="r", experiment="x", seed=1, versions={}, host={})
    t0 = time.time()
    j.event("variant-start", variant="flip")
    for i in range(5):
        s = sample()
        s.pop("expect_publishes"), s.pop("expect_lookups")
        j.write("sample", variant="flip", phase="method", violations=[], system_topics={"exists": {"persistent://p/s/t": i > 2}}, **s)
    j.event("upgrade-start", broker="broker-1")
    j.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"t": 1, "type": "sam')  # runner killed mid-write
    assert len(read(tmp_path / "journal.jsonl")) == 8
    (tmp_path / "results.json").write_text(json.dumps({"title": "x", "variants": [{
        "name": "flip", "role": "primary", "description": "", "to_version": "3.2.3", "verdict": "FAIL",
        "reasons": ["aborted: because"], "steps": [{"broker": "broker-1", "waited_for": "shallow", "wait_ok": False,
                                                      "wait_secs": 3, "shallow_ok": False, "functional_ok": False}],
        "aborted": True, "rollback": None, "recovery": None, "loss": {"acked": 1, "received": 1, "lost": 0, "duplicated": 0},
        "kpis": {"injection_t": t0}, "longest_violation_secs": 0, "violated_seconds": 0, "first_violations": [],
        "started": t0 - 1, "ended": time.time() + 1}]}))
    build_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "INCOMPLETE" in md and "Variant flip (primary): FAIL" in md and "aborted: because" in md
    assert (tmp_path / "plot-flip.png").stat().st_size > 1000
    assert "<table>" in (tmp_path / "report.html").read_text()
