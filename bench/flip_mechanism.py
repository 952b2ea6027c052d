"""How the flip failed, per release: every run folder given (single runs or `--repeat` series),
each variant classified as hang / split / both / none (chaoslab/stories/flip.py), tallied per
(variant, release) with the failure rate's 95 % Wilson interval, the metadata conflict, and the runs
in which the load-data store restarted its table view because its clock started at time 0 (the
likely trigger of the hang: a restart under the store's monitor; counted from the store's own
"Restarted tableview" and "Failed to tableview" lines, written only when a restart completes or
fails, so a restart that hung shows in a thread dump, not here).

    python bench/flip_mechanism.py runs/                 # every run under runs/
    python bench/flip_mechanism.py runs/A runs/B-x10     # chosen runs or series
    python bench/flip_mechanism.py --markdown runs/...   # the table as Markdown (docs/findings/)

Rows: the change (flip or not), the release, and how the bundles reached the flipped broker (by
chance, through the workload's lookups; or every bundle, by a `lookup-every-bundle` step in the
method, counted also when a run aborted before the step's turn came). A
run the lab could not judge (INCONCLUSIVE, ERROR) is counted apart, never as a pass.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaoslab.rates import wilson  # noqa: E402
from chaoslab.spec.base import as_reason  # noqa: E402
from chaoslab.stories.flip import classify  # noqa: E402
from table import print_table  # noqa: E402  (bench/table.py)
from chaoslab.record import read  # noqa: E402


def folders(paths: list[str]):
    for base in map(Path, paths):
        found = [p.parent for p in sorted(base.rglob("results.json"))]
        yield from (f for f in found if (f / "journal.jsonl").exists())


def main(paths: list[str], markdown: bool = False) -> None:
    tally: dict[tuple, dict] = defaultdict(lambda: defaultdict(int, names=None))
    for rd in folders(paths):
        import json
        try:
            res = json.loads((rd / "results.json").read_text())
            records = read(rd / "journal.jsonl")
        except (OSError, ValueError):
            continue
        try:
            method_text = (rd / "experiment.yaml").read_text(encoding="utf-8")
        except OSError:
            method_text = ""
        lab = next((r for r in records if r.get("name") == "lab-up"), {})
        limit = (lab.get("broker_config") or {}).get("maxConcurrentLookupRequest")
        for v in res.get("variants") or []:
            steps = [s for s in v.get("steps") or [] if s.get("type") == "roll-broker"]
            if not steps or v.get("verdict") not in ("PASS", "FAIL", "INCONCLUSIVE", "ERROR"):
                continue
            release = steps[0].get("version") or "?"
            flip = "ExtensibleLoadManagerImpl" in str(v.get("params"))
            # the method as declared (a run aborted before the step came still ran that method)
            asked = "lookup-every-bundle" in method_text
            samples = [r for r in records if r.get("type") == "sample" and r.get("variant") == v["name"]]
            c = classify(samples, rd / "logs" / v["name"], since=(v.get("kpis") or {}).get("injection_t"),
                         pending_bound=0.8 * float(limit) if limit else None)
            t = tally[("flip" if flip else "no flip", release, "every bundle" if asked else "by chance")]
            t["names"] = sorted(set(t["names"] or []) | {v["name"]})
            if v["verdict"] not in ("PASS", "FAIL"):      # the lab could not tell: counted apart, never as a pass
                t["not_judged"] += 1
                print(f"{rd}  {v['name']:10} {release:6} {v['verdict']}: {'; '.join(as_reason(x)['short'] for x in v.get('reasons') or [])[:160]}")
                continue
            t["runs"] += 1
            t["fail"] += v["verdict"] == "FAIL"
            t[c["mechanism"]] += 1
            t["conflict_topics"] += (c.get("conflicts") or {}).get("topics", 0)
            t["dump_shown"] += c["hang"]["shown_by_thread_dump"]
            t["cycle_shown"] += any(d.get("cycles") for d in c["hang"]["store_monitor_dumps"].values())
            views = c.get("view_restarts") or {}
            t["view_restart_runs"] += bool(views.get("from_time_zero"))
            t["failed_restart_runs"] += bool(views.get("failed"))
            elm = c.get("load_manager_lines") or {}
            t["role_retry_runs"] += bool((elm.get("failed_to_set_role") or {}).get("lines"))
            t["start_failed_runs"] += bool((elm.get("failed_to_start") or {}).get("lines"))
            t["hang_with_failed_restart"] += c["mechanism"] in ("hang", "both") and bool(views.get("failed"))
            print(f"{rd}  {v['name']:10} {release:6} {v['verdict']:5} {c['mechanism']:5}  "
                  f"split {c['split']['secs']:3d} s  stalled {c['hang']['lookups_stalled_secs']:3d} s  "
                  f"conflict topics {(c.get('conflicts') or {}).get('topics', 0):3d}  "
                  f"view restarts: {views.get('restarts', 0)}, failed {views.get('failed', 0)}; "
                  f"of both, judged inactive since time 0: {views.get('from_time_zero', 0)}")
    print()
    rows = []
    for (change, release, asked), t in sorted(tally.items()):
        lo, hi = wilson(t["fail"], t["runs"])
        rows.append([change, release, asked, ", ".join(t["names"] or []), t["runs"], t["fail"], f"{lo:.2f}-{hi:.2f}",
                     t["not_judged"], t["hang"], f"{t['dump_shown']} ({t['cycle_shown']})", t["split"], t["both"], t["none"],
                     f"{t['conflict_topics'] / t['runs']:.0f}" if t["runs"] else "-",
                     t["view_restart_runs"], f"{t['failed_restart_runs']} ({t['hang_with_failed_restart']})",
                     t["role_retry_runs"], t["start_failed_runs"]])
    head = ["change", "release", "bundles asked", "variants", "runs", "FAIL", "FAIL rate (95 %)", "not judged",
            "hang", "(thread dump (wait-for cycle))", "split", "both", "none", "conflict topics/run", "view restarts from time 0 (runs)",
            "failed view restarts (runs; hang/both)", "'failed to set the role' (runs)",
            "'Failed to start the extensible load balance' (runs)"]
    print_table(head, rows, markdown)

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--markdown"]
    main(args or ["runs"], markdown="--markdown" in sys.argv[1:])
