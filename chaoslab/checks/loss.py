"""Loss checker: a pure function of the history.

- lost: acknowledged by Pulsar, never delivered to the consumer ("acked but never delivered").
- duplicated: delivered more than once.
- unacked_delivered: delivered although the send was never acknowledged (legal: an ack may be
  lost after the write) — reported, not counted as loss.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab.spec.base import CheckResult, FinalCheck, register
from chaoslab.workload.history import History


@dataclass
class LossReport:
    sent: int
    acked: int
    failed: int
    received: int
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    unacked_delivered: int = 0

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated

    def summary(self) -> dict:
        return {"sent": self.sent, "acked": self.acked, "failed": self.failed, "received": self.received,
                "lost": len(self.lost), "duplicated": len(self.duplicated),
                "unacked_delivered": self.unacked_delivered, "lost_sample": self.lost[:10]}


def check(history: History) -> LossReport:
    sent, acked, failed = set(), set(), set()
    received: Counter[str] = Counter()
    for op in history.ops:
        if op.kind == "send":
            sent.add(op.id)
        elif op.kind == "ack":
            acked.add(op.id)
        elif op.kind == "fail":
            failed.add(op.id)
        elif op.kind == "recv":
            received[op.id] += 1
    lost = sorted(acked - set(received))
    dups = {i: n for i, n in received.items() if n > 1}
    return LossReport(sent=len(sent), acked=len(acked), failed=len(failed - acked), received=len(received),
                      lost=lost, duplicated=dups, unacked_delivered=len(set(received) - acked))


@register("check")
class NoLoss(FinalCheck):
    """No message the broker acknowledged (Pulsar) or confirmed (RabbitMQ) went undelivered to
    the consumer (from the history)."""
    type: Literal["no-loss"] = "no-loss"
    needs_workload: ClassVar[tuple[str, ...]] = ("pulsar-topics", "rabbitmq-events")
    max_lost: Annotated[int, Field(ge=0)] = 0

    def check(self, ctx) -> CheckResult:
        summary = (ctx.record.get("workload") or {}).get("loss")
        if not summary:
            return CheckResult("no-loss", "unknown", evidence="no history was recorded")
        lost = summary["lost"]
        return CheckResult("no-loss", "fail" if lost > self.max_lost else "pass", value=lost, bound=self.max_lost,
                           evidence=f"{lost} acknowledged messages never delivered (of {summary['acked']} acked; "
                                    f"{summary['duplicated']} duplicated), e.g. {summary.get('lost_sample', [])[:3]}"
                           if lost else f"{summary['acked']} acked, {summary['received']} received, 0 lost",
                           data=summary)
