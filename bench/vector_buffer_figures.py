"""The vector-buffer table from run folders: per VM group, the verdict, the per-event books, and
what the VMs and the host went through during the outage.

    python bench/vector_buffer_figures.py runs/<time>-vector-buffer [runs/<time>-vector-buffer-fleet ...]

Columns: VMs, verdict and failed checks, wall time of the variant, events generated / delivered /
failed sends / dropped by policy / held at stop / lost / duplicates, OOM kills, major faults per
VM (max), the agent buffer's growth per VM during the outage (MiB/s, median of the VMs' linear
fits of vector_buffer_size_bytes), host memory and io PSI (some avg10, peak), host disk reads
during the outage (MiB/s, mean and peak), and the would-be remediator's actions.

Then three more tables: per hypervisor (peak memory / budget, major faults, disk reads, longest D
state, crashed); the monitoring (each would-be remediator's actions per minute before / during /
after the outage and the amplification); and the lab's own health (the proxy's restart after the
outage, the sampling period from the journal's sample times, the vm-agents probe's look at every
VM, the host's peak load average, the agent's cost per VM).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402  (bench/table.py)
from chaoslab.rates import run_folders  # noqa: E402
from chaoslab.record import read  # noqa: E402

MIB = 2 ** 20


def outage_window(events: list[dict]) -> tuple[float, float] | None:
    start = next((e["t"] for e in events if e["name"] == "step-start" and e.get("step") == "bus-outage"), None)
    end = next((e["t"] for e in events if e["name"] == "step-end" and e.get("step") == "bus-outage"), None)
    return (start, end) if start and end else None


def group_figures(run_dir: Path, results: dict) -> list[dict]:
    records = read(run_dir / "journal.jsonl")
    rows = []
    for v in results["variants"]:
        w = v.get("workload") or {}
        samples = [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]]
        events = [r for r in records if r["type"] == "event" and r.get("variant") == v["name"]]
        window = outage_window(events)
        during = [s for s in samples if window and window[0] <= s["t"] <= window[1]]
        slopes = []
        for vm in sorted({n for s in during for n in (s.get("vms") or {})}):
            pts = [(s["t"], ((s["vms"].get(vm) or {}).get("agent") or {}).get("vector_buffer_size_bytes")) for s in during]
            pts = [(t, b) for t, b in pts if b is not None]
            if len(pts) >= 5:
                slopes.append(statistics.linear_regression([p[0] for p in pts], [p[1] for p in pts]).slope / MIB)
        reads = []
        for a, b in zip(during, during[1:]):
            ra, rb = (a.get("host") or {}).get("disk_read_bytes"), (b.get("host") or {}).get("disk_read_bytes")
            if ra is not None and rb is not None and b["t"] > a["t"]:
                reads.append((rb - ra) / (b["t"] - a["t"]) / MIB)
        peak = ((v.get("probes") or {}).get("host") or {}).get("host_peak") or {}
        faults = [x.get("pgmajfault") or 0 for x in (w.get("per_vm") or {}).values()]
        t = w.get("totals") or {}
        monitors = v.get("monitors") or {}
        rows.append({
            "run": run_dir.name, "group": v["name"], "vms": w.get("count"), "memory_mib": w.get("memory_mib"),
            "verdict": v["verdict"], "failed_checks": [c["name"] for c in v.get("checks", []) if c["outcome"] == "fail"],
            "secs": round(v["ended"] - v["started"]),
            **{k: t.get(k) for k in ("generated", "delivered", "failed_sends", "dropped_by_policy", "held_at_stop",
                                     "lost", "duplicates", "failed_but_delivered", "unexpected")},
            "oom_killed": len(w.get("oom_killed") or []), "max_major_faults_per_vm": max(faults) if faults else None,
            "buffer_growth_mib_s_per_vm": round(statistics.median(slopes), 3) if slopes else None,
            "psi_memory_peak": peak.get("memory_some_avg10"), "psi_io_peak": peak.get("io_some_avg10"),
            "disk_read_mib_s_mean": round(statistics.mean(reads)) if reads else None,
            "disk_read_mib_s_peak": round(max(reads)) if reads else None,
            "would_be_actions": {k: m.get("actions") for k, m in monitors.items()},
            "lost_in_crash": t.get("lost_in_crash"), "unknown": t.get("unknown"),
            "hypervisors": hypervisor_rows(v, events),
            "monitoring": monitoring_rows(monitors),
            "lab_health": lab_health(v, samples, events),
        })
    return rows


def hypervisor_rows(v: dict, events: list[dict]) -> list[dict]:
    per = (((v.get("probes") or {}).get("hypervisors") or {}).get("hypervisors")) or {}
    crashed = {e.get("hypervisor") for e in events if e["name"] == "hypervisor-crash"}
    return [{"hypervisor": h, "memory_peak_mib": x.get("memory_peak_mib"), "budget_mib": x.get("memory_limit_mib"),
             "pgmajfault": x.get("pgmajfault"), "read_mib": x.get("read_mib"),
             "longest_d_state_secs": x.get("d_state_longest_secs"), "crashed": h in crashed}
            for h, x in sorted(per.items())]


def monitoring_rows(monitors: dict) -> list[dict]:
    out = []
    for name, m in sorted(monitors.items()):
        if not isinstance(m, dict) or "rates" not in m:
            continue
        r = {k: ((m["rates"].get(k) or {}).get("per_minute")) for k in ("before", "during", "after")}
        out.append({"monitor": name, "actions": m.get("actions"), "by_why": m.get("by_why"), **r,
                    "amplification": m.get("amplification"), "note": m.get("amplification_note")})
    return out


def lab_health(v: dict, samples: list[dict], events: list[dict]) -> dict:
    restart = next((e.get("result") or {} for e in events if e["name"] == "step-end" and e.get("step") == "bus-outage"), {})
    times = [s["t"] for s in samples if s.get("phase") in ("steady", "method", "after")]
    gaps = [b - a for a, b in zip(times, times[1:])]
    vms = (v.get("probes") or {}).get("vms") or {}
    loads = [((s.get("host") or {}).get("loadavg") or [None])[0] for s in samples]
    loads = [x for x in loads if x is not None]
    return {"proxy_start_secs": restart.get("start_secs"), "samples": len(times),
            "sample_period_median": round(statistics.median(gaps), 2) if gaps else None,
            "sample_period_max": round(max(gaps), 2) if gaps else None,
            "look_secs": vms.get("look_secs"), "host_load1_peak": round(max(loads), 1) if loads else None,
            "agent_cost": vms.get("agent_cost")}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    rows = [row for folder, results in run_folders([a for a in argv if a != "--json"])
            for row in group_figures(folder, results)]
    if "--json" in argv:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ["run", "group", "vms", "memory_mib", "verdict", "failed_checks", "secs", "generated", "delivered", "failed_sends",
            "dropped_by_policy", "held_at_stop", "lost", "duplicates", "oom_killed", "max_major_faults_per_vm",
            "buffer_growth_mib_s_per_vm", "psi_memory_peak", "psi_io_peak", "disk_read_mib_s_mean", "disk_read_mib_s_peak",
            "would_be_actions"]
    print_table(cols, [[r[c] for c in cols] for r in rows], markdown=True)
    print()
    print_table(["run", "group", "hypervisor", "peak MiB", "budget MiB", "major faults", "reads MiB", "longest D s", "crashed"],
                [[r["run"], r["group"], *h.values()] for r in rows for h in r["hypervisors"]], markdown=True)
    print()
    print_table(["run", "group", "monitor", "actions", "why", "per min before", "during", "after", "amplification", "note"],
                [[r["run"], r["group"], *m.values()] for r in rows for m in r["monitoring"]], markdown=True)
    print()
    print_table(["run", "group", "VMs", "proxy restart s", "samples", "sample period median s", "max s", "look at all VMs s",
                 "host load1 peak", "agent per VM"],
                [[r["run"], r["group"], r["vms"], *[r["lab_health"][k] for k in
                  ("proxy_start_secs", "samples", "sample_period_median", "sample_period_max", "look_secs", "host_load1_peak",
                   "agent_cost")]] for r in rows], markdown=True)
    return 0


if __name__ == "__main__":
    sys.exit(main([a for a in sys.argv[1:]]))
