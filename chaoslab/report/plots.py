"""PNG plots of one variant's samples, with the fault periods marked (from the journal)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKS = {"upgrade-start": ("tab:orange", "upgrade"), "abort": ("tab:red", "abort"),
         "rollback-start": ("tab:purple", "rollback"), "recovery-start": ("black", "recovery")}


def _marks(ax, events, t0):
    for ev in events:
        style = MARKS.get(ev.get("name"))
        if style:
            ax.axvline(ev["t"] - t0, color=style[0], linestyle="--", linewidth=1)
    ax.grid(alpha=0.3)


def variant_figure(samples: list[dict], events: list[dict], out: Path, title: str) -> Path | None:
    if not samples:
        return None
    t0 = samples[0]["t"]
    ts = [s["t"] - t0 for s in samples]
    brokers = sorted({b for s in samples for b in (s.get("brokers") or {})})
    fig, axes = plt.subplots(5, 1, figsize=(11, 14), sharex=True)
    ax = axes[0]
    for b in brokers:
        ax.plot(ts, [((s.get("brokers", {}).get(b, {}).get("metrics") or {}).get("pulsar_broker_lookup_pending_requests"))
                     for s in samples], label=b)
    ax.set_ylabel("pending lookups")
    ax.set_title("pulsar_broker_lookup_pending_requests per broker")
    ax.legend(loc="upper left", fontsize=8)
    _marks(ax, events, t0)
    ax = axes[1]
    rate = [s["client"].get("publish_success_rate") for s in samples]
    ax.plot(ts, [r * 100 if r is not None else None for r in rate], color="tab:green", label="publish success %")
    ax.set_ylabel("publish success %")
    ax.set_ylim(-5, 105)
    ax2 = ax.twinx()
    ax2.plot(ts, [s["client"].get("publish_p99_ms") for s in samples], color="tab:blue", alpha=0.7, label="p99 ms")
    ax2.set_ylabel("publish p99 (ms)")
    ax.set_title("client publish success and p99 latency (sliding window)")
    _marks(ax, events, t0)
    ax = axes[2]
    ax.plot(ts, [s["client"].get("lookup_ok") for s in samples], color="tab:green", label="lookups completed")
    ax.plot(ts, [s["client"].get("lookup_failed") for s in samples], color="tab:red", label="lookups failed")
    ax.plot(ts, [s["client"].get("too_many_requests") for s in samples], color="black", label="TooManyRequests")
    ax.set_title("lookup-heavy clients, per sliding window")
    ax.legend(loc="upper left", fontsize=8)
    _marks(ax, events, t0)
    ax = axes[3]
    for b in brokers:
        ax.plot(ts, [s.get("brokers", {}).get(b, {}).get("owned_bundles") for s in samples], label=b)
    ax.set_ylabel("owned bundles")
    ax.set_title("owned bundles per broker")
    ax.legend(loc="upper left", fontsize=8)
    _marks(ax, events, t0)
    ax = axes[4]
    topics = sorted({t for s in samples for t in ((s.get("system_topics") or {}).get("exists") or {})})
    for i, topic in enumerate(topics):
        vals = []
        for s in samples:
            v = ((s.get("system_topics") or {}).get("exists") or {}).get(topic)
            vals.append(None if v is None else (1 if v else 0) + i * 0.04)
        ax.step(ts, vals, where="post", label=topic.split("/")[-1])
    ax.set_yticks([0, 1])
    ax.set_yticklabels(["absent", "exists"])
    ax.set_ylim(-0.2, 1.3)
    ax.set_title("extensible load manager system topics")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("seconds since the variant's first sample (dashed: upgrade / abort / rollback / recovery)")
    _marks(ax, events, t0)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
