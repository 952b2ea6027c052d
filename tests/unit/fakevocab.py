"""A fake vocabulary for driving the runner without a lab: a probe whose figures come from a
script, a condition with a bound, a final check with a chosen outcome, a step that waits (or
crashes, or is interrupted). Not registered: tests put them into a plan directly."""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from chaoslab.spec.base import CheckResult, Condition, FinalCheck, Probe, Step, Unknown, Violation


class FakeProbe(Probe):
    """Figures from a script: value(t) per second; `die_after` kills its thread."""
    type: Literal["fake"] = "fake"
    key: ClassVar[str] = "fake"
    values: list = []
    die_after: float | None = None

    def collect(self, ctx):
        t = time.time() - ctx.started
        if self.die_after is not None and t > self.die_after:
            raise SystemExit("probe thread killed")      # not an Exception: ends the thread
        i = min(int(t), len(self.values) - 1)
        v = self.values[i]
        if v is None:   # stuck, as in an HTTP call that never returns
            self._stop.wait(60)
            return None
        return {"value": v}


class FakeCondition(Condition):
    type: Literal["fake-max"] = "fake-max"
    reads: ClassVar[tuple[str, ...]] = ("fake",)
    max: float = 10

    def violations(self, sample):
        v = (sample.get("fake") or {}).get("value")
        if v == "absent":
            raise Unknown("the figure is absent")
        return [Violation("fake", v, self.max)] if v > self.max else []


class FakeCheck(FinalCheck):
    type: Literal["fake-check"] = "fake-check"
    outcome: str = "pass"

    def check(self, ctx):
        return CheckResult("fake-check", self.outcome, evidence="no history was recorded" if self.outcome == "unknown" else "ok")


class FakeStep(Step):
    type: Literal["fake"] = "fake"
    secs: float = 2.0
    crash: bool = False
    interrupt: bool = False

    def run(self, ctx):
        if self.crash:
            raise KeyError("pulsar said something unexpected")
        if self.interrupt:
            raise KeyboardInterrupt()
        ctx.watch(self.secs)
        return {"ok": True}

    def undo(self, ctx):
        return {"ok": True}


