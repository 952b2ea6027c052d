"""Run the agent: `python -m chaoslab.agent --config /etc/vector/vector.toml`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from prometheus_client import start_http_server

from chaoslab.agent import config as agent_config
from chaoslab.agent.buffer import make_buffer
from chaoslab.agent.metrics import BufferMetrics
from chaoslab.agent.sink import PulsarSinkRunner, SinkBuildError
from chaoslab.agent.source import DemoLogs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaoslab-agent", description=__doc__)
    parser.add_argument("--config", "-c", default=os.environ.get("VECTOR_CONFIG", "/etc/vector/vector.toml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("chaoslab.agent")
    try:
        cfg = agent_config.load(args.config)
    except agent_config.ConfigError as exc:
        print(f"chaoslab-agent: configuration error: {exc}", file=sys.stderr)
        return 78
    metrics = BufferMetrics(cfg.sink.id)
    if cfg.metrics_address:
        host, _, port = cfg.metrics_address.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=metrics.registry)
    buffer = make_buffer(cfg.sink.buffer, metrics, cfg.data_dir, cfg.sink.id)
    sink = PulsarSinkRunner(cfg.sink, buffer, metrics)
    try:
        sink.build()
    except SinkBuildError as exc:
        print(f"chaoslab-agent: {exc}", file=sys.stderr)
        return 1
    log.info("sink %s -> %s (%s buffer, when_full=%s)", cfg.sink.id, cfg.sink.topic,
             cfg.sink.buffer.type, cfg.sink.buffer.when_full)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=sink.run, name="sink", daemon=True).start()

    def produce(src) -> None:
        gen = DemoLogs(src.id, src.format, src.sequence, lines=src.lines)
        sent, next_at = 0, time.monotonic()
        while not stop.is_set() and (src.count is None or sent < src.count):
            metrics.generated(src.id)
            buffer.push(gen.next_event())  # blocks when the buffer is full and when_full=block
            sent += 1
            next_at += src.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.monotonic()

    for src in cfg.sources.values():
        if src.id in cfg.sink.inputs:
            threading.Thread(target=produce, args=(src,), name=f"source-{src.id}", daemon=True).start()
    stop.wait()
    log.info("stopping")
    buffer.close()
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
