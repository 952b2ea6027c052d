"""bench/fleet_scale.py, its pure parts (no Docker): the ramp's per-step groups and hypervisors,
the refusal of a step whose hypervisors' budgets do not fit, and the judgement of when the lab
itself degrades."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from chaoslab.workload.vm_agents import RESERVED_FOR_LAB_BYTES, Hypervisors, budget_refusal, vm_read_shares

spec = importlib.util.spec_from_file_location(
    "fleet_scale", Path(__file__).resolve().parents[2] / "bench" / "fleet_scale.py")
fs = importlib.util.module_from_spec(spec)
sys.modules["fleet_scale"] = fs   # its dataclasses look their module up there
spec.loader.exec_module(fs)

GIB = 2**30


def test_each_step_adds_a_group_in_hypervisors_of_its_own_overcommitted():
    ramp = fs.plan_ramp([10, 50, 100, 150, 200, 250], hypervisors=4, overcommit=1.25, memory_mib=64,
                        resident_mb=48, read_mib_per_sec=32)
    assert [s.vms for s in ramp] == [10, 50, 100, 150, 200, 250]
    assert [s.added for s in ramp] == [10, 40, 50, 50, 50, 50]
    second = ramp[1]
    assert second.group.group == "fleet-2" and second.group.count == 40
    assert second.group.buffer.type == "memory" and second.group.buffer.when_full == "block"
    assert [h["name"] for h in second.hypervisors] == [f"hv-fleet-2-{i}" for i in (1, 2, 3, 4)]
    assert [h["vms"] for h in second.hypervisors] == [10, 10, 10, 10]
    assert [h["memory_mib"] for h in second.hypervisors] == [512] * 4     # 10 x 64 MiB / 1.25
    assert second.hypervisors[0]["read_bps"] == 32 * 2**20
    # the same plan as `type: vm-agents` makes for that group
    assert second.hypervisors == Hypervisors(count=4, overcommit=1.25, read_mib_per_sec=32).plan("fleet-2", 40, 64)
    # a step adding fewer VMs than hypervisors gets one hypervisor per VM, none empty
    few = fs.plan_ramp([10, 12], hypervisors=4)[1]
    assert [h["vms"] for h in few.hypervisors] == [1, 1]


def test_a_ramp_that_cannot_run_is_refused_before_the_lab_is_touched():
    with pytest.raises(ValueError, match="grow"):
        fs.plan_ramp([50, 10])
    with pytest.raises(ValueError, match="count"):          # one group holds at most vm-agents' 500 VMs
        fs.plan_ramp([10, 600])
    with pytest.raises(ValueError, match="resident_mb"):    # the application must fit in the VM
        fs.plan_ramp([10], memory_mib=64, resident_mb=64)
    assert fs.main(["--steps", "50,10"]) == 2


def test_the_next_step_is_refused_when_its_budgets_do_not_fit_beside_the_lab():
    step = fs.plan_ramp([10, 50])[1]                        # 4 x 512 MiB = 2 GiB of budgets
    assert fs.step_refusal(step, RESERVED_FOR_LAB_BYTES + 2 * GIB) is None
    why = fs.step_refusal(step, RESERVED_FOR_LAB_BYTES + 1 * GIB)
    assert why.startswith("the step to 50 VMs (+40) is refused")
    assert "would need 2.0 GiB" in why and "1.0 GiB beyond the 6 GiB kept for the bus and the lab" in why
    # a host already short of the reserve has nothing to spare, never a negative figure
    assert "0.0 GiB beyond" in budget_refusal(step.hypervisors, RESERVED_FOR_LAB_BYTES - GIB)


def test_each_vm_gets_its_share_of_the_read_budget_on_cgroup_v1_only():
    plan = Hypervisors(count=2, read_mib_per_sec=10).plan("g", 5, 64)     # 3 and 2 VMs
    assert vm_read_shares(plan, 1) == (10 * 2**20 // 3, 10 * 2**20 // 2)
    assert vm_read_shares(plan, 2) == (None, None)                          # io.max is hierarchical
    assert vm_read_shares(Hypervisors(count=2).plan("g", 5, 64), 1) == (None, None)


def _step(vms, restart=20.0, median=0.3, p99=8.0, not_shipped=0, **more):
    return {"vms": vms, "added": 50, "proxy_restart_secs": restart, "proxy_served_again": restart is not None,
            "sample_secs_median": median, "produce_p99_ms": p99, "agents_not_shipped": not_shipped,
            "ship_timeout_secs": 120.0, **more}


def test_the_lab_holds_while_every_figure_stays_within_its_bound():
    steps = [_step(10), _step(50, restart=39.9, median=1.0, p99=40.0), _step(100, restart=25.0)]
    bounds = fs.Bounds()
    assert fs.judge(steps, bounds) is None
    assert fs.verdict(steps, bounds) == "not degraded up to 100 VMs"
    assert fs.verdict(steps, bounds, "the step to 150 VMs (+50) is refused: ...") == \
        "not degraded up to 100 VMs (the ramp stopped there: the step to 150 VMs (+50) is refused: ...)"
    assert fs.verdict([], bounds, "interrupted (Ctrl-C)") == "nothing measured: interrupted (Ctrl-C)"


@pytest.mark.parametrize("late, says", [
    (_step(150, restart=40.5), "proxy restart 40.5 s > 2 x the first step's 20.0 s"),
    (_step(150, median=1.2), "sampling period median 1.20 s > 1 s"),
    (_step(150, p99=40.1), "produce p99 40.1 ms > 5 x the first step's 8.0 ms"),
    (_step(150, not_shipped=3), "3 of the step's 50 agents did not ship within 120.0 s"),
    (_step(150, restart=None), "the proxy did not serve again after its restart"),
    (_step(150, p99=None, produce_error="Timeout: send timed out"), "the produce round trip failed (Timeout"),
    (_step(150, restart=None, proxy_error="'docker compose stop' failed"), "the proxy could not be restarted"),
])
def test_the_lab_degrades_at_the_first_count_where_a_figure_crosses_its_bound(late, says):
    steps = [_step(10), _step(100), late, _step(200, median=5.0)]
    found = fs.judge(steps, fs.Bounds())
    assert found is not None and found[0] == 150 and len(found[1]) == 1 and found[1][0].startswith(says)
    assert fs.verdict(steps, fs.Bounds()).startswith(f"the lab degrades at 150 VMs: {says}")


def test_the_bounds_are_the_options_and_the_first_step_can_fail_too():
    steps = [_step(10), _step(50, restart=35.0, p99=30.0)]
    assert fs.judge(steps, fs.Bounds()) is None
    found = fs.judge(steps, fs.Bounds(restart_factor=1.5, produce_p99_factor=3.0))
    assert found[0] == 50 and len(found[1]) == 2
    assert fs.judge([_step(10, median=1.5), _step(50)], fs.Bounds())[0] == 10
    assert fs.judge([_step(10, median=1.5)], fs.Bounds(sample_period_secs=2.0)) is None


def test_p99_of_a_few_sends_stays_within_what_was_measured():
    values = [1.0] * 49 + [100.0]
    assert 1.0 < fs.percentile(values, 99) <= 100.0
    assert fs.percentile([3.0], 99) == 3.0 and fs.percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_help_works_without_a_lab(capsys):
    with pytest.raises(SystemExit) as done:
        fs.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--steps" in out and "--up" in out and "--json" in out and "degrades" in out
