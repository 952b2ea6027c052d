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


# The gate's default number of runs. The incident's change (the flip to 3.2.3) failed 3 of 5 runs
# here (README, "The flip finding"); at that rate 4 runs catch it with >= 95 % probability
# (runs_to_detect(0.6) == 4). At the low end of its 95 % interval (0.23) they would catch it 65 % of
# the time: more runs buy more certainty, at ~3.5 min each.
MEASURED_FLIP_FAILURE_RATE = 0.6
GATE_DEFAULT_REPEAT = 4


def run_folders(folders):
    """(run folder, its results.json) for each finished run under the given folders: the
    run-N folders of a `--repeat` series, or the folder itself for a single run."""
    import json
    from pathlib import Path
    for base in folders:
        for rd in sorted(Path(base).glob("run-*")) or [Path(base)]:
            if (rd / "results.json").exists():
                yield rd, json.loads((rd / "results.json").read_text())
