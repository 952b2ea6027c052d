"""The report is assembled from the vocabulary: stories render only when the experiment declares
them (`report:`), a new story is one file, reasons are data read without splitting prose, and a
RabbitMQ-only run's report names nothing of Pulsar (no containers; synthetic run folders)."""

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

from chaoslab.report import build_report
from chaoslab.run.journal import Journal
from chaoslab.spec.base import REGISTRY, Reason, Story, as_reason, probe_notes, probe_status, register

ROOT = Path(__file__).resolve().parents[2]
RABBIT_WORDS = ("pulsar", "broker", "bundle", "lookup")


def rabbitmq_run(folder: Path, report: str | None, reasons=None) -> Path:
    """A run folder as a RabbitMQ-only experiment leaves it: a slow node, confirm latency up."""
    j = Journal(folder / "journal.jsonl")
    j.write("run-start", run_id="r", experiment="rabbitmq-fallback", seed=11, versions={}, host={"cores": 2})
    t0 = time.time()
    j.context = {"variant": "slow-node-left-in"}
    j.event("variant-start", role="primary")
    for i in range(5):
        j.write("sample", phase="steady", violations=[], rabbitmq={"confirm_p99_ms": 12.0, "confirms": 100},
                rabbitmq_cluster={"nodes": 3})
    j.event("step-start", step="slow-node", step_type="slow-service", band="slow-node", spec={"service": "rabbitmq-3"})
    for i in range(5):
        j.write("sample", phase="method", violations=[], rabbitmq={"confirm_p99_ms": 1900.0, "confirms": 40},
                rabbitmq_cluster={"nodes": 3})
    j.event("step-end", step="slow-node", step_type="slow-service", ok=True, secs=5, result={"service": "rabbitmq-3"})
    j.close()
    text = (ROOT / "experiments" / "rabbitmq-fallback.yaml").read_text()
    text = text[:text.index("\nreport:")] if "\nreport:" in text else text
    (folder / "experiment.yaml").write_text(text + (f"\nreport:\n{report}\n" if report else ""))
    (folder / "results.json").write_text(json.dumps({"title": "RabbitMQ fallback", "variants": [{
        "name": "slow-node-left-in", "role": "primary", "description": "", "params": {"queue_type": "quorum", "remedy": False},
        "verdict": "FAIL", "aborted": False,
        "reasons": reasons if reasons is not None else ["hypothesis violated for 25 s (> 20 s)"],
        "steps": [{"id": "slow-node", "type": "slow-service", "ok": True, "secs": 5, "service": "rabbitmq-3"}],
        "undone": [], "rollbacks": [], "checks": [{"name": "no-loss", "outcome": "pass", "value": 0, "bound": 0,
                                                    "evidence": "0 lost"}],
        "workload": {"loss": {"sent": 9, "acked": 9, "received": 9, "lost": 0, "duplicated": 0,
                              "closed_by": "all-delivered"}, "queue_type": "quorum"},
        "probes": {"rabbitmq": {}, "rabbitmq_cluster": {}}, "monitors": {},
        "kpis": {"injection_t": t0}, "longest_violation_secs": 25, "violated_seconds": 25, "first_violations": [],
        "started": t0 - 1, "ended": time.time() + 1}]}))
    return folder


def test_a_rabbitmq_only_report_names_nothing_of_pulsar(tmp_path):
    build_report(rabbitmq_run(tmp_path, "  - {type: incident-chain, links: [11]}"))
    md = (tmp_path / "report.md").read_text()
    assert "Workload: 9 sent" in md and "| 11 | the RabbitMQ fallback slows on one node | OBSERVED: confirm p99 peak 1900 ms" in md
    found = [w for w in RABBIT_WORDS if re.search(w, md, re.I)]
    assert not found, f"the RabbitMQ-only report says {found}"


def test_without_report_the_chain_is_not_shown_and_links_restrict_it(tmp_path):
    build_report(rabbitmq_run(tmp_path / "a", None))
    assert "chain" not in (tmp_path / "a" / "report.md").read_text()
    build_report(rabbitmq_run(tmp_path / "b", "  - {type: incident-chain, links: [11]}"))
    md = (tmp_path / "b" / "report.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ", md.split("The incident's chain, link by link")[1].split("\n## ")[0], re.M)
    assert rows == ["11"] and "docs/incident.md" in md
    assert "docs/incident.md" in md and "shared" + "/incident" not in md and "../" + "shared" not in md


def test_an_old_run_folder_without_an_experiment_file_still_builds(tmp_path):
    rabbitmq_run(tmp_path, None)
    (tmp_path / "experiment.yaml").unlink()
    build_report(tmp_path)
    assert "Workload: 9 sent" not in (tmp_path / "report.md").read_text()   # its workload's type is unknown
    assert "Variant slow-node-left-in (primary): FAIL" in (tmp_path / "report.md").read_text()


def test_a_new_story_is_one_class_and_a_line_in_the_experiment(tmp_path):
    @register("story")
    class Toy(Story):
        type: Literal["toy-story"] = "toy-story"
        say: str = "hello"

        def why(self, run):
            return [f"toy says {self.say} to {len(run.variants)} variant(s)"]

        def blocks(self, run):
            return [("h2", "A toy section"), ("p", f"{len(run.samples('slow-node-left-in'))} samples")]
    try:
        build_report(rabbitmq_run(tmp_path, "  - {type: toy-story, say: hi}\n  - {type: no-such-story}"))
    finally:
        REGISTRY["story"].pop("toy-story")
    md = (tmp_path / "report.md").read_text()
    assert "toy says hi to 1 variant(s)" in md and "## A toy section" in md and "10 samples" in md
    assert "report[1]: no story of type 'no-such-story' is known here" in md


def test_reasons_as_data_render_without_splitting(tmp_path):
    reasons = [Reason("aborted", "aborted: hypothesis violated for 25 s (> 20 s): confirm_p99_ms 1900 vs bound 1000",
                      short="aborted: confirm p99 over its bound", subject="confirm-p99-ms").as_dict(),
               {"kind": "check-failed", "text": "no-loss: 1 lost"}]
    build_report(rabbitmq_run(tmp_path, None, reasons))
    md = (tmp_path / "report.md").read_text()
    assert "slow-node-left-in (primary) FAIL: aborted: confirm p99 over its bound." in md   # the head: short
    assert "- aborted: hypothesis violated for 25 s (> 20 s): confirm_p99_ms 1900 vs bound 1000" in md   # list: text
    assert "- no-loss: 1 lost" in md and "{'" not in md and "'kind'" not in md
    assert as_reason("old sentence")["short"] == "old sentence" and as_reason(Reason("note", "x"))["text"] == "x"


def test_gate_junit_and_bundle_read_reasons_as_data(tmp_path):
    from chaoslab import bundle, ci, gate
    from chaoslab.run.context import VariantResult
    r = VariantResult("change", "primary", "d", {}, started=1.0, ended=2.0, verdict="FAIL",
                      probes={"views": {"seconds": {"broker-1": {"green-but-broken": 12}}}},
                      reasons=[{"kind": "aborted", "text": "aborted: the long sentence", "short": "aborted"}])
    runner = SimpleNamespace(exp=SimpleNamespace(name="gate"), results=[r], run_dir=tmp_path, error=None)
    ci.junit(tmp_path / "junit.xml", runner, 1)
    xml = (tmp_path / "junit.xml").read_text()
    assert 'message="aborted"' in xml and "aborted: the long sentence" in xml
    assert gate.observations(r) == ["Green-but-broken (both health checks passed while its topics failed): broker-1 for 12 s"]
    rabbitmq_run(tmp_path / "run", None, [{"kind": "violated", "text": "the whole text", "short": "headline"}])
    assert bundle.summary(tmp_path / "run")["slow-node-left-in"]["first_reason"] == "headline"


def test_probe_notes_status_and_the_flip_by_value():
    from chaoslab.stories.incident_chain import ELM, links
    summary = {"brokers": {"log_counts": {"broker-1": {"too_many_pending_lookups": 122}}}, "views": {}}
    assert probe_notes(summary) == ["limit reached: the brokers rejected 122 lookups for too many pending requests "
                                    "(broker-1 122); the clients retried them"]
    sample = {"t": 1, "brokers": {"broker-1": {"shallow_ok": True, "functional_ok": False}},
              "views": {"brokers": {"broker-1": {"state": "shallow-only"}}}}
    assert probe_status(sample) == "broker-1:shallow-only"          # the views replace shallow/functional
    assert probe_status({"brokers": sample["brokers"]}) == "broker-1:ok/FAIL  (shallow/functional)"
    assert probe_status({"phase": "method"}) == "-"
    roll = {"type": "roll-broker", "broker": "broker-1", "shallow_ok": True, "functional_ok": True}
    v = {"steps": [{**roll, "config": {"loadManagerClassName": ELM}},
                   {**roll, "broker": "broker-2", "config": {"loadManagerClassName": ELM + "Old"}},
                   {**roll, "broker": "broker-3", "config": {"note": ELM}}]}
    assert links(v, [], only=[1])[0]["number"] == "1 of 3 brokers rolled with the flip"   # equal, not contained
