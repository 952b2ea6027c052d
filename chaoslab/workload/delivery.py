"""Delivery check for VM agents: read a group's topic from the beginning and count, per VM, the
distinct sequence numbers its demo_logs source stamped on the events."""

from __future__ import annotations

import json

import pulsar

from chaoslab.workload import clientlog


def count_delivered(service_url: str, topic: str, hosts: list[str], quiet_secs: float = 5) -> dict[str, int]:
    """Distinct sequence numbers per VM host found in the topic (read from the beginning)."""
    seen: dict[str, set] = {h: set() for h in hosts}
    client = pulsar.Client(service_url, operation_timeout_seconds=30, logger=clientlog.logger())
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        while True:
            try:
                msg = reader.read_next(timeout_millis=int(quiet_secs * 1000))
            except pulsar.Timeout:
                break
            try:
                event = json.loads(msg.data())
                seq = int(event["message"].split(" ", 1)[0])
            except (ValueError, KeyError):
                continue
            seen.setdefault(event.get("host"), set()).add(seq)
    finally:
        client.close()
    return {h: len(s) for h, s in seen.items()}
