"""The step that makes the flip's split decide in one run: every workload topic looked up at one
broker, answers counted honestly (an unanswered lookup is never counted as owned), and the
`wait` step that declares an exposure."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

from chaoslab.http import Response
from chaoslab.spec.experiment import load
from chaoslab.steps import pulsar as pulsar_steps
from chaoslab.steps.pulsar import LookupEveryBundle
from chaoslab.steps.services import Wait
from chaoslab.workload.layout import Layout
from chaoslab.workload.pulsar_topics import PulsarTopics


class Ctx:
    def __init__(self, topics):
        self.workload = SimpleNamespace(every_topic=lambda: topics)
        self.lab = SimpleNamespace(broker_admin_url=lambda n: f"http://broker-{n}:8080",
                                   proxy_admin_url="http://proxy:8080")
        self.events = []
        self.stop_after = None      # stop (the run aborted) after this many checks

    def should_stop(self):
        if self.stop_after is None:
            return False
        self.stop_after -= 1
        return self.stop_after < 0

    def event(self, name, **fields):
        self.events.append((name, fields))


def fake_http(monkeypatch, owner_of, bundle_of=lambda t: "0x00000000_0x40000000", loads=lambda t: True):
    asked = []

    def get(url, timeout=10, follow_redirects=True):
        asked.append(url)
        topic = url.split("/lookup/v2/topic/persistent/")[-1].split("/admin/v2/persistent/")[-1]
        topic = topic.removesuffix("/stats")
        if url.endswith("/stats"):
            return Response(200, "{}") if loads(topic) else Response(500, "Failed to load topic")
        owner = owner_of(topic)
        if owner is None:
            return Response(0, error="timeout", seconds=timeout)
        return Response(200, json.dumps({"brokerUrl": f"pulsar://{owner}:6650"}))

    monkeypatch.setattr(pulsar_steps.http, "get", get)
    monkeypatch.setattr(pulsar_steps.http, "get_json",
                        lambda url, timeout=10: bundle_of(url.split("/persistent/")[1].removesuffix("/bundle")))
    return asked


TOPICS = [f"persistent://t/ns/app-{i}" for i in range(6)]


def test_every_topic_is_asked_of_the_named_broker_and_answers_are_counted(monkeypatch):
    asked = fake_http(monkeypatch, lambda t: "broker-1" if t.endswith(("0", "1", "2")) else "broker-3",
                      bundle_of=lambda t: "0x0_0x8" if t.endswith(("0", "1")) else "0x8_0xf")
    out = LookupEveryBundle(id="l", broker=1).run(Ctx(TOPICS))
    assert out["ok"] is True
    assert out["asked"] == "broker-1" and out["topics"] == 6 and out["bundles"] == 2
    assert out["outcomes"] == {"owned": 6}
    assert out["owners"] == {"broker-1": 3, "broker-3": 3}
    assert all(u.startswith("http://broker-1:8080/lookup/v2/topic/persistent/t/ns/") for u in asked)
    assert {u.rsplit("/", 1)[-1] for u in asked if not u.endswith("/bundle")} == {f"app-{i}" for i in range(6)}


def test_an_unanswered_lookup_is_not_counted_as_owned_and_can_fail_the_step(monkeypatch):
    fake_http(monkeypatch, lambda t: None if t.endswith(("4", "5")) else "broker-2")
    out = LookupEveryBundle(id="l").run(Ctx(TOPICS))       # through the proxy; nothing required
    assert out["asked"] == "proxy" and out["outcomes"] == {"no-answer": 2, "owned": 4}
    assert out["ok"] is True and out["answered_share"] == round(4 / 6, 3)
    strict = LookupEveryBundle(id="l", min_answered=0.9).run(Ctx(TOPICS))
    assert strict["ok"] is False and "2 of 6 lookups at proxy named no owner" in strict["error"]


def test_load_counts_topics_that_cannot_be_loaded(monkeypatch):
    fake_http(monkeypatch, lambda t: "broker-2", loads=lambda t: not t.endswith("3"))
    out = LookupEveryBundle(id="l", load=True).run(Ctx(TOPICS))
    assert out["loaded"] == 5 and out["not_loaded"] == 1
    assert out["not_loaded_examples"][0].startswith("persistent://t/ns/app-3: HTTP 500")
    assert out["ok"] is False and "1 of 6 topics could not be loaded through proxy" in out["error"]
    fake_http(monkeypatch, lambda t: "broker-2")
    assert LookupEveryBundle(id="l", load=True).run(Ctx(TOPICS))["ok"] is True


def test_the_late_rollback_is_decided_by_whether_every_topic_loads_again():
    """Road: the post-rollback measurement was `ok_required: false`, so topics that could no longer
    be loaded left the verdict PASS."""
    exp = load(Path(__file__).resolve().parents[2] / "experiments" / "late-rollback.yaml")
    step = next(s for s in exp.plan("late-rollback").method if s.id == "topics-after-rollback")
    assert step.load and step.ok_required and step.min_answered == 1.0


def test_no_topics_is_a_failed_step_not_a_silent_pass(monkeypatch):
    fake_http(monkeypatch, lambda t: "broker-1")
    out = LookupEveryBundle(id="l", broker=1).run(Ctx([]))
    assert out["ok"] is False and "no topics" in out["error"]


def test_the_workload_lists_every_partition():
    w = PulsarTopics(tenants=2, topics_per_tenant=5, partitioned_every=5)
    w._layout = Layout.generate(2, 5, 5, seed=1)
    every = w.every_topic()
    assert len(every) == 2 * 4 + 2 * 3                  # 4 plain topics and one 3-partition topic per tenant
    assert sum(t.endswith("-partition-2") for t in every) == 2
    assert not any(t.endswith("metrics-004") for t in every)   # a partitioned topic is asked by partition


def test_wait_watches_for_its_time_and_says_when_it_was_cut_short():
    class WatchCtx:
        def __init__(self, aborted):
            self.aborted = aborted

        def watch(self, secs):
            time.sleep(0.01)
            return not self.aborted

    assert Wait(id="w", secs=5).run(WatchCtx(False))["cut_short"] is False
    assert Wait(id="w", secs=5).run(WatchCtx(True))["cut_short"] is True


def test_the_headline_looks_up_every_bundle_at_the_first_flipped_broker():
    exp = load(Path(__file__).resolve().parents[2] / "experiments" / "transfer-shedder.yaml")
    plan = exp.plan("flip")
    ids = [s.id for s in plan.method]
    assert ids.index("lookup-every-bundle") == ids.index("roll-broker-1") + 1
    step = plan.method[ids.index("lookup-every-bundle")]
    assert step.broker == 1


def test_a_bundle_that_could_not_be_named_is_counted_unknown_not_left_out(monkeypatch):
    fake_http(monkeypatch, lambda t: "broker-1", bundle_of=lambda t: None if t.endswith(("4", "5")) else "0x0_0x8")
    out = LookupEveryBundle(id="l", broker=1).run(Ctx(TOPICS))
    assert out["bundles"] == 1 and out["bundle_unknown_topics"] == 2
    fake_http(monkeypatch, lambda t: "broker-1", bundle_of=lambda t: "")      # a 200 with an empty body
    assert LookupEveryBundle(id="l", broker=1).run(Ctx(TOPICS))["bundle_unknown_topics"] == 6


def test_a_wait_cut_short_is_not_ok():
    class Aborted:
        def watch(self, secs):
            return False
    out = Wait(id="w", secs=300).run(Aborted())
    assert out["ok"] is False and out["cut_short"] is True and "cut short" in out["error"]


def test_an_aborted_run_stops_asking_and_says_how_many_were_not_asked(monkeypatch):
    topics = [f"persistent://t/ns/topic-{i}" for i in range(20)]
    fake_http(monkeypatch, owner_of=lambda t: "broker-1")
    ctx = Ctx(topics)
    ctx.stop_after = 5
    r = LookupEveryBundle(broker=1, clients=1).run(ctx)
    assert r["ok"] is False and r["outcomes"] == {"not asked": 15, "owned": 5}
    assert "stopped asking: the run aborted (15 of 20 topics not asked)" == r["error"]
    assert r["unanswered_examples"] == []
