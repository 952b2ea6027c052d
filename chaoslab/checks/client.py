"""Steady-state conditions on what the Pulsar clients saw (the pulsar-client probe's sliding
window, typed as probes.figures.ClientWindow). A window with no publish (or no lookup) at all,
once the workload has run longer than the window, is a violation: clients stuck waiting are not
"fine". Before a first window has passed, and whenever a figure is absent, a condition says
unknown."""

from __future__ import annotations

import time
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab.probes.figures import ClientWindow
from chaoslab.spec.base import Condition, Unknown, Violation, register

Fraction = Annotated[float, Field(ge=0, le=1)]
CLIENT: tuple[str, ...] = ("pulsar-client",)
LOG_FRESH_SECS = 20.0   # a broker log count older than this says nothing about now


def brokers_log_problem(plan) -> str | None:
    """pulsar-brokers reads logs and ownership only with its full profile."""
    brokers = next((p for p in plan.probes if p.type == "pulsar-brokers"), None)
    if brokers is not None and getattr(brokers, "profile", "full") != "full":
        return "pulsar-brokers runs with profile metrics-only, which reads no log and no ownership"
    return None


def _errors(client: ClientWindow) -> str:
    return ("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(client.errors.items()))) if client.errors else ""


def _client(sample: dict) -> tuple[ClientWindow, bool]:
    """The client's window and whether a whole window has passed since the workload began."""
    client = Condition.figures(sample, "pulsar-client")
    return client, client.window_passed(sample.get("elapsed"))


@register("condition")
class PublishSuccessRate(Condition):
    type: Literal["publish-success-rate"] = "publish-success-rate"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    min: Fraction = 0.99

    def violations(self, sample: dict) -> list[Violation]:
        client, passed = _client(sample)
        if client.publishes == 0:
            if passed:
                return [Violation("publish_success_rate", None, self.min, detail="no publish completed in the window")]
            raise Unknown("no publish completed yet (the window has not passed)")
        if client.publish_success_rate is None:
            raise Unknown("no publish success rate in the client's window")
        if client.publish_success_rate < self.min:
            return [Violation("publish_success_rate", client.publish_success_rate, self.min, detail=_errors(client))]
        return []

    def reading(self, sample: dict) -> float | None:
        return _client(sample)[0].publish_success_rate


@register("condition")
class PublishP99(Condition):
    type: Literal["publish-p99-ms"] = "publish-p99-ms"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    max: Annotated[float, Field(ge=1, le=600_000)] = 2000.0

    def violations(self, sample: dict) -> list[Violation]:
        client, passed = _client(sample)
        p99 = client.publish_p99_ms
        if p99 is None:
            if passed and not client.publishes:
                # nothing completed: no latency to measure (publish-success-rate judges that second)
                return [Violation("publish_p99_ms", None, self.max, detail="no publish completed in the window")]
            raise Unknown("no publish latency in the client's window")
        return [Violation("publish_p99_ms", round(p99), self.max)] if p99 > self.max else []

    def reading(self, sample: dict) -> float | None:
        return _client(sample)[0].publish_p99_ms


@register("condition")
class Backlog(Condition):
    type: Literal["backlog"] = "backlog"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    max: Annotated[int, Field(ge=0)] = 5000

    def violations(self, sample: dict) -> list[Violation]:
        backlog = _client(sample)[0].backlog
        if backlog is None:
            raise Unknown("the client reported no backlog")
        return [Violation("backlog", backlog, self.max, detail="acknowledged, not yet consumed")] \
            if backlog > self.max else []

    def reading(self, sample: dict) -> float | None:
        return _client(sample)[0].backlog


@register("condition")
class LookupSuccessRate(Condition):
    type: Literal["lookup-success-rate"] = "lookup-success-rate"
    reads: ClassVar[tuple[str, ...]] = CLIENT
    min: Fraction = 0.9

    def plan_problem(self, plan) -> str | None:
        if getattr(plan.workload, "lookup_clients", None) == 0:
            return "the workload makes no lookups (lookup_clients: 0): set lookup_clients > 0 or remove the condition"
        return None

    def violations(self, sample: dict) -> list[Violation]:
        client, passed = _client(sample)
        if not client.lookups_expected:
            raise Unknown("the workload makes no lookups (lookup_clients: 0): nothing to judge")
        if not passed:
            raise Unknown("the client's first window has not passed")
        ok, failed = client.lookup_ok, client.lookup_failed
        if ok + failed == 0:
            return [Violation("lookups", 0, "> 0", detail="none completed in the window (clients are stuck waiting)")]
        if ok / (ok + failed) < self.min:
            return [Violation("lookup_success_rate", ok / (ok + failed), self.min, detail=_errors(client))]
        return []

    def reading(self, sample: dict) -> float | None:
        client = _client(sample)[0]
        done = client.lookup_ok + client.lookup_failed
        return client.lookup_ok / done if done else None


@register("condition")
class TooManyRequests(Condition):
    """Lookups refused for too many pending requests. The Pulsar client retries TooManyRequests
    internally, so the applications rarely see it: the signal is read where it is visible, the
    brokers' own log lines ("too many pending lookups", counted by pulsar-brokers in its last
    slow period), plus whatever the clients did see in their window."""
    type: Literal["too-many-requests"] = "too-many-requests"
    reads: ClassVar[tuple[str, ...]] = ("pulsar-brokers",)
    max: Annotated[int, Field(ge=0)] = 0

    def plan_problem(self, plan) -> str | None:
        return brokers_log_problem(plan)

    def _count(self, sample: dict) -> tuple[int, dict[str, int], int]:
        """(rejections in all, each broker's logged count, what the clients saw)."""
        brokers = self.figures(sample, "pulsar-brokers").brokers
        now = sample.get("t") or time.time()
        counted = {name: b.log_new.get("too_many_pending_lookups", 0) for name, b in brokers.items()
                   if b.log_new is not None and b.log_new_t is not None and now - b.log_new_t <= LOG_FRESH_SECS}
        if not counted:
            raise Unknown("no broker's log has been read yet")
        client = sample.get("client")
        seen = ClientWindow.model_validate(client).too_many_requests if client else 0
        return sum(counted.values()) + seen, counted, seen

    def reading(self, sample: dict) -> float | None:
        return self._count(sample)[0]

    def violations(self, sample: dict) -> list[Violation]:
        n, counted, seen = self._count(sample)
        if n <= self.max:
            return []
        worst = max(counted, key=counted.get)
        return [Violation("too_many_requests", n, self.max, subject=worst if counted[worst] else None,
                          detail=f"brokers logged {sum(counted.values())} 'too many pending lookups' rejections "
                                 f"in their last period ({', '.join(f'{b} {c}' for b, c in sorted(counted.items()) if c)})"
                                 + (f"; clients saw {seen}" if seen else ""))]
