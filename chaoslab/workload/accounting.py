"""Per-event delivery accounting for the VM agents, closed per VM with no clamping.

Every sequence number 0..generated-1 that a VM's agent stamped ends in exactly one bucket:

- delivered: found in the group's topic (at least once; further copies are counted as duplicates);
- dropped_by_policy: not delivered, and the agent's ledger says `when_full = drop_newest` dropped it;
- failed_sends: not delivered, and the ledger says the sink gave up on its batch;
- held_at_stop: not delivered, and the ledger says it was still in the buffer when the agent stopped;
- lost: not delivered and nobody accounted for it (a memory buffer's contents when the agent was
  killed, for instance).

delivered + dropped_by_policy + failed_sends + held_at_stop + lost == generated, per VM. Two more
figures are kept apart because they are not buckets: failed_but_delivered (the sink gave up, yet
the broker had stored the events: counted as delivered) and unexpected (delivered sequence numbers
the agent never reported generating; any is an accounting error, shown as such).

The agent's side comes from its files (agent/src/ledger.rs): `accounting/<source>.generated` (8
bytes, little-endian count) and `accounting/<source>.ledger` (lines `<kind> <first> <last>`).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field

import pulsar

from chaoslab.workload import clientlog

LEDGER_KINDS = ("dropped", "failed", "held")
SOURCE = "app_logs"  # the sequenced demo_logs source the lab's agent config declares


@dataclass
class AgentLedger:
    generated: int | None = None
    seqs: dict[str, set[int]] = field(default_factory=lambda: {k: set() for k in LEDGER_KINDS})

    @classmethod
    def parse(cls, generated: bytes | None, ledger: str | None) -> "AgentLedger":
        out = cls(generated=int.from_bytes(generated[:8], "little") if generated and len(generated) >= 8 else None)
        for line in (ledger or "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] in LEDGER_KINDS:
                first, last = int(parts[1]), int(parts[2])
                out.seqs[parts[0]].update(range(first, last + 1))
        return out


def read_agent_files(container, data_dir: str = "/var/lib/vector", source: str = SOURCE) -> AgentLedger:
    """The agent's accounting files, copied out of the (possibly stopped or OOM-killed) container."""
    try:
        stream, _ = container.get_archive(f"{data_dir}/accounting")
        blob = b"".join(stream)
    except Exception:
        return AgentLedger()
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[member.name.rsplit("/", 1)[-1]] = tar.extractfile(member).read()
    ledger = files.get(f"{source}.ledger")
    return AgentLedger.parse(files.get(f"{source}.generated"), ledger.decode() if ledger is not None else None)


def _seq_and_host(data: bytes) -> tuple[int, str] | None:
    """The sequence number and host of one event. Fast path for the agent's field order
    (message first, host after it); any other JSON shape is decoded in full."""
    try:
        if data.startswith(b'{"message":"'):
            seq = int(data[12:data.index(b" ", 12)])
            at = data.rindex(b'"host":"') + 8
            return seq, data[at:data.index(b'"', at)].decode()
        event = json.loads(data)
        return int(event["message"].split(" ", 1)[0]), event.get("host")
    except (ValueError, KeyError, AttributeError):
        return None


@dataclass
class TopicReading:
    seqs: dict[str, set[int]]
    duplicates: dict[str, int]
    unparsed: int = 0
    messages: int = 0


def read_topic(service_url: str, topic: str, hosts: list[str], quiet_secs: float = 5) -> TopicReading:
    """Every event in the topic from the beginning: distinct sequence numbers and duplicates per host."""
    reading = TopicReading({h: set() for h in hosts}, {h: 0 for h in hosts})
    client = pulsar.Client(service_url, operation_timeout_seconds=30, logger=clientlog.logger())
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest, receiver_queue_size=5000)
        while True:
            try:
                msg = reader.read_next(timeout_millis=int(quiet_secs * 1000))
            except pulsar.Timeout:
                break
            reading.messages += 1
            got = _seq_and_host(msg.data())
            if got is None:
                reading.unparsed += 1
                continue
            seq, host = got
            seen = reading.seqs.setdefault(host, set())
            if seq in seen:
                reading.duplicates[host] = reading.duplicates.get(host, 0) + 1
            else:
                seen.add(seq)
    finally:
        client.close()
    return reading


def ranges(seqs) -> list[list[int]]:
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and out[-1][1] + 1 == s:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def close_books(ledger: AgentLedger, delivered: set[int], duplicates: int = 0) -> dict:
    """One VM's books. Raises AssertionError if the buckets do not add up (they do by construction)."""
    generated = ledger.generated
    basis = "agent"
    if generated is None:  # no counter file: the most that can be said comes from the topic
        generated, basis = (max(delivered) + 1 if delivered else 0), "highest delivered"
    universe = range(generated)
    got = {s for s in delivered if s < generated}
    missing = set(universe).difference(got)
    dropped = missing & ledger.seqs["dropped"]
    failed = (missing & ledger.seqs["failed"]) - dropped
    held = (missing & ledger.seqs["held"]) - dropped - failed
    lost = missing - dropped - failed - held
    books = {"generated": generated, "delivered": len(got), "dropped_by_policy": len(dropped),
             "failed_sends": len(failed), "held_at_stop": len(held), "lost": len(lost),
             "duplicates": duplicates, "failed_but_delivered": len(ledger.seqs["failed"] & got),
             "unexpected": len(delivered) - len(got), "generated_from": basis,
             "lost_ranges": ranges(lost)[:20]}
    assert books["delivered"] + len(dropped) + len(failed) + len(held) + len(lost) == generated
    return books


BUCKETS = ("generated", "delivered", "dropped_by_policy", "failed_sends", "held_at_stop", "lost",
           "duplicates", "failed_but_delivered", "unexpected")
