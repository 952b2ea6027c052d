"""`thread-dumps`: when a broker looks hung or green-but-broken for a while (broker-views
probe), take a JVM thread dump of it (SIGQUIT; the dump is kept in the run folder and journalled
as a `thread-dump` event), at most `max_per_broker` times a variant, once per episode."""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr

from chaoslab.spec.base import Monitor, register


@register("monitor")
class ThreadDumps(Monitor):
    type: Literal["thread-dumps"] = "thread-dumps"
    states: list[Literal["green-but-broken", "shallow-only", "down"]] = ["green-but-broken", "shallow-only", "down"]
    after_secs: Annotated[int, Field(ge=1, le=600, description="green-but-broken this many seconds in a row")] = 10
    shallow_only_after_secs: Annotated[int, Field(ge=1, le=600, description="shallow-only: a broker that just "
                                                  "started passes Pulsar's check ~10-20 s after the shallow one")] = 30
    down_after_secs: Annotated[int, Field(ge=1, le=600, description="down: a broker that restarts is down "
                                                                    "~10-15 s while its JVM starts")] = 60
    max_per_broker: Annotated[int, Field(ge=1, le=20)] = 2
    _ctx: object = PrivateAttr(None)
    _run: dict = PrivateAttr(default_factory=dict)
    _taken: dict = PrivateAttr(default_factory=dict)
    _threads: list = PrivateAttr(default_factory=list)

    def start(self, ctx) -> None:
        self._ctx = ctx

    def on_sample(self, sample: dict) -> None:
        for broker, view in ((sample.get("views") or {}).get("brokers") or {}).items():
            state = view.get("state")
            if state not in self.states:
                self._run.pop(broker, None)   # the episode is over
                continue
            run = self._run.setdefault(broker, {"n": 0, "state": state, "dumped": False})
            if run["state"] != state:   # seconds count per state; one dump per episode of bad states
                run.update(n=0, state=state)
            run["n"] += 1
            n = run["n"]
            due = {"down": self.down_after_secs, "shallow-only": self.shallow_only_after_secs}.get(state, self.after_secs)
            if n >= due and not run["dumped"] and self._taken.get(broker, 0) < self.max_per_broker:
                run["dumped"] = True
                self._taken[broker] = self._taken.get(broker, 0) + 1
                reason = f"{state} for {n} s: {view.get('detail')}"
                t = threading.Thread(target=self._ctx.lab.thread_dump, args=(broker, reason), daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, ctx) -> dict:
        wait = 2 if ctx is not None and ctx.interrupted.is_set() else 20   # Ctrl-C: the clean-up comes first
        for t in self._threads:
            t.join(wait)
        return {"thread_dumps": dict(self._taken)}
