"""bench/harmless_signals.py: the false-alarm count over harmless runs and the tails it prints."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "harmless_signals", Path(__file__).resolve().parents[2] / "bench" / "harmless_signals.py")
hs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hs)


def test_p90_is_the_nearest_rank_in_the_worst_direction():
    values = list(range(1, 11))                      # 10 runs
    assert hs.p90_worst(values, max) == 9            # 9 of 10 at or below: not the worst (10)
    assert hs.p90_worst(values, min) == 2            # 9 of 10 at or above: not the worst (1)
    assert hs.p90_worst([5], max) == 5 and hs.p90_worst([5], min) == 5


def test_a_stall_counts_only_where_lookups_were_expected():
    idle = [{"client": {"lookups_expected": False, "lookup_ok": 0}}] * 30
    stuck = [{"client": {"lookups_expected": True, "lookup_ok": 0}}] * 30
    assert hs.one_run(idle)["longest stall, no lookup completing (s)"] == 0
    assert hs.one_run(stuck)["longest stall, no lookup completing (s)"] == 30
    assert hs.one_run([])["longest stall, no lookup completing (s)"] is None


def test_every_harmless_run_counts_a_torn_journal_too(tmp_path, capsys):
    for name, verdict, samples in (("run-1", "PASS", 3), ("run-2", "INCONCLUSIVE", 0)):
        rd = tmp_path / name
        rd.mkdir()
        (rd / "results.json").write_text(json.dumps({"variants": [{"name": "control", "role": "control",
                                                                    "verdict": verdict}]}))
        lines = [json.dumps({"t": 1.0 + i, "type": "sample", "phase": "method", "variant": "control",
                             "client": {"lookups_expected": True, "lookup_ok": 5, "lookup_failed": 0}})
                 for i in range(samples)]
        (rd / "journal.jsonl").write_text("\n".join(lines) + '\n{"t": 9, "type": "sam')   # torn last line
    assert hs.main([str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    # the run that ended before the method still counts (its verdict is not PASS)
    assert summary["runs"] == 2 and summary["not_pass"] == 1
    assert summary["signals"]["longest stall, no lookup completing (s)"]["of"] == 1


def test_an_interrupted_run_is_neither_a_pass_nor_a_false_alarm(tmp_path, capsys):
    for name, verdict in (("run-1", "PASS"), ("run-2", "INTERRUPTED"), ("run-3", "INCONCLUSIVE")):
        rd = tmp_path / name
        rd.mkdir()
        (rd / "results.json").write_text(json.dumps({"variants": [{"name": "control", "role": "control",
                                                                    "verdict": verdict}]}))
        (rd / "journal.jsonl").write_text("")
    assert hs.main([str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["runs"] == 2 and summary["not_pass"] == 1      # the INCONCLUSIVE one counts, the stopped one not


def test_each_run_is_held_to_the_bound_it_ran_with(tmp_path, capsys):
    """The bounds are read from each run's experiment.yaml, not copied here: a bound moved between
    runs shows both, and a run counts as beyond only against its own."""
    for name, bound, p99 in (("run-1", 2000, 3000), ("run-2", 5000, 3000)):
        rd = tmp_path / name
        rd.mkdir()
        (rd / "results.json").write_text(json.dumps({"variants": [{"name": "control", "role": "control",
                                                                    "verdict": "PASS"}]}))
        (rd / "experiment.yaml").write_text(
            "steady_state:\n  tolerance_secs: 20\n  conditions:\n"
            f"    - {{type: publish-p99-ms, max: {bound}}}\n")
        (rd / "journal.jsonl").write_text(json.dumps({"t": 1.0, "type": "sample", "phase": "method", "variant": "control",
                                                      "client": {"publish_p99_ms": p99}}) + "\n")
    assert hs.main([str(tmp_path), "--json"]) == 0
    p99 = json.loads(capsys.readouterr().out)["summary"]["signals"]["publish p99 ms (window)"]
    assert p99["bound"] == "2000/5000" and p99["runs_beyond_bound"] == 1 and p99["of"] == 2
