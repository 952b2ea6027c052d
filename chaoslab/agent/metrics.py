"""Vector's internal metric names for the agent stand-in, exported in Prometheus format.

Vector's prometheus_exporter prefixes internal metrics with the `vector_` namespace. Both the
current buffer metrics and the incident-era (Vector v0.40) gauges (buffer_events,
buffer_byte_size, buffer_max_event_size) are emitted.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class BufferMetrics:
    def __init__(self, buffer_id: str, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r, labels = self.registry, ["buffer_id", "stage"]
        self._labels = {"buffer_id": buffer_id, "stage": "0"}
        self.received_events = Counter("vector_buffer_received_events", "Events written to the buffer", labels, registry=r)
        self.received_bytes = Counter("vector_buffer_received_bytes", "Bytes written to the buffer", labels, registry=r)
        self.sent_events = Counter("vector_buffer_sent_events", "Events read from the buffer", labels, registry=r)
        self.sent_bytes = Counter("vector_buffer_sent_bytes", "Bytes read from the buffer", labels, registry=r)
        self.discarded_events = Counter("vector_buffer_discarded_events", "Events discarded by the buffer",
                                        labels + ["intentional"], registry=r)
        self.buffer_errors = Counter("vector_buffer_errors", "Buffer errors", labels, registry=r)
        self.send_duration = Histogram("vector_buffer_send_duration_seconds", "Time to write into the buffer",
                                       labels, registry=r)
        self.size_events = Gauge("vector_buffer_size_events", "Events in the buffer", labels, registry=r)
        self.size_bytes = Gauge("vector_buffer_size_bytes", "Bytes in the buffer", labels, registry=r)
        self.max_size_events = Gauge("vector_buffer_max_size_events", "Buffer limit in events", labels, registry=r)
        self.max_size_bytes = Gauge("vector_buffer_max_size_bytes", "Buffer limit in bytes", labels, registry=r)
        # v0.40 names
        self.events_v040 = Gauge("vector_buffer_events", "Events in the buffer (v0.40)", labels, registry=r)
        self.bytes_v040 = Gauge("vector_buffer_byte_size", "Bytes in the buffer (v0.40)", labels, registry=r)
        self.max_events_v040 = Gauge("vector_buffer_max_event_size", "Buffer limit in events (v0.40)", labels, registry=r)
        self.max_bytes_v040 = Gauge("vector_buffer_max_byte_size", "Buffer limit in bytes (v0.40)", labels, registry=r)
        # component-level
        comp = ["component_id", "component_kind", "component_type"]
        self._comp = {"component_id": buffer_id, "component_kind": "sink", "component_type": "pulsar"}
        self.component_errors = Counter("vector_component_errors", "Sink errors", comp + ["error_type"], registry=r)
        self.component_discarded = Counter("vector_component_discarded_events", "Events the sink dropped",
                                           comp + ["intentional"], registry=r)
        self.component_sent = Counter("vector_component_sent_events", "Events the sink delivered", comp, registry=r)
        for c in (self.received_events, self.received_bytes, self.sent_events, self.sent_bytes, self.buffer_errors):
            c.labels(**self._labels)
        for flag in ("true", "false"):
            self.discarded_events.labels(**self._labels, intentional=flag)
            self.component_discarded.labels(**self._comp, intentional=flag)
        self.component_sent.labels(**self._comp)
        self.source_generated = Counter("vector_component_received_events", "Events a source generated",
                                        comp, registry=r)
        self._level(0, 0)

    def set_limits(self, max_events: int | None, max_size: int | None) -> None:
        self.max_size_events.labels(**self._labels).set(max_events or 0)
        self.max_events_v040.labels(**self._labels).set(max_events or 0)
        self.max_size_bytes.labels(**self._labels).set(max_size or 0)
        self.max_bytes_v040.labels(**self._labels).set(max_size or 0)

    def _level(self, events: int, nbytes: int) -> None:
        for g, v in ((self.size_events, events), (self.events_v040, events),
                     (self.size_bytes, nbytes), (self.bytes_v040, nbytes)):
            g.labels(**self._labels).set(v)

    def received(self, events: int, nbytes: int, level_events: int, level_bytes: int) -> None:
        self.received_events.labels(**self._labels).inc(events)
        self.received_bytes.labels(**self._labels).inc(nbytes)
        self._level(level_events, level_bytes)

    def sent(self, events: int, nbytes: int, level_events: int, level_bytes: int) -> None:
        self.sent_events.labels(**self._labels).inc(events)
        self.sent_bytes.labels(**self._labels).inc(nbytes)
        self._level(level_events, level_bytes)

    def discarded(self, events: int, intentional: bool) -> None:
        self.discarded_events.labels(**self._labels, intentional=str(intentional).lower()).inc(events)

    def write_waited(self, seconds: float) -> None:
        self.send_duration.labels(**self._labels).observe(seconds)

    def errors(self, n: int) -> None:
        self.buffer_errors.labels(**self._labels).inc(n)

    def sink_failed(self, events: int, error_type: str) -> None:
        self.component_errors.labels(**self._comp, error_type=error_type).inc()
        self.component_discarded.labels(**self._comp, intentional="false").inc(events)

    def generated(self, source_id: str) -> None:
        self.source_generated.labels(component_id=source_id, component_kind="source",
                                     component_type="demo_logs").inc()

    def sink_delivered(self, events: int) -> None:
        self.component_sent.labels(**self._comp).inc(events)
