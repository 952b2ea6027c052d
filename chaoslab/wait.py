"""The one wait helper, on tenacity: poll `check` every `interval` seconds until it returns
something truthy, `timeout` passes, or `stop()` says to give up. An exception raised by `check`
counts as "not yet" (a broker that refuses connections is simply not ready); one raised by
`stop` (e.g. the run's interrupt) propagates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_result, stop_after_delay, wait_fixed


@dataclass
class Waited:
    ok: bool
    value: Any
    secs: float


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 1.0,
               stop: Callable[[], bool] | None = None) -> Waited:
    started = time.monotonic()

    def give_up(state: RetryCallState) -> bool:
        return stop_after_delay(timeout)(state) or bool(stop and stop())

    def last(state: RetryCallState):
        outcome = state.outcome
        return None if outcome is None or outcome.failed else outcome.result()

    retrying = Retrying(stop=give_up, wait=wait_fixed(interval), reraise=True,
                        retry=retry_if_result(lambda v: not v) | retry_if_exception(lambda e: isinstance(e, Exception)),
                        retry_error_callback=last)
    value = retrying(check)
    return Waited(bool(value), value, time.monotonic() - started)


def sleep_unless(secs: float, stop: Callable[[], bool], interval: float = 0.5) -> bool:
    """Sleep `secs`, checking `stop()` every `interval`; True when the whole time passed."""
    return not wait_until(stop, timeout=secs, interval=interval).ok
