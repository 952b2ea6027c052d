"""Faults on any service of the lab (proxy, bookie-N, broker-N, zookeeper, rabbitmq).

- `stop-service`: stop it (docker stop), and with `for_secs` start it again after that long (an
  outage: the step's band is the time the service was down).
- `kill-service`: send it a signal (SIGKILL by default: a crash), and with `for_secs` start it
  again after that long.
Both undo by starting the service again if it is still down, and wait until compose sees it
healthy.
- `slow-service`: make it slow the way an overloaded hypervisor makes a VM slow, for `for_secs`:
  its CPU capped (`cpus`, the CFS quota `docker update --cpus` sets: steal time) and/or frozen in
  bursts (`pause_secs` every `every_secs`, the cgroup freezer `docker pause` uses: a descheduled
  vCPU). Undo lifts both. Disk I/O throttling is not offered: docker cannot change a running
  container's device limits, and the overlay's backing disk is shared with every container here.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import model_validator, Field, PrivateAttr

from chaoslab.errors import LabError, PauseFailed
from chaoslab.spec.base import Change, Secs, Step, StepPlan, register
from chaoslab.wait import sleep_unless, wait_until

Service = Annotated[str, Field(pattern=r"^(proxy|zookeeper|rabbitmq(-\d+)?|bookie-\d+|broker-\d+)$")]


class _ServiceFault(Step):
    service: Service
    for_secs: Secs | None = Field(None, description="bring it back after this long (default: stays down until undone)")
    wait_healthy: bool = Field(True, description="after bringing it back, wait until compose sees it healthy "
                                                 "(false: start it and move on, e.g. to observe whether it survives)")
    start_timeout_secs: Annotated[float, Field(ge=5, le=3600)] = 300.0
    _down: bool = PrivateAttr(False)

    def take_down(self, ctx) -> None:
        raise NotImplementedError

    def run(self, ctx) -> dict:
        started = time.monotonic()
        self.take_down(ctx)
        self._down = True
        result = {"service": self.service, "down": True}
        if self.for_secs is not None:
            sleep_unless(self.for_secs, ctx.interrupted.is_set)
            ctx.check_interrupt()
            result.update(self._bring_back(ctx))
            result["down_secs"] = round(time.monotonic() - started, 1)
        return {**result, "ok": result.get("ok", True)}

    def _bring_back(self, ctx) -> dict:
        """Start it again the way an orchestrator would: retry until compose sees it healthy
        (a bookie or broker killed a moment ago may refuse to start while its previous metadata
        session is still alive), at most start_timeout_secs."""
        started = time.monotonic()
        attempts, errors = [0], []

        def start() -> bool:
            attempts[0] += 1
            try:
                ctx.lab.start_service(self.service, wait=self.wait_healthy, timeout=min(120, self.start_timeout_secs))
                return True
            except LabError as exc:
                errors.append(str(exc)[:200])
                return False
        ok = wait_until(start, self.start_timeout_secs, interval=5, stop=ctx.interrupted.is_set).ok
        self._down = not ok
        out = {"started": ok, "start_secs": round(time.monotonic() - started, 1), "attempts": attempts[0], "ok": ok}
        if errors:
            out["first_error"] = errors[0]
        return out

    def undo(self, ctx) -> dict | None:
        if not self._down:
            return None
        return {"service": self.service, **self._bring_back(ctx)}

    def services_named(self) -> list[tuple[str, str]]:
        """(field, service) pairs the plan checks against the lab's services."""
        return [("service", self.service)]

    def how(self) -> str:
        """How it is taken down, in words ("stopped", "killed with SIGKILL")."""
        raise NotImplementedError

    def describe(self, lab) -> StepPlan:
        was = lab.state(self.service)
        back = "healthy" if self.wait_healthy else "started (not waited for)"
        if self.for_secs is None:
            return StepPlan(does=f"{self.how()}: {self.service} stays down until undone",
                            changes=[Change(self.service, "state", was.value, "down", source=was.source)],
                            secs=(0.0, 30.0), undo=f"start {self.service} again (until {back}, at most "
                                                  f"{self.start_timeout_secs:g} s)",
                            undo_changes=[Change(self.service, "state", "down", "running")],
                            undo_secs=(0.0, self.start_timeout_secs))
        return StepPlan(does=f"{self.how()}: {self.service} down {self.for_secs:g} s, then started again "
                             f"(until {back}, at most {self.start_timeout_secs:g} s)",
                        changes=[Change(self.service, "state", was.value, f"down {self.for_secs:g} s, then running",
                                        source=was.source, lasting=False)],
                        secs=(self.for_secs, self.for_secs + 30 + self.start_timeout_secs),
                        undo=f"start {self.service} again if it is still down",
                        undo_secs=(0.0, self.start_timeout_secs))


@register("step")
class StopService(_ServiceFault):
    """Stop a service (docker stop, `stop_timeout_secs` before it is killed); with `for_secs`
    start it again after that long (an outage: the step's band is the time it was down). Undo
    starts it again if it is still down and waits until it is healthy."""
    type: Literal["stop-service"] = "stop-service"
    stop_timeout_secs: Annotated[int, Field(ge=0, le=300)] = 5

    def take_down(self, ctx) -> None:
        ctx.lab.stop_service(self.service, timeout=self.stop_timeout_secs)

    def how(self) -> str:
        return f"stop {self.service} (killed after {self.stop_timeout_secs} s)"


@register("step")
class KillService(_ServiceFault):
    """Send a service a signal (SIGKILL by default: a crash); with `for_secs` start it again
    after that long. Undo starts it again if it is still down and waits until it is healthy."""
    type: Literal["kill-service"] = "kill-service"
    signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"

    def take_down(self, ctx) -> None:
        ctx.lab.kill_service(self.service, signal=self.signal)

    def how(self) -> str:
        return f"kill {self.service} with {self.signal}"


@register("step")
class SlowService(Step):
    """Make a service slow the way an overloaded hypervisor makes a VM slow, for `for_secs`: its
    CPU capped (`cpus`, the CFS quota: steal time) and/or frozen in bursts (`pause_secs` every
    `every_secs`, the cgroup freezer: a descheduled vCPU). Undo lifts both."""
    type: Literal["slow-service"] = "slow-service"
    service: Service
    cpus: Annotated[float, Field(gt=0, le=64)] | None = Field(
        None, description="cap its CPU at this many cores (e.g. 0.05: 5 % of one core)")
    pause_secs: Annotated[float, Field(gt=0, le=600)] | None = Field(None, description="freeze it this long ...")
    every_secs: Annotated[float, Field(gt=0, le=3600)] = Field(10.0, description="... once per this period")
    for_secs: Secs = Field(120.0, description="how long it stays slow (the step's band)")
    _before: dict | None = PrivateAttr(None)
    _slow: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _something_to_do(self):
        if self.cpus is None and self.pause_secs is None:
            raise ValueError("nothing to do: give cpus and/or pause_secs")
        return self

    def run(self, ctx) -> dict:
        started = time.monotonic()
        self._slow = True
        if self.cpus is not None:
            self._before = ctx.lab.set_cpu_quota(self.service, self.cpus)
        pauses = failed_pauses = 0
        first_error = gone = None
        deadline = started + self.for_secs
        while time.monotonic() < deadline and not ctx.should_stop():
            if self.pause_secs is None:
                sleep_unless(min(1.0, deadline - time.monotonic()), ctx.should_stop)
                continue
            try:
                ctx.lab.pause(self.service)
                pauses += 1
                sleep_unless(min(self.pause_secs, deadline - time.monotonic()), ctx.should_stop)
            except PauseFailed as exc:
                # the freezer can fail to freeze a CPU-capped cgroup in time: count it, go on
                failed_pauses += 1
                first_error = first_error or str(exc)[-160:]
            except LabError as exc:   # e.g. the remedy removed the node: nothing left to slow
                gone = str(exc)[:120]
                break
            finally:
                self._unpause(ctx)
            sleep_unless(min(max(0.0, self.every_secs - self.pause_secs), max(0.0, deadline - time.monotonic())),
                         ctx.should_stop)
        ctx.check_interrupt()
        lifted = self._lift(ctx)
        return {"service": self.service, "cpus": self.cpus, "pauses": pauses,
                **({"failed_pauses": failed_pauses, "pause_error": first_error} if failed_pauses else {}),
                **({"ended_early": gone} if gone else {}),
                "slow_secs": round(time.monotonic() - started, 1), **lifted,
                "ok": True}

    def _unpause(self, ctx) -> None:
        ctx.lab.unpause(self.service)

    def _lift(self, ctx) -> dict:
        if not self._slow:
            return {}
        self._slow = False
        try:
            self._unpause(ctx)
            if self._before is not None:
                ctx.lab.restore_cpu_quota(self.service, self._before)
            return {"lifted": True}
        except LabError as exc:   # e.g. the remedy stopped the node meanwhile: nothing left to lift
            return {"lifted": False, "note": str(exc)[:120]}

    def undo(self, ctx) -> dict | None:
        if not self._slow:
            return None
        return {"service": self.service, **self._lift(ctx)}

    def services_named(self) -> list[tuple[str, str]]:
        return [("service", self.service)]

    def describe(self, lab) -> StepPlan:
        changes, how = [], []
        if self.cpus is not None:
            changes.append(Change(self.service, "cpu", "no cap", f"{self.cpus:g} cores (CFS quota)", lasting=False))
            how.append(f"CPU capped at {self.cpus:g} cores")
        if self.pause_secs is not None:
            changes.append(Change(self.service, "state", lab.state(self.service).value,
                                  f"frozen {self.pause_secs:g} s of every {self.every_secs:g} s (cgroup freezer)",
                                  source=lab.state(self.service).source, lasting=False))
            how.append(f"frozen {self.pause_secs:g} s of every {self.every_secs:g} s")
        return StepPlan(does=f"{self.service} slow for {self.for_secs:g} s: {' and '.join(how)}; then lifted",
                        changes=changes, secs=(0.0, self.for_secs + 5), undo="lift the cap and thaw it, if still slow",
                        undo_secs=(0.0, 10.0))

    def needs(self) -> set[str]:
        return ({"pause"} if self.pause_secs is not None else set()) | ({"cpu-quota"} if self.cpus is not None else set())


@register("step")
class Wait(Step):
    """Let time pass while the hypothesis is checked: a declared exposure (how long a change is
    left in place before the next step, e.g. before an operator's late rollback). With the
    steady state's `abort_on_violation: false` the run keeps going through violations, so what
    the exposure leads to is measured rather than cut short."""
    type: Literal["wait"] = "wait"
    secs: Annotated[float, Field(ge=1, le=24 * 3600)]

    def describe(self, lab) -> StepPlan:
        return StepPlan(does=f"wait {self.secs:g} s with what came before in place (the hypothesis checked "
                             "every second); nothing is changed", secs=(self.secs, self.secs))

    def run(self, ctx) -> dict:
        started = time.monotonic()
        done = ctx.watch(self.secs)
        secs = round(time.monotonic() - started, 1)
        # a wait the run cut short did not expose the change for its declared time: not ok
        return {"secs": secs, "ok": done, "cut_short": not done,
                **({} if done else {"error": f"cut short after {secs:.0f} of {self.secs:.0f} s: the run aborted"})}
