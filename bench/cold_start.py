"""Cold start: a fresh clone on a bare machine to the headline verdict, stage by stage.

    python bench/cold_start.py --yes                      # no chaoslab images, no build cache, fresh clone
    python bench/cold_start.py --yes --empty-caches       # also empty Maven's, cargo's and pip's caches
    python bench/cold_start.py --yes --empty-caches --no-engine   # also purge the engine (Debian, root)
    python bench/cold_start.py --stages build/build-stages.jsonl  # only print a stages file

It wipes what a bare machine would not have (destructive, hence --yes), clones this repository's
HEAD into a temporary folder, then times `make setup` and `make experiment NAME=<name>` there,
as a user would type them. It prints every build stage that did work (from the clone's
build/build-stages.jsonl: debootstrap, each Maven resolution, each image with its Dockerfile
steps, cargo, jlink) on one time line, so stages that ran side by side show as overlapping, then
the figures: setup, building, the variants, total. The clone's run folder is copied to runs/.

A figure, not an assertion; the target (issue 22) is <= 10 min from a bare machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from chaoslab.lab.build_stages import read_stages  # noqa: E402

ENGINE_PACKAGES = ["docker.io", "docker-compose", "containerd", "runc"]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=False, **kw)


def engine_answers() -> bool:
    return sh(["docker", "info"], capture_output=True).returncode == 0 if shutil.which("docker") else False


def wipe(no_engine: bool, empty_caches: bool) -> list[str]:
    done = []
    if engine_answers():
        # the lab's containers first (any project), then every image and the build cache
        ids = sh(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project"], capture_output=True,
                 text=True).stdout.split()
        ours = [i for i in ids if sh(["docker", "inspect", "-f", "{{.Name}}", i], capture_output=True,
                                     text=True).stdout.strip().startswith("/chaoslab")]
        if ours:
            sh(["docker", "rm", "-f", "-v", *ours], capture_output=True)
        sh(["docker", "system", "prune", "-af", "--volumes"], capture_output=True)
        sh(["docker", "builder", "prune", "-af"], capture_output=True)
        done.append("chaoslab containers, every image, the build cache")
    if no_engine:
        sh(["pkill", "-x", "dockerd"])
        for _ in range(30):
            if sh(["pgrep", "-x", "dockerd"], capture_output=True).returncode != 0:
                break
            time.sleep(1)
        sh(["pkill", "-x", "containerd"])
        proc = sh(["apt-get", "purge", "-y", "-qq", *ENGINE_PACKAGES], capture_output=True, text=True,
                  env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if proc.returncode != 0:
            sys.exit(f"cold_start: apt-get purge failed: {proc.stderr.strip()[-300:]}")
        for path in ("/var/lib/docker", "/var/lib/containerd", "/run/docker.sock"):
            sh(["rm", "-rf", path])
        done.append("the engine (" + ", ".join(ENGINE_PACKAGES) + ") and /var/lib/docker")
    if empty_caches:
        home = Path.home()
        for cache in (home / ".m2" / "repository", home / ".cargo" / "registry", home / ".cargo" / "git",
                      home / ".cache" / "pip"):
            shutil.rmtree(cache, ignore_errors=True)
        done.append("Maven's, cargo's and pip's caches")
    return done


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run cmd, its output both on the console and in log; (seconds, exit code)."""
    started = time.monotonic()
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stderr.write(line)
            f.write(line)
        code = proc.wait()
    return time.monotonic() - started, code


def stage_rows(stages: list[dict], t0: float) -> list[dict]:
    rows = []
    for s in sorted(stages, key=lambda s: s["start"]):
        rows.append({"stage": s["stage"], "from_s": round(s["start"] - t0, 1), "to_s": round(s["end"] - t0, 1),
                     "seconds": s["seconds"], "steps": [st for st in s.get("steps", []) if st.get("seconds", 0) >= 5]})
    return rows


def print_stages(rows: list[dict]) -> None:
    print(f"{'stage':44} {'from s':>7} {'to s':>7} {'secs':>7}")
    for r in rows:
        print(f"{r['stage'][:44]:44} {r['from_s']:7.1f} {r['to_s']:7.1f} {r['seconds']:7.1f}")
        for st in r["steps"]:
            print(f"    {st['step'][:60]:60} {st['seconds']:7.1f}")


def busy_seconds(rows: list[dict]) -> float:
    """Wall seconds during which at least one stage ran (the union of their intervals)."""
    total, end = 0.0, None
    for r in sorted(rows, key=lambda r: r["from_s"]):
        if end is None or r["from_s"] > end:
            total += r["to_s"] - r["from_s"]
            end = r["to_s"]
        elif r["to_s"] > end:
            total += r["to_s"] - end
            end = r["to_s"]
    return round(total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yes", action="store_true", help="really wipe (images, build cache; see the flags)")
    parser.add_argument("--name", default="transfer-shedder", help="experiment to run (default transfer-shedder)")
    parser.add_argument("--no-engine", action="store_true", help="also purge the engine's packages and /var/lib/docker")
    parser.add_argument("--empty-caches", action="store_true", help="also empty Maven's, cargo's and pip's caches")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--stages", type=Path, help="only print this build-stages.jsonl")
    args = parser.parse_args()
    if args.stages:
        stages = read_stages(args.stages)
        print_stages(stage_rows(stages, min((s["start"] for s in stages), default=0)))
        return 0
    if not args.yes:
        parser.error("this wipes images, the build cache (and with the flags the engine and caches): pass --yes")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = REPO / "runs" / f"cold-start-{stamp}"
    out.mkdir(parents=True)
    log = out / "cold-start.log"
    wiped = wipe(args.no_engine, args.empty_caches)
    clone = Path(tempfile.mkdtemp(prefix="chaoslab-cold-")) / "chaoslab"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    t0 = time.time()
    setup_s, code = timed(["make", "setup"], clone, log)
    if code != 0:
        print(f"make setup failed ({code}); log {log}")
        return 2
    exp_s, code = timed(["make", "experiment", f"NAME={args.name}"], clone, log)
    rows = stage_rows(read_stages(clone / "build" / "build-stages.jsonl"), t0)
    building = busy_seconds(rows)
    last_build = max((r["to_s"] for r in rows), default=setup_s)
    runs = sorted((clone / "runs").glob(f"*-{args.name}"))
    for run in runs:
        shutil.copytree(run, out / run.name)
    figures = {
        "commit": head, "wiped": wiped, "experiment": args.name, "exit_code": code,
        "setup_s": round(setup_s, 1), "experiment_s": round(exp_s, 1), "total_s": round(setup_s + exp_s, 1),
        "building_busy_s": building, "after_last_build_s": round(setup_s + exp_s - last_build, 1),
        "stages": rows, "run_folders": [str(out / r.name) for r in runs],
    }
    (out / "cold-start.json").write_text(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(f"\ncold start of {args.name} at {head}; wiped: {'; '.join(wiped) or 'nothing'}")
    print_stages(rows)
    print(f"\nmake setup                     {setup_s:7.1f} s")
    print(f"building (any stage running)   {building:7.1f} s")
    print(f"after the last build stage     {figures['after_last_build_s']:7.1f} s  (lab-ups and variants)")
    print(f"total                          {figures['total_s']:7.1f} s = {figures['total_s'] / 60:.1f} min; "
          f"make experiment exited {code}")
    print(f"figures: {out / 'cold-start.json'}")
    shutil.rmtree(clone.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
