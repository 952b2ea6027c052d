"""The would-be remediator's rules, on samples made by hand."""

from chaoslab.monitor.remediation import WouldBeRemediator


def vm(alive=True, answered=True, cpu_ns=None, load1=None, answer_secs=None):
    return {"alive": alive, "agent_answered": answered, "cgroup": {"cpu_usage_ns": cpu_ns}, "load1": load1,
            "agent_answer_secs": answer_secs, "vcpus": 1.0}


# every judgement counts: no cool-down, no grace for booting VMs
EACH_TIME = {"every_secs": 10, "fault_steps": ["bus-outage"], "cooldown_secs": 0, "startup_grace_secs": 0}


def feed(m, t0=0):
    """60 s before the outage (healthy, busy VM-c), 60 s of outage (agents do not answer), 60 s after."""
    m.on_event({"name": "step-start", "step": "bus-outage", "t": t0 + 60})
    for s in range(0, 180):
        t = t0 + s
        if s == 120:
            m.on_event({"name": "step-end", "step": "bus-outage", "t": t})
        during = 60 <= s < 120
        m.on_sample({"t": t, "vms": {
            "vm-a": vm(answered=not during, cpu_ns=int(s * 0.2e9)),
            "vm-b": vm(answered=not during, cpu_ns=int(s * 0.2e9)),
            "vm-c": vm(cpu_ns=int(s * 0.95e9)),     # always busy: high load
        }})
    return m.summary()


def test_missing_data_read_as_unreachable_multiplies_the_actions():
    out = feed(WouldBeRemediator(name="as-run", **EACH_TIME))
    assert out["by_action"]["upscale"] >= 15 and out["by_action"]["redeploy"] == 12  # 2 VMs x 6 judgements
    before, during = out["rates"]["before"]["per_minute"], out["rates"]["during"]["per_minute"]
    assert before > 0 and during > before and out["amplification"] == round(during / before, 2)


def test_the_post_mortems_fixes_cut_the_would_be_actions():
    as_run = feed(WouldBeRemediator(**EACH_TIME))
    not_missing = feed(WouldBeRemediator(**EACH_TIME, missing_data_is_unreachable=False))
    window = feed(WouldBeRemediator(**EACH_TIME, maintenance_steps=["bus-outage"]))
    assert "redeploy" not in not_missing["by_action"] and not_missing["amplification"] < 1.5 < as_run["amplification"]
    assert window["rates"]["during"]["actions"] == 0 and window["actions"] < not_missing["actions"] < as_run["actions"]


def test_a_gone_vm_is_unreachable_and_no_fault_means_no_amplification():
    m = WouldBeRemediator(every_secs=1, startup_grace_secs=0)
    m.on_sample({"t": 0, "vms": {"vm-a": vm(alive=False)}})
    out = m.summary()
    assert out["by_action"] == {"redeploy": 1} and out["amplification"] is None
    assert out["amplification_note"] == "no fault step named" and "whole run" in out["rates"]


def test_vms_the_run_stops_at_the_end_are_not_unreachable():
    m = WouldBeRemediator(every_secs=1, missing_data_is_unreachable=False)
    m.on_sample({"t": 0, "phase": "finish", "vms": {"vm-a": vm(alive=False)}})
    assert m.summary()["actions"] == 0


def outage(m, during_vm, t_end=180):
    """VMs seen from t=0; the outage runs 60-120 s; `during_vm(s)` gives each VM's figures then."""
    m.on_event({"name": "step-start", "step": "bus-outage", "t": 60})
    for s in range(0, t_end):
        if s == 120:
            m.on_event({"name": "step-end", "step": "bus-outage", "t": s})
        m.on_sample({"t": s, "vms": {f"vm-{i}": during_vm(s, i) if 60 <= s < 120 else vm(load1=0.2) for i in range(4)}})
    return m.summary()


def test_a_high_load_average_is_read_as_needing_an_upscale_and_a_low_one_is_not():
    out = outage(WouldBeRemediator(fault_steps=["bus-outage"], cooldown_secs=0, startup_grace_secs=0),
                 lambda s, i: vm(load1=1.4 if i < 2 else 0.9))
    assert out["by_action"] == {"upscale": 12}            # 2 VMs x 6 judgements during, none at 0.9 or 0.2
    assert out["by_why"] == {"high load": 12} and out["rates"]["before"]["actions"] == 0
    assert out["amplification"] is None and out["amplification_note"].startswith("0 before the fault, 12")
    off = outage(WouldBeRemediator(fault_steps=["bus-outage"], high_load_per_vcpu=None), lambda s, i: vm(load1=5.0))
    assert off["actions"] == 0


def test_a_slow_answer_is_a_failed_health_check_unless_missing_data_is_not_unreachable():
    slow = lambda s, i: vm(answer_secs=1.3 if i == 0 else 0.2)
    assert outage(WouldBeRemediator(fault_steps=["bus-outage"], cooldown_secs=0), slow)["by_action"] == {"redeploy": 6}
    assert outage(WouldBeRemediator(fault_steps=["bus-outage"], cooldown_secs=0, health_timeout_secs=2), slow)["actions"] == 0
    assert outage(WouldBeRemediator(fault_steps=["bus-outage"], cooldown_secs=0,
                                    missing_data_is_unreachable=False), slow)["actions"] == 0


def test_the_cool_down_leaves_a_vm_alone_after_an_action():
    busy = lambda s, i: vm(load1=3.0)
    each = outage(WouldBeRemediator(fault_steps=["bus-outage"], cooldown_secs=0), busy)
    cooled = outage(WouldBeRemediator(fault_steps=["bus-outage"], cooldown_secs=60), busy)
    assert each["actions"] == 24 and cooled["actions"] == 4   # 4 VMs x 6 judgements; once each within 60 s


def test_booting_vms_are_not_judged_and_the_rates_start_after_the_grace():
    m = WouldBeRemediator(fault_steps=["bus-outage"], startup_grace_secs=30, cooldown_secs=0)
    for s in range(0, 50):
        m.on_sample({"t": s, "vms": {"vm-a": vm(load1=2.0 if s < 30 else 0.1)}})
    out = m.summary()
    assert out["actions"] == 0 and out["rates"]["whole run"]["minutes"] == round(19 / 60, 2)


def test_a_fault_inside_the_boot_grace_leaves_no_baseline_and_says_so():
    m = WouldBeRemediator(fault_steps=["bus-outage"], startup_grace_secs=30)
    m.on_event({"name": "step-start", "step": "bus-outage", "t": 10})
    for s in range(0, 100):
        m.on_sample({"t": s, "vms": {"vm-a": vm(load1=2.0)}})
    out = m.summary()
    assert out["rates"]["before"]["per_minute"] is None and out["amplification"] is None
    assert out["amplification_note"].startswith("no time judged before the fault")


def test_link_10_gives_every_monitors_rates_and_is_seen_only_when_the_rate_rises():
    from chaoslab.stories.incident_chain import Facts, link_10
    def rem(name, before, during, after):
        rates = {k: {"per_minute": v} for k, v in (("before", before), ("during", during), ("after", after))}
        return {"name": name, "rates": rates, "actions": 3, "amplification": during / before if before else None}
    seen, text = link_10(Facts({"monitors": {"as-run": rem("as-run", 0.0, 0.0, 18.7),
                                             "window": rem("window", 0.0, 0.0, 1.5)}}, []))
    assert seen is True and "as-run 0.00 / 0.00 / 18.70" in text and "window 0.00 / 0.00 / 1.50" in text
    assert link_10(Facts({"monitors": {"a": rem("a", 2.0, 3.0, 2.0)}}, []))[0] is False     # 1.5x: not amplified
    assert link_10(Facts({"monitors": {"a": rem("a", None, 3.0, 2.0)}}, []))[0] is None     # no baseline
    assert link_10(Facts({"monitors": {}}, [])) == (None, "no would-be remediator")


def test_a_declared_shorter_load_window_reads_the_vms_blocked_tasks_sooner_than_load1():
    def sample(s):   # one task in D state in every VM from 60 s on; the kernel's load1 still under 1
        blocked = 1 if s >= 60 else 0
        return vm(load1=0.6 if blocked else 0.0) | {"tasks_running": 0, "tasks_blocked": blocked}
    def run(m):
        m.on_event({"name": "step-start", "step": "bus-outage", "t": 60})
        for s in range(0, 120):
            m.on_sample({"t": s, "vms": {"vm-a": sample(s), "vm-b": sample(s)}})
        return m.summary()
    kernel = run(WouldBeRemediator(fault_steps=["bus-outage"], high_load_per_vcpu=0.9))
    short = run(WouldBeRemediator(fault_steps=["bus-outage"], high_load_per_vcpu=0.9, load_window_secs=10))
    assert kernel["actions"] == 0
    assert short["by_action"] == {"upscale": 2} and short["rules"]["load_window_secs"] == 10


def test_judgements_from_a_slow_look_of_the_lab_carry_a_caveat_into_the_report_and_link_10():
    from chaoslab.stories.incident_chain import Facts, link_10
    def run(look):
        m = WouldBeRemediator(fault_steps=["bus-outage"], cooldown_secs=0, startup_grace_secs=0)
        for s in range(0, 100):
            m.on_sample({"t": s, "vms": {"vm-a": vm(answer_secs=1.4) | {"look_secs": look}}})
        return m.summary()
    quick, slow = run(0.2), run(3.7)
    assert quick["instrument_caveat"] is None and quick["by_action"] == {"redeploy": 10}
    assert slow["instrument_caveat"].startswith("in 10 of 10 judgements the lab's own look")
    blocks = WouldBeRemediator.report_blocks({"as-run": slow | {"name": "as-run"}})
    assert any(b[0] == "p" and "the lab's slowness" in b[1] for b in blocks)
    assert "the lab's slowness" in link_10(Facts({"monitors": {"as-run": slow | {"name": "as-run"}}}, []))[1]
