"""Per-event delivery accounting for the VM agents, closed per VM with no clamping.

Every sequence number 0..generated-1 that a VM's agent stamped ends in exactly one bucket:

- delivered: found in the group's topic (at least once; further copies are counted as duplicates);
- dropped_by_policy: not delivered, and the agent's ledger says `when_full = drop_newest` dropped it;
- failed_sends: not delivered, and the ledger says the sink gave up on its batch;
- held_at_stop: not delivered, and the ledger says it was still in the agent's hands when it stopped;
- lost: not delivered and nobody accounted for it although the books could close: the agent wrote
  its ledger to the end (it stopped cleanly), or it died by itself (OOM kill, crash) with a memory
  buffer, whose contents died with it; and the topic was read to its end;
- unknown: not delivered and not accounted for, because the books could not close: the lab killed
  the agent before it had written down what it held, its files or exit state could not be read,
  it died with a disk buffer (whose contents were not read), or the topic was not read to its end.
  Reported apart from `lost`, with the reason (`unknown_because`): never a loss, never a pass.

delivered + dropped_by_policy + failed_sends + held_at_stop + lost + unknown == generated, per VM.
Without the agent's counter `generated` is only a lower bound (the highest delivered number + 1):
the books stay open (`books_closed` False) even when nothing in that range is missing, since the
tail beyond it cannot be seen. Two more figures are kept apart because they are not buckets:
failed_but_delivered (the sink gave up, yet the broker had stored the events: counted as
delivered) and unexpected (delivered sequence numbers the agent never reported generating; any is
an accounting error, shown as such).

The agent's side comes from its files (agent/src/ledger.rs): `accounting/<source>.generated` (8
bytes, little-endian count) and `accounting/<source>.ledger` (lines `<kind> <first> <last>`).
"""

from __future__ import annotations

import io
import json
import tarfile
import time
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
    complete: bool = False       # read to the topic's end (nothing more available)
    error: str | None = None
    secs: float = 0.0


def read_topic(service_url: str, topic: str, hosts: list[str], timeout_secs: float = 300,
               read_timeout_ms: int = 5000) -> TopicReading:
    """Every event in the topic from the beginning to its end: distinct sequence numbers and
    duplicates per host. The end is where the reader has no message available any more (the
    agents are stopped: nothing is produced). A quiet spell is not the end: the reader asks again
    until the end or until `timeout_secs` have passed; then `complete` is False and what was not
    read is unknown, not lost."""
    reading = TopicReading({h: set() for h in hosts}, {h: 0 for h in hosts})
    started = time.monotonic()
    deadline = started + timeout_secs
    client = None
    try:
        client = pulsar.Client(service_url, operation_timeout_seconds=30, logger=clientlog.logger())
        reader = client.create_reader(topic, pulsar.MessageId.earliest, receiver_queue_size=5000)
        while time.monotonic() < deadline:
            try:
                if not reader.has_message_available():
                    reading.complete = True
                    break
                msg = reader.read_next(timeout_millis=read_timeout_ms)
            except pulsar.Timeout:
                continue
            except Exception as exc:  # the broker or proxy answered with an error: ask again
                reading.error = f"{type(exc).__name__}: {exc}"[:200]
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
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
    except Exception as exc:  # no client or no reader: nothing could be read
        reading.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        clientlog.close_quietly(client)
    reading.secs = round(time.monotonic() - started, 1)
    if reading.complete:
        reading.error = None
    return reading


@dataclass
class AgentEnd:
    """How a VM's agent ended, as the engine saw it around the lab's stop."""
    running_at_stop: bool | None      # None: the container could not be read before the stop
    stop_timeout_secs: float          # the grace the stop gave it before the engine's SIGKILL
    stop_secs: float | None = None    # how long the stop took (None: not stopped by the lab, or it failed)
    stop_error: str | None = None
    status: str | None = None         # after the stop; None: unreadable
    exit_code: int | None = None
    oom_killed: bool = False

    def summary(self) -> dict:
        return dict(self.__dict__)


def unaccounted_are(end: AgentEnd, buffer_type: str) -> str | None:
    """None when the events an agent did not account for are lost; else why they are unknown.

    Lost needs a cause inside the system under test: the agent stopped cleanly (exit 0: it wrote
    down everything it still held, so what is missing went missing after it handed it over), or it
    died by itself (OOM kill, crash: before the stop or during its drain) with a memory buffer.
    The lab's own stop is never a loss: an agent the engine had to kill at the end of the stop's
    grace could not write down what it held."""
    if end.status is None or end.exit_code is None:
        return "the container's exit state could not be read"
    if end.status != "exited":
        return f"the agent was still {end.status} after the stop"
    if end.exit_code == 0:
        return None
    how = f"exit code {end.exit_code}{', OOM-killed' if end.oom_killed else ''}"
    if end.running_at_stop is None:
        return f"the agent ended ({how}) but whether it was running when the lab stopped it is unknown"
    if end.running_at_stop:
        if end.stop_secs is None:
            return f"the lab's stop failed ({end.stop_error or 'no answer'}); the agent ended with {how}"
        if end.stop_secs >= end.stop_timeout_secs - 1:
            return (f"the lab's stop killed the agent after its {end.stop_timeout_secs:.0f} s grace ({how}) "
                    "before it had written down what it held")
    if buffer_type != "memory":
        return f"the agent died by itself ({how}) with a {buffer_type} buffer, whose contents were not read"
    return None


def ranges(seqs) -> list[list[int]]:
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and out[-1][1] + 1 == s:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def close_books(ledger: AgentLedger, delivered: set[int], duplicates: int = 0,
                unknown_because: str | None = None, crashed: bool = False) -> dict:
    """One VM's books. `unknown_because`: why the events nobody accounted for cannot be called
    lost (None: they are lost). `crashed`: the VM died with its hypervisor (a simulated panic):
    what it had not handed over is `lost_in_crash`, apart from `lost`. Raises AssertionError if
    the buckets do not add up (they do by construction)."""
    generated = ledger.generated
    basis = "agent"
    if generated is None:  # no counter file: the topic shows a lower bound, and nothing about the tail
        generated, basis = (max(delivered) + 1 if delivered else 0), "highest delivered (a lower bound)"
        unknown_because = unknown_because or "the agent's accounting files could not be read"
    universe = range(generated)
    got = {s for s in delivered if s < generated}
    missing = set(universe).difference(got)
    dropped = missing & ledger.seqs["dropped"]
    failed = (missing & ledger.seqs["failed"]) - dropped
    held = (missing & ledger.seqs["held"]) - dropped - failed
    unaccounted = missing - dropped - failed - held
    lost, unknown = (set(), unaccounted) if unknown_because else (unaccounted, set())
    in_crash, lost = (lost, set()) if crashed else (set(), lost)
    books = {"generated": generated, "delivered": len(got), "dropped_by_policy": len(dropped),
             "failed_sends": len(failed), "held_at_stop": len(held), "lost": len(lost),
             "lost_in_crash": len(in_crash), "unknown": len(unknown),
             "duplicates": duplicates, "failed_but_delivered": len(ledger.seqs["failed"] & got),
             "unexpected": len(delivered) - len(got), "generated_from": basis,
             "books_closed": unknown_because is None, "unknown_because": unknown_because,
             "lost_ranges": ranges(lost)[:20], "unknown_ranges": ranges(unknown)[:20]}
    assert books["delivered"] + len(dropped) + len(failed) + len(held) + len(lost) + len(in_crash) + len(unknown) == generated
    return books


BUCKETS = ("generated", "delivered", "dropped_by_policy", "failed_sends", "held_at_stop", "lost", "lost_in_crash", "unknown",
           "duplicates", "failed_but_delivered", "unexpected")
