"""Which upgrade procedure held the hypothesis: run folders of experiments/upgrade-procedures.yaml
(single runs or `--repeat` series), tallied per procedure (variant) and release pair: verdicts, with
the failure rate's 95 % Wilson interval, how the failing runs failed (hang / split / both / none,
chaoslab/stories/flip.py), and for the full restart the service it cost (the restart-brokers step's
seconds until every broker served and until the hypothesis held again). A run the lab could not
judge (INCONCLUSIVE, ERROR) is counted apart, never as a pass.

    python bench/procedures.py runs/procedures-x5            # a table per procedure
    python bench/procedures.py --markdown runs/...           # the same as Markdown (docs)
    python bench/procedures.py --json runs/...               # records for chaoslab/procedures.py
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaoslab.rates import wilson  # noqa: E402
from chaoslab.spec.base import as_reason  # noqa: E402
from chaoslab.stories.flip import classify  # noqa: E402
from chaoslab.stories.incident_chain import FLIP, is_flip  # noqa: E402
from table import print_table  # noqa: E402  (bench/table.py)
from chaoslab.record import read  # noqa: E402


def folders(paths: list[str]):
    for base in map(Path, paths):
        yield from (p.parent for p in sorted(base.rglob("results.json")) if (p.parent / "journal.jsonl").exists())


def tally(paths: list[str], log=print) -> list[dict]:
    rows: dict[tuple, dict] = defaultdict(lambda: {"verdicts": [], "mechanisms": defaultdict(int), "outage": [],
                                                   "serving": [], "reasons": [],
                                                   "split_before_switch": []})
    for rd in folders(paths):
        try:
            res = json.loads((rd / "results.json").read_text())
            records = read(rd / "journal.jsonl")
        except (OSError, ValueError):
            continue
        if res.get("experiment") != "upgrade-procedures":
            continue
        start = next((r for r in records if r.get("type") == "run-start"), {})
        versions = start.get("versions") or {}
        pair = f"{versions.get('from')} -> {versions.get('to')}"
        supplied = next((r.get("builds") for r in records if r.get("type") == "supplied-builds"), None) or {}
        for v in res.get("variants") or []:
            if v.get("verdict") not in ("PASS", "FAIL", "INCONCLUSIVE", "ERROR"):
                continue
            row = rows[(v["name"], pair)]
            row["description"] = v.get("description", "")
            row["supplied"] = sorted(supplied)
            row["verdicts"].append(v["verdict"])
            samples = [r for r in records if r.get("type") == "sample" and r.get("variant") == v["name"]]
            # the switch is the first step whose settings name the extensible load manager: how a run
            # failed is read from there on; two-owner answers before it (the plain release pass) apart
            switch_t = next((r["t"] for r in records if r.get("name") == "step-start" and r.get("variant") == v["name"]
                             and is_flip((r.get("spec") or {}).get("broker_config"), FLIP)), None)
            before = [s for s in samples if switch_t is not None and s["t"] < switch_t]
            row["split_before_switch"].append(sum(1 for s in before if (s.get("cluster") or {}).get("split")))
            after = [s for s in samples if switch_t is None or s["t"] >= switch_t]
            c = classify(after, rd / "logs" / v["name"], since=switch_t or (v.get("kpis") or {}).get("injection_t"))
            if v["verdict"] == "FAIL":
                row["mechanisms"][c["mechanism"]] += 1
                row["reasons"].append(as_reason((v.get("reasons") or ["?"])[0])["text"][:160])
            for s in v.get("steps") or []:
                if s.get("type") == "restart-brokers":
                    if s.get("service_back_after_secs") is not None:
                        row["outage"].append(s["service_back_after_secs"])
                    served = [x for x in (s.get("serving_after_secs") or {}).values() if x is not None]
                    if served and len(served) == len(s.get("serving_after_secs") or {}):
                        row["serving"].append(max(served))
            log(f"{rd}  {v['name']:13} {pair:16} {v['verdict']:12} {c['mechanism'] if v['verdict'] == 'FAIL' else '':5} "
                f"{'; '.join(as_reason(x)['short'] for x in v.get('reasons') or [])[:120]}")
    out = []
    for (name, pair), r in sorted(rows.items()):
        judged = [x for x in r["verdicts"] if x in ("PASS", "FAIL")]
        fails = judged.count("FAIL")
        lo, hi = wilson(fails, len(judged))
        out.append({"procedure": name, "description": r["description"], "releases": pair, "supplied": r["supplied"],
                    "runs": len(judged), "passed": judged.count("PASS"), "failed": fails,
                    "not_judged": len(r["verdicts"]) - len(judged), "fail_interval_95": [round(lo, 2), round(hi, 2)],
                    "failed_by": dict(r["mechanisms"]),
                    # seconds with two owners named for a bundle during the release pass (before the switch)
                    "split_secs_before_switch": r["split_before_switch"],
                    "outage_secs": {"median": round(statistics.median(r["outage"]), 1), "max": max(r["outage"]),
                                    "runs": len(r["outage"])} if r["outage"] else None,
                    "all_serving_secs": {"median": round(statistics.median(r["serving"]), 1), "max": max(r["serving"])}
                    if r["serving"] else None})
    return out


def main(argv: list[str]) -> None:
    paths = [a for a in argv if not a.startswith("--")] or ["runs"]
    rows = tally(paths, log=(lambda *_: None) if "--json" in argv else print)
    if "--json" in argv:
        print(json.dumps(rows, indent=2))
        return
    head = ["procedure", "releases", "runs", "PASS", "FAIL", "FAIL rate (95 %)", "not judged", "failed by (from the switch on)",
            "split s before the switch (per run)",
            "service back after (median / max s)", "every broker serving after (median / max s)"]
    lines = [[r["procedure"], r["releases"] + (" (supplied builds)" if r["supplied"] else ""), r["runs"], r["passed"],
              r["failed"], "{:.2f}-{:.2f}".format(*r["fail_interval_95"]), r["not_judged"],
              ", ".join(f"{k} {n}" for k, n in sorted(r["failed_by"].items())) or "-",
              " ".join(str(x) for x in r["split_secs_before_switch"]) or "-",
              "{median} / {max}".format(**r["outage_secs"]) if r["outage_secs"] else "-",
              "{median} / {max}".format(**r["all_serving_secs"]) if r["all_serving_secs"] else "-"] for r in rows]
    print()
    print_table(head, lines, markdown="--markdown" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
