"""The bug-report bundle: a run folder made self-contained, optionally one .tar.gz, and replay.

A run folder already holds the experiment as run, manifest.json (versions, image ids, settings,
seed, host), the journal, results, histories, container logs and the report. `finish` adds
excerpts of the container logs around each event and a README; `replay` re-runs the same
experiment from a bundle on this machine and compares the two runs.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from chaoslab.errors import LabError
from chaoslab.record import read
from chaoslab.report import describe
from chaoslab.report.blocks import RunFolderError, read_results
from chaoslab.spec.base import as_reason

# the runner's own event kinds: every step's start and end, every undo, the decisions
EXCERPT_EVENTS = {"step-start", "step-end", "undo-start", "undo-end", "abort", "interrupted", "lab-error",
                  "no-steady-state"}
_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})")
WINDOW_SECS = 10


def _line_time(line: str) -> float | None:
    m = _TS.match(line)
    if not m:
        return None
    try:
        return dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return None


def log_excerpts(run_dir: Path, max_lines: int = 40) -> Path:
    """For each notable event, the container log lines within +-10 s of it (timestamps from
    `docker logs --timestamps`), WARN/ERROR first."""
    events = [r for r in read(run_dir / "journal.jsonl") if r["type"] == "event" and r.get("name") in EXCERPT_EVENTS]
    logs = sorted((run_dir / "logs").rglob("*.log")) if (run_dir / "logs").exists() else []
    parsed = {}
    for path in logs:
        lines = []
        for line in path.read_text(errors="replace").splitlines():
            t = _line_time(line)
            if t is not None:
                lines.append((t, line))
        parsed[path] = lines
    out = [f"# Log excerpts around events (+-{WINDOW_SECS} s)\n"]
    for ev in events:
        stamp = dt.datetime.fromtimestamp(ev["t"], dt.timezone.utc).strftime("%H:%M:%S")
        out.append(f"\n## {stamp} {ev.get('variant', '')} {describe(ev)[:200]}\n")
        for path, lines in parsed.items():
            near = [line for t, line in lines if abs(t - ev["t"]) <= WINDOW_SECS]
            notable = [line for line in near if " ERROR " in line or " WARN " in line] or near
            if notable:
                out.append(f"\n### {path.relative_to(run_dir)}\n```\n" + "\n".join(l[:400] for l in notable[:max_lines]) + "\n```\n")
    target = run_dir / "log-excerpts.md"
    target.write_text("".join(out))
    return target


def finish(run_dir: Path, make_tar: bool = False) -> Path:
    run_dir = Path(run_dir)
    scrub_manifest(run_dir)   # credentials never travel with a bundle
    try:
        log_excerpts(run_dir)
    except Exception as exc:  # the bundle is still useful without excerpts
        (run_dir / "log-excerpts.md").write_text(f"(could not extract excerpts: {exc})\n")
    (run_dir / "BUNDLE.md").write_text(
        "# chaoslab bug-report bundle\n\n"
        "Read `report.md` (or `report.html`) first: verdict, KPIs, timeline. Then `log-excerpts.md`.\n\n"
        "- `experiment.yaml`: the experiment exactly as run (environment already substituted)\n"
        "- `manifest.json`: Pulsar/proxy/RabbitMQ/agent versions, image ids, settings, seed, host facts\n"
        "- `journal.jsonl`: every sample (1/s) and event; `results.json`: verdicts and KPIs\n"
        "- `history-*.jsonl`: every message sent, acknowledged and received\n"
        "- `logs/`: container logs per variant\n"
        "- `grafana-annotations.json`: the step bands, for Grafana's annotations API\n\n"
        f"Re-run it anywhere: `chaoslab replay {run_dir.name}{'.tar.gz' if make_tar else ''}`\n")
    if make_tar:
        archive = run_dir.with_name(run_dir.name + ".tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(run_dir, arcname=run_dir.name)
        return archive
    return run_dir


def open_bundle(path: Path) -> Path:
    """A bundle folder, or a .tar.gz extracted into a temporary folder. A damaged archive is one
    LabError line."""
    path = Path(path)
    if path.is_dir():
        folder = path
    elif path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        tmp = Path(tempfile.mkdtemp(prefix="chaoslab-bundle-"))
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LabError(f"{path}: not a readable bundle archive ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:120]})") from None
        dirs = [p for p in tmp.iterdir() if p.is_dir()]
        if len(dirs) != 1:
            raise LabError(f"{path}: not a chaoslab bundle (expected one folder inside)")
        folder = dirs[0]
    else:
        raise LabError(f"{path}: no such bundle (a run folder or its .tar.gz)")
    for needed in ("experiment.yaml", "manifest.json"):
        if not (folder / needed).exists():
            raise LabError(f"{path}: not a chaoslab bundle ({needed} missing)")
    return folder


def read_manifest(folder: Path) -> dict:
    """manifest.json as the runner writes it; anything else is one RunFolderError line."""
    path = Path(folder) / "manifest.json"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise RunFolderError(f"{path}: not UTF-8 (byte {exc.start}): not a manifest chaoslab wrote") from None
    except (ValueError, RecursionError) as exc:
        raise RunFolderError(f"{path}: not JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: not a manifest object (a JSON {type(data).__name__})")
    variants = data.get("variants")
    if variants is not None and not (isinstance(variants, list) and all(isinstance(v, str) for v in variants)):
        raise RunFolderError(f"{path}: variants is not a list of variant names")
    return data


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def summary(run_dir: Path) -> dict:
    """Verdict and KPIs of one run, for the side-by-side comparison. A run folder without
    results.json (the runner was killed) or with a damaged one is one RunFolderError line."""
    if not (Path(run_dir) / "results.json").is_file():
        raise RunFolderError(f"{run_dir}: no results.json: the run did not finish (a partial run folder); "
                             f"`chaoslab experiment {Path(run_dir) / 'experiment.yaml'}` runs its experiment again")
    results = read_results(run_dir)
    out = {"exit_code": results.get("exit_code")}
    for p in results.get("variants") or []:
        k, w = _obj(p.get("kpis")), _obj(p.get("workload"))
        reasons = p.get("reasons")
        out[p["name"]] = {"verdict": p["verdict"],
                          "detection_s": k.get("detection_after_injection_secs"),
                          "decision_s": k.get("decision_after_injection_secs"),
                          "resolution_s": k.get("resolution_after_injection_secs"),
                          "lost": _obj(w.get("loss")).get("lost", _obj(w.get("totals")).get("lost")),
                          "first_reason": (as_reason(reasons[0])["short"] if isinstance(reasons, list) and reasons else "")[:70]}
    return out


def scrub_manifest(run_dir: Path) -> None:
    """Drop the RabbitMQ credentials from a manifest's settings, if a runner wrote them."""
    from chaoslab.settings import LabSettings
    path = Path(run_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    settings = manifest.get("settings") if isinstance(manifest, dict) else None
    if isinstance(settings, dict) and any(k in settings for k in LabSettings.SECRETS):
        manifest["settings"] = {k: v for k, v in settings.items() if k not in LabSettings.SECRETS}
        path.write_text(json.dumps(manifest, indent=2, default=str))
