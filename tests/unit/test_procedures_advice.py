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
    assert a["lines"][0] == "measured SAFE instead: full-restart on 3.3.0 -> 3.3.1"
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


def _bench():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("procedures_bench",
                                                  Path(__file__).resolve().parents[2] / "bench" / "procedures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(folder, verdicts, outage=None):
    import json
    folder.mkdir(parents=True)
    variants = []
    for name, verdict in verdicts.items():
        steps = []
        if name == "full-restart":
            steps = [{"type": "restart-brokers", "service_back_after_secs": outage,
                      "serving_after_secs": {"broker-1": 20.0, "broker-2": 25.0}}]
        variants.append({"name": name, "description": f"{name} words", "verdict": verdict, "steps": steps,
                         "reasons": [] if verdict == "PASS" else ["aborted: split"], "kpis": {}})
    (folder / "results.json").write_text(json.dumps({"experiment": "upgrade-procedures", "variants": variants}))
    records = [{"type": "run-start", "t": 1, "versions": {"from": "3.3.0", "to": "3.3.1"}},
               {"type": "supplied-builds", "t": 2, "builds": {"3.3.1": {"env": "PULSAR_DIST_3_3_1"}}}]
    (folder / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_bench_tallies_each_procedure_with_its_outage_and_counts_unjudged_runs_apart(tmp_path):
    bench = _bench()
    _run(tmp_path / "run-1", {"single-pass": "FAIL", "full-restart": "PASS"}, outage=48.4)
    _run(tmp_path / "run-2", {"single-pass": "FAIL", "full-restart": "INCONCLUSIVE"}, outage=None)
    rows = {r["procedure"]: r for r in bench.tally([str(tmp_path)], log=lambda *_: None)}
    full = rows["full-restart"]
    assert (full["runs"], full["passed"], full["failed"], full["not_judged"]) == (1, 1, 0, 1)
    assert full["outage_secs"] == {"median": 48.4, "max": 48.4, "runs": 1}
    assert full["all_serving_secs"]["max"] == 25.0
    assert full["releases"] == "3.3.0 -> 3.3.1" and full["supplied"] == ["3.3.1"]
    assert rows["single-pass"]["failed"] == 2 and rows["single-pass"]["failed_by"] == {"none": 2}
    procedures.words(full)      # a tallied row is a record the gate can print


def test_a_procedure_safe_only_on_a_patched_build_says_so():
    rows = MEASURED[:2] + [dict(record("full-restart", 5, 0, outage={"median": 41.2, "max": 45.6, "runs": 5}),
                                releases="3.3.0 -> 3.3.1-knockout", note="the store patched")]
    a = procedures.advice(FLIP, rows)
    assert a["lines"][0] == ("measured SAFE instead: full-restart on 3.3.0 -> 3.3.1-knockout (a patched build); "
                             "on the releases as published none of the measured procedures was SAFE")
    assert a["lines"][-1].endswith(" - the store patched")
