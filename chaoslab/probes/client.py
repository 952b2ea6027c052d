"""`pulsar-client` (key `client`): what the applications saw over the steady state's sliding
window — publish success and latency, lookups, TooManyRequests and other client errors,
backlog (acknowledged but not yet consumed)."""

from __future__ import annotations

from typing import ClassVar, Literal

from chaoslab.probes.figures import ClientWindow
from chaoslab.spec.base import Panel, Probe, register


@register("probe")
class PulsarClient(Probe):
    type: Literal["pulsar-client"] = "pulsar-client"
    key: ClassVar[str] = "client"
    figures: ClassVar = ClientWindow
    needs_workload: ClassVar[tuple[str, ...]] = ("pulsar-topics",)

    @classmethod
    def panels(cls) -> list[Panel]:
        def field(*names, scale=1.0):
            def series(samples):
                out = {}
                for n in names:
                    vals = [(s.get("client") or {}).get(n) for s in samples]
                    out[n] = [v * scale if isinstance(v, (int, float)) else None for v in vals]
                return out
            return series
        return [Panel("client publish success (sliding window)", "%", field("publish_success_rate", scale=100), (-5, 105)),
                Panel("client publish latency", "ms", field("publish_p50_ms", "publish_p99_ms")),
                Panel("lookup-heavy clients, per window", "count", field("lookup_ok", "lookup_failed", "too_many_requests"))]

    def collect(self, ctx) -> dict:
        return ctx.workload.client_window(ctx.plan.steady_state.window_secs)
