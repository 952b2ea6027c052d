"""Issue 10's pieces without containers: the three views and their classification, lookup
answers told apart, hanging lookups, split ownership, logs kept before a container is replaced."""

import time

from chaoslab import http
from chaoslab.checks.brokers import GreenButBroken, LookupRejections, SplitOwnership, UnownedTopics
from chaoslab.lab.cluster import Lab
from chaoslab.probes.views import classify, workload_view
from chaoslab.pulsar_lookup import base_topic, lookup_outcome, owner_host
from chaoslab.settings import LabSettings
from chaoslab.workload.stats import ClientStats


def test_workload_view_and_classification():
    assert workload_view({"lookup_ok": 10, "publish_ok": 50})[0] == "ok"
    assert workload_view({})[0] == "no-data"
    state, why = workload_view({"lookup_ok": 1, "lookup_failed": 5})
    assert state == "failing" and "lookups 1/6 ok" in why
    assert workload_view({"lookup_stuck": 2, "publish_ok": 100})[0] == "failing"
    assert workload_view({"publish_ok": 1, "publish_failed": 9})[0] == "failing"
    assert classify(True, True, "failing") == "green-but-broken"
    assert classify(True, True, "ok") == classify(True, True, "no-data") == "healthy"
    assert classify(True, False, "ok") == "shallow-only"
    assert classify(False, False, "failing") == "down"
    assert classify(None, True, "ok") == "unknown"


def test_green_but_broken_is_a_violation_naming_the_broker():
    sample = {"views": {"brokers": {
        "broker-1": {"state": "green-but-broken", "detail": "3 lookups hanging"},
        "broker-2": {"state": "healthy"}}}}
    [v] = GreenButBroken().violations(sample)
    assert v.subject == "broker-1" and "3 lookups hanging" in v.detail
    assert GreenButBroken(max=1).violations(sample) == []


def test_a_rejected_or_unanswered_lookup_is_not_an_unowned_topic():
    from chaoslab.spec.base import load_package
    load_package("chaoslab.probes")   # the sample keys come from the registered probes (alone, too)
    owned = http.Response(307, "", {"Location": "http://broker-2:8080/lookup/v2/topic/x"})
    assert lookup_outcome(owned) == "owned" and owner_host(owned) == "broker-2"
    assert owner_host(http.Response(200, '{"brokerUrl": "pulsar://broker-3:6650"}')) == "broker-3"
    assert lookup_outcome(http.Response(503, '{"reason": "Failed due to too many pending lookup requests"}')) == "rejected"
    assert lookup_outcome(http.Response(429, "")) == "rejected"
    assert lookup_outcome(http.Response(0, "", error="timeout", seconds=5)) == "no-answer"
    assert lookup_outcome(http.Response(404, "Namespace bundle not served")) == "unowned"
    own = {"sampled": 10, "unowned": 0, "rejected": 1, "no_answer": 0, "asked": "http://b1",
           "failed_sample": [{"topic": "persistent://t/n/app-001", "answer": "HTTP 503: too many pending lookup requests"}]}
    sample = {"cluster": {"ownership": own}}
    assert UnownedTopics().violations(sample) == []
    [v] = LookupRejections().violations(sample)
    assert v.value == 1 and "too many pending lookup requests" in v.detail and "1 rejected" in v.detail
    assert base_topic("persistent://t/n/x-partition-0") == "persistent://t/n/x" == base_topic("persistent://t/n/x")


def test_split_ownership_is_a_bundle_two_brokers_say_they_own():
    import time as _t

    from chaoslab.probes.pulsar import PulsarBrokers
    p = PulsarBrokers()
    now = _t.time()
    p._owned = {"broker-1": (now, {"orga/logs/0x00_0x40", "pulsar/lab/broker-1:8080/0x0_0xf"}),
                "broker-2": (now, {"orga/logs/0x00_0x40"}), "broker-3": (now - 60, {"orga/logs/0x00_0x40"})}
    assert p.owned_overlap() == [{"bundle": "orga/logs/0x00_0x40", "brokers": ["broker-1", "broker-2"]}]
    assert p.owned_answered() == 2
    [v] = SplitOwnership().violations({"cluster": {"split": p.owned_overlap(), "split_brokers_answered": 2}})
    assert "orga/logs/0x00_0x40 owned by broker-1 and broker-2" in v.detail
    assert SplitOwnership().violations({"cluster": {"split": [], "split_brokers_answered": 3}}) == []
    # one broker answering cannot show a split: unknown, not holds
    j = SplitOwnership().judge({"cluster": {"split": [], "split_brokers_answered": 1}, "brokers": {"broker-1": {}}})
    assert j.outcome == "unknown" and "fewer than two brokers" in j.why


def test_hanging_lookups_and_per_topic_outcomes():
    st = ClientStats()
    token = st.lookup_begin("t1")
    st.lookup_begin("t2")
    st._in_flight[token] = (time.time() - 30, "t1")  # started 30 s ago, never finished
    st.publish(True, 5, topic="t2")
    st.publish(False, error="Timeout", topic="t2")
    assert st.stuck(10) == ["t1"] and st.window(10)["lookup_stuck"] == 1
    per = st.by_topic(10)
    assert per["t1"]["lookup_stuck"] == 1 and per["t2"]["publish_ok"] == 1 and per["t2"]["publish_failed"] == 1
    st.lookup(True, topic="t1", token=token)
    assert st.stuck(10) == []


class FakeContainer:
    def __init__(self, name, cid, text):
        self.name, self.id, self.status, self.text = name, cid, "running", text
        self.labels = {"com.docker.compose.service": name.split("-", 1)[1].rsplit("-", 1)[0]}

    def logs(self, timestamps=False, **kw):
        return self.text.encode()


def test_logs_of_every_incarnation_are_kept_before_a_recreate(tmp_path, monkeypatch):
    lab = Lab(LabSettings(), log=lambda m: None)
    monkeypatch.setattr("chaoslab.lab.cluster.STATE_DIR", tmp_path / "state")
    lab.state_dir = tmp_path / "state"
    lab.state_path = lab.state_dir / "state.json"
    incarnations = iter([FakeContainer("chaoslab-broker-1-1", "a" * 64, "first incarnation: failed to set the role"),
                         FakeContainer("chaoslab-broker-1-1", "b" * 64, "second incarnation")])
    current = {"c": next(incarnations)}
    events, composed = [], []
    monkeypatch.setattr(lab, "containers", lambda service=None, all=True: [current["c"]])

    def compose(*args, **kw):  # compose replaces the container: the old one and its log are gone
        composed.append(args)
        current["c"] = next(incarnations, current["c"])
    monkeypatch.setattr(lab, "compose", compose)
    built = []
    monkeypatch.setattr(lab, "build_images", lambda versions=None, **k: built.append((versions, k)) or {})
    lab.evidence_dir = tmp_path / "logs"
    lab.on_evidence = lambda name, **f: events.append((name, f))
    lab.set_broker(1, config={"x": "1"}, wait=False)
    lab.set_broker(1, version="3.2.3", config={"x": "2"}, wait=False)
    # a broker's new release builds its Pulsar image, never the VM agent's (a cargo build mid-run)
    assert built == [(["3.2.3"], {"agent": False})]
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == [f"chaoslab-broker-1-1-{'a' * 12}.log", f"chaoslab-broker-1-1-{'b' * 12}.log"]
    assert "failed to set the role" in (tmp_path / "logs" / files[0]).read_text()
    assert [e[0] for e in events] == ["logs-kept", "logs-kept"] and events[0][1]["reason"] == "broker recreated"
    assert len(composed) == 2


def test_concurrent_lookups_compare_only_answers_that_name_an_owner(monkeypatch):
    import threading

    from chaoslab.steps import pulsar as steps
    answers = {"partition-0": ["broker-1"], "partition-1": ["broker-2", "broker-3"]}
    calls = {}

    def fake_lookup(url, topic, timeout=5):
        key = topic.rsplit("-", 2)[-2] + "-" + topic.rsplit("-", 1)[-1]
        i = calls.get(key, 0)
        calls[key] = i + 1
        if i == 0:  # the first lookup of each partition: no answer at all (not a disagreement)
            return http.Response(0, "", error="reset")
        owners = answers[key]
        return http.Response(307, "", {"Location": f"http://{owners[i % len(owners)]}:8080/x"})
    monkeypatch.setattr(steps.http, "get", lambda url, timeout=10, follow_redirects=True: fake_lookup(url, url))
    monkeypatch.setattr(steps.http, "request", lambda *a, **k: http.Response(204, ""))
    ctx = type("Ctx", (), {})()
    ctx.lab = type("L", (), {"proxy_admin_url": "http://p", "broker_admin_url": lambda self, n: f"http://b{n}"})()
    ctx.settings = LabSettings()
    ctx.should_stop = lambda: False
    ctx.aborted = threading.Event()
    out = steps.ConcurrentLookups(partitions=2, clients=4, settle_timeout_secs=5).run(ctx)
    assert out["owners_settled"] and out["disagreeing_partitions"] == 1 and not out["ok"]
    assert "partition 1: broker-2, broker-3" in out["example"] and "different owners" in out["error"]
    answers["partition-1"] = ["broker-2"]
    calls.clear()
    assert steps.ConcurrentLookups(partitions=2, clients=4, settle_timeout_secs=5).run(ctx)["ok"]


def test_thread_dumps_once_per_episode_whatever_bad_states_it_passes_through():
    from chaoslab.monitor.evidence import ThreadDumps
    taken = []
    m = ThreadDumps(after_secs=3, shallow_only_after_secs=3, down_after_secs=5)
    m._ctx = type("C", (), {"lab": type("L", (), {"thread_dump": lambda self, b, reason: taken.append((b, reason))})()})()
    states = ["down", "down", "shallow-only", "shallow-only", "shallow-only", "healthy", "green-but-broken",
              "green-but-broken", "green-but-broken", "green-but-broken", "healthy", "down", "down", "shallow-only",
              "shallow-only", "healthy"]   # the last episode is a normal restart: no dump
    for s in states:
        m.on_sample({"views": {"brokers": {"broker-1": {"state": s, "detail": "d"}}}})
    m.stop(None)
    assert [b for b, _ in taken] == ["broker-1", "broker-1"]       # one per episode
    assert "shallow-only for 3 s" in taken[0][1] and "green-but-broken for 3 s" in taken[1][1]


def test_an_html_error_page_is_one_line_of_evidence():
    from chaoslab.http import Response, one_line
    page = ('<html>\n<head>\n<meta http-equiv="Content-Type"/>\n<title>Error 503 Service Unavailable</title>\n'
            '</head>\n<body><h2>HTTP ERROR 503</h2></body></html>')
    assert one_line(page) == "Error 503 Service Unavailable"
    assert one_line("too many\n  pending   lookups") == "too many pending lookups"
    assert Response(503, page).describe() == "HTTP 503: Error 503 Service Unavailable"


def test_ownership_is_asked_on_its_own_loop_so_a_slow_health_check_cannot_starve_it(monkeypatch):
    """A health check that takes 10 s during a roll used to delay each broker's ownedNamespaces
    answer past the comparison's freshness, leaving split-ownership unknown for seconds."""
    from types import SimpleNamespace

    from chaoslab.probes import pulsar as probes
    p = probes.PulsarBrokers()
    loops = []
    monkeypatch.setattr(probes.PulsarBrokers, "loop", lambda self, ctx, fn, period, *args: loops.append((fn.__name__, args)))
    ctx = SimpleNamespace(settings=SimpleNamespace(brokers=2))
    p.start(ctx)
    assert ("_ownership", (1,)) in loops and ("_ownership", (2,)) in loops
    monkeypatch.setattr(probes.http, "get_json", lambda url, timeout=5: {"t/ns/0x0_0x8": {}} if "ownedNamespaces" in url else None)
    ctx = SimpleNamespace(lab=SimpleNamespace(broker_admin_url=lambda n: f"http://b{n}"),
                          settings=SimpleNamespace(cluster="lab"))
    p._ownership(ctx, 1)
    assert p.owned_answered() == 1 and p.latest()["broker-1"]["owned_bundles"] == 1
    monkeypatch.setattr(probes.http, "get_json", lambda url, timeout=5: None)    # a failed answer keeps the last
    p._ownership(ctx, 1)                                                         # one, within its freshness
    assert p.owned_answered() == 1 and p.latest()["broker-1"]["owned_bundles"] is None
    p._owned["broker-1"] = (p._owned["broker-1"][0] - 16, p._owned["broker-1"][1])   # older than 15 s: out
    assert p.owned_answered() == 0 and p.owned_overlap() == []


def _cluster_ctx(shallow):
    from types import SimpleNamespace
    latest = {f"broker-{n}": {"shallow_ok": ok} for n, ok in shallow.items()}
    return SimpleNamespace(
        probe=lambda key: SimpleNamespace(latest=lambda: latest) if key == "brokers" else None,
        lab=SimpleNamespace(broker_admin_url=lambda n: f"http://b{n}", proxy_admin_url="http://proxy"),
        settings=SimpleNamespace(brokers=len(shallow)),
        workload=SimpleNamespace(sample_topics=lambda: [f"persistent://t/ns/app-{i}" for i in range(4)]))


def _fake_lookups(monkeypatch, answer_of):
    import json

    from chaoslab.http import Response
    from chaoslab.probes import pulsar as probes
    monkeypatch.setattr(probes.http, "get_json", lambda url, timeout=5: [])
    monkeypatch.setattr(probes, "scrape", lambda url, names: {})

    def lookup(url, fqn, timeout=5):
        kind = answer_of(url)
        if kind == "owned":
            return Response(200, json.dumps({"brokerUrl": "pulsar://broker-2:6650"}))
        return Response(0, error=kind, seconds=0.0 if kind != "timeout" else 5.0)
    monkeypatch.setattr(probes, "lookup", lookup)


def test_a_broker_that_is_not_there_is_passed_over_for_the_sampled_lookups(monkeypatch):
    """The sampled lookups went to the first broker whose last shallow check passed; when that one
    was being restarted every lookup was refused, and unowned-topics was unknown for seconds."""
    from chaoslab.probes.pulsar import PulsarCluster
    _fake_lookups(monkeypatch, lambda url: "refused" if url == "http://b1" else "owned")
    own = PulsarCluster().collect(_cluster_ctx({1: True, 2: True, 3: False}))["ownership"]
    assert own["asked"] == "http://b2" and own["passed_over"] == "http://b1"
    assert own["no_answer"] == 0 and own["unowned"] == 0


def test_a_broker_that_is_there_but_does_not_answer_is_not_passed_over(monkeypatch):
    """Timeouts are a hang's symptom: lookup-rejections must see them, not a second broker's answers."""
    from chaoslab.probes.pulsar import PulsarCluster
    _fake_lookups(monkeypatch, lambda url: "timeout" if url == "http://b1" else "owned")
    own = PulsarCluster().collect(_cluster_ctx({1: True, 2: True}))["ownership"]
    assert own["asked"] == "http://b1" and own["passed_over"] is None and own["no_answer"] == 4


class _Exec:
    def __init__(self, code, output=b""):
        self.exit_code, self.output = code, output


class _Container:
    name, id, status = "chaoslab-broker-1-1", "abcdef1234567890", "running"

    def __init__(self, jcmd_output):
        self.jcmd_output, self.put, self.signals = jcmd_output, [], []

    def exec_run(self, cmd, **kwargs):
        if cmd[0] == "test":
            return _Exec(1 if not self.put else 0)
        return _Exec(0 if self.jcmd_output else 1, self.jcmd_output)

    def put_archive(self, path, data):
        self.put.append(path)
        return True

    def kill(self, signal):
        self.signals.append(signal)

    def logs(self, **kwargs):
        return b'Full thread dump (SIGQUIT)\n"main" #1\nHeap\n'


def _lab_with(container, tmp_path, monkeypatch):
    from chaoslab.lab import cluster, images
    lab = cluster.Lab.__new__(cluster.Lab)
    lab.evidence_dir, lab.log = tmp_path, lambda *_: None
    lab.containers = lambda service: [container]
    events = []
    lab._evidence = lambda name, **f: events.append((name, f))
    runtime = tmp_path / "jcmd-runtime.tar"
    runtime.write_bytes(b"tar")
    monkeypatch.setattr(images, "jcmd_runtime", lambda log=None: runtime)
    return lab, events


def test_a_thread_dump_is_taken_with_jcmd_thread_print_l_inside_the_container(tmp_path, monkeypatch):
    c = _Container(b'1:\n2026-12-01\nFull thread dump OpenJDK:\n"main" #1\n   Locked ownable synchronizers:\n\t- None\n')
    lab, events = _lab_with(c, tmp_path, monkeypatch)
    path = lab.thread_dump("broker-1", reason="hung")
    assert path.read_text().startswith("Full thread dump OpenJDK") and "Locked ownable synchronizers" in path.read_text()
    assert c.put == ["/tmp"] and c.signals == []              # the runtime copied in once; no SIGQUIT
    assert events[0][1]["method"] == "jcmd Thread.print -l"


def test_without_jcmd_the_dump_falls_back_to_sigquit_and_says_so(tmp_path, monkeypatch):
    c = _Container(b"")
    lab, events = _lab_with(c, tmp_path, monkeypatch)
    path = lab.thread_dump("broker-1", reason="hung", wait_secs=1.5)
    assert path is not None and c.signals == ["SIGQUIT"] and events[0][1]["method"] == "SIGQUIT"
