"""Sink buffers with Vector's semantics: a bounded queue between the source and the sink.

`when_full = "block"`: the writer waits until the sink has taken something out (backpressure up
to the source). `when_full = "drop_newest"`: the event being written is discarded and counted as
an intentional discard. Memory buffers are bounded by events (`max_events`) or bytes
(`max_size`); disk buffers by bytes, in append-only data files under
`<data_dir>/buffer/v2/<sink_id>/` that are deleted once fully read.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import threading
import time
import zlib
from pathlib import Path

from chaoslab.agent.config import BufferConfig
from chaoslab.agent.metrics import BufferMetrics

DATA_FILE_MAX_BYTES = 128 * 1024 * 1024
FLUSH_INTERVAL_SECS = 0.5
_RECORD_HEADER = struct.Struct("<II")  # length, crc32 (Vector uses CRC32C; zlib has CRC32)


class Buffer:
    """Common bookkeeping; subclasses store the records."""

    def __init__(self, config: BufferConfig, metrics: BufferMetrics):
        self.config = config
        self.metrics = metrics
        self._cond = threading.Condition()
        self._events = 0
        self._bytes = 0
        self._closed = False
        metrics.set_limits(config.max_events, config.max_size)

    def _fits(self, size: int) -> bool:
        if self._events == 0:
            return True  # one oversized event is still accepted, as Vector does
        if self.config.max_events is not None and self._events + 1 > self.config.max_events:
            return False
        if self.config.max_size is not None and self._bytes + size > self.config.max_size:
            return False
        return True

    def push(self, record: bytes) -> bool:
        """Write one event. Returns False if it was dropped (drop_newest on a full buffer)."""
        size = len(record)
        started = time.monotonic()
        with self._cond:
            while not self._fits(size):
                if self.config.when_full == "drop_newest":
                    self.metrics.discarded(1, intentional=True)
                    return False
                self._cond.wait(0.5)
                if self._closed:
                    return False
            self._store(record)
            self._events += 1
            self._bytes += size
            self.metrics.received(1, size, self._events, self._bytes)
            self.metrics.write_waited(time.monotonic() - started)
            self._cond.notify_all()
            return True

    def pop(self, max_events: int, timeout: float) -> list[bytes]:
        """Take up to max_events, waiting up to timeout for the first one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._events == 0 and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            records = self._take(min(max_events, self._events))
            self._events -= len(records)
            self._bytes -= sum(len(r) for r in records)
            self.metrics.sent(len(records), sum(len(r) for r in records), self._events, self._bytes)
            self._cond.notify_all()
            return records

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return self._events

    def _store(self, record: bytes) -> None:
        raise NotImplementedError

    def _take(self, n: int) -> list[bytes]:
        raise NotImplementedError


class MemoryBuffer(Buffer):
    def __init__(self, config: BufferConfig, metrics: BufferMetrics):
        super().__init__(config, metrics)
        self._queue: collections.deque[bytes] = collections.deque()

    def _store(self, record: bytes) -> None:
        self._queue.append(record)

    def _take(self, n: int) -> list[bytes]:
        return [self._queue.popleft() for _ in range(n)]


class DiskBuffer(Buffer):
    """Append-only data files + a small JSON ledger; records survive an agent restart."""

    def __init__(self, config: BufferConfig, metrics: BufferMetrics, data_dir: str, sink_id: str):
        super().__init__(config, metrics)
        self.dir = Path(data_dir) / "buffer" / "v2" / sink_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.dir / "buffer.lock", "w")
        self._ledger_path = self.dir / "buffer.db"
        ledger = self._load_ledger()
        self._write_file, self._read_file = ledger["write_file"], ledger["read_file"]
        self._read_offset = ledger["read_offset"]
        self._writer = open(self._data_path(self._write_file), "ab")
        self._reader = None
        self._last_flush = time.monotonic()
        self._recover()

    def _data_path(self, n: int) -> Path:
        return self.dir / f"buffer-data-{n}.dat"

    def _load_ledger(self) -> dict:
        try:
            return json.loads(self._ledger_path.read_text())
        except (OSError, ValueError):
            return {"write_file": 0, "read_file": 0, "read_offset": 0}

    def _save_ledger(self) -> None:
        tmp = self._ledger_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"write_file": self._write_file, "read_file": self._read_file,
                                   "read_offset": self._read_offset}))
        os.replace(tmp, self._ledger_path)

    def _recover(self) -> None:
        """Count records left unread by a previous run."""
        n, offset = self._read_file, self._read_offset
        while n <= self._write_file:
            path = self._data_path(n)
            if path.exists():
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    while header := fh.read(_RECORD_HEADER.size):
                        if len(header) < _RECORD_HEADER.size:
                            break
                        length, _ = _RECORD_HEADER.unpack(header)
                        fh.seek(length, os.SEEK_CUR)
                        self._events += 1
                        self._bytes += length
            n, offset = n + 1, 0
        self.metrics.received(0, 0, self._events, self._bytes)

    def _store(self, record: bytes) -> None:
        if self._writer.tell() + len(record) + _RECORD_HEADER.size > DATA_FILE_MAX_BYTES:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._write_file += 1
            self._writer = open(self._data_path(self._write_file), "ab")
            self._save_ledger()
        self._writer.write(_RECORD_HEADER.pack(len(record), zlib.crc32(record)) + record)
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_SECS:
            self._writer.flush()
            os.fsync(self._writer.fileno())  # an I/O error here ends the agent, as in Vector
            self._last_flush = time.monotonic()

    def _take(self, n: int) -> list[bytes]:
        self._writer.flush()
        out: list[bytes] = []
        while len(out) < n:
            if self._reader is None:
                self._reader = open(self._data_path(self._read_file), "rb")
                self._reader.seek(self._read_offset)
            header = self._reader.read(_RECORD_HEADER.size)
            if len(header) < _RECORD_HEADER.size:
                if self._read_file >= self._write_file:
                    break
                self._reader.close()
                self._data_path(self._read_file).unlink(missing_ok=True)  # fully read
                self._reader, self._read_file, self._read_offset = None, self._read_file + 1, 0
                continue
            length, crc = _RECORD_HEADER.unpack(header)
            record = self._reader.read(length)
            self._read_offset = self._reader.tell()
            if zlib.crc32(record) != crc:
                self.metrics.errors(1)
                continue
            out.append(record)
        self._save_ledger()
        return out


def make_buffer(config: BufferConfig, metrics: BufferMetrics, data_dir: str, sink_id: str) -> Buffer:
    if config.type == "disk":
        return DiskBuffer(config, metrics, data_dir, sink_id)
    return MemoryBuffer(config, metrics)
