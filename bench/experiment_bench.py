"""Warm time-to-verdict of an experiment (images built; the lab may or may not be up).

    python bench/experiment_bench.py [experiments/transfer-shedder.yaml] [--variant NAME ...]

Prints wall-clock seconds from start to verdict, the verdict, and per-variant durations from the
run's results.json. Target for transfer-shedder (issue 3): <= 8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", nargs="?", default=str(ROOT / "experiments" / "transfer-shedder.yaml"))
    parser.add_argument("--variant", action="append", default=[])
    args = parser.parse_args()
    out = ROOT / "runs" / f"bench-{time.strftime('%Y%m%dT%H%M%S')}"
    cmd = [sys.executable, "-m", "chaoslab.cli", "experiment", args.file, "--out", str(out)]
    for v in args.variant:
        cmd += ["--variant", v]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runner = psutil.Process(proc.pid)
    cpu = 0.0
    while proc.poll() is None:  # the runner's own CPU: workload clients, observers, samplers
        try:
            t = runner.cpu_times()
            cpu = t.user + t.system
        except psutil.Error:
            pass
        time.sleep(1)
    took = time.monotonic() - started
    print(f"time_to_verdict_seconds {took:.0f}")
    print(f"exit_code               {proc.returncode}")
    print(f"runner_cpu_seconds      {cpu:.0f}  ({100 * cpu / took:.1f}% of one core: workload + sampling)")
    results = out / "results.json"
    if results.exists():
        for v in json.loads(results.read_text()).get("variants", []):
            totals = (v.get("workload") or {}).get("totals") or (v.get("workload") or {}).get("loss") or {}
            print(f"variant {v['name']:14} {v['verdict']:5} {v['ended'] - v['started']:6.0f} s  "
                  + " ".join(f"{k}={x}" for k, x in totals.items() if not isinstance(x, list)))
    print(f"run folder              {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
