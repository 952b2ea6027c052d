"""The gate's advice when a change is UNSAFE: the procedure measured SAFE for it, with its runs and
its cost, or plainly that none was."""

from chaoslab import gate, procedures

FLIP = {"loadManagerClassName": procedures.EXTENSIBLE,
        "loadBalancerLoadSheddingStrategy": "org.apache.pulsar.broker.loadbalance.extensions.scheduler.TransferShedder"}


def record(name, runs, failed, outage=None, failed_by=None):
    return {"procedure": name, "description": f"{name} words", "releases": "3.3.0 -> 3.3.1", "supplied": ["3.3.0", "3.3.1"],
            "runs": runs, "passed": runs - failed, "failed": failed, "not_judged": 0,
            "fail_interval_95": [0.0, 0.43] if not failed else [0.57, 1.0], "failed_by": failed_by or {},
            "outage_secs": outage}


MEASURED = [record("single-pass", 5, 5, failed_by={"split": 5}), record("two-passes", 5, 5, failed_by={"split": 4, "both": 1}),
            record("full-restart", 5, 0, outage={"median": 48.2, "max": 61.0, "runs": 5})]


def test_an_unsafe_switch_names_the_procedure_measured_safe_with_its_runs_and_cost():
    a = procedures.advice(FLIP, MEASURED)
    assert a["measured"] and a["safe"] == ["full-restart"]
    assert a["lines"][0] == "measured SAFE instead: full-restart"
    full = next(line for line in a["lines"] if line.startswith("full-restart"))
    assert "SAFE - 0 of 5 runs failed (95 % interval 0.00-0.43)" in full
    assert "costs 48 s without service (median, max 61 s)" in full and "(supplied builds)" in full
    assert any("single-pass" in line and "UNSAFE - 5 of 5" in line and "by split 5" in line for line in a["lines"])


def test_when_every_procedure_failed_it_says_none_was_safe():
    a = procedures.advice(FLIP, MEASURED[:2])
    assert a["safe"] == [] and a["lines"][0] == "none of the measured procedures was SAFE"


def test_another_change_gets_no_borrowed_advice():
    a = procedures.advice({"maxConcurrentLookupRequest": "100"}, MEASURED)
    assert not a["measured"] and "no other procedure was measured for this change" in a["lines"][0]


def test_the_gate_summary_carries_the_advice_only_when_unsafe(monkeypatch):
    monkeypatch.setattr(procedures, "MEASURED", MEASURED)
    assert gate.summary([], [1], 1, FLIP)["advice"]["safe"] == ["full-restart"]
    assert gate.summary([], [0], 0, FLIP)["advice"] is None


def test_the_shipped_records_are_well_formed():
    for m in procedures.MEASURED:
        assert m["runs"] == m["passed"] + m["failed"] and m["procedure"] and m["releases"]
        procedures.words(m)
