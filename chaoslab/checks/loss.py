"""The `no-loss` final check: judges the loss summary the workload recorded
(chaoslab.workload.loss: lost, unknown, duplicated, books closed or not)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab.spec.base import CheckResult, FinalCheck, register


@register("check")
class NoLoss(FinalCheck):
    """No message the broker acknowledged (Pulsar) or confirmed (RabbitMQ) went undelivered to
    the consumer (from the history). `fail` only for messages provably lost; `unknown` when the
    books did not close and no more than `max_lost` are provably lost."""
    type: Literal["no-loss"] = "no-loss"
    needs_workload: ClassVar[tuple[str, ...]] = ("pulsar-topics", "rabbitmq-events")
    max_lost: Annotated[int, Field(ge=0)] = 0

    def check(self, ctx) -> CheckResult:
        summary = (ctx.record.get("workload") or {}).get("loss")
        if not summary:
            return CheckResult("no-loss", "unknown", evidence="no history was recorded")
        lost, unknown = summary["lost"], summary.get("unknown", 0)
        dups = (f"{summary['duplicated']} delivered more than once"
                + (f" ({summary['duplicates']} extra deliveries)" if summary.get("duplicates") else ""))
        if lost > self.max_lost:
            return CheckResult("no-loss", "fail", value=lost, bound=self.max_lost, data=summary,
                               evidence=f"{lost} acknowledged messages never delivered (of {summary['acked']} acked; "
                                        f"{dups}), e.g. {summary.get('lost_sample', [])[:3]}")
        if not summary.get("acked"):
            return CheckResult("no-loss", "unknown", value=lost, bound=self.max_lost, data=summary,
                               evidence=f"no message was acknowledged ({summary.get('sent', 0)} sent): nothing to judge")
        if unknown or not summary.get("books_closed", True):
            return CheckResult("no-loss", "unknown", value=lost, bound=self.max_lost, data=summary,
                               evidence=f"the books did not close ({summary.get('closed_by') or 'drain unfinished'}): "
                                        f"{unknown} acknowledged messages neither delivered nor provably lost, "
                                        f"e.g. {summary.get('unknown_sample', [])[:3]}; {lost} lost, {dups}")
        return CheckResult("no-loss", "pass", value=lost, bound=self.max_lost, data=summary,
                           evidence=f"{summary['acked']} acked, {summary['received']} received, {lost} lost, {dups}")
