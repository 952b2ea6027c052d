"""The steady-state hypothesis: evaluate one journal sample, and track violations over time.

`evaluate` is a pure function of a sample (so a saved journal can be re-checked); `Tracker`
turns per-second results into the KPIs: first violation (detection), violation longer than the
tolerance (abort), hypothesis holding again (resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chaoslab.experiment.spec import Hypothesis


def evaluate(sample: dict, h: Hypothesis) -> list[str]:
    """Violated conditions in this sample, each as 'name: measured vs bound'. Empty = holds."""
    out = []
    client = sample.get("client", {})
    rate = client.get("publish_success_rate")
    attempts = client.get("publish_ok", 0) + client.get("publish_failed", 0)
    if attempts == 0 and sample.get("expect_publishes"):
        out.append("publish_success_rate: no publish completed in the window")
    elif rate is not None and rate < h.publish_success_rate_min:
        out.append(f"publish_success_rate: {rate:.3f} < {h.publish_success_rate_min}")
    p99 = client.get("publish_p99_ms")
    if p99 is not None and p99 > h.publish_p99_ms_max:
        out.append(f"publish_p99_ms: {p99:.0f} > {h.publish_p99_ms_max:.0f}")
    backlog = client.get("backlog")
    if backlog is not None and backlog > h.backlog_max:
        out.append(f"backlog: {backlog} > {h.backlog_max}")
    unowned = sample.get("ownership", {}).get("unowned")
    if unowned is not None and unowned > h.unowned_topics_max:
        out.append(f"unowned_topics: {unowned} of {sample['ownership'].get('sampled')} sampled > {h.unowned_topics_max}")
    for name, b in sorted(sample.get("brokers", {}).items()):
        pending = (b.get("metrics") or {}).get("pulsar_broker_lookup_pending_requests")
        if pending is not None and pending > h.pending_lookups_max:
            out.append(f"pending_lookups[{name}]: {pending:.0f} > {h.pending_lookups_max:.0f}")
    if sample.get("expect_lookups"):
        ok_l, failed_l = client.get("lookup_ok", 0), client.get("lookup_failed", 0)
        if ok_l + failed_l == 0:
            out.append("lookups: none completed in the window (clients are stuck waiting)")
        elif ok_l / (ok_l + failed_l) < h.lookup_success_rate_min:
            out.append(f"lookup_success_rate: {ok_l / (ok_l + failed_l):.3f} < {h.lookup_success_rate_min}")
    tmr = client.get("too_many_requests", 0)
    if tmr > h.too_many_requests_max:
        out.append(f"too_many_requests: {tmr} > {h.too_many_requests_max}")
    return out


@dataclass
class Tracker:
    tolerance_secs: float
    first_violation_t: float | None = None       # detection
    current_since: float | None = None           # start of the ongoing violation
    longest_secs: float = 0.0
    violated_seconds: int = 0
    last_ok_t: float | None = None
    first_violations: list[str] = field(default_factory=list)
    resolved_t: float | None = None

    def update(self, t: float, violations: list[str]) -> bool:
        """Feed one sample; True when the ongoing violation exceeds the tolerance (abort)."""
        if violations:
            self.violated_seconds += 1
            if self.first_violation_t is None:
                self.first_violation_t = t
                self.first_violations = violations
            if self.current_since is None:
                self.current_since = t
                self.resolved_t = None
            self.longest_secs = max(self.longest_secs, t - self.current_since)
            return t - self.current_since > self.tolerance_secs
        if self.current_since is not None:
            self.resolved_t = t
        self.current_since = None
        self.last_ok_t = t
        return False

    @property
    def exceeded(self) -> bool:
        return self.longest_secs > self.tolerance_secs
