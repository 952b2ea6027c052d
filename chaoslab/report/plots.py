"""PNG plots of one variant, from the journal alone: the panels its probes declare, with every
step's run shaded as a band (from step-start/step-end) and the abort marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BAND_COLOURS = ["tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


def bands(events: list[dict]) -> list[dict]:
    """(label, start, end, kind, step, step_type) for every step run and undone, from the
    journal's events (the plots shade them; chaoslab.report.annotations hands them to Grafana)."""
    out, open_ = [], {}
    for e in events:
        name = e.get("name")
        if name in ("step-start", "undo-start"):
            open_[(name[:4], e["step"])] = e
        elif name in ("step-end", "undo-end"):
            start = open_.pop((name[:4], e["step"]), None)
            if start and (name == "undo-end" or start.get("band")):
                out.append({"label": (start.get("band") or e["step"]) if name == "step-end" else f"undo {e['step']}",
                            "start": start["t"], "end": e["t"], "kind": name[:4], "step": e["step"],
                            "step_type": start.get("step_type") or e.get("step_type")})
    for (kind, step), start in open_.items():  # never ended (interrupted): up to the last event
        out.append({"label": step, "start": start["t"], "end": events[-1]["t"] if events else start["t"], "kind": kind,
                    "step": step, "step_type": start.get("step_type")})
    return out


def variant_figure(samples: list[dict], events: list[dict], panels: list, out: Path, title: str) -> Path | None:
    if not samples or not panels:
        return None
    t0 = samples[0]["t"]
    ts = [s["t"] - t0 for s in samples]
    spans = bands(events)
    aborts = [e["t"] - t0 for e in events if e.get("name") == "abort"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.6 * len(panels) + 1), sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        series = panel.series(samples)
        for label, values in series.items():
            ax.plot(ts, values, linewidth=1, label=label)
        for i, b in enumerate(spans):
            colour = "tab:green" if b["kind"] == "undo" else BAND_COLOURS[i % len(BAND_COLOURS)]
            ax.axvspan(b["start"] - t0, b["end"] - t0, color=colour, alpha=0.08)
        for a in aborts:
            ax.axvline(a, color="red", linestyle="--", linewidth=1)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if 0 < len(series) <= 10:
            ax.legend(loc="upper left", fontsize=7)
    top = axes[0, 0]
    for i, b in enumerate(spans):
        top.annotate(b["label"], xy=(b["start"] - t0, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                     rotation=30, va="bottom", color="tab:green" if b["kind"] == "undo" else BAND_COLOURS[i % len(BAND_COLOURS)])
    axes[-1, 0].set_xlabel("seconds since the variant's first sample (shaded: steps; green: undo; red dashed: abort)")
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return out
