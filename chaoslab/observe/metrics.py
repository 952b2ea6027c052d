"""The one /metrics reader: a Prometheus text page parsed with prometheus_client's parser,
keeping the exporter's own metric names (Pulsar's, Vector's). Samples are summed over labels,
except the labels named in `split_by`, which become part of the key: `name{label=value}`."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from chaoslab import http


def parse(text: str, wanted: tuple[str, ...], split_by: tuple[str, ...] = ()) -> dict[str, float]:
    # Pulsar's pages are large: keep only the lines of the wanted families before parsing.
    prefixes = tuple(w.removesuffix("_total") for w in wanted)
    lines = [line for line in text.splitlines()
             if line.startswith(prefixes) or (line.startswith("# TYPE ") and line[7:].startswith(prefixes))]
    out: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            if sample.name not in wanted:
                continue
            key = sample.name
            for label in split_by:
                if label in sample.labels:
                    key += f"{{{label}={sample.labels[label]}}}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


def scrape(url: str, wanted: tuple[str, ...], split_by: tuple[str, ...] = (), timeout: float = 3) -> dict[str, float] | None:
    """The wanted metrics from `url`, or None when the page did not answer 200."""
    resp = http.get(url, timeout=timeout)
    if resp.status != 200:
        return None
    return parse(resp.text, wanted, split_by)
