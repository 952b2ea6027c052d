"""The VM agent (agent/, Rust): idle RSS, CPU and RSS at a load, and the memory buffer's growth
slope while the bus is down.

    python bench/agent_bench.py                      # lab must be up (make up); 150 ev/s of 4 KiB
    python bench/agent_bench.py --rate 150 --line-bytes 4096 --load-secs 60 --outage-secs 40

The agent runs as a host process against the lab's proxy, with its own topic and a Vector config
(memory buffer, when_full = block, max_events 10,000,000). psutil reads its RSS and CPU time; the
outage stops the proxy.
Targets (issue 12): idle RSS <= 10 MiB, <= 2 % of one core at 150 events/s of 4 KiB. Figures,
not assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chaoslab.lab.cluster import Lab  # noqa: E402
from chaoslab.lab.images import build_agent_binary  # noqa: E402
from chaoslab.observe.metrics import scrape  # noqa: E402
from chaoslab.settings import REPO_ROOT  # noqa: E402

MIB = 2 ** 20


def config(endpoint: str, topic: str, interval: float, line_bytes: int, port: int, data_dir: str) -> str:
    line = "GET /api/v1/orders " + "x" * max(0, line_bytes - 40) + " 200"
    return "\n".join([
        f'data_dir = "{data_dir}"',
        "[sources.app_logs]", 'type = "demo_logs"', 'format = "shuffle"', f"lines = [{json.dumps(line)}]",
        f"interval = {interval:.6f}", "sequence = true",
        "[sources.m]", 'type = "internal_metrics"',
        "[sinks.bus]", 'type = "pulsar"', 'inputs = ["app_logs"]', f'endpoint = "{endpoint}"', f'topic = "{topic}"',
        'encoding.codec = "json"', "batch.max_events = 100", "batch.timeout_secs = 1",
        "[sinks.bus.buffer]", 'type = "memory"', "max_events = 10000000", 'when_full = "block"',
        "[sinks.prom]", 'type = "prometheus_exporter"', 'inputs = ["m"]', f'address = "127.0.0.1:{port}"', "",
    ])


class Agent:
    def __init__(self, name: str, argv: list[str], port: int, workdir: Path):
        self.name, self.port = name, port
        self.log = open(workdir / f"{name}.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.ps = psutil.Process(self.proc.pid)

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def buffered(self) -> float:
        m = scrape(f"http://127.0.0.1:{self.port}/metrics", ("vector_buffer_size_events",), timeout=2) or {}
        return m.get("vector_buffer_size_events", 0.0)

    def sent(self) -> float:
        m = scrape(f"http://127.0.0.1:{self.port}/metrics", ("vector_component_sent_events_total",), timeout=2) or {}
        return m.get("vector_component_sent_events_total", 0.0)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def start_agent(lab: Lab, tag: str, interval: float, line_bytes: int, workdir: Path, rust_bin: Path) -> list[Agent]:
    agents = []
    for name, port, argv in (("rust", 19602, [str(rust_bin), "--config"]),):
        d = workdir / f"{name}-{tag}"
        d.mkdir()
        cfg = d / "vector.toml"
        cfg.write_text(config(lab.proxy_service_url, f"persistent://public/default/bench-{name}-{tag}-{int(time.time())}",
                              interval, line_bytes, port, str(d / "data")))
        agents.append(Agent(name, argv + [str(cfg)], port, d))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(a.sent() > 0 or interval > 60 for a in agents):
        time.sleep(0.5)
    return agents


def measure(agents: list[Agent], secs: float) -> dict[str, dict]:
    """CPU % of one core and RSS over `secs`, sampled every second."""
    c0 = {a.name: a.cpu() for a in agents}
    s0 = {a.name: a.sent() for a in agents}
    t0 = time.monotonic()
    rss = {a.name: [] for a in agents}
    while time.monotonic() - t0 < secs:
        time.sleep(1)
        for a in agents:
            rss[a.name].append(a.rss())
    wall = time.monotonic() - t0
    return {a.name: {"cpu_pct_of_one_core": round(100 * (a.cpu() - c0[a.name]) / wall, 2),
                     "rss_mib_median": round(statistics.median(rss[a.name]) / MIB, 1),
                     "rss_mib_max": round(max(rss[a.name]) / MIB, 1),
                     "events_per_s_shipped": round((a.sent() - s0[a.name]) / wall, 1)} for a in agents}


def outage(lab: Lab, agents: list[Agent], secs: float) -> dict[str, dict]:
    """Stop the proxy; fit RSS and buffered events against time; start it again and time the drain."""
    series = {a.name: [] for a in agents}
    lab.stop_service("proxy", timeout=5)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < secs:
            time.sleep(1)
            for a in agents:
                series[a.name].append((time.monotonic() - t0, a.rss() / MIB, a.buffered()))
    finally:
        lab.start_service("proxy")
    back = time.monotonic()
    drained: dict[str, float | None] = {a.name: None for a in agents}
    while time.monotonic() - back < 120 and any(v is None for v in drained.values()):
        for a in agents:
            if drained[a.name] is None and a.buffered() < 200:
                drained[a.name] = round(time.monotonic() - back, 1)
        time.sleep(1)
    out = {}
    for a in agents:
        pts = series[a.name][3:]  # the first seconds: in-flight batches time out
        ts, mib, ev = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        rss_slope = statistics.linear_regression(ts, mib).slope
        ev_slope = statistics.linear_regression(ts, ev).slope
        out[a.name] = {"rss_growth_mib_per_s": round(rss_slope, 3), "buffer_growth_events_per_s": round(ev_slope, 1),
                       "bytes_of_rss_per_buffered_event": round(rss_slope * MIB / ev_slope) if ev_slope > 0 else None,
                       "rss_mib_at_end": round(mib[-1], 1), "drain_s_after_bus_back": drained[a.name]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--line-bytes", type=int, default=4096)
    parser.add_argument("--idle-secs", type=float, default=20)
    parser.add_argument("--load-secs", type=float, default=60)
    parser.add_argument("--outage-secs", type=float, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lab = Lab(log=lambda m: print(f"  {m}", file=sys.stderr))
    if not lab.is_up():
        print("agent_bench: the lab is not up: run `make up` first", file=sys.stderr)
        return 2
    rust_bin = build_agent_binary(lambda m: print(f"  {m}", file=sys.stderr))
    figures: dict[str, object] = {"cpus": psutil.cpu_count(), "rate_events_per_s": args.rate, "line_bytes": args.line_bytes}
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        work = Path(tmp)
        idle = start_agent(lab, "idle", 3600.0, args.line_bytes, work, rust_bin)
        try:
            time.sleep(3)
            figures["idle"] = measure(idle, args.idle_secs)
        finally:
            for a in idle:
                a.stop()
        loaded = start_agent(lab, "load", 1.0 / args.rate, args.line_bytes, work, rust_bin)
        try:
            figures["load"] = measure(loaded, args.load_secs)
            figures["outage"] = outage(lab, loaded, args.outage_secs)
        finally:
            for a in loaded:
                a.stop()
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"agent bench: {args.rate:g} events/s of {args.line_bytes} B, {figures['cpus']} cores")
    print(f"{'':34} {'rust':>10}")
    rows = [("idle RSS MiB (median)", "idle", "rss_mib_median"), ("loaded CPU % of one core", "load", "cpu_pct_of_one_core"),
            ("loaded RSS MiB (median)", "load", "rss_mib_median"), ("loaded events/s shipped", "load", "events_per_s_shipped"),
            ("outage RSS growth MiB/s", "outage", "rss_growth_mib_per_s"),
            ("outage buffer growth events/s", "outage", "buffer_growth_events_per_s"),
            ("RSS bytes per buffered event", "outage", "bytes_of_rss_per_buffered_event"),
            ("drain s after the bus is back", "outage", "drain_s_after_bus_back")]
    for label, part, key in rows:
        print(f"{label:34} {str(figures[part]['rust'][key]):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
