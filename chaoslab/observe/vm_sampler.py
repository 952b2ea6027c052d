"""Per-VM and host sampling for bus-outage experiments, once a second, into the journal:
each container's cgroup figures (chaoslab.observe.cgroups), its agent's buffer metrics (Vector's
names, from the agent's :9598), and the host (chaoslab.observe.host)."""

from __future__ import annotations

import json
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from chaoslab.observe import cgroups, host
from chaoslab.observe.journal import Journal

AGENT_METRICS = ("vector_buffer_size_events", "vector_buffer_size_bytes", "vector_buffer_events",
                 "vector_buffer_received_events_total", "vector_buffer_sent_events_total",
                 "vector_buffer_discarded_events_total", "vector_component_received_events_total",
                 "vector_component_sent_events_total", "vector_component_discarded_events_total",
                 "vector_component_errors_total")


def scrape_agent(ip: str, timeout: float = 1.5) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{ip}:9598/metrics", timeout=timeout) as resp:
            text = resp.read().decode()
    except Exception:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in AGENT_METRICS:
                key = s.name
                if "intentional" in s.labels:
                    key += f"{{intentional={s.labels['intentional']}}}"
                out[key] = out.get(key, 0.0) + s.value
    return out


class VmSampler:
    def __init__(self, journal: Journal, group: str, containers: list):
        self.journal = journal
        self.group = group
        self.containers = containers
        self._latest: dict = {}
        self.peak: dict = {}
        self.host_peak: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vm-sampler")
        self._lock = threading.Lock()
        self.d_state = host.DStateTracker()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def latest(self) -> dict:
        with self._lock:
            return json.loads(json.dumps(self._latest))

    def _run(self) -> None:
        ips = {}
        while not self._stop.wait(1.0):
            vms_out = {}
            for c in self.containers:
                if c.name not in ips:
                    try:
                        c.reload()
                        ips[c.name] = next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
                    except Exception:
                        continue
                cg = cgroups.container_figures(c.id)
                agent = scrape_agent(ips[c.name]) if ips.get(c.name) else None
                prev = self._latest.get(c.name, {})
                vms_out[c.name] = {"cgroup": cg or prev.get("cgroup"), "agent": agent or prev.get("agent"),
                                   "alive": cg is not None}
                peak = self.peak.setdefault(c.name, {})
                for k, v in list((cg or {}).items()) + list((agent or {}).items()):
                    if isinstance(v, (int, float)):
                        peak[k] = max(peak.get(k, v), v)
            hs = host.host_sample(self.d_state)
            for key, value in (("io_some_avg10", (hs["psi_io"] or {}).get("some_avg10")),
                               ("memory_some_avg10", (hs["psi_memory"] or {}).get("some_avg10")),
                               ("memory_full_avg10", (hs["psi_memory"] or {}).get("full_avg10")),
                               ("d_state_longest_secs", hs["d_state_longest_secs"]), ("d_state_tasks", hs["d_state_tasks"])):
                if value is not None:
                    self.host_peak[key] = max(self.host_peak.get(key, value), value)
            with self._lock:
                self._latest = vms_out
            self.journal.write("vm-sample", group=self.group, vms=vms_out, host=hs)
