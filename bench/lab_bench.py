"""Lab benchmark: prints cold start (bare machine -> healthy lab), warm `make up`, and total RSS.

    python bench/lab_bench.py            # warm up time + RSS with 10 pico VMs
    python bench/lab_bench.py --cold     # also: remove chaoslab images and build/, then time the
                                         # whole path (debootstrap, Maven, image builds, up)

Targets (issue 2): warm up <= 180 s, total RSS <= 6 GiB. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chaoslab.lab.cluster import Lab, engine  # noqa: E402
from chaoslab.settings import BUILD_DIR, REPO_ROOT  # noqa: E402

GIB = 1024 ** 3


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, cwd=REPO_ROOT, check=True)
    return time.monotonic() - started


def lab_rss(lab: Lab) -> tuple[int, dict[str, int]]:
    """Sum of RSS of every process in every lab container, read on the host with psutil."""
    per: dict[str, int] = {}
    for c in lab.containers(all=False):
        total = 0
        for row in c.top(ps_args="-o pid")["Processes"] or []:
            try:
                total += psutil.Process(int(row[0])).memory_info().rss
            except (psutil.NoSuchProcess, ValueError):
                pass
        per[c.name] = total
    return sum(per.values()), per


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="start from no images and no build/ folder")
    parser.add_argument("--pico", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, object] = {"cpus": psutil.cpu_count(), "host_memory_gib": round(psutil.virtual_memory().total / GIB, 1)}
    lab = Lab(log=lambda m: print(f"  {m}", file=sys.stderr))
    if args.cold:
        lab.down()
        client = engine()
        while (client.images.prune(filters={"dangling": True}).get("ImagesDeleted") or []):
            pass  # old rebuilds first, they are children of our base
        ours = [i for i in client.images.list() if any(t.startswith("chaoslab/") for t in i.tags)]
        for image in sorted(ours, key=lambda i: i.attrs["Created"], reverse=True):  # children first
            client.images.remove(image.id, force=True)
        client.images.prune(filters={"dangling": True})
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
        figures["cold_up_seconds"] = round(timed(["make", "up", f"PICO_VMS={args.pico}"]), 1)
    lab.down()
    figures["warm_up_seconds"] = round(timed(["make", "up", f"PICO_VMS={args.pico}"]), 1)
    time.sleep(20)  # let the agents ship for a while before reading memory
    total, per = lab_rss(lab)
    figures["containers"] = len(per)
    figures["total_rss_gib"] = round(total / GIB, 2)
    figures["rss_mib"] = {k: round(v / 2 ** 20) for k, v in sorted(per.items())}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for k, v in figures.items():
            if k != "rss_mib":
                print(f"{k:20} {v}")
        for name, mib in figures["rss_mib"].items():
            print(f"  {name:28} {mib:6} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
