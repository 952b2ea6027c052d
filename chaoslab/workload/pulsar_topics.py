"""`type: pulsar-topics`: the tenants' producers and consumers through the proxy (every message
id recorded for the loss check), plus lookup-heavy clients that keep opening readers and
reconnecting, so lookups flow while brokers roll."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PrivateAttr

from chaoslab import http
from chaoslab.workload import clientlog
from chaoslab.spec.base import Secs, Workload, register
from chaoslab.workload import loss
from chaoslab.workload.admin import PulsarAdmin
from chaoslab.workload.driver import WorkloadConfig, WorkloadDriver
from chaoslab.workload.layout import Layout, Topic
from chaoslab.workload.lookups import LookupClients
from chaoslab.workload.stats import ClientStats


def subscription_backlog(admin_url: str, topic: Topic, subscription: str) -> int | None:
    """Messages `subscription` still has on `topic` (all partitions), from the broker's topic
    stats; None when the broker does not say."""
    kind = "partitioned-stats" if topic.partitions else "stats"
    stats = http.get_json(f"{admin_url}/admin/v2/persistent/{topic.tenant}/{topic.namespace}/{topic.name}/{kind}")
    sub = ((stats.get("subscriptions") or {}) if isinstance(stats, dict) else {}).get(subscription)
    backlog = sub.get("msgBacklog") if isinstance(sub, dict) else None
    return backlog if isinstance(backlog, int) and not isinstance(backlog, bool) else None


@register("workload")
class PulsarTopics(Workload):
    type: Literal["pulsar-topics"] = "pulsar-topics"

    @classmethod
    def report_blocks(cls, summary: dict) -> list[tuple]:
        return [("p", loss.loss_words(summary["loss"]))] if (summary or {}).get("loss") else []
    tenants: Annotated[int, Field(ge=1, le=1000)] = 10
    topics_per_tenant: Annotated[int, Field(ge=1, le=1000)] = 10
    partitioned_every: Annotated[int, Field(ge=0, le=1000)] = 5
    rate: Annotated[float, Field(ge=1, le=100_000, description="messages/s through the proxy")] = 200.0
    payload_bytes: Annotated[int, Field(ge=80, le=1_000_000)] = 200
    lookup_clients: Annotated[int, Field(ge=0, le=50)] = 2
    lookup_topics: Annotated[int, Field(ge=1, le=100_000)] = 200
    lookup_reconnect_secs: Annotated[float, Field(ge=0.5, le=3600)] = 5.0
    drain_timeout_secs: Secs = Field(60.0, description="after producing stops, wait this long at most for the books "
                                                       "to close; what is still missing then is unknown, not lost")
    _layout: Layout | None = PrivateAttr(None)
    _stats: ClientStats | None = PrivateAttr(None)
    _driver: WorkloadDriver | None = PrivateAttr(None)
    _lookups: LookupClients | None = PrivateAttr(None)

    def layout(self, seed: int) -> Layout:
        if self._layout is None:
            self._layout = Layout.generate(self.tenants, self.topics_per_tenant, self.partitioned_every, seed=seed)
        return self._layout

    def sample_topics(self) -> list[str]:
        """Topics whose ownership probes may look up (partition 0 of a partitioned topic)."""
        return [t.fqn + ("-partition-0" if t.partitions else "") for t in (self._layout.topics if self._layout else ())]

    def every_topic(self) -> list[str]:
        """Every topic the workload writes: each non-partitioned topic and each partition."""
        return [name for t in (self._layout.topics if self._layout else ())
                for name in ([f"{t.fqn}-partition-{p}" for p in range(t.partitions)] if t.partitions else [t.fqn])]

    def start(self, ctx) -> None:
        clientlog.to_file(ctx.run_dir / "pulsar-client.log")   # the client library's own lines
        layout = self.layout(ctx.experiment.seed)
        PulsarAdmin(ctx.lab.proxy_admin_url, ctx.settings.cluster).provision(layout)
        self._stats = ClientStats()
        self._driver = WorkloadDriver(ctx.lab.proxy_service_url, layout,
                                      WorkloadConfig(rate=self.rate, messages=None, payload_bytes=self.payload_bytes),
                                      run_id=f"{ctx.variant.name}-{ctx.experiment.seed}", stats=self._stats)
        self._lookups = LookupClients(ctx.lab.proxy_service_url, layout, self._stats, self.lookup_clients,
                                      self.lookup_topics, self.lookup_reconnect_secs)
        self._driver.start()
        self._lookups.start()

    def client_window(self, window_secs: float) -> dict:
        """What the applications saw over the last window (the pulsar-client probe samples it)."""
        if self._stats is None or self._driver is None:
            return {}
        out = self._stats.window(window_secs)
        out.update(backlog=self._driver.backlog, acked_total=self._driver.acked,
                   received_total=self._driver.received, duplicates_total=self._driver.duplicates, window_secs=window_secs,
                   lookups_expected=self.lookup_clients > 0)
        return out

    def by_topic(self, window_secs: float) -> dict:
        """Client outcomes per topic over the window (the broker-views probe joins them with owners)."""
        return self._stats.by_topic(window_secs) if self._stats else {}

    def stop(self, ctx) -> dict:
        if self._driver is None:
            return {}
        self._lookups.stop()
        self._driver.stop_producing()
        topics = {t.fqn: t for t in self._layout.topics}
        sub = self._driver.config.subscription
        self._driver.drain(timeout=self.drain_timeout_secs, broker_backlog=lambda fqn: subscription_backlog(
            ctx.lab.proxy_admin_url, topics[fqn], sub) if fqn in topics else None)
        self._driver.close()
        report = loss.check(self._driver.history)
        self._driver.history.save(ctx.run_dir / f"history-{ctx.variant.name}.jsonl")
        return {"loss": report.summary()}

    def close(self, ctx) -> None:
        if self._lookups:
            self._lookups.stop()
        if self._driver:
            self._driver.close()
