"""`hypervisor-panic`: what a hypervisor does when one of its tasks stays in D state past the
hung-task limit (a kernel configured to panic on a hung task): it dies, and every VM on it dies
at once. The monitor watches the `hypervisors` probe's figures; past the limit it has the VM
workload kill that hypervisor's VMs together (`hypervisor-crash` in the journal) and the run goes
on, so the recovery is measured too. The limit is the host's own
(/proc/sys/kernel/hung_task_timeout_secs, 120 s by default) unless the file declares a scaled one."""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr

from chaoslab.lab import hypervisors as hv
from chaoslab.spec.base import Monitor, register


@register("monitor")
class HypervisorPanic(Monitor):
    type: Literal["hypervisor-panic"] = "hypervisor-panic"
    hung_task_secs: Annotated[float, Field(ge=1, le=3600)] | None = Field(
        None, description="a task in D state this long crashes its hypervisor; none: the host's hung-task limit "
                          "(a value here is a declared scaling, shown in the report)")
    _ctx: object = PrivateAttr(None)
    _limit: float = PrivateAttr(120.0)
    _crashed: dict = PrivateAttr(default_factory=dict)
    _threads: list = PrivateAttr(default_factory=list)

    def start(self, ctx) -> None:
        self._ctx = ctx
        self._limit = self.hung_task_secs or hv.hung_task_secs()

    def on_sample(self, sample: dict) -> None:
        for name, f in (sample.get("hypervisors") or {}).items():
            if not isinstance(f, dict) or name in self._crashed:
                continue
            longest = f.get("d_state_longest_secs") or 0
            if longest >= self._limit:
                self._crashed[name] = {"t": sample.get("t"), "d_state_secs": longest}
                reason = f"a task in D state for {longest:.0f} s (hung-task limit {self._limit:.0f} s)"
                # off the sampler's thread: killing a hypervisor's VMs takes the engine seconds
                t = threading.Thread(target=self._ctx.workload.crash_hypervisor, args=(self._ctx, name, reason),
                                     daemon=True, name=f"crash-{name}")
                t.start()
                self._threads.append(t)

    def stop(self, ctx) -> dict:
        for t in self._threads:
            t.join(30)
        return {"hung_task_secs": self._limit, "declared": self.hung_task_secs is not None, "crashed": self._crashed}
