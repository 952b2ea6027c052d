"""Lookup-heavy clients: open and close readers over many topics and reconnect often, so that
lookups keep flowing through the proxy to the brokers while brokers are being rolled (the
incident's lookup queue filled from exactly this kind of traffic)."""

from __future__ import annotations

import threading
import time

import pulsar

from chaoslab.workload import clientlog
from chaoslab.workload.layout import Layout
from chaoslab.workload.stats import ClientStats


class LookupClients:
    def __init__(self, service_url: str, layout: Layout, stats: ClientStats, clients: int = 2,
                 topics: int = 200, reconnect_secs: float = 5.0):
        self.service_url = service_url
        names = [t.fqn for t in layout.topics]
        self.topics = [names[i % len(names)] for i in range(max(topics, 1))]
        self.stats = stats
        self.clients = clients
        self.reconnect_secs = reconnect_secs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.clients):
            t = threading.Thread(target=self._run, args=(i,), name=f"lookup-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)

    def _run(self, index: int) -> None:
        position = index * 37
        while not self._stop.is_set():
            client = pulsar.Client(self.service_url, operation_timeout_seconds=10,
                                   logger=clientlog.logger())
            self.stats.reconnect()
            until = time.monotonic() + self.reconnect_secs
            try:
                while not self._stop.is_set() and time.monotonic() < until:
                    topic = self.topics[position % len(self.topics)]
                    position += 1
                    token = self.stats.lookup_begin(topic)
                    try:
                        client.get_topic_partitions(topic)
                        reader = client.create_reader(topic, pulsar.MessageId.latest)
                        reader.close()
                        self.stats.lookup(True, topic=topic, token=token)
                    except Exception as exc:  # pulsar.exceptions.* (TooManyLookupRequestException, Timeout, ...)
                        self.stats.lookup(False, exc, topic=topic, token=token)
                        self._stop.wait(0.2)
            finally:
                try:
                    client.close()
                except Exception:
                    pass
