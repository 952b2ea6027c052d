import json
import time
from types import SimpleNamespace

from chaoslab.checks.loss import NoLoss
from chaoslab.checks.vms import EventsLost, HostIoPressure, OomKills
from chaoslab.observe import cgroups
from chaoslab.observe.metrics import parse as parse_metrics
from chaoslab.probes.pulsar import BROKER_METRICS
from chaoslab.record import read
from chaoslab.report import build_report, describe, words
from chaoslab.run.journal import Journal
from chaoslab.workload.stats import ClientStats, error_kind
from chaoslab.workload.vm_agents import AGENT_METRICS


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


def test_one_metrics_reader_keeps_exporter_names_and_splits_labels():
    text = """# TYPE pulsar_broker_lookup_pending_requests gauge
pulsar_broker_lookup_pending_requests{cluster="lab"} 7.0
# TYPE pulsar_broker_lookup_answers counter
pulsar_broker_lookup_answers_total{cluster="lab"} 3.0
pulsar_broker_lookup_answers_created{cluster="lab"} 1.7e9
pulsar_topics_other 5
"""
    assert parse_metrics(text, BROKER_METRICS) == {"pulsar_broker_lookup_pending_requests": 7.0,
                                                   "pulsar_broker_lookup_answers_total": 3.0}
    agent = """# TYPE vector_buffer_discarded_events counter
vector_buffer_discarded_events_total{intentional="true",component_id="bus"} 4
vector_buffer_discarded_events_total{intentional="false",component_id="bus"} 1
"""
    assert parse_metrics(agent, AGENT_METRICS, split_by=("intentional",)) == {
        "vector_buffer_discarded_events_total{intentional=true}": 4.0,
        "vector_buffer_discarded_events_total{intentional=false}": 1.0}


def test_final_checks_pass_fail_and_unknown():
    ctx = SimpleNamespace(record={"workload": {"loss": {"lost": 2, "acked": 10, "received": 8, "duplicated": 0,
                                                        "lost_sample": ["m1", "m2"]}}})
    r = NoLoss().check(ctx)
    assert r.outcome == "fail" and r.value == 2 and "m1" in r.evidence
    assert NoLoss().check(SimpleNamespace(record={})).outcome == "unknown"
    ctx = SimpleNamespace(record={"workload": {"oom_killed": ["vm-1"], "totals": {"lost": 0, "generated": 5, "delivered": 5,
                                                                                   "dropped_by_policy": 0}},
                                  "probes": {"host": {"host_peak": {"io_some_avg10": 30.0}}}})
    assert OomKills().check(ctx).outcome == "fail" and EventsLost().check(ctx).outcome == "pass"
    assert HostIoPressure(max=25).check(ctx).outcome == "fail"
    assert HostIoPressure().check(SimpleNamespace(record={"probes": {}})).outcome == "unknown"


def test_cgroup_v1_files_are_read_with_kernel_names(tmp_path):
    cid = "abc"
    mem = tmp_path / "memory" / "docker" / cid
    mem.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("1000\n")
    (mem / "memory.limit_in_bytes").write_text("268435456\n")
    (mem / "memory.max_usage_in_bytes").write_text("2000\n")
    (mem / "memory.failcnt").write_text("3\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (mem / "memory.stat").write_text("total_rss 10\ntotal_cache 20\ntotal_pgmajfault 7\ntotal_pgpgin 9\ntotal_mapped_file 4\n")
    blk = tmp_path / "blkio" / "docker" / cid
    blk.mkdir(parents=True)
    (blk / "blkio.throttle.io_service_bytes").write_text("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n")
    f = cgroups.container_figures(cid, root=tmp_path)
    assert f["memory.limit_in_bytes"] == 268435456 and f["oom_kill"] == 1 and f["total_pgmajfault"] == 7
    assert f["blkio_read_bytes"] == 4096 and f["blkio_write_bytes"] == 512 and f["memory.failcnt"] == 3
    assert cgroups.container_figures("gone", root=tmp_path) is None


def test_words_never_show_python_reprs():
    assert words({"a": 1, "b": {"c": True}, "d": None, "e": [1, 2]}) == "a=1, b=c=yes, e=1; 2"
    assert "{" not in words({"x": {"y": {"z": 1}}})
    assert describe({"name": "abort", "reason": "why"}) == "ABORT: why"


def test_report_from_a_journal_alone_bands_from_steps_and_a_torn_last_line(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    j.write("run-start", run_id="r", experiment="x", seed=1, versions={"from": "3.2.2"}, host={"cores": 2})
    t0 = time.time()
    j.context = {"variant": "flip"}
    j.event("variant-start", role="primary")
    j.event("step-start", step="roll-broker-1", step_type="roll-broker", band="roll-broker-1", spec={"broker": 1})
    for i in range(6):
        j.write("sample", phase="method", violations=[], elapsed=i,
                brokers={"broker-1": {"metrics": {"pulsar_broker_lookup_pending_requests": float(i)}, "shallow_ok": True}},
                client={"publish_success_rate": 1.0, "publish_p99_ms": 5},
                cluster={"system_topics": {"exists": {"persistent://p/s/t": i > 2}}})
    j.event("step-end", step="roll-broker-1", step_type="roll-broker", ok=False, secs=3,
            result={"broker": "broker-1", "wait_ok": False})
    j.event("abort", reason="step roll-broker-1 did not succeed")
    j.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"t": 1, "type": "sam')  # runner killed mid-write
    assert len(read(tmp_path / "journal.jsonl")) == 11
    (tmp_path / "results.json").write_text(json.dumps({"title": "x", "variants": [{
        "name": "flip", "role": "primary", "description": "", "params": {"version": "to"}, "verdict": "FAIL",
        "reasons": ["aborted: because"], "aborted": True,
        "steps": [{"id": "roll-broker-1", "type": "roll-broker", "ok": False, "secs": 3, "broker": "broker-1", "wait_ok": False}],
        "undone": [{"step": "roll-broker-1", "type": "roll-broker", "ok": True, "secs": 2, "serves": True}],
        "rollbacks": [], "checks": [{"name": "no-loss", "outcome": "pass", "value": 0, "bound": 0, "evidence": "0 lost"}],
        "workload": {"loss": {"sent": 1, "acked": 1, "received": 1, "lost": 0, "duplicated": 0}},
        "kpis": {"injection_t": t0}, "longest_violation_secs": 0, "violated_seconds": 0, "first_violations": [],
        "started": t0 - 1, "ended": time.time() + 1}]}))
    build_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "INCOMPLETE" in md and "Variant flip (primary): FAIL" in md and "aborted: because" in md
    assert "step roll-broker-1 (roll-broker) starts" in md and "ABORT: step roll-broker-1" in md
    assert "no-loss | pass" in md and "{'" not in md
    assert (tmp_path / "plot-flip.png").stat().st_size > 1000
    assert "<table>" in (tmp_path / "report.html").read_text()


def test_wilson_interval_and_detection_power():
    from chaoslab.rates import runs_to_detect, summary, wilson
    lo, hi = wilson(4, 7)
    assert (round(lo, 2), round(hi, 2)) == (0.25, 0.84)   # the flip's 4 of 7 (README, an earlier series)
    lo, hi = wilson(0, 10)
    assert lo == 0 and round(hi, 3) == 0.278              # none failed: the upper bound
    assert wilson(0, 0) == (0.0, 1.0)
    assert runs_to_detect(0.5) == 5 and runs_to_detect(1.0) == 1 and runs_to_detect(0) is None
    s = summary(["PASS", "FAIL", "ERROR", "FAIL"])
    assert s["runs"] == 3 and s["failures"] == 2 and s["not_judged"] == 1 and s["rate"] == 0.667


def test_the_incident_chain_is_read_link_by_link():
    from chaoslab.stories.incident_chain import links
    elm = {"loadManagerClassName": "org.apache.pulsar.broker.loadbalance.extensions.ExtensibleLoadManagerImpl"}
    v = {"params": {}, "steps": [
            {"type": "roll-broker", "broker": "broker-1", "config": elm, "shallow_ok": True, "functional_ok": False},
            {"type": "roll-broker", "broker": "broker-2", "config": elm, "shallow_ok": True, "functional_ok": True}],
         "probes": {"views": {"seconds": {"broker-1": {"green-but-broken": 12}}}},
         "undone": [{"step": "roll-broker-1", "ok": False}], "rollbacks": []}
    samples = [{"phase": "method", "client": {"publish_ok": 0, "lookup_ok": 0, "lookups_expected": True, "too_many_requests": 2},
                "brokers": {"broker-1": {"metrics": {"pulsar_broker_lookup_pending_requests": 48.0},
                                         "log_counts": {"failed_to_set_role": 3}}}}] * 10   # 10 s: lasting
    rows = {r["link"]: r for r in links(v, samples, pending_limit=50)}
    assert rows[1]["observed"] and "2 of 2" in rows[1]["number"]
    assert rows[2]["observed"] and "broker-1 green-but-broken 12 s" in rows[2]["number"]
    assert rows[3]["observed"] and rows[4]["observed"] and rows[5]["observed"] and rows[6]["observed"]
    assert rows[7]["observed"] is None and rows[11]["observed"] is None   # not watched, not "no"
    quiet = {r["link"]: r for r in links({"steps": [{"type": "roll-broker", "broker": "broker-1", "config": {},
                                                      "shallow_ok": True, "functional_ok": True}]},
                                         [{"phase": "method", "client": {"publish_ok": 9, "lookup_ok": 3},
                                           "brokers": {"broker-1": {"metrics": {}}}}], 50)}
    assert [quiet[n]["observed"] for n in (1, 2, 3, 4, 5, 6)] == [False] * 6


def test_chain_ignores_a_restarts_transient_states_and_reads_link_11():
    from chaoslab.stories.incident_chain import links
    elm = {"loadManagerClassName": "org.apache.pulsar.broker.loadbalance.extensions.ExtensibleLoadManagerImpl"}
    v = {"steps": [{"type": "roll-broker", "broker": f"broker-{n}", "config": elm, "shallow_ok": True,
                    "functional_ok": True} for n in (1, 2)],
         "probes": {"views": {"seconds": {"broker-1": {"green-but-broken": 5, "shallow-only": 3}}}}}
    samples = [{"phase": "method", "client": {"publish_ok": 5, "lookup_ok": 0, "lookups_expected": True},
                "brokers": {"broker-1": {"metrics": {}}}}] * 5
    rows = {r["link"]: r for r in links(v, samples, 50)}
    assert [rows[n]["observed"] for n in (2, 3, 5)] == [False, False, False]
    rmq = [{"phase": "steady", "rabbitmq": {"confirm_p99_ms": 12.0}},
           {"phase": "method", "rabbitmq": {"confirm_p99_ms": 1900.0}}]
    slow = {"steps": [{"type": "slow-service", "service": "rabbitmq-3"},
                      {"type": "remove-rabbitmq-node", "remedy_secs": 10.5}]}
    row = {r["link"]: r for r in links(slow, rmq)}[11]
    assert row["observed"] and "1900 ms" in row["number"] and "removed in 10.5 s" in row["number"]
    assert {r["link"]: r for r in links({"steps": []}, rmq)}[11]["observed"] is None


def test_chain_links_7_and_8_tell_a_memory_buffer_from_a_disk_buffer_and_thrash_from_noise():
    from chaoslab.stories.incident_chain import links

    def group(buffer, pgmaj, mem_psi, io_psi):
        per_vm = {f"vm-{i}": {"memory_limit_bytes": 256 * 2**20, "pgmajfault": pgmaj} for i in range(2)}
        return {"workload": {"buffer": {"type": buffer}, "per_vm": per_vm, "oom_killed": []},
                "probes": {"vms": {"vm_memory_max_mib": 256.0, "agent_buffer_events_max": 12000.0},
                           "host": {"host_peak": {"memory_some_avg10": mem_psi, "io_some_avg10": io_psi}}}}
    incident = {r["link"]: r for r in links(group("memory", 2000, 88.0, 47.7), [])}
    fix = {r["link"]: r for r in links(group("disk", 19, 15.5, 13.1), [])}
    assert incident[7]["observed"] and incident[8]["observed"]
    # the disk buffer's VMs sit at the cap with the buffer files' page cache: not link 7
    assert fix[7]["observed"] is False and "disk buffer" in fix[7]["number"]
    assert fix[8]["observed"] is False      # 38 major faults and a host busy draining are not thrash


def test_the_gates_default_repeat_catches_the_measured_rate():
    from chaoslab.cli import build_parser
    from chaoslab.rates import GATE_DEFAULT_REPEAT, MEASURED_FLIP, default_repeat, detection_power, wilson
    # the default is set from the lower 95 % bound of the measured rate, not the point estimate
    lower = wilson(MEASURED_FLIP["failures"], MEASURED_FLIP["runs"])[0]
    assert 1 - (1 - lower) ** GATE_DEFAULT_REPEAT >= 0.95
    assert GATE_DEFAULT_REPEAT == 1 or 1 - (1 - lower) ** (GATE_DEFAULT_REPEAT - 1) < 0.95
    assert detection_power(GATE_DEFAULT_REPEAT)["power_at_lower_bound"] >= 0.95
    # the examples: 0 misses in 20 runs -> 2 runs; 0 in 75 -> 1
    assert default_repeat(20, 20) == 2 and default_repeat(75, 75) == 1
    gate_help = build_parser()._subparsers._group_actions[0].choices["gate"].format_help()
    assert f"Default {GATE_DEFAULT_REPEAT}," in " ".join(gate_help.split())
    assert build_parser().parse_args(["gate"]).repeat is None  # resolved per change: see below
    from chaoslab import gate
    from chaoslab.cli import cmd_gate
    seen = {}

    def stop_before_running(exp, args, **kw):
        seen["repeat"] = args.repeat
        raise SystemExit(0)
    import chaoslab.cli as cli
    original = cli.make_runner
    cli.make_runner = stop_before_running
    try:
        for to, want in (("3.2.3", GATE_DEFAULT_REPEAT), (gate.load_base(None).versions.from_, 1)):
            with __import__("pytest").raises(SystemExit):
                cmd_gate(build_parser().parse_args(["gate", "--to", to]))
            assert seen["repeat"] == want, to
    finally:
        cli.make_runner = original


def test_false_alarms_grow_with_the_number_of_runs_and_say_their_count():
    from chaoslab.rates import false_alarms, wilson
    one, two = false_alarms(1, 0, 30), false_alarms(2, 0, 30)
    upper = wilson(0, 30)[1]
    assert one["upper_95_rate"] == round(upper, 3) and 0.1 < upper < 0.13
    assert two["blocks_safe_change_at_upper_bound"] == round(1 - (1 - upper) ** 2, 3)
    assert two["blocks_safe_change_at_upper_bound"] > one["blocks_safe_change_at_upper_bound"]
    assert one["blocks_safe_change_at_measured_rate"] == 0 and "0 of 30" in one["measured"]
    assert false_alarms(1, 0, 0)["blocks_safe_change_at_measured_rate"] is None   # nothing measured: no rate
    assert false_alarms(1, 1, 15)["blocks_safe_change_at_measured_rate"] == round(1 / 15, 3)


def test_false_alarms_with_no_runs_counted_say_unknown_not_certain_blocking():
    from chaoslab import rates
    none = rates.false_alarms(3, 0, 0)
    assert none["upper_95_rate"] is None and none["blocks_safe_change_at_upper_bound"] is None
    assert "not measured" in none["measured"]


def test_the_gate_help_carries_no_measurement(monkeypatch):
    """No measurement in CLI help (issue 20): the help reads the same whatever was measured, and
    says where the figures are (the gate's --json at run time, docs/findings/)."""
    from chaoslab import rates
    from chaoslab.cli import build_parser

    def gate_help():
        return " ".join(build_parser()._subparsers._group_actions[0].choices["gate"].format_help().split())
    monkeypatch.setattr(rates, "MEASURED_HARMLESS", {"not_pass": 0, "runs": 0, "measured": "-"})
    unknown = gate_help()
    monkeypatch.setattr(rates, "MEASURED_HARMLESS", {"not_pass": 1, "runs": 30, "measured": "-"})
    assert gate_help() == unknown
    assert "of 30" not in unknown and "probability" not in unknown and "docs/findings/" in unknown
