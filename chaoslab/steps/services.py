"""Faults on any service of the lab (proxy, bookie-N, broker-N, zookeeper, rabbitmq).

- `stop-service`: stop it (docker stop), and with `for_secs` start it again after that long (an
  outage: the step's band is the time the service was down).
- `kill-service`: send it a signal (SIGKILL by default: a crash), and with `for_secs` start it
  again after that long.
Both undo by starting the service again if it is still down, and wait until compose sees it
healthy.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr

from chaoslab.errors import LabError
from chaoslab.run.wait import sleep_unless, wait_until
from chaoslab.spec.base import Secs, Step, register

Service = Annotated[str, Field(pattern=r"^(proxy|zookeeper|rabbitmq|bookie-\d+|broker-\d+)$")]


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


@register("step")
class StopService(_ServiceFault):
    type: Literal["stop-service"] = "stop-service"
    stop_timeout_secs: Annotated[int, Field(ge=0, le=300)] = 5

    def take_down(self, ctx) -> None:
        ctx.lab.stop_service(self.service, timeout=self.stop_timeout_secs)


@register("step")
class KillService(_ServiceFault):
    type: Literal["kill-service"] = "kill-service"
    signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"

    def take_down(self, ctx) -> None:
        ctx.lab.kill_service(self.service, signal=self.signal)
