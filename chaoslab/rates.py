"""Rates from repeated runs: failures out of N with a 95 % Wilson score interval (which also
gives an upper bound when no run failed), and the runs needed to catch a failure of a given rate."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(failures: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval for the failure rate (0, 1) when there were no runs."""
    if runs <= 0:
        return 0.0, 1.0
    p = failures / runs
    denom = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / denom
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def runs_to_detect(rate: float, power: float = 0.95) -> int | None:
    """How many runs make at least one failure at least `power` likely, at failure rate `rate`."""
    if rate <= 0:
        return None
    if rate >= 1:
        return 1
    return math.ceil(math.log(1 - power) / math.log(1 - rate))


def summary(verdicts: list[str]) -> dict:
    """FAIL counts as a failure; ERROR and INTERRUPTED runs are not counted either way."""
    judged = [v for v in verdicts if v in ("PASS", "FAIL")]
    failures = judged.count("FAIL")
    lo, hi = wilson(failures, len(judged))
    return {"runs": len(judged), "failures": failures, "not_judged": len(verdicts) - len(judged),
            "rate": round(failures / len(judged), 3) if judged else None,
            "interval_95": [round(lo, 3), round(hi, 3)], "verdicts": verdicts}


# The gate's default number of runs, set from a measurement: the incident's change (the flip
# rolled to 3.2.3) from fresh labs on this lab, single runs, counted by
# `python bench/flip_mechanism.py runs/` (see README, "How the flip fails"). The default is the
# smallest number of runs that catches a change failing at the *lower* 95 % bound of that rate
# with at least DETECTION_TARGET probability: the bound, not the point estimate, so that few runs
# buy no false confidence.
MEASURED_FLIP = {"failures": 14, "runs": 14, "release": "3.2.3", "measured": "2026-12-01",
                 "method": "transfer-shedder with lookup-every-bundle"}
DETECTION_TARGET = 0.95
GATE_MAX_REPEAT = 50


def default_repeat(failures: int, runs: int, power: float = DETECTION_TARGET) -> int:
    lower = wilson(failures, runs)[0]
    return min(GATE_MAX_REPEAT, runs_to_detect(lower, power) or GATE_MAX_REPEAT)


def detection_power(repeat: int, failures: int | None = None, runs: int | None = None) -> dict:
    """What `repeat` runs buy against the measured change: the probability that at least one
    fails, at the lower 95 % bound of its single-run failure rate and at the rate itself."""
    failures = MEASURED_FLIP["failures"] if failures is None else failures
    runs = MEASURED_FLIP["runs"] if runs is None else runs
    lower = wilson(failures, runs)[0]
    rate = failures / runs if runs else 0.0
    return {"repeat": repeat, "measured": f"{failures} of {runs} single runs failed", "lower_95_rate": round(lower, 3),
            "power_at_lower_bound": round(1 - (1 - lower) ** repeat, 3),
            "power_at_measured_rate": round(1 - (1 - rate) ** repeat, 3),
            "false_alarms": false_alarms(repeat)}


# The other error rate: harmless changes (plain rolling restarts, the same release, a setting that
# changes nothing at the lab's load) judged unsafe, single runs, counted by
# `python bench/harmless_signals.py` (README, "How the flip fails"). A gate that says "unsafe if any
# run is" blocks a safe change with probability 1 - (1 - p)^repeat: more runs catch more, and
# block more.
MEASURED_HARMLESS = {"not_pass": 1, "runs": 12, "measured": "2026-12-01"}


def false_alarms(repeat: int, not_pass: int | None = None, runs: int | None = None) -> dict:
    """What `repeat` runs cost a safe change: the probability that at least one of them is
    judged unsafe, at the measured per-run false-alarm rate and at its upper 95 % bound."""
    not_pass = MEASURED_HARMLESS["not_pass"] if not_pass is None else not_pass
    runs = MEASURED_HARMLESS["runs"] if runs is None else runs
    if not runs:    # nothing counted: the rate is unknown, not 1 (wilson's (0, 1) for no runs)
        return {"measured": "not measured (no harmless runs counted)", "upper_95_rate": None,
                "blocks_safe_change_at_upper_bound": None, "blocks_safe_change_at_measured_rate": None}
    upper = wilson(not_pass, runs)[1]
    rate = not_pass / runs
    return {"measured": f"{not_pass} of {runs} harmless single runs not PASS", "upper_95_rate": round(upper, 3),
            "blocks_safe_change_at_upper_bound": round(1 - (1 - upper) ** repeat, 3),
            "blocks_safe_change_at_measured_rate": round(1 - (1 - rate) ** repeat, 3)}


MEASURED_FLIP_FAILURE_RATE = MEASURED_FLIP["failures"] / MEASURED_FLIP["runs"]
GATE_DEFAULT_REPEAT = default_repeat(MEASURED_FLIP["failures"], MEASURED_FLIP["runs"])


def run_folders(folders):
    """(run folder, its results.json) for each finished run under the given folders: the
    run-N folders of a `--repeat` series, or the folder itself for a single run."""
    import json
    from pathlib import Path
    for base in folders:
        for rd in sorted(Path(base).glob("run-*")) or [Path(base)]:
            if (rd / "results.json").exists():
                yield rd, json.loads((rd / "results.json").read_text())
