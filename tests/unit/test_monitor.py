"""The would-be remediator's rules, on samples made by hand."""

from chaoslab.monitor.remediation import WouldBeRemediator


def vm(alive=True, answered=True, cpu_ns=None):
    return {"alive": alive, "agent_answered": answered, "cgroup": {"cpu_usage_ns": cpu_ns}}


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
    out = feed(WouldBeRemediator(name="as-run", every_secs=10, fault_steps=["bus-outage"]))
    assert out["by_action"]["upscale"] >= 15 and out["by_action"]["redeploy"] == 12  # 2 VMs x 6 judgements
    before, during = out["rates"]["before"]["per_minute"], out["rates"]["during"]["per_minute"]
    assert before > 0 and during > before and out["amplification"] == round(during / before, 2)


def test_the_post_mortems_fixes_cut_the_would_be_actions():
    as_run = feed(WouldBeRemediator(every_secs=10, fault_steps=["bus-outage"]))
    not_missing = feed(WouldBeRemediator(every_secs=10, fault_steps=["bus-outage"], missing_data_is_unreachable=False))
    window = feed(WouldBeRemediator(every_secs=10, fault_steps=["bus-outage"], maintenance_steps=["bus-outage"]))
    assert "redeploy" not in not_missing["by_action"] and not_missing["amplification"] < 1.5 < as_run["amplification"]
    assert window["rates"]["during"]["actions"] == 0 and window["actions"] < not_missing["actions"] < as_run["actions"]


def test_a_gone_vm_is_unreachable_and_no_fault_means_no_amplification():
    m = WouldBeRemediator(every_secs=1)
    m.on_sample({"t": 0, "vms": {"vm-a": vm(alive=False)}})
    out = m.summary()
    assert out["by_action"] == {"redeploy": 1} and out["amplification"] is None
    assert out["amplification_note"] == "no fault step named" and "whole run" in out["rates"]


def test_vms_the_run_stops_at_the_end_are_not_unreachable():
    m = WouldBeRemediator(every_secs=1, missing_data_is_unreachable=False)
    m.on_sample({"t": 0, "phase": "finish", "vms": {"vm-a": vm(alive=False)}})
    assert m.summary()["actions"] == 0
