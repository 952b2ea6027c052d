"""Workload driver: produce at a set rate through the proxy, consume, record everything.

Each message carries a unique id (`<run>-<n>`); every send, ack, failure and delivery goes into
the History, which chaoslab.workload.loss turns into "acked but never delivered" and "duplicated".
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import pulsar

from chaoslab.wait import wait_until
from chaoslab.workload import clientlog
from chaoslab.workload.history import History
from chaoslab.workload.layout import Layout
from chaoslab.workload.stats import ClientStats

log = logging.getLogger("chaoslab.workload")


@dataclass
class WorkloadConfig:
    rate: float = 500.0              # messages per second, over all topics
    messages: int | None = 10_000    # stop after this many (None: run until stop())
    payload_bytes: int = 200
    subscription: str = "chaoslab-check"
    send_timeout_ms: int = 30_000
    operation_timeout_s: int = 30


class WorkloadDriver:
    def __init__(self, service_url: str, layout: Layout, config: WorkloadConfig | None = None,
                 history: History | None = None, run_id: str | None = None,
                 stats: ClientStats | None = None):
        self.service_url = service_url
        self.layout = layout
        self.config = config or WorkloadConfig()
        self.history = history or History()
        self.stats = stats or ClientStats()
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self._stop = threading.Event()
        self._client: pulsar.Client | None = None
        self._consumer = None
        self._producers: dict[str, object] = {}
        self._consumer_thread: threading.Thread | None = None
        self._producer_thread: threading.Thread | None = None
        self.produced = 0
        self.acked = 0
        self.received = 0                            # deliveries, duplicates included
        self.duplicates = 0                          # deliveries of a message already received
        self._received_ids: set[str] = set()
        self._outstanding: dict[str, str] = {}       # acknowledged, not received yet: id -> topic
        self._count_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def connect(self) -> None:
        self._client = pulsar.Client(self.service_url, operation_timeout_seconds=self.config.operation_timeout_s,
                                     logger=clientlog.logger())
        topics = [t.fqn for t in self.layout.topics]
        # subscribe first (earliest position) so nothing produced is missed
        self._consumer = self._client.subscribe(
            topics, self.config.subscription, consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=1000)
        for t in self.layout.topics:
            self._producers[t.fqn] = self._client.create_producer(
                t.fqn, send_timeout_millis=self.config.send_timeout_ms, block_if_queue_full=True,
                batching_enabled=True, batching_max_publish_delay_ms=5)

    def start(self) -> None:
        if self._client is None:
            self.connect()
        self._consumer_thread = threading.Thread(target=self._consume, name="consumer", daemon=True)
        self._consumer_thread.start()
        self._producer_thread = threading.Thread(target=self._produce, name="producer", daemon=True)
        self._producer_thread.start()

    def wait_produced(self, timeout: float | None = None) -> bool:
        self._producer_thread.join(timeout)
        return not self._producer_thread.is_alive()

    def stop_producing(self, flush_secs: float = 45) -> None:
        self._stop.set()
        if self._producer_thread:
            self._producer_thread.join(60)
        self._flush(flush_secs)

    def _flush(self, secs: float) -> None:
        """Flush every producer, but never wait longer than `secs` in all: on a cluster that
        cannot write (no bookie), the client's flush blocks with no end."""
        def flush_all():
            for p in list(self._producers.values()):
                try:
                    p.flush()
                except Exception:
                    pass
        t = threading.Thread(target=flush_all, name="flush", daemon=True)
        t.start()
        t.join(secs)

    def drain(self, timeout: float = 180, interval: float = 0.5,
              broker_backlog: Callable[[str], int | None] | None = None, broker_every_secs: float = 5) -> tuple[bool, str]:
        """Wait, at most `timeout` seconds, until the books close, and write down how it ended
        (History.books). They close when no send is pending and either every acknowledged message
        was received ("all-delivered") or the broker reports nothing left for the subscription on
        every topic still missing one ("broker-empty": what is missing is provably lost).
        `broker_backlog(topic)`: messages the subscription still has there, None when unknown
        (asked at most every `broker_every_secs`). A quiet consumer is not the end: after the
        timeout what is missing is unknown, not lost."""
        asked = {"at": float("-inf")}

        def closed() -> str | None:
            if self.pending_sends() != 0:
                return None
            with self._count_lock:
                topics = set(self._outstanding.values())
            if not topics:
                return "all-delivered"
            if broker_backlog is None or time.monotonic() - asked["at"] < broker_every_secs:
                return None
            asked["at"] = time.monotonic()
            return "broker-empty" if all(broker_backlog(t) == 0 for t in sorted(topics)) else None
        waited = wait_until(closed, timeout, interval=interval)
        by = waited.value if waited.ok else (f"timeout after {timeout:.0f} s: {self.backlog} acknowledged messages "
                                             f"not received, {self.pending_sends()} sends pending")
        self.history.books(waited.ok, by)
        return waited.ok, by

    def _acked(self, msg_id: str, topic: str) -> None:
        with self._count_lock:
            self.acked += 1
            if msg_id not in self._received_ids:
                self._outstanding[msg_id] = topic

    def _delivered(self, msg_id: str | None) -> None:
        with self._count_lock:
            self.received += 1
            if msg_id is None:
                return
            if msg_id in self._received_ids:
                self.duplicates += 1
            self._received_ids.add(msg_id)
            self._outstanding.pop(msg_id, None)

    @property
    def backlog(self) -> int:
        """Acknowledged by Pulsar but not yet received by the consumer: distinct messages (a
        duplicate delivery of one message does not stand in for another)."""
        with self._count_lock:
            return len(self._outstanding)

    def pending_sends(self) -> int:
        done = sum(1 for op in self.history.ops if op.kind in ("ack", "fail"))
        return self.produced - done

    def close(self) -> None:
        self._stop.set()
        self._consume_stop = True
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        if self._consumer_thread:
            self._consumer_thread.join(10)

    # -- loops -----------------------------------------------------------------------------------
    def _produce(self) -> None:
        topics = [t.fqn for t in self.layout.topics]
        interval = 1.0 / self.config.rate if self.config.rate > 0 else 0
        pad = "x" * max(0, self.config.payload_bytes - 80)
        next_at = time.monotonic()
        n = 0
        while not self._stop.is_set() and (self.config.messages is None or n < self.config.messages):
            topic = topics[n % len(topics)]
            msg_id = f"{self.run_id}-{n}"
            payload = json.dumps({"id": msg_id, "t": time.time(), "pad": pad}).encode()
            self.history.add("send", msg_id, topic)
            sent_at = time.monotonic()

            def callback(res, _mid, msg_id=msg_id, topic=topic, sent_at=sent_at):
                if res == pulsar.Result.Ok:
                    self.history.add("ack", msg_id, topic)
                    self._acked(msg_id, topic)
                    self.stats.publish(True, (time.monotonic() - sent_at) * 1000, topic=topic)
                else:
                    self.history.add("fail", msg_id, topic, str(res))
                    self.stats.publish(False, error=res, topic=topic)
            try:
                self._producers[topic].send_async(payload, callback, properties={"id": msg_id})
            except Exception as exc:  # queue full / closed producer
                self.history.add("fail", msg_id, topic, type(exc).__name__)
                self.stats.publish(False, error=exc, topic=topic)
            n += 1
            self.produced = n
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        self._flush(30)

    def _consume(self) -> None:
        while True:
            try:
                msg = self._consumer.receive(timeout_millis=500)
            except pulsar.Timeout:
                if getattr(self, "_consume_stop", False):
                    return
                continue
            except Exception:
                if getattr(self, "_consume_stop", False) or self._client is None:
                    return
                time.sleep(0.2)
                continue
            msg_id = (msg.properties() or {}).get("id")
            if msg_id is None:
                try:
                    msg_id = json.loads(msg.data()).get("id")
                except ValueError:
                    msg_id = None
            self.history.add("recv", msg_id, msg.topic_name())
            self._delivered(msg_id)
            try:
                self._consumer.acknowledge(msg)
            except Exception:
                pass
