"""`type: rabbitmq-events`: the deployments' fallback (incident link 11) — orchestrator workers
publishing deployment events to RabbitMQ with publisher confirms, and consumers that ack.

- Publishers are spread over the nodes the way a load balancer in front of the cluster spreads
  clients (publisher i starts on node i mod N). Each waits for the broker's confirm before its
  next event, as an orchestrator that must know its event is safe does; a slow confirm therefore
  slows that worker. Latency is measured from the moment the event was *due* (its slot in the
  steady schedule), not from when it could finally be sent, so a stalled worker's backlog counts
  (no coordinated omission). The time the broker itself took is recorded beside it.
- A publisher whose connection fails reconnects to the next node and publishes the same event
  again (at-least-once: a duplicate is legal, a confirmed event that never arrives is loss).
- Every event carries an id (AMQP message_id); sends, confirms, failures and deliveries go into
  the same History the Pulsar workload uses, so `no-loss` judges both.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr

from chaoslab.spec.base import Workload, register
from chaoslab.workload import loss
from chaoslab.workload.history import History


def _pika():
    import pika
    import pika.exceptions
    return pika


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


class ConfirmStats:
    """Confirms (with due-time latency, broker latency and the node the publisher was on),
    deliveries and failures in a sliding window."""

    def __init__(self, horizon_secs: float = 120):
        self._confirms: collections.deque = collections.deque()   # (t, latency_ms, broker_ms, node)
        self._other: collections.deque = collections.deque()      # (t, kind)
        self._lock = threading.Lock()
        self._horizon = horizon_secs
        self.totals: collections.Counter = collections.Counter()

    def _trim(self, now: float) -> None:
        for dq in (self._confirms, self._other):
            while dq and dq[0][0] < now - self._horizon:
                dq.popleft()

    def confirm(self, latency_ms: float, broker_ms: float, node: int) -> None:
        now = time.time()
        with self._lock:
            self._confirms.append((now, latency_ms, broker_ms, node))
            self.totals["confirmed"] += 1
            self._trim(now)

    def count(self, kind: str) -> None:
        now = time.time()
        with self._lock:
            self._other.append((now, kind))
            self.totals[kind] += 1
            self._trim(now)

    def window(self, secs: float, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        since = now - secs
        with self._lock:
            confirms = [c for c in self._confirms if since <= c[0] <= now]
            other = collections.Counter(k for t, k in self._other if since <= t <= now)
        lat = [c[1] for c in confirms]
        broker = [c[2] for c in confirms]
        per_node: dict[int, list[float]] = {}
        for c in confirms:
            per_node.setdefault(c[3], []).append(c[1])
        p50, p99 = quantile(lat, 0.5), quantile(lat, 0.99)
        return {"confirms": len(confirms), "confirms_per_sec": round(len(confirms) / secs, 1),
                "confirm_p50_ms": None if p50 is None else round(p50, 1),
                "confirm_p99_ms": None if p99 is None else round(p99, 1),
                "broker_p99_ms": None if not broker else round(quantile(broker, 0.99), 1),
                "p99_ms_by_node": {f"node-{n}": round(quantile(v, 0.99), 1) for n, v in sorted(per_node.items())},
                "consumed": other["consumed"], "consumed_per_sec": round(other["consumed"] / secs, 1),
                "publish_failed": other["publish_failed"], "reconnects": other["reconnect"]}


class _Worker(threading.Thread):
    def __init__(self, owner: "RabbitmqEvents", index: int, node: int, name: str):
        super().__init__(name=name, daemon=True)
        self.owner, self.index, self.node = owner, index, node
        self.conn = None
        self.channel = None

    def connect(self) -> None:
        """Connect to the current node, else the next ones (each tried once per round)."""
        pika = _pika()
        o = self.owner
        last: Exception | None = None
        for shift in range(len(o._urls)):
            node = (self.node - 1 + shift) % len(o._urls) + 1
            params = pika.URLParameters(o._urls[node - 1])
            params.heartbeat = 30
            params.socket_timeout = 5
            params.blocked_connection_timeout = o.confirm_timeout_secs
            params.connection_attempts = 1
            try:
                self.conn = pika.BlockingConnection(params)
                self.channel = self.conn.channel()
                if isinstance(self, _Publisher):
                    # publisher confirms: basic_publish returns only once the broker confirmed
                    # (or raises NackError / UnroutableError); without this it returns at once
                    self.channel.confirm_delivery()
                self.node = node
                return
            except Exception as exc:  # pika's AMQPConnectionError and socket errors
                last = exc
            if o._stop.is_set():
                break
        raise ConnectionError(f"no RabbitMQ node answered: {last}")

    def close(self) -> None:
        try:
            if self.conn is not None and self.conn.is_open:
                self.conn.close()
        except Exception:
            pass
        self.conn = self.channel = None

    def reconnect(self) -> None:
        self.close()
        self.owner._stats.count("reconnect")
        self.node = self.node % len(self.owner._urls) + 1     # the next node first
        while not self.owner._stop.is_set():
            try:
                self.connect()
                return
            except ConnectionError:
                self.owner._stop.wait(1)


class _Publisher(_Worker):
    def run(self) -> None:
        pika = _pika()
        o = self.owner
        every = o.publishers / o.rate
        began = time.time() + self.index * every / o.publishers   # stagger the workers
        props_base = dict(delivery_mode=2, content_type="application/json")
        seq = 0
        pending_id: str | None = None
        try:
            self.connect()
        except ConnectionError:
            self.reconnect()
        while not o._stop.is_set() and not o._producing_stopped.is_set():
            due = began + seq * every
            delay = due - time.time()
            if delay > 0 and o._producing_stopped.wait(delay):
                break
            event_id = pending_id or f"{o._run}-p{self.index}-{seq}"
            queue = o.queue_names[(self.index + seq) % len(o.queue_names)]   # each worker uses every queue
            if pending_id is None:
                o._history.add("send", event_id, topic=queue)
            body = (f'{{"id":"{event_id}","due":{due:.3f},"kind":"deployment"}}'.ljust(o.payload_bytes)).encode()
            sent = time.time()
            try:
                if self.channel is None:
                    raise ConnectionError("not connected")
                self.channel.basic_publish("", queue, body,
                                           pika.BasicProperties(message_id=event_id, **props_base), mandatory=True)
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as exc:
                o._history.add("fail", event_id, topic=queue, detail=type(exc).__name__)
                o._stats.count("publish_failed")
                pending_id = event_id      # refused: publish it again
                o._stop.wait(0.2)
                continue
            except Exception as exc:       # connection or channel lost: unknown outcome, retry elsewhere
                o._history.add("fail", event_id, topic=queue, detail=type(exc).__name__)
                o._stats.count("publish_failed")
                pending_id = event_id
                self.reconnect()
                continue
            done = time.time()
            o._history.add("ack", event_id, topic=queue)
            o._confirmed(event_id)
            o._stats.confirm((done - due) * 1000, (done - sent) * 1000, self.node)
            pending_id = None
            seq += 1
        self.close()


class _Consumer(_Worker):
    def run(self) -> None:
        o = self.owner
        while not o._stop.is_set():
            try:
                if self.channel is None:
                    self.connect()
                self.channel.basic_qos(prefetch_count=o.prefetch)
                queue = o.queue_names[self.index % len(o.queue_names)]
                for method, props, _body in self.channel.consume(queue, inactivity_timeout=1):
                    if o._stop.is_set():
                        break
                    if method is None:
                        continue
                    o._history.add("recv", props.message_id, topic=queue)
                    o._delivered(props.message_id)
                    o._stats.count("consumed")
                    o._last_delivery = time.time()
                    self.channel.basic_ack(method.delivery_tag)
            except Exception:
                if o._stop.is_set():
                    break
                self.reconnect()
        self.close()


@register("workload")
class RabbitmqEvents(Workload):
    type: Literal["rabbitmq-events"] = "rabbitmq-events"

    @classmethod
    def report_blocks(cls, summary: dict) -> list[tuple]:
        return [("p", loss.loss_words(summary["loss"]))] if (summary or {}).get("loss") else []
    queue: str = Field("deployment-events", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    queues: Annotated[int, Field(ge=1, le=100, description="queues <queue>-1..N, queue i declared through node "
                                 "i mod nodes (a quorum queue's leader sits on the declaring node), so leaders "
                                 "are spread as in a cluster with many queues; every publisher uses every queue")] = 3
    queue_type: Literal["quorum", "classic-mirrored", "classic"] = Field(
        "quorum", description="quorum (Raft, majority confirms); classic-mirrored (ha-mode all: every "
                              "mirror confirms); classic (one node)")
    rate: Annotated[float, Field(ge=1, le=10_000, description="events/s over all publishers")] = 60.0
    publishers: Annotated[int, Field(ge=1, le=100)] = 6
    consumers: Annotated[int, Field(ge=1, le=100)] = 3
    prefetch: Annotated[int, Field(ge=1, le=10_000)] = 50
    payload_bytes: Annotated[int, Field(ge=64, le=1_000_000)] = 512
    confirm_timeout_secs: Annotated[float, Field(ge=1, le=600)] = 60.0
    drain_timeout_secs: Annotated[float, Field(ge=0, le=3600, description="after publishing stops, wait this long at "
                                               "most for every confirmed event to arrive; then the queues are "
                                               "counted: empty, what is missing is lost; else unknown")] = 60.0
    _history: History | None = PrivateAttr(None)
    _stats: ConfirmStats | None = PrivateAttr(None)
    _workers: list = PrivateAttr(default_factory=list)
    _stop: threading.Event = PrivateAttr(default_factory=threading.Event)
    _producing_stopped: threading.Event = PrivateAttr(default_factory=threading.Event)
    _urls: list = PrivateAttr(default_factory=list)
    _run: str = PrivateAttr("")
    _last_delivery: float = PrivateAttr(0.0)
    _ids_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _received_ids: set = PrivateAttr(default_factory=set)
    _outstanding: set = PrivateAttr(default_factory=set)    # confirmed, not received yet
    _duplicates: int = PrivateAttr(0)

    def _confirmed(self, event_id: str) -> None:
        with self._ids_lock:
            if event_id not in self._received_ids:
                self._outstanding.add(event_id)

    def _delivered(self, event_id: str | None) -> None:
        if event_id is None:
            return
        with self._ids_lock:
            if event_id in self._received_ids:
                self._duplicates += 1
            self._received_ids.add(event_id)
            self._outstanding.discard(event_id)

    @property
    def backlog(self) -> int:
        """Confirmed, not received yet: distinct events (a duplicate does not stand in for another)."""
        with self._ids_lock:
            return len(self._outstanding)

    def queue_depths(self) -> dict[str, int | None]:
        """Messages in each queue (ready; with no consumer left, unacknowledged ones are back in it), read
        with a passive declare through any node that answers; None for a queue none could count."""
        pika = _pika()
        depths: dict[str, int | None] = {q: None for q in self.queue_names}
        for url in self._urls:
            if all(v is not None for v in depths.values()):
                break
            try:
                conn = pika.BlockingConnection(pika.URLParameters(url))
            except Exception:
                continue
            try:
                for q in [q for q, v in depths.items() if v is None]:
                    try:
                        depths[q] = conn.channel().queue_declare(q, passive=True).method.message_count
                    except Exception:
                        if not conn.is_open:
                            break
            finally:
                try:
                    conn.close()
                except Exception:
                    pass
        return depths

    @property
    def queue_names(self) -> list[str]:
        return [self.queue] if self.queues == 1 else [f"{self.queue}-{i}" for i in range(1, self.queues + 1)]

    def declare(self, ctx) -> dict:
        """Queue i declared through node i (mod nodes): a quorum queue's leader, a classic queue's
        master, is placed on the declaring node. classic-mirrored gets an ha-mode=all policy
        (through node 1's rabbitmqctl) before any queue exists."""
        pika = _pika()
        if self.queue_type == "classic-mirrored":
            code, out = ctx.lab.rabbitmqctl(1, "set_policy", "--apply-to", "queues", "chaoslab-ha", f"^{self.queue}",
                                            '{"ha-mode":"all","ha-sync-mode":"automatic"}')
            if code != 0:
                raise RuntimeError(f"rabbitmqctl set_policy failed: {out[-200:]}")
        placed = {}
        for i, name in enumerate(self.queue_names):
            node = i % len(self._urls) + 1
            conn = pika.BlockingConnection(pika.URLParameters(self._urls[node - 1]))
            try:
                args = {"x-queue-type": "quorum"} if self.queue_type == "quorum" else {}
                conn.channel().queue_declare(name, durable=True, arguments=args)
            finally:
                conn.close()
            placed[name] = f"node-{node}"
        return {"queues": placed, "queue_type": self.queue_type}

    def start(self, ctx) -> None:
        nodes = ctx.plan.lab.rabbitmq_nodes
        self._urls = [ctx.settings.rabbitmq_amqp_url(n) for n in range(1, nodes + 1)]
        self._run = f"{ctx.variant.name}-{ctx.experiment.seed}"
        self._history, self._stats = History(), ConfirmStats()
        self._stop.clear()
        self._producing_stopped.clear()
        declared = self.declare(ctx)
        ctx.event("workload-ready", **declared, publishers=self.publishers, consumers=self.consumers, rate=self.rate)
        self._workers = [_Consumer(self, i, i % nodes + 1, f"rmq-consumer-{i}") for i in range(self.consumers)]
        self._workers += [_Publisher(self, i, i % nodes + 1, f"rmq-publisher-{i}") for i in range(self.publishers)]
        for w in self._workers:
            w.start()

    def client_window(self, window_secs: float) -> dict:
        """What the orchestrators saw over the last window (the rabbitmq-client probe samples it)."""
        if self._stats is None:
            return {}
        out = self._stats.window(window_secs)
        acked, received = self._stats.totals["confirmed"], self._stats.totals["consumed"]
        out.update(window_secs=window_secs, confirmed_total=acked, consumed_total=received,
                   backlog=self.backlog, duplicates_total=self._duplicates,
                   publishers_by_node={f"node-{n}": sum(1 for w in self._workers if isinstance(w, _Publisher) and w.node == n)
                                       for n in range(1, len(self._urls) + 1)})
        return out

    def stop(self, ctx) -> dict:
        if self._stats is None:
            return {}
        self._producing_stopped.set()
        for w in self._workers:
            if isinstance(w, _Publisher):
                w.join(self.confirm_timeout_secs + 10)
        # drain: until every confirmed event has arrived (distinct ids), or the declared timeout
        deadline = time.time() + self.drain_timeout_secs
        while self.backlog and time.time() < deadline:
            time.sleep(0.5)
        self.close(ctx)
        self._history.books(*self.books())
        report = loss.check(self._history)
        self._history.save(ctx.run_dir / f"history-{ctx.variant.name}.jsonl")
        return {"loss": report.summary(), "queues": self.queue_names, "queue_type": self.queue_type,
                "confirmed": self._stats.totals["confirmed"], "consumed": self._stats.totals["consumed"],
                "reconnects": self._stats.totals["reconnect"]}

    def books(self) -> tuple[bool, str]:
        """Whether the books close once the consumers are gone: every confirmed event received, or
        every queue counted empty (what is missing then is provably lost)."""
        alive = [w.name for w in self._workers if w.is_alive()]
        if alive:  # a publisher may still get a confirm, a consumer may hold unacknowledged events
            return False, f"workers still running after the stop: {', '.join(alive[:5])}"
        missing = self.backlog
        if not missing:
            return True, "all-delivered"
        depths = self.queue_depths()
        if all(d == 0 for d in depths.values()):
            return True, "broker-empty"
        return False, (f"timeout after {self.drain_timeout_secs:.0f} s: {missing} confirmed events not received; "
                       f"queues still holding or not counted: {({q: d for q, d in depths.items() if d != 0})}")

    def close(self, ctx) -> None:
        self._producing_stopped.set()
        self._stop.set()
        for w in self._workers:
            w.join(15)
