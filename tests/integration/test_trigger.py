"""Deterministic trigger A end to end on the real lab: the flipped broker is SIGKILLed and started
again at once; the run names what became of it, keeps the killed incarnation's log, and journals
it all. (The outcome itself is what the release does; the test checks that it is measured.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chaoslab.record import read

EXPERIMENT = Path(__file__).parent / "experiments" / "trigger-restart-short.yaml"


def test_trigger_a_names_the_outcome_and_keeps_the_killed_incarnations_log(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "chaoslab.cli", "experiment", str(EXPERIMENT), "--variant", "to",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    records = read(out / "journal.jsonl")
    outcome = next(r for r in records if r.get("name") == "broker-outcome")
    assert outcome["broker"] == "broker-1" and outcome["outcome"] in ("exits", "up-but-broken", "fine")
    # judged by its final checks (brokers-serve, no-loss): a broker that exits or stays broken is
    # a FAIL; one that comes back fine, a PASS. Anything else (a crash: ERROR) fails the test.
    from conftest import assert_verdict
    assert_verdict(proc, out, {"PASS"} if outcome["outcome"] == "fine" else {"FAIL"})
    assert isinstance(outcome["shallow_wait_would_roll_on"], bool)
    kept = [r for r in records if r.get("name") == "logs-kept" and r.get("reason") == "killed with SIGKILL"]
    assert kept and Path(kept[0]["file"]).stat().st_size > 1000  # the incarnation that was killed
    results = json.loads((out / "results.json").read_text())
    step = next(s for s in results["variants"][0]["steps"] if s["id"] == "outcome")
    assert step["outcome"] == outcome["outcome"] and step["samples"] >= 5
    assert "broker-outcome" in (out / "report.md").read_text()
