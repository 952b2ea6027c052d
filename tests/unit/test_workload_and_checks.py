from chaoslab.workload import loss
from chaoslab.workload.history import History
from chaoslab.workload.layout import Layout


def test_layout_is_deterministic_and_high_cardinality():
    a = Layout.generate(tenants=20, topics_per_tenant=6, seed=7)
    b = Layout.generate(tenants=20, topics_per_tenant=6, seed=7)
    assert a == b and len(a.topics) == 120 and len(a.tenants) == 20
    assert all(t.startswith("orga_") for t in a.tenants)
    assert {t.namespace for t in a.topics} == {"logs"}
    assert 0 < sum(1 for t in a.topics if t.partitions) < 120
    assert Layout.generate(tenants=2, topics_per_tenant=1, seed=8).tenants != a.tenants[:2]


def test_loss_checker_finds_lost_and_duplicated(tmp_path):
    h = History()
    for i in range(5):
        h.add("send", f"m{i}", "t")
    for i in range(4):
        h.add("ack", f"m{i}", "t")
    h.add("fail", "m4", "t", "Timeout")
    for i in (0, 1, 1, 3, 4):
        h.add("recv", f"m{i}", "t")
    report = loss.check(h)
    assert report.lost == ["m2"]
    assert report.duplicated == {"m1": 2}
    assert report.unacked_delivered == 1 and report.failed == 1
    assert not report.ok
    path = tmp_path / "history.jsonl"
    h.save(path)
    assert loss.check(History.load(path)).summary() == report.summary()


def test_clean_history_is_ok():
    h = History()
    h.add("send", "a")
    h.add("ack", "a")
    h.add("recv", "a")
    assert loss.check(h).ok
