"""`broker-views` (key `views`): every broker seen three ways, every second, and the name for
their disagreement.

  (a) the operator's shallow check (/status.html), (b) Pulsar's own health check, both from the
  pulsar-brokers probe; (c) what the workload saw for the topics that broker owns (owner from the
  pulsar-cluster probe's lookups): publishes and lookups that failed, and lookups still hanging.

States: healthy | green-but-broken ((a) and (b) healthy, (c) failing: the incident's broker) |
shallow-only ((a) healthy, (b) failing: the operator's roll would go on) | down ((a) failing) |
unknown (not sampled yet).
"""

from __future__ import annotations

import collections
from typing import Annotated, ClassVar, Literal

from pydantic import Field, PrivateAttr

from chaoslab.probes.figures import ViewsFigures
from chaoslab.spec.base import Panel, Probe, register

STATES = ("healthy", "down", "shallow-only", "green-but-broken")


def workload_view(c: dict, min_lookups: int = 3, min_publishes: int = 5, below: float = 0.5, stuck: int = 1) -> tuple[str, str]:
    """ok | failing | no-data, and why, from one broker's window of client outcomes."""
    lookups = c.get("lookup_ok", 0) + c.get("lookup_failed", 0)
    publishes = c.get("publish_ok", 0) + c.get("publish_failed", 0)
    why = []
    if c.get("lookup_stuck", 0) >= stuck:
        why.append(f"{c['lookup_stuck']} lookups hanging")
    if lookups >= min_lookups and c.get("lookup_ok", 0) / lookups < below:
        why.append(f"lookups {c.get('lookup_ok', 0)}/{lookups} ok")
    if publishes >= min_publishes and c.get("publish_ok", 0) / publishes < below:
        why.append(f"publishes {c.get('publish_ok', 0)}/{publishes} ok")
    if why:
        return "failing", ", ".join(why)
    if lookups + publishes == 0:
        return "no-data", "no client operation on its topics in the window"
    return "ok", f"lookups {c.get('lookup_ok', 0)}/{lookups} ok, publishes {c.get('publish_ok', 0)}/{publishes} ok"


def classify(shallow, functional, workload: str) -> str:
    if shallow is None or functional is None:
        return "unknown"
    if not shallow:
        return "down"
    if not functional:
        return "shallow-only"
    return "green-but-broken" if workload == "failing" else "healthy"


@register("probe")
class BrokerViews(Probe):
    type: Literal["broker-views"] = "broker-views"
    min_lookups: Annotated[int, Field(ge=1)] = 3
    min_publishes: Annotated[int, Field(ge=1)] = 5
    failing_below: Annotated[float, Field(ge=0, le=1)] = 0.5
    stuck_lookups: Annotated[int, Field(ge=1)] = 1
    key: ClassVar[str] = "views"
    figures: ClassVar = ViewsFigures
    needs_workload: ClassVar[tuple[str, ...]] = ("pulsar-topics",)
    needs_probes: ClassVar[tuple[str, ...]] = ("pulsar-brokers", "pulsar-cluster")
    _seconds: dict = PrivateAttr(default_factory=lambda: collections.defaultdict(collections.Counter))
    _first: dict = PrivateAttr(default_factory=dict)

    def collect(self, ctx) -> dict:
        import time
        brokers = ctx.probe("brokers").latest()
        owners = ctx.probe("cluster").owners()
        window = ctx.plan.steady_state.window_secs
        per: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for topic, counts in ctx.workload.by_topic(window).items():
            per[owners.get(topic) or "unattributed"].update(counts)
        views = {}
        for name, b in sorted(brokers.items()):
            if not name.startswith("broker-"):
                continue
            wl, why = workload_view(per.get(name, {}), self.min_lookups, self.min_publishes,
                                    self.failing_below, self.stuck_lookups)
            state = classify(b.get("shallow_ok"), b.get("functional_ok"), wl)
            views[name] = {"state": state, "shallow": b.get("shallow_ok"), "functional": b.get("functional_ok"),
                           "workload": wl, "detail": why}
            self._seconds[name][state] += 1
            self._first.setdefault((name, state), time.time())
        return {"brokers": views, "unattributed": dict(per.get("unattributed", {}))}

    def summary(self) -> dict:
        return {"seconds": {b: dict(c) for b, c in self._seconds.items()},
                "first": {f"{b}:{s}": t for (b, s), t in self._first.items()}}

    status_replaces: ClassVar[tuple[str, ...]] = ("brokers",)   # its states say more than shallow/functional

    @classmethod
    def status(cls, figures: dict) -> str:
        views = ViewsFigures.model_validate(figures or {}).brokers
        return "  ".join(f"{n}:{v.state}" for n, v in sorted(views.items()))

    @staticmethod
    def green_but_broken(summary: dict) -> dict[str, int]:
        """Brokers found green-but-broken over the variant, with the seconds they were."""
        seconds = (summary or {}).get("seconds") or {}
        return {b: c["green-but-broken"] for b, c in sorted(seconds.items()) if (c or {}).get("green-but-broken")}

    @classmethod
    def why(cls, summary: dict) -> list[str]:
        gbb = cls.green_but_broken(summary)
        if not gbb:
            return []
        return ["Green-but-broken (both health checks passed while its topics failed): "
                + ", ".join(f"{b} for {s} s" for b, s in gbb.items())]

    @classmethod
    def report_blocks(cls, summary, samples, events, variant, run_dir) -> list[tuple]:
        """Per broker: how long each of the three views' verdicts lasted."""
        seconds = (summary or {}).get("seconds") or {}
        if not seconds:
            return []
        first = summary.get("first") or {}
        states = ["healthy", "green-but-broken", "shallow-only", "down", "unknown"]
        started = variant.get("started") or 0
        return [("h3", "Brokers seen three ways (seconds in each state)"),
                ("p", "healthy: shallow check, Pulsar's health check and the workload's operations on its topics all "
                      "fine; green-but-broken: both checks pass while its topics' lookups or publishes fail (the "
                      "incident's broker); shallow-only: the operator's check passes, Pulsar's fails; down: the "
                      "shallow check fails."),
                ("table", ["broker", *states, "first green-but-broken (+s)"],
                 [[b, *[c.get(s, 0) for s in states],
                   f"{first[f'{b}:green-but-broken'] - started:.0f}" if f"{b}:green-but-broken" in first else "-"]
                  for b, c in sorted(seconds.items())])]

    @classmethod
    def panels(cls) -> list[Panel]:
        def states(samples):
            names = sorted({b for s in samples for b in ((s.get("views") or {}).get("brokers") or {})})
            code = {s: i for i, s in enumerate(STATES)}
            return {b: [None if (v := (((s.get("views") or {}).get("brokers") or {}).get(b) or {}).get("state")) not in code
                        else code[v] + 0.05 * i for s in samples] for i, b in enumerate(names)}
        return [Panel("broker state: 0 healthy, 1 down, 2 shallow-only, 3 green-but-broken", "state", states, (-0.3, 3.4))]
