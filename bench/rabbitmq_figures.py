"""Figures of a rabbitmq-fallback run, per variant and phase: confirm p50 / p99 (medians of the
per-second sliding-window values, and the largest p99), the broker's own share, p99 by the node
the publishers were on, confirms per second; then each variant's verdict, loss accounting,
reconnects and KPIs (seconds after the method began).

    python bench/rabbitmq_figures.py runs/<run folder>
"""

from __future__ import annotations

import json
import statistics as st
import sys
from collections import defaultdict
from pathlib import Path


def main(run_dir: Path) -> None:
    rows: dict = defaultdict(lambda: defaultdict(list))
    with open(run_dir / "journal.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            r = d.get("rabbitmq") or {}
            if d.get("type") != "sample" or r.get("confirm_p99_ms") is None:
                continue
            k = rows[(d["variant"], d.get("phase"))]
            k["p50"].append(r["confirm_p50_ms"])
            k["p99"].append(r["confirm_p99_ms"])
            k["broker_p99"].append(r.get("broker_p99_ms") or 0)
            k["rate"].append(r["confirms_per_sec"])
            for node, v in (r.get("p99_ms_by_node") or {}).items():
                k[node].append(v)
    for (variant, phase), k in rows.items():
        nodes = " ".join(f"{n} {st.median(k[n]):.0f}" for n in ("node-1", "node-2", "node-3") if k[n])
        print(f"{variant:20} {phase:9} s={len(k['p99']):3}  p50 {st.median(k['p50']):6.1f}  p99 {st.median(k['p99']):7.1f} "
              f"(max {max(k['p99']):7.1f})  broker p99 {st.median(k['broker_p99']):7.1f}  p99 by node [{nodes}]  "
              f"confirms/s {st.median(k['rate']):.1f}")
    for v in json.loads((run_dir / "results.json").read_text())["variants"]:
        kpis = {k.removesuffix("_after_injection_secs"): x for k, x in (v.get("kpis") or {}).items()
                if k.endswith("_after_injection_secs")}
        remedy = next((s for s in v.get("steps") or [] if s.get("type") == "remove-rabbitmq-node"), None)
        print(f"{v['name']}: {v['verdict']}  loss {v['workload'].get('loss')}  reconnects {v['workload'].get('reconnects')}"
              f"  KPIs +s {kpis}" + (f"  remedy {remedy.get('remedy_secs')} s (stop_app {remedy.get('stop_app_secs')}, "
                                    f"forget {remedy.get('forget_secs')}, container stop {remedy.get('container_stop_secs')}), "
                                    f"members after: {remedy.get('members_after')}" if remedy else ""))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
