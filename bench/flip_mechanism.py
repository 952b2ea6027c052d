"""How the flip failed, per release: every run folder given (single runs or `--repeat` series),
each variant classified as hang / split / both / none (chaoslab/report/flip.py), tallied per
(variant, release) with the failure rate's 95 % Wilson interval, the metadata conflict, and the runs
in which the load-data store restarted its table view because its clock started at time 0 (the
likely trigger of the hang: a restart under the store's monitor; counted from the store's own
"Restarted tableview" and "Failed to tableview" lines, written only when a restart completes or
fails, so a restart that hung shows in a thread dump, not here).

    python bench/flip_mechanism.py runs/                 # every run under runs/
    python bench/flip_mechanism.py runs/A runs/B-x10     # chosen runs or series
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaoslab.rates import wilson  # noqa: E402
from chaoslab.report.flip import classify  # noqa: E402
from chaoslab.run.journal import read  # noqa: E402


def folders(paths: list[str]):
    for base in map(Path, paths):
        found = [p.parent for p in sorted(base.rglob("results.json"))]
        yield from (f for f in found if (f / "journal.jsonl").exists())


def main(paths: list[str]) -> None:
    tally: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for rd in folders(paths):
        import json
        try:
            res = json.loads((rd / "results.json").read_text())
            records = read(rd / "journal.jsonl")
        except (OSError, ValueError):
            continue
        lab = next((r for r in records if r.get("name") == "lab-up"), {})
        limit = (lab.get("broker_config") or {}).get("maxConcurrentLookupRequest")
        for v in res.get("variants") or []:
            steps = [s for s in v.get("steps") or [] if s.get("type") == "roll-broker"]
            if not steps or v.get("verdict") not in ("PASS", "FAIL"):
                continue
            release = steps[0].get("version") or "?"
            flip = "ExtensibleLoadManagerImpl" in str(v.get("params"))
            samples = [r for r in records if r.get("type") == "sample" and r.get("variant") == v["name"]]
            c = classify(samples, rd / "logs" / v["name"], since=(v.get("kpis") or {}).get("injection_t"),
                         pending_bound=0.8 * float(limit) if limit else None)
            t = tally[(v["name"], release, "flip" if flip else "no flip")]
            t["runs"] += 1
            t["fail"] += v["verdict"] == "FAIL"
            t[c["mechanism"]] += 1
            t["conflict_topics"] += (c.get("conflicts") or {}).get("topics", 0)
            t["dump_shown"] += c["hang"]["shown_by_thread_dump"]
            views = c.get("view_restarts") or {}
            t["view_restart_runs"] += bool(views.get("from_time_zero"))
            t["failed_restart_runs"] += bool(views.get("failed"))
            t["hang_with_failed_restart"] += c["mechanism"] in ("hang", "both") and bool(views.get("failed"))
            print(f"{rd}  {v['name']:10} {release:6} {v['verdict']:5} {c['mechanism']:5}  "
                  f"split {c['split']['secs']:3d} s  stalled {c['hang']['lookups_stalled_secs']:3d} s  "
                  f"conflict topics {(c.get('conflicts') or {}).get('topics', 0):3d}  "
                  f"view restarts: {views.get('restarts', 0)}, failed {views.get('failed', 0)}; "
                  f"of both, judged inactive since time 0: {views.get('from_time_zero', 0)}")
    print()
    print(f"{'variant':10} {'release':7} {'change':8} {'runs':>4} {'FAIL':>4} {'rate 95 %':>13} "
          f"{'hang':>4} {'(dump)':>6} {'split':>5} {'both':>4} {'none':>4} {'conflict topics/run':>19} "
          f"view restarts from time 0 (runs)  failed restarts (runs; of them hang/both)")
    for (name, release, change), t in sorted(tally.items()):
        lo, hi = wilson(t["fail"], t["runs"])
        print(f"{name:10} {release:7} {change:8} {t['runs']:4d} {t['fail']:4d} {lo:6.2f}-{hi:4.2f}  "
              f"{t['hang']:4d} {t['dump_shown']:6d} {t['split']:5d} {t['both']:4d} {t['none']:4d} "
              f"{t['conflict_topics'] / t['runs']:19.1f} {t['view_restart_runs']:6d} {t['failed_restart_runs']:6d} ({t['hang_with_failed_restart']})")


if __name__ == "__main__":
    main(sys.argv[1:] or ["runs"])
