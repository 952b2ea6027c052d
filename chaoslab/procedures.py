"""What the lab measured about *how* to make a change, so that a gate which finds a change UNSAFE
can say which procedure was measured SAFE for it (or that none was).

The records come from experiments/upgrade-procedures.yaml (the same change made three ways: one
rolling pass, two rolling passes, or the release rolled and then every broker restarted together),
tallied by `python bench/procedures.py --json RUN_FOLDERS`. They hold for the change they were
measured on, the switch to the extensible load manager; for any other change the gate says that no
procedure was measured. A procedure with no failing run is called SAFE only with its run count and
the upper end of its failure rate's 95 % interval beside it.
"""

from __future__ import annotations

EXTENSIBLE = "org.apache.pulsar.broker.loadbalance.extensions.ExtensibleLoadManagerImpl"

# `python bench/procedures.py --json runs/procedures-331-20261201` (2026-12-01, this machine)
MEASURED: list[dict] = []


def switches_load_manager(broker_conf: dict[str, str]) -> bool:
    """The change the procedures were measured on: brokers switched to the extensible load manager."""
    return (broker_conf.get("loadManagerClassName") or "").strip() == EXTENSIBLE


def words(m: dict) -> str:
    cost = m.get("outage_secs")
    verdict = ("SAFE" if not m["failed"] and m["runs"] else "UNSAFE" if m["failed"] else "not judged")
    line = (f"{m['procedure']} ({m['description']}): {verdict} - {m['failed']} of {m['runs']} runs failed "
            f"(95 % interval {m['fail_interval_95'][0]:.2f}-{m['fail_interval_95'][1]:.2f})")
    if m.get("not_judged"):
        line += f", {m['not_judged']} not judged"
    if m.get("failed_by"):
        line += ", by " + ", ".join(f"{k} {n}" for k, n in sorted(m["failed_by"].items()))
    if cost:
        line += f"; costs {cost['median']:.0f} s without service (median, max {cost['max']:.0f} s)"
    return line + f"; on {m['releases']}" + (" (supplied builds)" if m.get("supplied") else "")


def advice(broker_conf: dict[str, str], measured: list[dict] | None = None) -> dict:
    """{"measured": bool, "safe": [procedure names], "lines": [...]} for the gate's output."""
    measured = MEASURED if measured is None else measured
    if not switches_load_manager(broker_conf) or not measured:
        return {"measured": False, "safe": [],
                "lines": ["no other procedure was measured for this change (experiments/upgrade-procedures.yaml "
                          "measures one: the switch to the extensible load manager)"]}
    safe = [m for m in measured if m["runs"] and not m["failed"]]
    lines = [words(m) for m in measured]
    head = (f"measured SAFE instead: {'; '.join(m['procedure'] + ' on ' + m['releases'] for m in safe)}" if safe else
            "none of the measured procedures was SAFE")
    return {"measured": True, "safe": [m["procedure"] for m in safe], "lines": [head] + lines}
