//! Vector's internal metric names, exported in Prometheus text on the prometheus_exporter address.
//! Counters get `_total` on the page, as Vector's exporter writes them. Both the current buffer
//! gauges and the incident-era (Vector v0.40) ones are kept: buffer_events, buffer_byte_size,
//! buffer_max_event_size, the gauges dashboards of that era read.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    buffer: Labels,
    component: Labels,
    received_events: Family<Labels, Counter>,
    received_bytes: Family<Labels, Counter>,
    sent_events: Family<Labels, Counter>,
    sent_bytes: Family<Labels, Counter>,
    discarded_events: Family<Labels, Counter>,
    buffer_errors: Family<Labels, Counter>,
    send_duration: Family<Labels, Histogram>,
    size_events: Family<Labels, Gauge>,
    size_bytes: Family<Labels, Gauge>,
    max_size_events: Family<Labels, Gauge>,
    max_size_bytes: Family<Labels, Gauge>,
    events_v040: Family<Labels, Gauge>,
    bytes_v040: Family<Labels, Gauge>,
    max_events_v040: Family<Labels, Gauge>,
    max_bytes_v040: Family<Labels, Gauge>,
    component_errors: Family<Labels, Counter>,
    component_discarded: Family<Labels, Counter>,
    component_sent: Family<Labels, Counter>,
    source_generated: Family<Labels, Counter>,
}

fn with(labels: &Labels, extra: &[(&str, &str)]) -> Labels {
    let mut l = labels.clone();
    l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}

impl Metrics {
    pub fn new(sink_id: &str) -> Metrics {
        let mut registry = Registry::default();
        macro_rules! reg {
            ($name:expr, $help:expr, $metric:expr) => {{
                let m = $metric;
                registry.register($name, $help, m.clone());
                m
            }};
        }
        let hist = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 4.0, 10)));
        let m = Metrics {
            buffer: vec![("buffer_id".into(), sink_id.into()), ("stage".into(), "0".into())],
            component: vec![("component_id".into(), sink_id.into()), ("component_kind".into(), "sink".into()),
                            ("component_type".into(), "pulsar".into())],
            received_events: reg!("vector_buffer_received_events", "Events written to the buffer", Family::default()),
            received_bytes: reg!("vector_buffer_received_bytes", "Bytes written to the buffer", Family::default()),
            sent_events: reg!("vector_buffer_sent_events", "Events read from the buffer", Family::default()),
            sent_bytes: reg!("vector_buffer_sent_bytes", "Bytes read from the buffer", Family::default()),
            discarded_events: reg!("vector_buffer_discarded_events", "Events discarded by the buffer", Family::default()),
            buffer_errors: reg!("vector_buffer_errors", "Buffer errors", Family::default()),
            send_duration: reg!("vector_buffer_send_duration_seconds", "Time to write into the buffer", hist),
            size_events: reg!("vector_buffer_size_events", "Events in the buffer", Family::default()),
            size_bytes: reg!("vector_buffer_size_bytes", "Bytes in the buffer", Family::default()),
            max_size_events: reg!("vector_buffer_max_size_events", "Buffer limit in events", Family::default()),
            max_size_bytes: reg!("vector_buffer_max_size_bytes", "Buffer limit in bytes", Family::default()),
            events_v040: reg!("vector_buffer_events", "Events in the buffer (v0.40)", Family::default()),
            bytes_v040: reg!("vector_buffer_byte_size", "Bytes in the buffer (v0.40)", Family::default()),
            max_events_v040: reg!("vector_buffer_max_event_size", "Buffer limit in events (v0.40)", Family::default()),
            max_bytes_v040: reg!("vector_buffer_max_byte_size", "Buffer limit in bytes (v0.40)", Family::default()),
            component_errors: reg!("vector_component_errors", "Sink errors", Family::default()),
            component_discarded: reg!("vector_component_discarded_events", "Events the sink dropped", Family::default()),
            component_sent: reg!("vector_component_sent_events", "Events the sink delivered", Family::default()),
            source_generated: reg!("vector_component_received_events", "Events a source generated", Family::default()),
            registry,
        };
        // Families show up on the page before their first event, as the Python exporter's do.
        for c in [&m.received_events, &m.received_bytes, &m.sent_events, &m.sent_bytes, &m.buffer_errors] {
            let _ = c.get_or_create(&m.buffer);
        }
        for flag in ["true", "false"] {
            let _ = m.discarded_events.get_or_create(&with(&m.buffer, &[("intentional", flag)]));
            let _ = m.component_discarded.get_or_create(&with(&m.component, &[("intentional", flag)]));
        }
        let _ = m.component_sent.get_or_create(&m.component);
        m.level(0, 0);
        m
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding into a String cannot fail");
        out
    }

    pub fn set_limits(&self, max_events: Option<u64>, max_size: Option<u64>) {
        let (e, b) = (max_events.unwrap_or(0) as i64, max_size.unwrap_or(0) as i64);
        self.max_size_events.get_or_create(&self.buffer).set(e);
        self.max_events_v040.get_or_create(&self.buffer).set(e);
        self.max_size_bytes.get_or_create(&self.buffer).set(b);
        self.max_bytes_v040.get_or_create(&self.buffer).set(b);
    }

    pub fn level(&self, events: u64, bytes: u64) {
        self.size_events.get_or_create(&self.buffer).set(events as i64);
        self.events_v040.get_or_create(&self.buffer).set(events as i64);
        self.size_bytes.get_or_create(&self.buffer).set(bytes as i64);
        self.bytes_v040.get_or_create(&self.buffer).set(bytes as i64);
    }

    pub fn received(&self, events: u64, bytes: u64) {
        self.received_events.get_or_create(&self.buffer).inc_by(events);
        self.received_bytes.get_or_create(&self.buffer).inc_by(bytes);
    }

    pub fn sent(&self, events: u64, bytes: u64) {
        self.sent_events.get_or_create(&self.buffer).inc_by(events);
        self.sent_bytes.get_or_create(&self.buffer).inc_by(bytes);
    }

    pub fn discarded(&self, events: u64, intentional: bool) {
        let flag = if intentional { "true" } else { "false" };
        self.discarded_events.get_or_create(&with(&self.buffer, &[("intentional", flag)])).inc_by(events);
    }

    pub fn write_waited(&self, secs: f64) {
        self.send_duration.get_or_create(&self.buffer).observe(secs);
    }

    pub fn errors(&self, n: u64) {
        self.buffer_errors.get_or_create(&self.buffer).inc_by(n);
    }

    pub fn sink_failed(&self, events: u64, error_type: &str) {
        self.component_errors.get_or_create(&with(&self.component, &[("error_type", error_type)])).inc();
        self.component_discarded.get_or_create(&with(&self.component, &[("intentional", "false")])).inc_by(events);
    }

    pub fn sink_delivered(&self, events: u64) {
        self.component_sent.get_or_create(&self.component).inc_by(events);
    }

    pub fn generated(&self, source_id: &str) {
        let labels: Labels = vec![("component_id".into(), source_id.into()), ("component_kind".into(), "source".into()),
                                  ("component_type".into(), "demo_logs".into())];
        self.source_generated.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_carries_vectors_names() {
        let m = Metrics::new("bus");
        m.generated("app");
        m.discarded(3, true);
        m.sink_failed(2, "request_failed");
        let page = m.encode();
        for needle in [
            "vector_buffer_discarded_events_total{buffer_id=\"bus\",stage=\"0\",intentional=\"true\"} 3",
            "vector_component_discarded_events_total{component_id=\"bus\",component_kind=\"sink\",component_type=\"pulsar\",intentional=\"false\"} 2",
            "vector_component_received_events_total{component_id=\"app\",component_kind=\"source\",component_type=\"demo_logs\"} 1",
            "vector_buffer_size_events{buffer_id=\"bus\",stage=\"0\"} 0",
            "vector_buffer_events{buffer_id=\"bus\",stage=\"0\"} 0",
        ] {
            assert!(page.contains(needle), "missing {needle} in\n{page}");
        }
    }

    /// The current names and the Vector v0.40 ones, on the page before the first event; the limits
    /// under both generations' names.
    #[test]
    fn both_generations_of_names_are_on_the_page() {
        let m = Metrics::new("bus");
        m.set_limits(Some(500), None);
        let page = m.encode();
        let names: std::collections::HashSet<&str> = page.lines().filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next()).collect();
        for name in ["vector_buffer_received_events_total", "vector_buffer_sent_events_total",
                     "vector_buffer_discarded_events_total", "vector_buffer_size_events",
                     "vector_buffer_max_size_events", "vector_buffer_events", "vector_buffer_byte_size",
                     "vector_buffer_max_event_size", "vector_component_sent_events_total"] {
            assert!(names.contains(name), "missing {name} in\n{page}");
        }
        for needle in ["vector_buffer_max_size_events{buffer_id=\"bus\",stage=\"0\"} 500",
                       "vector_buffer_max_event_size{buffer_id=\"bus\",stage=\"0\"} 500",
                       "vector_buffer_max_size_bytes{buffer_id=\"bus\",stage=\"0\"} 0",
                       "vector_buffer_max_byte_size{buffer_id=\"bus\",stage=\"0\"} 0"] {
            assert!(page.contains(needle), "missing {needle} in\n{page}");
        }
    }
}
