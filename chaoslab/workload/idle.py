"""`type: none`: no client workload (an experiment that only watches the lab)."""

from __future__ import annotations

from typing import Literal

from chaoslab.spec.base import Workload, register


@register("workload")
class NoWorkload(Workload):
    type: Literal["none"] = "none"
