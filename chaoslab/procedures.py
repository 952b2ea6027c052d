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

import re

EXTENSIBLE = "org.apache.pulsar.broker.loadbalance.extensions.ExtensibleLoadManagerImpl"

# `python bench/procedures.py --json runs/procedures-331-20261201 runs/knockout-331-fullrestart-20261201`
# (2026-12-01, this machine; 3.3.0, 3.3.1 and 3.3.1-knockout are local builds, docs/cause-and-procedures.md)
MEASURED: list[dict] = [{'procedure': 'single-pass',
  'description': "(a) the incident's procedure - each broker rolled once, to the new release with the switch",
  'releases': '3.3.0 -> 3.3.1',
  'supplied': ['3.3.0', '3.3.1'],
  'runs': 5,
  'passed': 0,
  'failed': 5,
  'not_judged': 0,
  'fail_interval_95': [0.57, 1.0],
  'failed_by': {'both': 1, 'split': 4},
  'outage_secs': None,
  'all_serving_secs': None},
 {'procedure': 'two-passes',
  'description': '(b) two rolling passes - the release first, then the switch broker by broker',
  'releases': '3.3.0 -> 3.3.1',
  'supplied': ['3.3.0', '3.3.1'],
  'runs': 5,
  'passed': 0,
  'failed': 5,
  'not_judged': 0,
  'fail_interval_95': [0.57, 1.0],
  'failed_by': {'split': 5},
  'outage_secs': None,
  'all_serving_secs': None},
 {'procedure': 'full-restart',
  'description': '(c) the release rolled first, then the switch applied to every broker at once (a planned outage)',
  'releases': '3.3.0 -> 3.3.1',
  'supplied': ['3.3.0', '3.3.1'],
  'runs': 5,
  'passed': 3,
  'failed': 2,
  'not_judged': 0,
  'fail_interval_95': [0.12, 0.77],
  'failed_by': {'hang': 1, 'both': 1},
  'outage_secs': {'median': 48.4, 'max': 50.1, 'runs': 3},
  'all_serving_secs': {'median': 20.2, 'max': 25.4}},
 {'procedure': 'full-restart',
  'description': '(c) the release rolled first, then the switch applied to every broker at once (a planned outage)',
  'releases': '3.3.0 -> 3.3.1-knockout',
  'note': "3.3.1 with its load-data store changed so that no thread waits under the store's monitor "
          '(docs/cause-and-procedures.md)',
  'supplied': ['3.3.0', '3.3.1-knockout'],
  'runs': 5,
  'passed': 5,
  'failed': 0,
  'not_judged': 0,
  'fail_interval_95': [0.0, 0.43],
  'failed_by': {},
  'outage_secs': {'median': 41.2, 'max': 45.6, 'runs': 5},
  'all_serving_secs': {'median': 18.3, 'max': 20.4}}]


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
    return (line + f"; on {m['releases']}" + (" (supplied builds)" if m.get("supplied") else "")
            + (f" - {m['note']}" if m.get("note") else ""))


def patched(m: dict) -> bool:
    """Measured on a labelled build (X.Y.Z-label), not on a release as published."""
    return bool(re.search(r"\d+\.\d+\.\d+-\S+$", m["releases"]))


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
    if safe and all(patched(m) for m in safe):
        head += " (a patched build); on the releases as published none of the measured procedures was SAFE"
    return {"measured": True, "safe": [m["procedure"] for m in safe], "lines": [head] + lines}
