"""Time to verdict on this machine, each figure next to the floor measured in the same run.

    python bench/time_to_verdict.py                 # all four figures (~15 min on 2 cores, warm)
    python bench/time_to_verdict.py --only lab --lab-trials 3
    python bench/time_to_verdict.py --only variant,gate
    python bench/time_to_verdict.py --only lab --lab-cds on,off   # with and without the CDS archives

Figures (issue 12 targets on 2 cores, warm images):
  lab      fresh lab healthy (down -> `Lab.up()` returns)                      target <= 20 s
  variant  one rolling-upgrade variant, 3 brokers, lab start to verdict
           (transfer-shedder --variant control)                                 target <= 2 min
  headline the three-variant transfer-shedder                                   target <= 6 min
  gate     a no-op gate (`chaoslab gate --to <from>`: same release, no settings) target <= 2.5 min

Floors are the parts nobody can wait less for: each JVM's own start-to-ready time, read from its
log's timestamps ("binding to port", "Started component bookie-server", "messaging service is
ready", "Started Pulsar Proxy"), along the dependency chain zookeeper -> init -> {bookies,
brokers, proxy}; for a variant, the lab's floor plus each rolled broker's stop and start to its
shallow check. What the declared windows take (steady hold, settle-until-held, after) is printed
apart: it is chosen in the experiment file, not a floor. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from chaoslab.lab.cluster import Lab  # noqa: E402

READY = {"zookeeper": "binding to port", "bookie": "Started component bookie-server",
         "broker": "messaging service is ready", "proxy": "Started Pulsar Proxy"}


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()


def component_times(lab: Lab) -> dict[str, dict]:
    """Per lab container: started, ready (its log's marker) or finished (init), from docker."""
    out = {}
    for c in lab.containers():
        c.reload()
        service = c.labels.get("com.docker.compose.service", c.name)
        kind = next((k for k in READY if service.startswith(k)), "init" if service == "pulsar-init" else None)
        if kind is None:
            continue
        started = _ts(c.attrs["State"]["StartedAt"])
        ready = None
        if kind == "init":
            ready = _ts(c.attrs["State"]["FinishedAt"])
        else:
            for line in c.logs(timestamps=True).decode(errors="replace").splitlines():
                if READY[kind] in line:
                    ready = _ts(line.split(" ", 1)[0])
                    break
        out[service] = {"kind": kind, "started": started, "ready": ready,
                        "secs": round(ready - started, 1) if ready else None}
    return out


def lab_floor(times: dict[str, dict]) -> float | None:
    """The dependency chain's JVM start-to-ready times: zookeeper, then the metadata setup, then
    bookies, brokers and the proxy side by side (compose/lab.yaml) - the slowest of those."""
    def most(kinds):
        secs = [t["secs"] for t in times.values() if t["kind"] in kinds and t["secs"] is not None]
        return max(secs) if secs else None
    stages = [most({"zookeeper"}), most({"init"}), most({"bookie", "broker", "proxy"})]
    return None if None in stages else round(sum(stages), 1)


def bench_lab(trials: int, cds_modes: list[str]) -> dict:
    """Fresh labs, alternating the class-data sharing modes trial by trial (same noise for each)."""
    lab = Lab(log=lambda m: None)
    rows = []
    lab.build_images()
    for _ in range(trials):
        for mode in cds_modes:
            os.environ["PULSAR_CDS"] = mode   # compose passes it to every JVM (images/pulsar/pulsar-run)
            lab.down()
            started = time.monotonic()
            lab.up(pico=0, nano=0)
            secs = time.monotonic() - started
            times = component_times(lab)
            rows.append({"cds": mode, "secs": round(secs, 1), "floor": lab_floor(times),
                         "jvms": {k: v["secs"] for k, v in sorted(times.items())}})
    os.environ.pop("PULSAR_CDS", None)
    lab.down()
    return {"trials": rows}


def run_cli(args: list[str]) -> tuple[float, int, Path]:
    out = ROOT / "runs" / f"ttv-{args[0]}-{time.strftime('%Y%m%dT%H%M%S')}"
    started = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "chaoslab.cli", *args, "--out", str(out)], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.monotonic() - started, code, out


def variant_breakdown(run_dir: Path) -> list[dict]:
    """Per variant: wall time, lab-up, the rolls' unavoidable part, and the declared windows."""
    results = json.loads((run_dir / "results.json").read_text())
    events = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    out = []
    for v in results["variants"]:
        ev = [e for e in events if e.get("type") == "event" and e.get("variant") == v["name"]]
        lab = next((e for e in ev if e["name"] == "lab-up"), {})
        rolls = [s for s in v.get("steps", []) if s["type"] == "roll-broker"]
        starts = {e["step"]: e["t"] for e in ev if e["name"] == "step-start"}
        recreated = {e["broker"]: e["t"] for e in ev if e["name"] == "broker-recreated"}
        roll_floor = sum((recreated.get(s.get("broker"), starts.get(s["id"], 0)) - starts.get(s["id"], 0))
                         + (s.get("wait_secs") or 0) for s in rolls)
        settle = sum(s.get("settle_secs") or 0 for s in rolls)
        held = next((e for e in ev if e["name"] == "steady-state-held"), {})
        out.append({"variant": v["name"], "verdict": v["verdict"], "secs": round(v["ended"] - v["started"], 1),
                    "lab_up": lab.get("secs"), "rolls_floor": round(roll_floor, 1), "settle": round(settle, 1),
                    "steady_hold": held.get("secs")})
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="lab,variant,headline,gate")
    parser.add_argument("--lab-trials", type=int, default=3)
    parser.add_argument("--lab-cds", default="on", help="class-data sharing modes to compare: on, off or on,off")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    figures: dict = {}
    lab_floor_median = None
    if "lab" in parts:
        figures["lab"] = bench_lab(args.lab_trials, args.lab_cds.split(","))
        floors = sorted(t["floor"] for t in figures["lab"]["trials"] if t["floor"] and t["cds"] == "on")
        lab_floor_median = floors[len(floors) // 2] if floors else None
    ts = str(ROOT / "experiments" / "transfer-shedder.yaml")
    for part, cli in (("variant", ["experiment", ts, "--variant", "control"]), ("headline", ["experiment", ts])):
        if part in parts:
            secs, code, out = run_cli(cli)
            figures[part] = {"secs": round(secs, 1), "exit": code, "run": str(out.relative_to(ROOT)),
                             "variants": variant_breakdown(out)}
    if "gate" in parts:
        from chaoslab.gate import load_base
        base = load_base(None).versions.from_
        secs, code, out = run_cli(["gate", "--to", base])
        figures["gate"] = {"secs": round(secs, 1), "exit": code, "run": str(out.relative_to(ROOT)),
                           "variants": variant_breakdown(out)}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    if "lab" in figures:
        for i, t in enumerate(figures["lab"]["trials"], 1):
            print(f"lab trial {i} (CDS {t['cds']}): healthy in {t['secs']} s; floor (JVM start-to-ready chain) {t['floor']} s; "
                  + ", ".join(f"{k} {v}" for k, v in t["jvms"].items()))
    for part, target in (("variant", 120), ("headline", 360), ("gate", 150)):
        if part not in figures:
            continue
        f = figures[part]
        print(f"{part}: {f['secs']} s (target {target} s), exit {f['exit']}, run {f['run']}")
        for v in f["variants"]:
            floor = (lab_floor_median or v["lab_up"] or 0) + v["rolls_floor"]
            print(f"  {v['variant']:10} {v['verdict']:5} {v['secs']:6} s; floor {floor:.1f} s (lab "
                  f"{lab_floor_median or v['lab_up']} + rolls {v['rolls_floor']}); declared windows: hold "
                  f"{v['steady_hold']} s, settle {v['settle']} s; lab-up here {v['lab_up']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
