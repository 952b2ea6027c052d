"""The RabbitMQ fallback on the real 3-node cluster: the nodes join one cluster, the workload's
events are confirmed and consumed, and a node frozen in bursts raises the confirm latency the
publishers see (node 3 holds one queue's leader and every publisher uses every queue)."""

from __future__ import annotations

import json
from pathlib import Path

EXPERIMENT = Path(__file__).parent / "experiments" / "rabbitmq-fallback-short.yaml"


def test_a_slow_node_raises_confirm_latency_on_the_real_cluster(tmp_path):
    import subprocess
    import sys

    from chaoslab.record import read
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "chaoslab.cli", "experiment", str(EXPERIMENT),
                           "--variant", "slow-node-left-in", "--out", str(out)], capture_output=True, text=True,
                          timeout=900)
    # judged by its final checks (abort_on_violation: false), with every second judged: PASS
    from conftest import assert_verdict
    assert_verdict(proc, out, {"PASS"})
    records = read(out / "journal.jsonl")
    samples = [r for r in records if r.get("type") == "sample"]
    # the cluster's own view: three nodes, all running, each seen by every node that answered
    steady = [s for s in samples if s.get("phase") == "steady" and (s.get("rabbitmq_cluster") or {}).get("running")]
    assert steady and len(steady[-1]["rabbitmq_cluster"]["running"]) == 3
    assert all(steady[-1]["rabbitmq_cluster"]["running"].values())
    # queue leaders spread over the nodes, as declared
    ready = next(r for r in records if r.get("name") == "workload-ready")
    assert sorted(ready["queues"].values()) == ["node-1", "node-2", "node-3"]

    def p99(phase):
        return [s["rabbitmq"]["confirm_p99_ms"] for s in samples
                if s.get("phase") == phase and (s.get("rabbitmq") or {}).get("confirm_p99_ms") is not None]
    base, during = max(p99("steady")), max(p99("method"))
    assert during > 1000 and during > 3 * base, (base, during)
    results = json.loads((out / "results.json").read_text())
    v = results["variants"][0]
    step = next(s for s in v["steps"] if s["id"] == "slow-node")
    assert step["pauses"] >= 2 and step["lifted"]
    loss = v["workload"]["loss"]
    assert loss["acked"] > 500 and loss["lost"] == 0
    assert next(c for c in v["checks"] if c["name"] == "no-loss")["outcome"] == "pass"
    assert "confirm p99 peak" in (out / "report.md").read_text()
