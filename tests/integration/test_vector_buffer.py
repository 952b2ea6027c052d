"""A short bus outage with 3 VM containers running the Rust agent: the measurements are real (the
blocking memory buffer grows during the outage, in the agent and in the cgroup, and drains after;
drop_newest drops and the agent's ledger names every dropped event)."""

from __future__ import annotations

import json
from pathlib import Path


EXPERIMENT = Path(__file__).parent / "experiments" / "vector-buffer-short.yaml"


def test_short_outage_memory_grows_in_the_blocking_group_and_drains(tmp_path, run_experiment):
    out = tmp_path / "run"
    proc, records = run_experiment(EXPERIMENT, out, timeout=1200, expect={"PASS"})
    events = [r for r in records if r["type"] == "event" and r.get("variant") == "block"]
    start = next(e["t"] for e in events if e["name"] == "step-start" and e["step"] == "bus-outage")
    end = next(e["t"] for e in events if e["name"] == "step-end" and e["step"] == "bus-outage")
    samples = [r for r in records if r["type"] == "sample" and r["variant"] == "block"]
    before = [s for s in samples if s["t"] < start]
    during = [s for s in samples if start <= s["t"] <= end]
    after = [s for s in samples if s["t"] > end + 5]
    vm = sorted(samples[0]["vms"])[0]

    def buf(s):
        return (s["vms"][vm].get("agent") or {}).get("vector_buffer_size_events") or 0

    def mem(s):
        return (s["vms"][vm].get("cgroup") or {}).get("memory.usage_in_bytes") or 0

    assert max(buf(s) for s in during) > 10 * max(buf(s) for s in before) + 1000
    assert max(mem(s) for s in during) > max(mem(s) for s in before) + 5 * 2**20  # the cgroup saw it
    assert min(buf(s) for s in after) <= 200  # drained once the bus came back
    assert samples[0]["vms"][vm]["cgroup"]["memory.limit_in_bytes"] == 256 * 2**20
    assert "psi_io" in samples[0]["host"] and "d_state_tasks" in samples[0]["host"]
    results = json.loads((out / "results.json").read_text())
    block = next(v["workload"] for v in results["variants"] if v["name"] == "block")
    drop = next(v["workload"] for v in results["variants"] if v["name"] == "drop")
    assert block["totals"]["generated"] > 0 and block["totals"]["delivered"] > 0
    assert drop["totals"]["dropped_by_policy"] > 0  # drop_newest really dropped, and counted it
    # The books close per VM and per event: every stamped number is in exactly one bucket, the
    # agent's ledger named each dropped one, and nothing arrived that the agent never generated.
    for group in (block, drop):
        for name, vm in group["per_vm"].items():
            parts = (vm["delivered"] + vm["dropped_by_policy"] + vm["failed_sends"] + vm["held_at_stop"] + vm["lost"]
                     + vm.get("unknown", 0))
            assert parts == vm["generated"] and vm["generated_from"] == "agent", (name, vm)
            assert vm["unexpected"] == 0 and vm["lost"] == 0, (name, vm)
            # the lab's own stop gave every agent its drain: nothing is left unaccounted
            assert vm.get("unknown", 0) == 0 and vm.get("books_closed", True), (name, vm)
    # the would-be remediator judged the real samples, before / during / after the outage
    monitors = next(v["monitors"] for v in results["variants"] if v["name"] == "block")
    as_run, fixed = monitors["as-run"], monitors["fixed"]
    assert set(as_run["rates"]) == {"before", "during", "after"}
    assert as_run["actions"] >= fixed["actions"] and "redeploy" not in fixed["by_action"]
    assert (out / "report.md").exists() and (out / "plot-block.png").exists()

