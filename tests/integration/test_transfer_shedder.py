"""A shortened transfer-shedder run against the real lab: journal, report and verdict come from
real measurements. (Runs after test_lab.py: the runner replaces the lab with a fresh one.)"""

from __future__ import annotations

import json
from pathlib import Path

EXPERIMENT = Path(__file__).parent / "experiments" / "transfer-shedder-short.yaml"


def test_shortened_transfer_shedder_produces_journal_report_and_verdict(tmp_path, run_experiment):
    out = tmp_path / "run"
    # the flip may or may not break within one roll; a crash or an unjudged run is not accepted
    proc, records = run_experiment(EXPERIMENT, out, timeout=1500, expect={"PASS", "FAIL"})
    samples = [r for r in records if r["type"] == "sample"]
    assert len(samples) >= 20
    # real broker metrics under Pulsar's own names, and both health views
    pending = [b["metrics"]["pulsar_broker_lookup_pending_requests"] for s in samples
               for b in s["brokers"].values() if b.get("metrics")]
    assert pending and all(isinstance(p, float) for p in pending)
    assert any(b.get("shallow_ok") is not None and b.get("functional_ok") is not None
               for s in samples for b in s["brokers"].values())
    # the workload really ran through the proxy
    assert max(s["client"]["acked_total"] for s in samples) > 500
    # broker-1 was really rolled: recreated on the target version, the step journalled start and end
    events = [r for r in records if r["type"] == "event"]
    names = [e["name"] for e in events]
    assert "step-start" in names and "broker-recreated" in names
    step = next(e for e in events if e["name"] == "step-end" and e["step"] == "roll-broker-1")
    assert step["result"]["broker"] == "broker-1" and "functional_ok" in step["result"]
    # the change was read back from the rolled broker's runtime configuration, key by key
    back = next(e for e in events if e["name"] == "change-read-back")
    assert back["broker"] == "broker-1"
    lm = back["keys"]["loadManagerClassName"]
    assert lm["in_effect"].endswith("ExtensibleLoadManagerImpl") and lm["ok"], back
    # every condition's coverage of the method is recorded
    results_ = json.loads((out / "results.json").read_text())
    cov = results_["variants"][0]["coverage"]
    assert set(cov) == {"publish-success-rate", "publish-p99-ms", "unowned-topics", "pending-lookups", "lookup-success-rate"}
    assert all(c["method_secs"] > 0 for c in cov.values())
    results = json.loads((out / "results.json").read_text())
    flip = results["variants"][0]
    assert flip["verdict"] in ("PASS", "FAIL")
    assert (proc.returncode == 0) == (flip["verdict"] == "PASS")
    if flip["verdict"] == "FAIL":
        assert flip["reasons"]
    else:
        versions = {s["brokers"]["broker-1"].get("version") for s in samples if s["phase"] == "after"}
        assert flip["steps"][0]["version"] in versions
    assert records[-1]["type"] == "run-end" and records[-1]["verdict"] == flip["verdict"]
    report = (out / "report.md").read_text()
    assert f"Verdict: {flip['verdict']}" in report
    assert (out / "report.html").exists() and (out / "plot-flip.png").stat().st_size > 10_000
    assert f"VERDICT: {flip['verdict']}" in proc.stdout
