"""Steady-state conditions on what the RabbitMQ publishers saw (sample["rabbitmq"], the
rabbitmq-client probe's sliding window). A window in which no confirm arrived at all, once the
workload has run longer than the window, is a violation: publishers stuck waiting are not fine."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab.spec.base import Condition, Unknown, Violation, register


@register("condition")
class ConfirmP99(Condition):
    """Publish-confirm latency p99 (from the event's due time) under `max` ms."""
    type: Literal["confirm-p99-ms"] = "confirm-p99-ms"
    reads: ClassVar[tuple[str, ...]] = ("rabbitmq-client",)
    max: Annotated[float, Field(ge=1, le=600_000)] = 1000.0

    def violations(self, sample: dict) -> list[Violation]:
        rmq = self.figures(sample, "rabbitmq-client")
        if not rmq.confirms and (sample.get("elapsed") or 0) > (rmq.window_secs or 0):
            return [Violation("confirms", 0, "> 0", detail="no publish was confirmed in the window")]
        p99 = rmq.confirm_p99_ms
        if p99 is None:
            raise Unknown("no confirm latency in the publishers' window yet")
        if p99 <= self.max:
            return []
        by_node = rmq.p99_ms_by_node
        worst = max(by_node, key=by_node.get) if by_node else None
        detail = f"worst for publishers on {worst}: {by_node[worst]:.0f} ms" if worst else ""
        return [Violation("confirm_p99_ms", round(p99), self.max, subject=worst, detail=detail)]

    def reading(self, sample: dict) -> float | None:
        return self.figures(sample, "rabbitmq-client").confirm_p99_ms
