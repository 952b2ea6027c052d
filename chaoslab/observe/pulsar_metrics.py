"""Read a Pulsar /metrics page with prometheus_client's parser, keeping Pulsar's own names."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# Summed over labels; names as Pulsar exposes them (counters carry _total in the sample name).
BROKER_METRICS = (
    "pulsar_broker_lookup_pending_requests",
    "pulsar_broker_topic_load_pending_requests",
    "pulsar_broker_lookup_answers_total",
    "pulsar_broker_lookup_failures_total",
    "pulsar_broker_lookup_redirects_total",
    "pulsar_topic_load_failed_count",
    "pulsar_broker_topics_count",
    "pulsar_producers_count",
    "pulsar_subscriptions_count",
    "pulsar_sunit_state_chn_owned_su_total",
    "pulsar_sunit_state_chn_owner_lookup_total",
    "pulsar_sunit_state_chn_inactive_broker_cleanup_ops_total",
    "pulsar_lb_unload_broker_breakdown_total",
    "pulsar_lb_assign_broker_breakdown_total",
)
PROXY_METRICS = (
    "pulsar_proxy_active_connections",
    "pulsar_proxy_new_connections_total",
    "pulsar_proxy_rejected_connections_total",
    "pulsar_proxy_lookup_requests_total",
    "pulsar_proxy_rejected_lookup_requests_total",
    "pulsar_proxy_partitions_metadata_requests_total",
    "pulsar_proxy_rejected_partitions_metadata_requests_total",
)


def parse(text: str, wanted: tuple[str, ...]) -> dict[str, float]:
    prefixes = tuple(w.removesuffix("_total") for w in wanted)
    lines = [line for line in text.splitlines()
             if line.startswith(prefixes) or (line.startswith("# TYPE ") and line[7:].startswith(prefixes))]
    out: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            if sample.name in wanted:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def scrape(url: str, wanted: tuple[str, ...], timeout: float = 3) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return parse(resp.read().decode(errors="replace"), wanted)
    except Exception:
        return None
