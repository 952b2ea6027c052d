"""Hypervisors as parent cgroups (lab/hypervisors.py), their probe and panic monitor, and the books
of VMs that die with their hypervisor: against a cgroup tree in a temporary folder."""

import threading
from types import SimpleNamespace

import pytest

from chaoslab.checks.vms import EventsLost
from chaoslab.lab import hypervisors as hv
from chaoslab.monitor.hypervisors import HypervisorPanic
from chaoslab.workload.accounting import AgentLedger, close_books
from chaoslab.workload.vm_agents import Hypervisors, VmAgents


@pytest.fixture
def v1(tmp_path):
    for ctrl in ("memory", "blkio", "cpu"):
        (tmp_path / ctrl).mkdir()
    return tmp_path


def test_a_hypervisor_is_a_parent_cgroup_with_its_own_budgets(v1):
    parent = hv.create(hv.HypervisorSpec("hv-a-1", 300 * 2**20, read_bps=8 * 2**20, cpu_shares=512), "lab", v1,
                       device="254:0")
    assert parent == "/chaoslab-lab/hv-a-1"
    assert (v1 / "memory/chaoslab-lab/hv-a-1/memory.limit_in_bytes").read_text() == str(300 * 2**20)
    assert (v1 / "blkio/chaoslab-lab/hv-a-1/blkio.throttle.read_bps_device").read_text() == f"254:0 {8 * 2**20}"
    assert (v1 / "cpu/chaoslab-lab/hv-a-1/cpu.shares").read_text() == "512"
    # the engine puts each VM's container below it; figures are hierarchical over them
    vm = v1 / "memory/chaoslab-lab/hv-a-1/abc123"
    vm.mkdir()
    (vm / "cgroup.procs").write_text("41\n42\n")
    mem = v1 / "memory/chaoslab-lab/hv-a-1"
    (mem / "memory.usage_in_bytes").write_text("1000\n")
    (mem / "memory.stat").write_text("total_pgmajfault 77\ntotal_cache 10\n")
    (v1 / "blkio/chaoslab-lab/hv-a-1/blkio.throttle.io_service_bytes_recursive").write_text(
        "254:0 Read 4096\n254:0 Write 1\nTotal 4097\n")
    f = hv.figures("lab", "hv-a-1", v1)
    assert f["memory_bytes"] == 1000 and f["pgmajfault"] == 77 and f["read_bytes"] == 4096
    assert hv.tasks("lab", "hv-a-1", v1) == [41, 42]
    for file in [f for f in v1.rglob("*") if f.is_file()]:   # cgroupfs control files go with their directory
        file.unlink()
    hv.remove_all("lab", v1)
    assert not (v1 / "memory/chaoslab-lab").exists() and not (v1 / "cpu/chaoslab-lab").exists()


def test_v2_hosts_get_one_directory_with_memory_io_and_cpu(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory io cpu\n")
    hv.create(hv.HypervisorSpec("hv-b-1", 2**30, read_bps=2**20, cpu_shares=2048), "lab", tmp_path, device="8:0")
    d = tmp_path / "chaoslab-lab/hv-b-1"
    assert (d / "memory.max").read_text() == str(2**30) and (d / "io.max").read_text() == f"8:0 rbps={2**20}"
    assert (d / "cpu.weight").read_text() == "200"


def test_d_state_is_timed_per_task_and_the_longest_kept():
    from chaoslab.observe.host import DState, proc_state
    d = DState()
    states = {1: "D", 2: "S"}
    assert d.look([1, 2], state=states.get, now=100)["d_state_tasks"] == 1
    assert d.look([1, 2], state=states.get, now=130)["d_state_longest_secs"] == 30
    states[1] = "S"
    out = d.look([1, 2], state=states.get, now=131)
    assert out["d_state_longest_secs"] == 0 and out["d_state_longest_ever_secs"] == 30
    assert proc_state(999_999_999) is None


def test_the_plan_overcommits_each_hypervisor_and_spreads_the_vms():
    plan = Hypervisors(count=4, overcommit=2.0, read_mib_per_sec=16).plan("g", 10, 256)
    assert [h["vms"] for h in plan] == [3, 3, 2, 2]
    assert [h["memory_mib"] for h in plan] == [384, 384, 256, 256] and plan[0]["read_bps"] == 16 * 2**20
    with pytest.raises(ValueError, match="leaves some empty"):
        VmAgents(count=2, hypervisors={"count": 3})


def test_past_the_hung_task_limit_the_hypervisor_crashes_and_its_vms_die_together():
    crashed = []
    done = threading.Event()

    def crash(ctx, name, reason):
        crashed.append((name, reason))
        done.set()
    ctx = SimpleNamespace(workload=SimpleNamespace(crash_hypervisor=crash))
    m = HypervisorPanic(hung_task_secs=30)
    m.start(ctx)
    m.on_sample({"t": 1, "hypervisors": {"hv-1": {"d_state_longest_secs": 12}, "hv-2": {"d_state_longest_secs": 31}}})
    m.on_sample({"t": 2, "hypervisors": {"hv-2": {"d_state_longest_secs": 32}}})   # once
    assert done.wait(5)
    out = m.stop(ctx)
    assert [c[0] for c in crashed] == ["hv-2"] and "hung-task limit 30 s" in crashed[0][1]
    assert out["declared"] and list(out["crashed"]) == ["hv-2"]


def test_a_vm_that_died_with_its_hypervisor_books_its_events_as_lost_in_crash():
    ledger = AgentLedger(generated=10, seqs={"dropped": set(), "failed": set(), "held": set()})
    books = close_books(ledger, {0, 1, 2, 3}, crashed=True)
    assert books["lost"] == 0 and books["lost_in_crash"] == 6 and books["books_closed"]
    plain = close_books(ledger, {0, 1, 2, 3})
    assert plain["lost"] == 6 and plain["lost_in_crash"] == 0
    totals = {"generated": 10, "delivered": 4, "dropped_by_policy": 0, "lost": 0, "lost_in_crash": 6, "unknown": 0}
    record = SimpleNamespace(record={"workload": {"totals": totals, "per_vm": {}}})
    said_apart = EventsLost().check(record)
    assert said_apart.outcome == "pass" and "lost in a hypervisor crash 6" in said_apart.evidence
    assert EventsLost(include_crashes=True).check(record).outcome == "fail"


def test_a_vm_inside_a_hypervisor_is_read_from_its_cgroup_below_it(v1):
    from chaoslab.observe import cgroups
    d = v1 / "memory/chaoslab-lab/hv-a-1/cid"
    d.mkdir(parents=True)
    (d / "memory.usage_in_bytes").write_text("123\n")
    assert cgroups.container_figures("cid", v1) is None                       # not under the engine's own
    assert cgroups.container_figures("cid", v1, parent="/chaoslab-lab/hv-a-1")["memory.usage_in_bytes"] == 123


def test_the_probe_keeps_peaks_when_the_vms_cgroups_go_and_link_9_reads_it_per_hypervisor(monkeypatch):
    from chaoslab.probes.hypervisors import HypervisorsProbe
    from chaoslab.stories.incident_chain import Facts, link_9
    seen = iter([{"memory_bytes": 10, "pgmajfault": 5, "read_bytes": 100},
                 {"memory_bytes": 30, "pgmajfault": 50, "read_bytes": 100 + 2**20},
                 {"memory_bytes": 1, "pgmajfault": 2, "read_bytes": 50}])        # the VMs' cgroups removed
    monkeypatch.setattr(hv, "figures", lambda project, name: next(seen))
    monkeypatch.setattr(hv, "tasks", lambda project, name: [])
    probe = HypervisorsProbe()
    ctx = SimpleNamespace(workload=SimpleNamespace(hypervisor_names=lambda: ["hv-1"], project="lab"))
    for _ in range(3):
        probe.collect(ctx)
    s = probe.summary()["hypervisors"]["hv-1"]
    assert s["pgmajfault"] == 45 and s["read_mib"] == 1.0 and s["memory_peak_mib"] == 0.0
    v = {"probes": {"vms": {"x": 1}, "hypervisors": {"hypervisors": {"hv-1": {"d_state_longest_secs": 3.0},
                                                                    "hv-2": {"d_state_longest_secs": 0.5}}}},
         "monitors": {"hypervisor-panic": {"hung_task_secs": 2, "declared": True, "crashed": {"hv-1": {}}}}}
    seen_9, text = link_9(Facts(v, []))
    assert seen_9 and "3.0 s in hv-1" in text and "declared" in text and "crashed: hv-1" in text


def test_a_hypervisor_whose_tasks_cannot_be_read_says_d_state_unknown_not_zero(monkeypatch):
    from chaoslab.probes.hypervisors import HypervisorsProbe
    from chaoslab.stories.incident_chain import Facts, link_9
    monkeypatch.setattr(hv, "figures", lambda project, name: {"memory_bytes": 1})
    monkeypatch.setattr(hv, "tasks", lambda project, name: [])          # the subtree's cgroup.procs not readable
    probe = HypervisorsProbe()
    ctx = SimpleNamespace(workload=SimpleNamespace(hypervisor_names=lambda: ["hv-1"], project="lab"))
    assert probe.collect(ctx)["hv-1"]["d_state_longest_secs"] is None
    summary = probe.summary()
    assert summary["hypervisors"]["hv-1"]["d_state_longest_secs"] is None
    assert HypervisorsProbe.report_blocks(summary, [], [], {}, None)[1][2][0][5] == "not read"
    v = {"probes": {"vms": {"x": 1}, "hypervisors": summary}, "monitors": {}}
    assert link_9(Facts(v, [])) == (None, "the hypervisors' tasks could not be read: D state not observed")


def test_a_vms_load_average_counts_its_running_and_blocked_threads_like_the_kernel(v1):
    from chaoslab.observe import cgroups, host
    d = v1 / "memory/chaoslab-lab/hv-a-1/cid"
    d.mkdir(parents=True)
    (d / "tasks").write_text("10\n11\n12\n13\n")
    assert cgroups.container_threads("cid", v1, parent="/chaoslab-lab/hv-a-1") == [10, 11, 12, 13]
    assert cgroups.container_threads("gone", v1, parent="/chaoslab-lab/hv-a-1") is None
    states = {10: "R", 11: "D", 12: "D", 13: "S"}
    assert host.runnable_or_blocked([10, 11, 12, 13], state=states.get) == (1, 2)
    avg = host.LoadAverage()
    for t in range(0, 601, 5):          # 3 tasks active for 10 minutes: load1 converges on 3
        value = avg.add(3, now=t)
    assert 2.95 < value <= 3.0
    one_minute_later = avg.add(0, now=660)   # idle for a minute: e^-1 of it is left, as in /proc/loadavg
    assert abs(one_minute_later - value * 0.3679) < 0.01


def test_the_agents_cost_per_vm_is_its_own_rss_and_cpu_share_with_the_bus_up():
    from chaoslab.probes.vms import VmAgentsProbe, agent_cost
    cost = agent_cost({"vm-1": [(0, 8 * 2**20, 1.0), (10, 10 * 2**20, 1.2), (20, 10 * 2**20, 1.4)],
                       "vm-2": [(0, 6 * 2**20, 0.0), (20, 6 * 2**20, 0.8)]})
    assert cost["vms"] == 2 and cost["rss_mib_median"] == 8.0 and cost["rss_mib_max"] == 10.0
    assert cost["cpu_share_median"] == 0.03 and cost["cpu_share_max"] == 0.04 and cost["cpu_share_total"] == 0.06
    assert agent_cost({}) is None
    blocks = VmAgentsProbe.report_blocks({"agent_cost": cost, "look_secs": {"looks": 5, "median": 0.2, "max": 0.9}},
                                         [], [], {"workload": {"rate": 150.0, "line_bytes": 4096}}, None)
    text = " ".join(b[1] for b in blocks if b[0] == "p")
    assert "RSS median 8.0 MiB" in text and "3.0 % of one core" in text and "150 events/s of 4096 bytes" in text
    assert "median 0.200 s, max 0.900 s over 5 looks" in text
    assert "not read" in VmAgentsProbe.report_blocks({"agent_cost": None, "look_secs": None} | {"look_secs": {"looks": 1, "median": 0.1, "max": 0.1}},
                                                     [], [], {}, None)[1][1]


def test_the_agent_process_is_found_among_the_vms_processes_by_its_command_line(tmp_path, monkeypatch):
    from chaoslab.probes.vms import VmAgentsProbe
    from chaoslab.observe import cgroups, host
    monkeypatch.setattr(cgroups, "container_threads", lambda cid, parent=None, processes=False: [7, 8, 9])
    argv = {7: ["/sbin/docker-init", "--"], 8: ["chaoslab-agent", "resident"],
            9: ["/usr/local/bin/chaoslab-agent", "--config", "/etc/vector/vector.toml"]}
    monkeypatch.setattr(host, "command_line", lambda pid: argv[pid])
    monkeypatch.setattr(host, "process_cost", lambda pid: {"rss_bytes": pid, "cpu_secs": 0.0})
    c = SimpleNamespace(name="vm-1", id="cid")
    probe = VmAgentsProbe()
    assert probe._agent_cost(c, None) == {"rss_bytes": 9, "cpu_secs": 0.0}
    assert probe._agent_pid == {"vm-1": 9}


def test_a_sample_holding_a_probe_error_is_skipped_by_the_panels_and_a_vanishing_cgroup_by_tasks(v1, monkeypatch):
    from pathlib import Path

    from chaoslab.probes.hypervisors import HypervisorsProbe
    samples = [{"hypervisors": {"hv-a-1": {"memory_bytes": 2**20, "d_state_longest_secs": 3.0}}},
               {"hypervisors": {"probe_error": "FileNotFoundError: a VM's cgroup went"}}]
    for panel in HypervisorsProbe.panels():
        series = panel.series(samples)
        assert set(series) == {"hv-a-1"} and series["hv-a-1"][1] is None

    def vanishing(self, pattern):
        yield from ()
        raise FileNotFoundError("a VM's cgroup went while the tree was walked")
    monkeypatch.setattr(Path, "rglob", vanishing)
    assert hv.tasks("lab", "hv-a-1", v1) == []


def test_a_task_that_ran_between_looks_is_not_one_stretch_in_d_state_as_the_hung_task_detector_counts():
    from chaoslab.observe.host import DState
    d, count = DState(), {"n": 10}
    in_d = lambda pid: "D"
    progress = lambda pid: count["n"]
    for t in range(0, 31, 10):            # in D at every look, but switched in and out in between
        count["n"] += 1
        out = d.look([7], state=in_d, now=t, switches=progress)
    assert out["d_state_longest_secs"] == 0.0 and d.longest_ever == 0.0
    stuck = DState()
    for t in range(0, 31, 10):            # the count never moves: one stretch, as khungtaskd sees it
        out = stuck.look([7], state=in_d, now=t, switches=lambda pid: 10)
    assert out["d_state_longest_secs"] == 30.0
    unread = DState()
    for t in range(0, 31, 10):            # the count cannot be read: successive looks count as one stretch
        out = unread.look([7], state=in_d, now=t, switches=lambda pid: None)
    assert out["d_state_longest_secs"] == 30.0
