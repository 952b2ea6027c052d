"""Report of a bus-outage (vector-buffer) run: memory per VM group with the outage marked, major
faults and disk reads, host PSI, and the delivered / dropped / lost table per configuration."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from chaoslab.report import blocks as B  # noqa: E402

MIB = 2 ** 20


def _rate(values: list, ts: list) -> list:
    out = [None]
    for i in range(1, len(values)):
        a, b = values[i - 1], values[i]
        dt = ts[i] - ts[i - 1]
        out.append(None if a is None or b is None or dt <= 0 else max(0.0, (b - a) / dt))
    return out


def group_figure(samples: list[dict], group: dict, out: Path) -> Path | None:
    if not samples:
        return None
    t0 = samples[0]["t"]
    ts = [s["t"] - t0 for s in samples]
    names = sorted({n for s in samples for n in s["vms"]})
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    for ax in axes:
        if group.get("outage_start"):
            ax.axvspan(group["outage_start"] - t0, (group.get("outage_end") or samples[-1]["t"]) - t0,
                       color="tab:red", alpha=0.1, label="_outage")
        ax.grid(alpha=0.3)
    ax = axes[0]
    for n in names:
        ax.plot(ts, [((s["vms"].get(n) or {}).get("cgroup") or {}).get("memory.usage_in_bytes", 0) / MIB
                     if (s["vms"].get(n) or {}).get("alive") else None for s in samples], linewidth=1)
    limit = next((((s["vms"][n].get("cgroup") or {}).get("memory.limit_in_bytes")) for s in samples for n in s["vms"]
                  if (s["vms"][n].get("cgroup") or {}).get("memory.limit_in_bytes")), None)
    if limit:
        ax.axhline(limit / MIB, color="black", linestyle=":", label="cgroup limit")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_ylabel("MiB")
    ax.set_title("memory.usage_in_bytes per VM (red: bus outage)")
    ax = axes[1]
    for n in names:
        ax.plot(ts, [((s["vms"].get(n) or {}).get("agent") or {}).get("vector_buffer_size_events") for s in samples], linewidth=1)
    ax.set_title("agent buffer: vector_buffer_size_events per VM")
    ax = axes[2]
    maj = [sum((((s["vms"][n].get("cgroup") or {}).get("total_pgmajfault")) or 0) for n in s["vms"]) for s in samples]
    rd = [sum((((s["vms"][n].get("cgroup") or {}).get("blkio_read_bytes")) or 0) for n in s["vms"]) / MIB for s in samples]
    ax.plot(ts, _rate(maj, ts), color="tab:purple", label="pgmajfault/s (group)")
    ax.set_ylabel("faults/s")
    ax2 = ax.twinx()
    ax2.plot(ts, _rate(rd, ts), color="tab:brown", label="blkio read MiB/s (group)")
    ax2.set_ylabel("MiB/s")
    ax.set_title("major page faults and disk reads of the group's VMs")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    for key, label in (("psi_memory", "memory some avg10"), ("psi_io", "io some avg10"), ("psi_cpu", "cpu some avg10")):
        ax.plot(ts, [(s["host"].get(key) or {}).get("some_avg10") for s in samples], label=label)
    ax.plot(ts, [(s["host"].get("psi_memory") or {}).get("full_avg10") for s in samples], label="memory full avg10")
    ax3 = ax.twinx()
    ax3.plot(ts, _rate([(s["host"].get("disk_read_bytes") or 0) / MIB for s in samples], ts), color="gray",
             linestyle=":", label="host disk read MiB/s")
    ax3.set_ylabel("MiB/s")
    ax3.legend(loc="upper right", fontsize=8)
    ax.set_title("host pressure (/proc/pressure) and host disk reads")
    ax.set_xlabel("seconds since the group's first sample")
    ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"group {group['name']}: {group['count']} {group['flavour']} VMs, buffer {group['buffer']}")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def build_outage_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    records, results, title, b = B.open_run(run_dir)
    b.append(("p", f"Outage: {results.get('outage')}. Hypothesis: {results.get('hypothesis')}."))
    groups = results.get("groups", [])
    host_reads = {}
    for g in groups:
        hs = [r["host"] for r in records if r["type"] == "vm-sample" and r.get("group") == g["name"]]
        reads = [h.get("disk_read_bytes") for h in hs if h.get("disk_read_bytes") is not None]
        host_reads[g["name"]] = round((reads[-1] - reads[0]) / MIB, 1) if len(reads) > 1 else None
        d = [h.get("d_state_tasks") or 0 for h in hs]
        g["peaks"]["d_state_tasks_max"] = max(d) if d else None
    if groups:
        b.append(("h2", "Delivered, dropped and lost per configuration"))
        b.append(("table", ["group", "role", "VMs", "buffer", "verdict", "generated", "delivered", "dropped by policy",
                            "failed sends (counted)", "lost", "OOM-killed", "peak VM MiB", "peak buffer events",
                            "pgmajfault", "host disk read MiB", "host io PSI peak", "host mem PSI peak", "D-state tasks max", "longest D state s"],
                  [[g["name"], g["role"], f"{g['count']} {g['flavour']}",
                    f"{g['buffer']['type']} {g['buffer']['when_full']} max_events={g['buffer']['max_events']} max_size={g['buffer']['max_size']}",
                    g["verdict"], g["totals"].get("generated"), g["totals"].get("delivered"),
                    g["totals"].get("dropped_by_policy"), g["totals"].get("failed_sends"), g["totals"].get("lost"),
                    len(g["oom_killed"]), g["peaks"].get("vm_memory_max_mib"), g["peaks"].get("agent_buffer_events_max"),
                    g["peaks"].get("pgmajfault_total"), host_reads.get(g["name"]),
                    g["peaks"].get("host_io_psi_some_avg10"), g["peaks"].get("host_memory_psi_some_avg10"),
                    g["peaks"].get("d_state_tasks_max"), g["peaks"].get("d_state_longest_secs")] for g in groups]))
        b.append(("p", "Dropped by policy (when_full = drop_newest) and failed sends are counted by the agent and are "
                       "not loss; lost = generated - delivered - counted drops (events that vanished, e.g. in an OOM kill). "
                       "Delivered is counted by reading the group's topic from the beginning."))
    for g in groups:
        b.append(("h2", f"Group {g['name']} ({g['role']}): {g['verdict']}"))
        if g.get("reasons"):
            b.append(("list", g["reasons"]))
        if g.get("drain_secs"):
            vals = sorted(g["drain_secs"].values())
            b.append(("p", f"Backlog drained after the bus returned: median {vals[len(vals) // 2]} s, max {vals[-1]} s "
                           f"({len(vals)} of {g['count']} VMs drained within the recovery window)."))
        samples = [r for r in records if r["type"] == "vm-sample" and r.get("group") == g["name"]]
        png = group_figure(samples, g, run_dir / f"plot-{g['name']}.png")
        if png:
            b.append(("img", png.name, f"group {g['name']}"))
        b.append(("table", ["VM", "generated", "delivered", "dropped", "failed", "lost", "OOM", "peak MiB", "pgmajfault"],
                  [[n, v["generated"], v["delivered"], v["dropped_by_policy"], v["failed_sends"], v["lost"], v["oom_killed"],
                    round((v.get("peak_memory_bytes") or 0) / MIB, 1), v.get("pgmajfault")] for n, v in sorted(g["per_vm"].items())]))
    return B.write(run_dir, b, title)
