import threading

import pytest

from chaoslab.agent import config
from chaoslab.agent.buffer import DiskBuffer, MemoryBuffer
from chaoslab.agent.config import BufferConfig, ConfigError
from chaoslab.agent.metrics import BufferMetrics

BASE = """
[sources.app]
type = "demo_logs"
interval = 0.1
[sinks.bus]
type = "pulsar"
inputs = ["app"]
endpoint = "${PULSAR_ENDPOINT:-pulsar://proxy:6650}"
topic = "t"
encoding.codec = "json"
"""


def parse(buffer_toml: str = "", env=None):
    return config.parse(BASE + buffer_toml, env or {})


def test_defaults_follow_vector():
    cfg = parse()
    assert cfg.sink.buffer == BufferConfig("memory", 500, None, "block")
    assert cfg.sink.endpoint == "pulsar://proxy:6650"


def test_env_interpolation():
    assert parse(env={"PULSAR_ENDPOINT": "pulsar://x:1"}).sink.endpoint == "pulsar://x:1"


@pytest.mark.parametrize("table,message", [
    ('[sinks.bus.buffer]\nfoo = 1', "unknown key"),
    ('[sinks.bus.buffer]\ntype = "ram"', "type must be"),
    ('[sinks.bus.buffer]\nwhen_full = "overflow_now"', "when_full must be"),
    ('[sinks.bus.buffer]\nmax_events = 10\nmax_size = 1000', "cannot be set together"),
    ('[sinks.bus.buffer]\ntype = "disk"', "max_size is required"),
    ('[sinks.bus.buffer]\ntype = "disk"\nmax_size = 1000', "at least 268435488"),
    ('[sinks.bus.buffer]\ntype = "disk"\nmax_events = 10\nmax_size = 300000000', "memory buffers only"),
    ('[sinks.bus.buffer]\nmax_events = 0', "positive integer"),
])
def test_invalid_buffers_are_rejected_with_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        parse(table)


def test_invalid_toml_and_missing_env():
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.parse("[sources", {})
    with pytest.raises(ConfigError, match="NOPE is not set"):
        config.parse('x = "${NOPE}"', {})


def test_drop_newest_discards_and_counts():
    m = BufferMetrics("bus")
    buf = MemoryBuffer(BufferConfig("memory", 3, None, "drop_newest"), m)
    results = [buf.push(b"e%d" % i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert len(buf) == 3
    assert m.registry.get_sample_value("vector_buffer_discarded_events_total",
                                       {"buffer_id": "bus", "stage": "0", "intentional": "true"}) == 2
    assert m.registry.get_sample_value("vector_buffer_size_events", {"buffer_id": "bus", "stage": "0"}) == 3
    assert buf.pop(10, 0.1) == [b"e0", b"e1", b"e2"]


def test_block_waits_until_the_sink_takes_events():
    buf = MemoryBuffer(BufferConfig("memory", 2, None, "block"), BufferMetrics("bus"))
    buf.push(b"a")
    buf.push(b"b")
    done = threading.Event()
    threading.Thread(target=lambda: (buf.push(b"c"), done.set()), daemon=True).start()
    assert not done.wait(0.3), "a full blocking buffer accepted a write"
    assert buf.pop(1, 0.1) == [b"a"]
    assert done.wait(2)
    assert buf.pop(5, 0.1) == [b"b", b"c"]


def test_memory_buffer_bounded_by_bytes():
    buf = MemoryBuffer(BufferConfig("memory", None, 10, "drop_newest"), BufferMetrics("bus"))
    assert buf.push(b"123456") and not buf.push(b"123456") and buf.push(b"1234")


def test_disk_buffer_persists_and_deletes_read_files(tmp_path):
    cfg = BufferConfig("disk", None, 268_435_488, "block")
    buf = DiskBuffer(cfg, BufferMetrics("bus"), str(tmp_path), "bus")
    for i in range(10):
        buf.push(b"event-%d" % i)
    assert buf.pop(3, 0.1) == [b"event-0", b"event-1", b"event-2"]
    buf._writer.flush()
    again = DiskBuffer(cfg, BufferMetrics("bus"), str(tmp_path), "bus")  # agent restart
    assert len(again) == 7
    assert again.pop(100, 0.1) == [b"event-%d" % i for i in range(3, 10)]
    assert (tmp_path / "buffer/v2/bus/buffer.db").exists()


def test_vector_metric_names_both_generations():
    m = BufferMetrics("bus")
    m.set_limits(500, None)
    names = {s.name for fam in m.registry.collect() for s in fam.samples}
    for name in ("vector_buffer_received_events_total", "vector_buffer_sent_events_total",
                 "vector_buffer_discarded_events_total", "vector_buffer_size_events",
                 "vector_buffer_max_size_events", "vector_buffer_events", "vector_buffer_byte_size",
                 "vector_buffer_max_event_size", "vector_component_sent_events_total"):
        assert name in names, name


def test_lab_agent_config_parses():
    from chaoslab.settings import REPO_ROOT
    cfg = config.load(str(REPO_ROOT / "compose/vector/vector.toml"), {})
    assert cfg.sink.topic == "persistent://public/default/vm-telemetry"
    assert cfg.metrics_address == "0.0.0.0:9598"
