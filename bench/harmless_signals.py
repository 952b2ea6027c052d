"""Where the hypothesis' bounds sit against plain rolling restarts: for each run of a harmless
variant (default: the variants whose role is `control`), during the method, the extreme of every
signal a condition reads, and per condition the longest stretch it was violated (a false alarm
needs a stretch longer than the tolerance). Prints the distribution over runs next to each bound
and the false-alarm count with its 95 % interval.

    python bench/harmless_signals.py runs/rates-harmless [more folders] [--variant control] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaoslab.rates import run_folders, wilson  # noqa: E402
from chaoslab.record import read as read_journal  # noqa: E402
from chaoslab.stories.flip import longest, peak_pending  # noqa: E402


def _rate(ok, failed):
    return None if not (ok or failed) else ok / (ok + failed)


# signal: (how it is read from one sample, worst = max or min, the condition type whose bound it is)
SIGNALS = {
    "pending lookups (peak over brokers)": (peak_pending, max, "pending-lookups"),
    "lookup success rate (window)": (lambda s: _rate((s.get("client") or {}).get("lookup_ok", 0),
                                                     (s.get("client") or {}).get("lookup_failed", 0)), min,
                                     "lookup-success-rate"),
    "publish success rate (window)": (lambda s: (s.get("client") or {}).get("publish_success_rate"), min,
                                      "publish-success-rate"),
    "publish p99 ms (window)": (lambda s: (s.get("client") or {}).get("publish_p99_ms"), max, "publish-p99-ms"),
    "backlog": (lambda s: (s.get("client") or {}).get("backlog"), max, "backlog"),
}


def bounds_as_run(run_dir: Path) -> dict:
    """Each condition's bound in the experiment as that run ran it (its experiment.yaml), and the
    tolerance: the bounds are the file's, never a copy here that could drift from it."""
    try:
        steady = (yaml.safe_load((run_dir / "experiment.yaml").read_text(encoding="utf-8")) or {}).get("steady_state") or {}
    except (OSError, yaml.YAMLError):
        return {}
    out = {c["type"]: c.get("max", c.get("min")) for c in steady.get("conditions") or [] if isinstance(c, dict)}
    out["tolerance"] = steady.get("tolerance_secs")
    return out


def one_run(samples: list[dict]) -> dict:
    out = {}
    for name, (read, worst, _type) in SIGNALS.items():
        values = [v for v in (read(s) for s in samples) if v is not None]
        out[name] = worst(values) if values else None
    # as the flip's classification counts it: only where lookups were expected to complete
    stalled = [bool((s.get("client") or {}).get("lookups_expected")) and (s.get("client") or {}).get("lookup_ok", 1) == 0
               for s in samples]
    out["longest stall, no lookup completing (s)"] = longest(stalled) if samples else None
    names = sorted({v["name"] for s in samples for v in s.get("violations") or []})
    out["violated"] = {n: longest([any(v["name"] == n for v in s.get("violations") or []) for s in samples])
                       for n in names}
    return out


def quantile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def p90_worst(values: list[float], worst) -> float:
    """The value 90 % of runs were no worse than (high for a `max` signal, low for a `min` one)."""
    return quantile(values, 0.9) if worst is max else -quantile([-v for v in values], 0.9)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", default=["runs"])
    ap.add_argument("--variant", action="append", help="variant names to count (default: role control)")
    ap.add_argument("--tolerance", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runs = []
    for rd, res in run_folders(args.folders):
        wanted = {v["name"]: v for v in res["variants"]
                  if (v["name"] in args.variant if args.variant else v.get("role") == "control")}
        if not wanted:
            continue
        samples: dict[str, list] = {}
        try:
            records = read_journal(rd / "journal.jsonl")     # a torn or unreadable line is skipped, not fatal
        except OSError:
            print(f"{rd}: no readable journal, skipped", file=sys.stderr)
            continue
        for d in records:
            if d.get("type") == "sample" and d.get("phase") == "method" and d.get("variant") in wanted:
                samples.setdefault(d["variant"], []).append(d)
        # every harmless run counts toward the rate, also one with no method samples (it ended
        # before the method: its signals are unknown, its verdict still says whether it passed)
        for name in wanted:
            if wanted[name]["verdict"] == "INTERRUPTED":   # stopped by its operator: no verdict either way
                print(f"{rd} {name}: interrupted, not counted", file=sys.stderr)
                continue
            runs.append({"run": str(rd), "variant": name, "verdict": wanted[name]["verdict"], "bounds": bounds_as_run(rd),
                         **one_run(samples.get(name, []))})
    if not runs:
        print("no harmless runs found", file=sys.stderr)
        return 2
    failed = sum(r["verdict"] != "PASS" for r in runs)
    low, high = wilson(failed, len(runs))
    summary = {"runs": len(runs), "not_pass": failed, "false_alarm_rate_95": [round(low, 3), round(high, 3)],
               "verdicts": {v: sum(r["verdict"] == v for r in runs) for v in sorted({r["verdict"] for r in runs})},
               "signals": {}, "violated_longest_s": {}}
    stall = ("longest stall, no lookup completing (s)", (None, max, "tolerance"))
    for name, (_read, worst, ctype) in list(SIGNALS.items()) + [stall]:
        pairs = [(r[name], (r["bounds"].get(ctype) if ctype != "tolerance" else r["bounds"].get("tolerance")) or
                  (args.tolerance if ctype == "tolerance" else None)) for r in runs if r[name] is not None]
        if not pairs:
            continue
        values = [v for v, _b in pairs]
        # each run against the bound it ran with (a bound that changed between runs shows both)
        beyond = sum(b is not None and ((v > b) if worst is max else (v < b)) for v, b in pairs)
        bounds = sorted({b for _v, b in pairs if b is not None})
        summary["signals"][name] = {"bound": "/".join(f"{b:g}" for b in bounds) or "-",
                                    "median": round(statistics.median(values), 3),
                                    "p90": round(p90_worst(values, worst), 3),
                                    "worst": round(worst(values), 3), "runs_beyond_bound": beyond, "of": len(values)}
    for n in sorted({n for r in runs for n in r["violated"]}):
        streaks = [r["violated"].get(n, 0) for r in runs]
        summary["violated_longest_s"][n] = {"max": max(streaks), "runs_violated": sum(s > 0 for s in streaks),
                                            "runs_past_tolerance": sum(s > args.tolerance for s in streaks)}
    if args.json:
        print(json.dumps({"summary": summary, "runs": runs}, indent=1, default=str))
        return 0
    print(f"harmless runs: {len(runs)}; not PASS: {failed} ({summary['verdicts']}); "
          f"false-alarm rate 95 % interval {low:.2f}-{high:.2f}")
    print(f"{'signal (worst per run, method only)':42} {'bound':>7} {'median':>8} {'p90':>8} {'worst':>8}  beyond bound")
    for name, s in summary["signals"].items():
        print(f"{name:42} {s['bound']:>7} {s['median']:>8} {s['p90']:>8} {s['worst']:>8}  {s['runs_beyond_bound']} of {s['of']}")
    print("conditions violated (longest stretch, s):")
    for n, s in summary["violated_longest_s"].items():
        print(f"  {n:30} max {s['max']:3d} s  in {s['runs_violated']} runs, past the {args.tolerance:.0f} s tolerance in "
              f"{s['runs_past_tolerance']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
