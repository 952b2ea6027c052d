"""How often `make up` brings the lab up from clean: `chaoslab down` then `chaoslab up`, N times
in a row (the same commands `make down` / `make up` run). Prints each try's outcome and time and
the tally; figures, not assertions.

    python bench/up_reliability.py            # 10 tries
    python bench/up_reliability.py --tries 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "chaoslab.cli"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=10)
    args = ap.parse_args()
    ok, secs, failures = 0, [], []
    for i in range(1, args.tries + 1):
        subprocess.run(CLI + ["down"], cwd=REPO, capture_output=True, text=True, timeout=600)
        started = time.monotonic()
        proc = subprocess.run(CLI + ["up"], cwd=REPO, capture_output=True, text=True, timeout=900)
        took = time.monotonic() - started
        if proc.returncode == 0:
            ok += 1
            secs.append(took)
            print(f"try {i}: up in {took:.1f} s", flush=True)
        else:
            line = (proc.stderr.strip().splitlines() or ["?"])[-1]
            failures.append(line)
            print(f"try {i}: FAILED after {took:.1f} s: {line}", flush=True)
    subprocess.run(CLI + ["down"], cwd=REPO, capture_output=True, text=True, timeout=600)
    print(f"\nmake up from clean: {ok}/{args.tries} came up"
          + (f"; time to healthy median {statistics.median(secs):.1f} s, min {min(secs):.1f} s, "
             f"max {max(secs):.1f} s" if secs else ""))
    for f in failures:
        print(f"  failure: {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
