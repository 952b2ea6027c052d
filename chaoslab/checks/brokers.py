"""Conditions on what the brokers report (sample["brokers"], sample["cluster"]) and the final
check that every broker serves at the end."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab.http import one_line
from chaoslab.lab import health
from chaoslab.checks.client import brokers_log_problem
from chaoslab.probes.figures import Ownership
from chaoslab.spec.base import CheckResult, Condition, FinalCheck, Unknown, Violation, register


@register("condition")
class UnownedTopics(Condition):
    type: Literal["unowned-topics"] = "unowned-topics"
    reads: ClassVar[tuple[str, ...]] = ("pulsar-cluster",)
    max: Annotated[int, Field(ge=0)] = 0

    def violations(self, sample: dict) -> list[Violation]:
        """Sampled topics whose lookup was answered without an owner. A lookup that was rejected
        or not answered says nothing about ownership: see lookup-rejections."""
        own = _ownership(sample)
        if own.unowned is None or own.answered <= 0:
            raise Unknown("no sampled lookup was answered: ownership not observed")
        if own.unowned <= self.max:
            return []
        return [Violation("unowned_topics", own.unowned, self.max,
                          detail=f"{own.unowned} of {own.sampled} sampled workload topics; " + _failed(own))]

    def reading(self, sample: dict) -> float | None:
        return _ownership(sample).unowned


@register("condition")
class LookupRejections(Condition):
    """Sampled HTTP lookups the broker refused (too many pending lookups) or did not answer."""
    type: Literal["lookup-rejections"] = "lookup-rejections"
    reads: ClassVar[tuple[str, ...]] = ("pulsar-cluster",)
    max: Annotated[int, Field(ge=0)] = 0

    def violations(self, sample: dict) -> list[Violation]:
        own = _ownership(sample)
        if not own.sampled:
            raise Unknown("no workload topic was looked up")
        n = own.rejected + own.no_answer
        if n <= self.max:
            return []
        return [Violation("sampled_lookups_rejected_or_unanswered", n, self.max,
                          detail=f"{own.rejected} rejected, {own.no_answer} unanswered of "
                                 f"{own.sampled} asked of {own.asked}; " + _failed(own))]

    def reading(self, sample: dict) -> float | None:
        own = _ownership(sample)
        return own.rejected + own.no_answer if own.sampled else None


def _ownership(sample: dict) -> Ownership:
    own = Condition.figures(sample, "pulsar-cluster").ownership
    if own is None:
        raise Unknown("the pulsar-cluster probe looked up no workload topic (no workload topics, or lookup_sample: 0)")
    return own


def _failed(own: Ownership) -> str:
    return "e.g. " + "; ".join(f"{f.topic.split('/')[-1]}: {one_line(f.answer)}" for f in own.failed_sample[:2])


@register("condition")
class PendingLookups(Condition):
    type: Literal["pending-lookups"] = "pending-lookups"
    reads: ClassVar[tuple[str, ...]] = ("pulsar-brokers",)
    max: Annotated[float, Field(ge=0)] = 40

    def violations(self, sample: dict) -> list[Violation]:
        out = []
        seen = 0
        for name, b in sorted(self.figures(sample, "pulsar-brokers").brokers.items()):
            pending = b.metric("pulsar_broker_lookup_pending_requests")
            seen += pending is not None
            if pending is not None and pending > self.max:
                out.append(Violation("pending_lookups", round(pending), self.max, subject=name,
                                     detail="pulsar_broker_lookup_pending_requests"))
        if not seen:
            raise Unknown("no broker's /metrics answered with pulsar_broker_lookup_pending_requests")
        return out

    def reading(self, sample: dict) -> float | None:
        pending = [b.metric("pulsar_broker_lookup_pending_requests")
                   for b in self.figures(sample, "pulsar-brokers").brokers.values()]
        return max((p for p in pending if p is not None), default=None)


@register("condition")
class SplitOwnership(Condition):
    """A bundle that two brokers each say they own (their own ownedNamespaces, compared by the
    pulsar-cluster probe with ask_every_broker). Not a lookup redirect: in a mixed cluster a
    modular broker redirects lookups to the extensible one without either owning the bundle."""
    type: Literal["split-ownership"] = "split-ownership"
    reads: ClassVar[tuple[str, ...]] = ("pulsar-cluster", "pulsar-brokers")
    max: Annotated[int, Field(ge=0)] = 0

    def plan_problem(self, plan) -> str | None:
        cluster = next((p for p in plan.probes if p.type == "pulsar-cluster"), None)
        if cluster is not None and not cluster.ask_every_broker:
            return "pulsar-cluster compares ownership across brokers only with ask_every_broker: true"
        return brokers_log_problem(plan)

    def violations(self, sample: dict) -> list[Violation]:
        cluster = self.figures(sample, "pulsar-cluster")
        if cluster.split is None:
            raise Unknown("ownership is not compared across brokers (pulsar-cluster needs ask_every_broker: true)")
        if (cluster.split_brokers_answered or 0) < 2:
            raise Unknown("fewer than two brokers answered ownedNamespaces recently: a split cannot be seen")
        if len(cluster.split) <= self.max:
            return []
        first = cluster.split[0]
        return [Violation("split_ownership", len(cluster.split), self.max,
                          detail=f"bundle {first.bundle} owned by {' and '.join(first.brokers)}")]

    def reading(self, sample: dict) -> float | None:
        split = self.figures(sample, "pulsar-cluster").split
        return len(split) if split is not None else None


@register("condition")
class GreenButBroken(Condition):
    """A broker that the operator's check and Pulsar's own check call healthy while the
    workload's operations on its topics fail (broker-views probe): the incident's broker."""
    type: Literal["green-but-broken"] = "green-but-broken"
    reads: ClassVar[tuple[str, ...]] = ("broker-views", "pulsar-brokers", "pulsar-cluster")
    max: Annotated[int, Field(ge=0, description="brokers allowed in that state")] = 0

    def violations(self, sample: dict) -> list[Violation]:
        views = self.figures(sample, "broker-views").brokers
        if not views:
            raise Unknown("no broker view yet")
        bad = {b: v for b, v in views.items() if v.state == "green-but-broken"}
        if len(bad) <= self.max:
            unseen = sorted(b for b, v in views.items() if v.state == "unknown")
            if unseen:
                raise Unknown(f"{', '.join(unseen)} not seen both ways yet (shallow and health check)")
            return []
        return [Violation("green_but_broken", 1, self.max, subject=b,
                          detail=f"shallow ok, health check ok, workload: {v.detail}") for b, v in sorted(bad.items())]

    def reading(self, sample: dict) -> float | None:
        """Brokers in that state (the figure `max` bounds)."""
        views = self.figures(sample, "broker-views").brokers
        return sum(v.state == "green-but-broken" for v in views.values()) if views else None


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
