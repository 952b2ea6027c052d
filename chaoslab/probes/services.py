"""`service-states` (key `services`): every service of the lab as its driver sees it — running,
paused, exited or absent, and which incarnation (container, pod) — so a report shows each
service's restarts and freezes beside what the clients saw. Asks the lab driver only
(chaoslab/lab/driver.py: services, service_state): the same on any driver, any system."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, PrivateAttr

from chaoslab.spec.base import Panel, Probe, register

STATES = ("running", "paused", "exited", "absent")


@register("probe")
class ServiceStates(Probe):
    """Each service's state and incarnation, every `period_secs` (default 2 s: one engine call
    per service)."""
    type: Literal["service-states"] = "service-states"
    key: ClassVar[str] = "services"
    period_secs: Annotated[float, Field(ge=0.5, le=600)] = 2.0
    _seconds: dict = PrivateAttr(default_factory=dict)        # service -> {state: samples}
    _incarnations: dict = PrivateAttr(default_factory=dict)   # service -> [incarnation, ...]

    def collect(self, ctx) -> dict:
        out = {}
        for service in ctx.lab.services():
            st = ctx.lab.service_state(service)
            out[service] = {"state": st.state, "incarnation": st.incarnation}
            counts = self._seconds.setdefault(service, {})
            counts[st.state] = counts.get(st.state, 0) + 1
            seen = self._incarnations.setdefault(service, [])
            if st.incarnation and st.incarnation not in seen:
                seen.append(st.incarnation)
        return out

    def summary(self) -> dict:
        return {"samples": {s: dict(c) for s, c in sorted(self._seconds.items())},
                "incarnations": {s: len(i) for s, i in sorted(self._incarnations.items())},
                "period_secs": self.period_secs}

    @classmethod
    def panels(cls) -> list[Panel]:
        def series(samples):
            def count(state):
                return [sum(1 for x in (s.get("services") or {}).values() if isinstance(x, dict) and x.get("state") == state)
                        if s.get("services") else None for s in samples]
            return {state: count(state) for state in STATES}
        return [Panel("services by state (lab driver)", "services", series)]

    @classmethod
    def report_blocks(cls, summary, samples, events, variant, run_dir) -> list[tuple]:
        seen = summary.get("samples") or {}
        if not seen:
            return []
        period = summary.get("period_secs") or 1
        rows = [[s, summary.get("incarnations", {}).get(s, 0),
                 *[round(c.get(state, 0) * period) for state in STATES]] for s, c in seen.items()]
        return [("h3", "Services as the lab driver saw them (seconds in each state, about)"),
                ("table", ["service", "incarnations", *STATES], rows)]

    @classmethod
    def why(cls, summary: dict) -> list[str]:
        restarted = {s: n - 1 for s, n in (summary.get("incarnations") or {}).items() if n > 1}
        if not restarted:
            return []
        return ["Services replaced during the variant (new incarnations): "
                + ", ".join(f"{s} {n} time{'s' if n > 1 else ''}" for s, n in restarted.items())]

    @classmethod
    def status(cls, figures: dict) -> str:
        states = [x.get("state") for x in (figures or {}).values() if isinstance(x, dict)]
        if not states:
            return ""
        not_running = [f"{s}:{x['state']}" for s, x in sorted(figures.items())
                       if isinstance(x, dict) and x.get("state") != "running"]
        return f"{states.count('running')}/{len(states)} running" + (f" ({', '.join(not_running[:4])})" if not_running else "")
