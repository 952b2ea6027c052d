"""`flip-mechanism`: how a load-manager flip failed in each variant that rolled brokers (hang,
split ownership, both, none; stories/flip.py names them from the run folder's samples, kept logs
and thread dumps), said on the report's first screen:

    report:
      - {type: flip-mechanism}
"""

from __future__ import annotations

from typing import Literal

from chaoslab.spec.base import RunView, Story, register
from chaoslab.stories.flip import classify, describe
from chaoslab.stories.incident_chain import Facts, pending_limit


def mechanisms(run: RunView) -> dict[str, dict]:
    """{variant: classify(...)} for the variants that rolled brokers."""
    out = {}
    limit = pending_limit(run)
    for v in run.variants:
        if not any(st.get("type") == "roll-broker" for st in v.get("steps") or []):
            continue
        try:
            out[v["name"]] = classify(run.samples(v["name"]), run.run_dir / "logs" / v["name"],
                                      since=(v.get("kpis") or {}).get("injection_t"),
                                      pending_bound=0.8 * limit if limit else None)
        except Exception:   # evidence that cannot be read says nothing; the report goes on
            continue
    return out


@register("story")
class FlipMechanism(Story):
    type: Literal["flip-mechanism"] = "flip-mechanism"

    def why(self, run: RunView) -> list[str]:
        found = mechanisms(run)
        out = []
        for v in run.variants:
            if v["name"] in found and (v["verdict"] != "PASS" or found[v["name"]]["mechanism"] != "none"):
                flipped = bool(Facts(v, []).flipped)   # a roll whose settings switch the load manager
                out.append((f"How the flip failed in {v['name']}: " if flipped else
                            f"What the brokers did in {v['name']} (no flip in this variant): ") + describe(found[v["name"]]))
        return out
