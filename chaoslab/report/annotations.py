"""A run's step bands as Grafana annotations: grafana-annotations.json in the run folder.

The bands are the report's own (plots.bands, from step-start/step-end and undo-start/undo-end:
every step the plots shade, every undo), read from journal.jsonl alone, so `chaoslab report RUN`
writes the file for a run made before it existed. Each band is one object in the shape Grafana's
annotations HTTP API takes (POST /api/annotations): `time` and `timeEnd` in epoch milliseconds,
`tags` [experiment, variant, step type], `text`. docs/live-metrics.md shows how to post them."""

from __future__ import annotations

import json
from pathlib import Path

from chaoslab.record import read
from chaoslab.report.plots import bands

FILE = "grafana-annotations.json"


def _ms(t: float) -> int:
    return int(round(t * 1000))


def annotations(records: list[dict], experiment: str | None = None) -> list[dict]:
    """One annotation per band of every variant in the journal's records, in time order; the
    experiment's name from the journal's run-start (else `experiment`)."""
    start = next((r for r in records if r.get("type") == "run-start"), {})
    experiment = str(start.get("experiment") or experiment or "chaoslab")
    events = [r for r in records if r.get("type") == "event" and isinstance(r.get("variant"), str)]
    out = []
    for variant in dict.fromkeys(e["variant"] for e in events):
        for b in bands([e for e in events if e["variant"] == variant]):
            step_type = str(b.get("step_type") or "step")
            what = b["label"] if b["kind"] == "step" else f"undo {b['step']}"
            out.append({"time": _ms(b["start"]), "timeEnd": _ms(b["end"]),
                        "tags": [experiment, variant, step_type],
                        "text": f"{experiment} / {variant}: {what} ({step_type})"})
    return sorted(out, key=lambda a: (a["time"], a["timeEnd"]))


def write_annotations(run_dir: Path) -> Path:
    """grafana-annotations.json from the run folder's journal (a finisher, like build_report)."""
    run_dir = Path(run_dir)
    experiment = None
    try:
        experiment = json.loads((run_dir / "results.json").read_text(encoding="utf-8")).get("experiment")
    except (OSError, ValueError, AttributeError):
        pass   # a name for journals without a run-start only
    out = run_dir / FILE
    out.write_text(json.dumps(annotations(read(run_dir / "journal.jsonl"), experiment), indent=2) + "\n")
    return out
