"""Like-for-like figures for transfer-shedder runs, from signals every probe profile has (the
clients' lookups and publishes, the brokers' /metrics), during the method and rollback:

- the longest stretch (s) in which no lookup completed,
- the longest stretch with some broker's pending lookups >= 40 (the scaled limit is 50),
- the peak pending lookups and the largest publish p99,
- "common FAIL" when either stretch exceeds 20 s (the hypothesis' tolerance).

Used to compare the full and the metrics-only probe profiles (the observer effect) on equal terms:

    python bench/flip_signals.py runs/rates-ts4 runs/rates-min
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaoslab.rates import run_folders  # noqa: E402
from chaoslab.stories.flip import longest, peak_pending as pending  # noqa: E402


def figures(samples: list[dict]) -> dict:
    stall = longest([(s.get("client") or {}).get("lookup_ok", 1) == 0 for s in samples])
    piled = longest([pending(s) >= 40 for s in samples])
    return {"lookups_stalled_s": stall, "pending_ge_40_s": piled,
            "peak_pending": max((pending(s) for s in samples), default=0),
            "max_publish_p99_ms": max(((s.get("client") or {}).get("publish_p99_ms") or 0 for s in samples), default=0),
            "common": "FAIL" if stall > 20 or piled > 20 else "pass"}


def main(folders: list[str]) -> None:
    for rd, res in run_folders(folders):
        verdicts = {v["name"]: v["verdict"] for v in res["variants"]}
        samples: dict[str, list] = {}
        with open(rd / "journal.jsonl", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                if d.get("type") == "sample" and d.get("phase") in ("method", "rollback"):
                    samples.setdefault(d.get("variant"), []).append(d)
        for name, ss in samples.items():
            f = figures(ss)
            print(f"{rd}  {name:10} verdict {verdicts.get(name, '?'):5} common {f['common']:4}  "
                  f"lookups stalled {f['lookups_stalled_s']:3d} s  pending>=40 {f['pending_ge_40_s']:3d} s  "
                  f"peak pending {f['peak_pending']:3.0f}  max publish p99 {f['max_publish_p99_ms']:6.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1:] or ["runs"])
