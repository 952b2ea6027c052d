"""Steady-state conditions on what the Pulsar clients saw (sample["client"], the pulsar-client
probe's sliding window). A window with no publish (or no lookup) at all, once the workload has
run longer than the window, is a violation: clients stuck waiting are not "fine"."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chaoslab.spec.base import Condition, Violation, register

Fraction = Annotated[float, Field(ge=0, le=1)]


def _errors(client: dict) -> str:
    errors = client.get("errors") or {}
    return ("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))) if errors else ""


def _window_passed(sample: dict) -> bool:
    client = sample.get("client") or {}
    return (sample.get("elapsed") or 0) > (client.get("window_secs") or 0) and bool(client)


@register("condition")
class PublishSuccessRate(Condition):
    type: Literal["publish-success-rate"] = "publish-success-rate"
    min: Fraction = 0.99

    def violations(self, sample: dict) -> list[Violation]:
        client = sample.get("client") or {}
        attempts = client.get("publish_ok", 0) + client.get("publish_failed", 0)
        if attempts == 0 and _window_passed(sample):
            return [Violation("publish_success_rate", None, self.min, detail="no publish completed in the window")]
        rate = client.get("publish_success_rate")
        if rate is not None and rate < self.min:
            return [Violation("publish_success_rate", rate, self.min, detail=_errors(client))]
        return []


@register("condition")
class PublishP99(Condition):
    type: Literal["publish-p99-ms"] = "publish-p99-ms"
    max: Annotated[float, Field(ge=1, le=600_000)] = 2000.0

    def violations(self, sample: dict) -> list[Violation]:
        p99 = (sample.get("client") or {}).get("publish_p99_ms")
        return [Violation("publish_p99_ms", round(p99), self.max)] if p99 is not None and p99 > self.max else []


@register("condition")
class Backlog(Condition):
    type: Literal["backlog"] = "backlog"
    max: Annotated[int, Field(ge=0)] = 5000

    def violations(self, sample: dict) -> list[Violation]:
        backlog = (sample.get("client") or {}).get("backlog")
        return [Violation("backlog", backlog, self.max, detail="acknowledged, not yet consumed")] \
            if backlog is not None and backlog > self.max else []


@register("condition")
class LookupSuccessRate(Condition):
    type: Literal["lookup-success-rate"] = "lookup-success-rate"
    min: Fraction = 0.9

    def violations(self, sample: dict) -> list[Violation]:
        client = sample.get("client") or {}
        if not client.get("lookups_expected") or not _window_passed(sample):
            return []
        ok, failed = client.get("lookup_ok", 0), client.get("lookup_failed", 0)
        if ok + failed == 0:
            return [Violation("lookups", 0, "> 0", detail="none completed in the window (clients are stuck waiting)")]
        if ok / (ok + failed) < self.min:
            return [Violation("lookup_success_rate", ok / (ok + failed), self.min, detail=_errors(client))]
        return []


@register("condition")
class TooManyRequests(Condition):
    type: Literal["too-many-requests"] = "too-many-requests"
    max: Annotated[int, Field(ge=0)] = 0

    def violations(self, sample: dict) -> list[Violation]:
        n = (sample.get("client") or {}).get("too_many_requests", 0)
        return [Violation("too_many_requests", n, self.max, detail="client TooManyRequests errors in the window")] \
            if n > self.max else []
