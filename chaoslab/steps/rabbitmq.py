"""Operator actions on the RabbitMQ cluster.

- `remove-rabbitmq-node`: the incident's remedy for the slow node — take it out of the cluster
  the documented way: `rabbitmqctl stop_app` on the node itself (its clients are disconnected and
  reconnect to the others), then `rabbitmqctl forget_cluster_node` on a healthy node, then the
  node's container is stopped (the VM taken away). Each part is timed; the cluster's membership
  and the queue's members afterwards are read back, not assumed. Not undone: a forgotten node
  would have to be reset and joined again, which is a new experiment.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import model_validator, Field

from chaoslab.errors import LabError
from chaoslab.lab.status import cluster_members
from chaoslab.spec.base import Change, Step, StepPlan, register

Node = Annotated[int, Field(ge=1, le=3)]


@register("step")
class RemoveRabbitmqNode(Step):
    """The incident's remedy for a slow RabbitMQ node: take it out of the cluster the documented
    way (`rabbitmqctl stop_app` on the node, `forget_cluster_node` on a healthy one, then its
    container stopped), each part timed, the membership read back. Not undone."""
    type: Literal["remove-rabbitmq-node"] = "remove-rabbitmq-node"
    node: Node = 3
    via: Node = Field(1, description="the healthy node that forgets it")
    stop_app_timeout_secs: Annotated[float, Field(ge=5, le=600)] = 120.0
    undo_when: Literal["on-abort", "at-end", "never"] = "never"

    @model_validator(mode="after")
    def _two_nodes(self):
        if self.node == self.via:
            raise ValueError("via: a node cannot forget itself: choose another `via` than `node`")
        return self

    def run(self, ctx) -> dict:
        lab, s = ctx.lab, ctx.settings
        name = s.rabbitmq_node(self.node)
        started = time.monotonic()
        out: dict = {"node": name, "via": s.rabbitmq_node(self.via)}
        code, text = lab.rabbitmqctl(self.node, "stop_app", timeout=self.stop_app_timeout_secs)
        out["stop_app_secs"] = round(time.monotonic() - started, 1)
        out["stop_app"] = "ok" if code == 0 else f"exit {code}: {text[-120:]}"
        t = time.monotonic()
        if code != 0:   # the node did not stop its app in time: take the container away first
            lab.stop_service(s.rabbitmq_service(self.node), timeout=10)
            out["container_stopped_first"] = True
        code, text = lab.rabbitmqctl(self.via, "forget_cluster_node", name, timeout=120)
        out["forget_secs"] = round(time.monotonic() - t, 1)
        out["forget"] = "ok" if code == 0 else f"exit {code}: {text[-160:]}"
        if not out.get("container_stopped_first"):
            t = time.monotonic()
            try:
                lab.stop_service(s.rabbitmq_service(self.node), timeout=10)
            except LabError as exc:
                out["container_stop_error"] = str(exc)[:120]
            out["container_stop_secs"] = round(time.monotonic() - t, 1)
        out["remedy_secs"] = round(time.monotonic() - started, 1)
        members = cluster_members(lab, self.via)
        out["members_after"] = ", ".join(members.get("disk_nodes") or []) or members.get("error", "")
        out["ok"] = code == 0 and name not in (members.get("disk_nodes") or [])
        if not out["ok"]:
            out["error"] = f"{name} is still a member" if code == 0 else out["forget"]
        return out

    def describe(self, lab) -> StepPlan:
        from chaoslab.settings import LabSettings
        service, via = LabSettings.rabbitmq_service(self.node), LabSettings.rabbitmq_service(self.via)
        was = lab.state(service)
        return StepPlan(does=f"stop_app on {service} (at most {self.stop_app_timeout_secs:g} s, else its container is "
                             f"stopped first), forget_cluster_node {LabSettings.rabbitmq_node(self.node)} on {via}, "
                             "stop its container; the membership read back",
                        changes=[Change(service, "membership", "cluster member",
                                        f"forgotten by {LabSettings.rabbitmq_node(self.via)}"),
                                 Change(service, "state", was.value, "stopped", source=was.source)],
                        secs=(0.0, self.stop_app_timeout_secs + 120 + 20))

    def services_named(self) -> list[tuple[str, str]]:
        """(field, service) pairs the plan checks against the lab's RabbitMQ nodes."""
        from chaoslab.settings import LabSettings
        return [("node", LabSettings.rabbitmq_service(self.node)), ("via", LabSettings.rabbitmq_service(self.via))]
