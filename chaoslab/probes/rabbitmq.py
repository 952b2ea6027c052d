"""RabbitMQ probes.

- `rabbitmq-client` (key `rabbitmq`): what the orchestrators saw over the steady state's sliding
  window — confirm latency p50/p99 (from the event's due time), the broker's own share, per node
  the publishers were on, confirms and deliveries per second, failures, reconnects, backlog.
- `rabbitmq-cluster` (key `rabbitmq_cluster`): the cluster's own view, from the management API
  of every node (not guessed): which nodes each node sees running, partitions and alarms, how
  long each node's API took to answer, and the queues' depth, leaders and online members.
"""

from __future__ import annotations

import base64
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from chaoslab import http
from chaoslab.probes.figures import RabbitmqWindow
from chaoslab.spec.base import Panel, Probe, StatusView, register, status_view


def _field(key: str, *names: str):
    def series(samples):
        return {n: [v if isinstance(v := (s.get(key) or {}).get(n), (int, float)) else None for s in samples]
                for n in names}
    return series


@register("probe")
class RabbitmqClient(Probe):
    type: Literal["rabbitmq-client"] = "rabbitmq-client"
    key: ClassVar[str] = "rabbitmq"
    figures: ClassVar = RabbitmqWindow
    needs_workload: ClassVar[tuple[str, ...]] = ("rabbitmq-events",)

    @classmethod
    def panels(cls) -> list[Panel]:
        def by_node(samples):
            nodes = sorted({n for s in samples for n in ((s.get("rabbitmq") or {}).get("p99_ms_by_node") or {})})
            return {f"p99 publishers on {n}": [((s.get("rabbitmq") or {}).get("p99_ms_by_node") or {}).get(n)
                                               for s in samples] for n in nodes}
        return [Panel("publish-confirm latency (from due time, sliding window)", "ms",
                      _field("rabbitmq", "confirm_p50_ms", "confirm_p99_ms")),
                Panel("confirm p99 by the node the publishers were on", "ms", by_node),
                Panel("events per second", "events/s", _field("rabbitmq", "confirms_per_sec", "consumed_per_sec"))]

    def collect(self, ctx) -> dict:
        return ctx.workload.client_window(ctx.plan.steady_state.window_secs)


@register("probe")
class RabbitmqCluster(Probe):
    type: Literal["rabbitmq-cluster"] = "rabbitmq-cluster"
    key: ClassVar[str] = "rabbitmq_cluster"
    period_secs: Annotated[float, Field(ge=0.5, le=600)] = 5.0
    timeout_secs: Annotated[float, Field(ge=0.5, le=60)] = 3.0
    queue: str = Field("deployment-events", description="queues whose name starts with this")

    @classmethod
    def panels(cls) -> list[Panel]:
        def depth(samples):
            return {"queue depth (messages)": [((s.get("rabbitmq_cluster") or {}).get("queue") or {}).get("messages")
                                               for s in samples]}

        def api(samples):
            nodes = sorted({n for s in samples for n in ((s.get("rabbitmq_cluster") or {}).get("api_ms") or {})})
            return {f"{n} API answer": [((s.get("rabbitmq_cluster") or {}).get("api_ms") or {}).get(n) for s in samples]
                    for n in nodes}
        return [Panel("queue depth (management API)", "messages", depth),
                Panel("management API answer time per node", "ms", api)]

    def collect(self, ctx) -> dict:
        s = ctx.settings
        auth = {"Authorization": "Basic " + base64.b64encode(f"{s.rabbitmq_user}:{s.rabbitmq_password}".encode()).decode()}
        nodes = ctx.plan.lab.rabbitmq_nodes
        views, api_ms, errors = {}, {}, {}
        queue = None
        for n in range(1, nodes + 1):
            name = f"node-{n}"
            url = s.rabbitmq_mgmt_url(n)
            resp = http.request("GET", f"{url}/api/nodes?columns=name,running,partitions,mem_alarm,disk_free_alarm",
                                timeout=self.timeout_secs, headers=auth)
            api_ms[name] = round(resp.seconds * 1000) if resp.status else None   # None: no answer (errors)
            data = resp.json() if resp.ok else None
            if not isinstance(data, list):
                errors[name] = resp.describe()[:120]
                continue
            views[name] = {d["name"]: {"running": d.get("running"), "partitions": d.get("partitions") or [],
                                       "alarms": [a for a in ("mem_alarm", "disk_free_alarm") if d.get(a)]}
                           for d in data if isinstance(d, dict) and "name" in d}
            if queue is None:
                q = http.request("GET", f"{url}/api/queues/%2F?columns=name,messages,type,leader,members,online,node,"
                                 "slave_nodes,synchronised_slave_nodes", timeout=self.timeout_secs, headers=auth)
                qd = q.json() if q.ok else None
                if isinstance(qd, list):
                    mine = [x for x in qd if isinstance(x, dict) and str(x.get("name", "")).startswith(self.queue)]
                    queue = {"messages": sum(x.get("messages") or 0 for x in mine),
                             "leaders": {x["name"]: x.get("leader") or x.get("node") for x in mine},
                             "online": {x["name"]: len(x.get("online") or []) or
                                        1 + len(x.get("synchronised_slave_nodes") or []) for x in mine}}
        running = {}
        for view in views.values():
            for node, v in view.items():
                running.setdefault(node, []).append(bool(v["running"]))
        return {"views": views, "api_ms": api_ms, "errors": errors, "queue": queue or {},
                # a node counts as running when every node that answered sees it running
                "running": {node: all(flags) for node, flags in sorted(running.items())},
                "partitions": sorted({p for view in views.values() for v in view.values() for p in v["partitions"]})}


@status_view("rabbitmq")
def rabbitmq_nodes(rabbitmq: dict) -> StatusView:
    """`chaoslab status`: each RabbitMQ node, and whether the cluster counts it as a member."""
    lines = []
    for n in (rabbitmq or {}).get("nodes") or []:
        member = {True: "member", False: "NOT a member", None: "membership unknown"}[n.get("member")]
        running = "" if n.get("running_in_cluster", True) else ", not running in the cluster"
        lines.append(f"rabbitmq  {n['state']:10} {n['node']} ({member}{running})  {n['amqp_url']}")
    return StatusView(lines=lines)
