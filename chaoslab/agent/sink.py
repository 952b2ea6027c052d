"""Vector's pulsar sink, as the stand-in implements it.

- Start-up: the client connects with exponential backoff (10 ms * 2^n, capped at 30 s, with
  jitter, `connection_retry_options.max_retries` attempts); if the broker never answers the sink
  fails to build and the agent exits non-zero, as Vector does.
- Run time: one batch in flight at a time. While a send fails the sink pulls nothing more, so the
  buffer fills and its `when_full` applies; a batch whose send fails is dropped and counted
  (component_errors_total, component_discarded_events_total{intentional="false"}).
"""

from __future__ import annotations

import logging
import socket
import threading

import pulsar
from tenacity import retry, stop_after_attempt, wait_random_exponential

from chaoslab.agent.buffer import Buffer
from chaoslab.agent.config import PulsarSink
from chaoslab.agent.metrics import BufferMetrics

log = logging.getLogger("chaoslab.agent.sink")

COMPRESSION = {
    "none": pulsar.CompressionType.NONE, "lz4": pulsar.CompressionType.LZ4,
    "zlib": pulsar.CompressionType.ZLib, "zstd": pulsar.CompressionType.ZSTD,
    "snappy": pulsar.CompressionType.SNAPPY,
}


class SinkBuildError(RuntimeError):
    pass


class PulsarSinkRunner:
    def __init__(self, config: PulsarSink, buffer: Buffer, metrics: BufferMetrics):
        self.config = config
        self.buffer = buffer
        self.metrics = metrics
        self.stop = threading.Event()
        self.client = None
        self.producer = None

    def build(self) -> None:
        cfg = self.config

        @retry(stop=stop_after_attempt(cfg.connection_max_retries),
               wait=wait_random_exponential(multiplier=0.01, max=30), reraise=True)
        def connect():
            client = pulsar.Client(cfg.endpoint, operation_timeout_seconds=30,
                                   connection_timeout_ms=int(cfg.connection_timeout_secs * 1000),
                                   logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
            try:
                producer = client.create_producer(
                    cfg.topic, producer_name=cfg.producer_name or f"{socket.gethostname()}-{cfg.id}",
                    compression_type=COMPRESSION.get(cfg.compression, pulsar.CompressionType.NONE),
                    batching_enabled=True, batching_max_messages=cfg.batch_max_events,
                    batching_max_publish_delay_ms=10, send_timeout_millis=30000,
                    block_if_queue_full=True,
                )
            except Exception:
                client.close()
                raise
            return client, producer

        try:
            self.client, self.producer = connect()
        except Exception as exc:
            raise SinkBuildError(f"sink {cfg.id}: cannot connect to {cfg.endpoint}: {exc}") from exc

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self.buffer.pop(self.config.batch_max_events, timeout=0.5)
            if batch:
                self._send(batch)

    def _send(self, batch: list[bytes]) -> None:
        results: list[object] = []
        done = threading.Event()

        def callback(res, _msg_id):
            results.append(res)
            if len(results) == len(batch):
                done.set()

        try:
            for record in batch:
                self.producer.send_async(record, callback)
            self.producer.flush()
            done.wait(60)
        except Exception as exc:  # the client raises on timeout / closed connection
            log.warning("send failed: %s", exc)
        ok = sum(1 for r in results if r == pulsar.Result.Ok)
        if ok:
            self.metrics.sink_delivered(ok)
        failed = len(batch) - ok
        if failed:
            self.metrics.sink_failed(failed, "request_failed")

    def close(self) -> None:
        self.stop.set()
        try:
            if self.producer is not None:
                self.producer.flush()
            if self.client is not None:
                self.client.close()
        except Exception:
            pass
