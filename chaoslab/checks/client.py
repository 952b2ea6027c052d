"""Steady-state conditions on what the Pulsar clients saw (sample["client"], the pulsar-client
probe's sliding window). A window with no publish (or no lookup) at all, once the workload has
run longer than the window, is a violation: clients stuck waiting are not "fine"."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab.spec.base import Condition, Unknown, Violation, register

Fraction = Annotated[float, Field(ge=0, le=1)]


def _errors(client: dict) -> str:
    errors = client.get("errors") or {}
    return ("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))) if errors else ""


CLIENT: tuple[str, ...] = ("pulsar-client",)


def _window_passed(sample: dict) -> bool:
    client = sample.get("client") or {}
    return (sample.get("elapsed") or 0) > (client.get("window_secs") or 0) and bool(client)


@register("condition")
class PublishSuccessRate(Condition):
    type: Literal["publish-success-rate"] = "publish-success-rate"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    min: Fraction = 0.99

    def violations(self, sample: dict) -> list[Violation]:
        client = sample.get("client") or {}
        attempts = client.get("publish_ok", 0) + client.get("publish_failed", 0)
        if attempts == 0 and _window_passed(sample):
            return [Violation("publish_success_rate", None, self.min, detail="no publish completed in the window")]
        if attempts == 0:
            raise Unknown("no publish completed yet (the window has not passed)")
        rate = client.get("publish_success_rate")
        if rate is None:
            raise Unknown("no publish success rate in the client's window")
        if rate < self.min:
            return [Violation("publish_success_rate", rate, self.min, detail=_errors(client))]
        return []


@register("condition")
class PublishP99(Condition):
    type: Literal["publish-p99-ms"] = "publish-p99-ms"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    max: Annotated[float, Field(ge=1, le=600_000)] = 2000.0

    def violations(self, sample: dict) -> list[Violation]:
        client = sample.get("client") or {}
        p99 = client.get("publish_p99_ms")
        if p99 is None:
            if _window_passed(sample) and not client.get("publish_ok", 0) + client.get("publish_failed", 0):
                # nothing completed: no latency to measure (publish-success-rate judges that second)
                return [Violation("publish_p99_ms", None, self.max, detail="no publish completed in the window")]
            raise Unknown("no publish latency in the client's window")
        return [Violation("publish_p99_ms", round(p99), self.max)] if p99 > self.max else []


@register("condition")
class Backlog(Condition):
    type: Literal["backlog"] = "backlog"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    max: Annotated[int, Field(ge=0)] = 5000

    def violations(self, sample: dict) -> list[Violation]:
        backlog = (sample.get("client") or {}).get("backlog")
        if backlog is None:
            raise Unknown("the client reported no backlog")
        return [Violation("backlog", backlog, self.max, detail="acknowledged, not yet consumed")] \
            if backlog is not None and backlog > self.max else []


@register("condition")
class LookupSuccessRate(Condition):
    type: Literal["lookup-success-rate"] = "lookup-success-rate"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    min: Fraction = 0.9

    def violations(self, sample: dict) -> list[Violation]:
        client = sample.get("client") or {}
        if not client.get("lookups_expected"):
            raise Unknown("the workload makes no lookups (lookup_clients: 0): nothing to judge")
        if not _window_passed(sample):
            raise Unknown("the client's first window has not passed")
        ok, failed = client.get("lookup_ok", 0), client.get("lookup_failed", 0)
        if ok + failed == 0:
            return [Violation("lookups", 0, "> 0", detail="none completed in the window (clients are stuck waiting)")]
        if ok / (ok + failed) < self.min:
            return [Violation("lookup_success_rate", ok / (ok + failed), self.min, detail=_errors(client))]
        return []


@register("condition")
class TooManyRequests(Condition):
    """Lookups refused for too many pending requests. The Pulsar client retries TooManyRequests
    internally, so the applications rarely see it: the signal is read where it is visible, the
    brokers' own log lines ("too many pending lookups", counted by pulsar-brokers in its last
    slow period), plus whatever the clients did see in their window."""
    type: Literal["too-many-requests"] = "too-many-requests"
    reads: ClassVar[tuple[str, ...]] = ("pulsar-brokers",)
    max: Annotated[int, Field(ge=0)] = 0

    def violations(self, sample: dict) -> list[Violation]:
        brokers = sample.get("brokers") or {}
        counted = {name: (b.get("log_new") or {}).get("too_many_pending_lookups") for name, b in brokers.items()}
        counted = {name: n for name, n in counted.items() if n is not None}
        if not counted:
            raise Unknown("no broker's log has been read yet")
        client = (sample.get("client") or {}).get("too_many_requests") or 0
        n = sum(counted.values()) + client
        if n <= self.max:
            return []
        worst = max(counted, key=counted.get)
        return [Violation("too_many_requests", n, self.max, subject=worst if counted[worst] else None,
                          detail=f"brokers logged {sum(counted.values())} 'too many pending lookups' rejections "
                                 f"in their last period ({', '.join(f'{b} {c}' for b, c in sorted(counted.items()) if c)})"
                                 + (f"; clients saw {client}" if client else ""))]
