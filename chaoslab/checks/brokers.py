"""Conditions on what the brokers report (sample["brokers"], sample["cluster"]) and the final
check that every broker serves at the end."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chaoslab.lab import health
from chaoslab.spec.base import CheckResult, Condition, FinalCheck, Violation, register


@register("condition")
class UnownedTopics(Condition):
    type: Literal["unowned-topics"] = "unowned-topics"
    max: Annotated[int, Field(ge=0)] = 0

    def violations(self, sample: dict) -> list[Violation]:
        own = (sample.get("cluster") or {}).get("ownership") or {}
        n = own.get("unowned")
        if n is None or n <= self.max:
            return []
        return [Violation("unowned_topics", n, self.max,
                          detail=f"{n} of {own.get('sampled')} sampled workload topics, e.g. "
                                 + ", ".join(own.get("unowned_sample", [])[:1]))]


@register("condition")
class PendingLookups(Condition):
    type: Literal["pending-lookups"] = "pending-lookups"
    max: Annotated[float, Field(ge=0)] = 40

    def violations(self, sample: dict) -> list[Violation]:
        out = []
        for name, b in sorted((sample.get("brokers") or {}).items()):
            pending = (b.get("metrics") or {}).get("pulsar_broker_lookup_pending_requests")
            if pending is not None and pending > self.max:
                out.append(Violation("pending_lookups", round(pending), self.max, subject=name,
                                     detail="pulsar_broker_lookup_pending_requests"))
        return out


@register("check")
class BrokersServe(FinalCheck):
    """Every broker answers Pulsar's own health check at the end of the variant."""
    type: Literal["brokers-serve"] = "brokers-serve"
    timeout_secs: Annotated[float, Field(ge=1, le=300)] = 30

    def check(self, ctx) -> CheckResult:
        views = {f"broker-{n}": health.functional(ctx.lab.broker_admin_url(n), timeout=self.timeout_secs)
                 for n in range(1, ctx.settings.brokers + 1)}
        down = [b for b, p in views.items() if not p.ok]
        ctx.event("final-health", brokers={b: p.ok for b, p in views.items()})
        return CheckResult("brokers-serve", "fail" if down else "pass", value=len(views) - len(down), bound=len(views),
                           evidence=("brokers not serving at the end: " + ", ".join(f"{b} ({views[b].detail[:80]})" for b in down))
                           if down else "every broker passed /admin/v2/brokers/health",
                           data={b: p.ok for b, p in views.items()})
