"""The RabbitMQ vocabulary with fakes: confirm statistics, the confirm-p99 condition, the cluster
probe's reading of the management API, the slow-service and remove-node steps, per-variant
steps (`enabled`) and the lab's compose profiles."""

import threading
from types import SimpleNamespace

import fakelab
import pytest

from chaoslab import http
from chaoslab.checks.rabbitmq import ConfirmP99
from chaoslab.errors import LabError
from chaoslab.lab.cluster import LabState
from chaoslab.probes.rabbitmq import RabbitmqCluster
from chaoslab.settings import LabSettings
from chaoslab.spec.experiment import Experiment, SpecError
from chaoslab.steps.rabbitmq import RemoveRabbitmqNode
from chaoslab.steps.services import SlowService
from chaoslab.workload.rabbitmq_events import ConfirmStats, RabbitmqEvents, quantile


def test_quantile_and_window_by_node():
    assert quantile([], 0.99) is None
    assert quantile([5.0], 0.5) == 5.0
    stats = ConfirmStats()
    for i in range(98):
        stats.confirm(10.0, 2.0, node=1)
    stats.confirm(5000.0, 4900.0, node=3)
    stats.confirm(6000.0, 5900.0, node=3)
    stats.count("consumed")
    w = stats.window(5)
    assert w["confirms"] == 100 and w["consumed"] == 1
    assert w["confirm_p50_ms"] == 10.0
    assert w["confirm_p99_ms"] >= 5000.0
    assert w["p99_ms_by_node"] == {"node-1": 10.0, "node-3": 6000.0}
    # nothing in a window that ended before the events
    assert stats.window(5, now=0)["confirms"] == 0


def test_confirm_p99_condition():
    cond = ConfirmP99(max=1000)
    assert cond.judge({}).outcome == "unknown"   # no figures: never "holds"
    fine = {"elapsed": 30, "rabbitmq": {"confirms": 100, "confirm_p99_ms": 40.0, "window_secs": 5}}
    assert cond.violations(fine) == []
    slow = {"elapsed": 30, "rabbitmq": {"confirms": 100, "confirm_p99_ms": 4200.0, "window_secs": 5,
                                        "p99_ms_by_node": {"node-1": 30.0, "node-3": 4200.0}}}
    (v,) = cond.violations(slow)
    assert v.name == "confirm_p99_ms" and v.value == 4200 and v.subject == "node-3"
    stuck = {"elapsed": 30, "rabbitmq": {"confirms": 0, "confirm_p99_ms": None, "window_secs": 5}}
    (v,) = cond.violations(stuck)
    assert v.name == "confirms" and "no publish was confirmed" in v.detail
    # before a whole window has passed, an empty window is not yet a violation, nor a hold
    j = cond.judge({"elapsed": 2, "rabbitmq": {"confirms": 0, "window_secs": 5}})
    assert j.outcome == "unknown" and not j.violations


def test_cluster_probe_reads_every_nodes_view(monkeypatch):
    nodes = [{"name": "rabbit@rabbitmq", "running": True}, {"name": "rabbit@rabbitmq-2", "running": True},
             {"name": "rabbit@rabbitmq-3", "running": False, "partitions": ["rabbit@rabbitmq"]}]
    queues = [{"name": "deployment-events-1", "messages": 5, "type": "quorum", "leader": "rabbit@rabbitmq",
               "online": ["rabbit@rabbitmq", "rabbit@rabbitmq-2"]},
              {"name": "other", "messages": 1000}]

    def fake(method, url, timeout=10, headers=None, **kw):
        assert headers and headers["Authorization"].startswith("Basic ")
        if ":15684" in url:          # node 3's API does not answer
            return http.Response(0, error="timeout", seconds=3.0)
        if "/api/nodes" in url:
            return http.Response(200, __import__("json").dumps(nodes), seconds=0.02)
        return http.Response(200, __import__("json").dumps(queues), seconds=0.02)
    monkeypatch.setattr(http, "request", fake)
    ctx = SimpleNamespace(settings=LabSettings(), plan=SimpleNamespace(lab=SimpleNamespace(rabbitmq_nodes=3)))
    out = RabbitmqCluster().collect(ctx)
    assert set(out["views"]) == {"node-1", "node-2"}
    assert out["errors"]["node-3"].startswith("no answer (timeout")
    assert out["api_ms"]["node-3"] is None          # no answer: no answer time
    assert out["running"] == {"rabbit@rabbitmq": True, "rabbit@rabbitmq-2": True, "rabbit@rabbitmq-3": False}
    assert out["partitions"] == ["rabbit@rabbitmq"]
    assert out["queue"]["messages"] == 5          # only the workload's queues
    assert out["queue"]["online"] == {"deployment-events-1": 2}


class FakeRabbitLab(fakelab.FakeLab):
    def __init__(self, stop_app_code=0, forget_code=0, still_member=False, fail_pause=False):
        super().__init__()
        self.state = {"rabbitmq": "running", "rabbitmq-2": "running", "rabbitmq-3": "running"}
        self.pause_fails = fail_pause
        self.codes = {"stop_app": stop_app_code, "forget_cluster_node": forget_code}
        self.still_member = still_member

    def rabbitmqctl(self, n, *args, timeout=60):
        self.calls.append(("ctl", n, args[0]))
        if args[0] == "cluster_status":
            members = ["rabbit@rabbitmq", "rabbit@rabbitmq-2"] + (["rabbit@rabbitmq-3"] if self.still_member else [])
            return 0, "Cluster status ...\n" + __import__("json").dumps({"disk_nodes": members, "running_nodes": members})
        return self.codes.get(args[0], 0), "done"


def step_ctx(lab):
    stop = threading.Event()
    return SimpleNamespace(lab=lab, settings=LabSettings(), interrupted=stop, should_stop=stop.is_set,
                           check_interrupt=lambda: None)


def test_slow_service_caps_pauses_and_lifts():
    lab = FakeRabbitLab()
    step = SlowService(service="rabbitmq-3", cpus=0.05, pause_secs=0.2, every_secs=0.4, for_secs=1)
    out = step.run(step_ctx(lab))
    assert out["ok"] and out["lifted"] and out["pauses"] >= 1
    assert lab.calls[0] == ("cap", "rabbitmq-3", 0.05) and lab.calls[-1][0] == "restore"
    assert lab.state["rabbitmq-3"] == "running" and ("pause", "rabbitmq-3") in lab.calls
    assert step.undo(step_ctx(lab)) is None          # already lifted: nothing to undo


def test_slow_service_counts_failed_freezes_and_needs_a_fault():
    lab = FakeRabbitLab(fail_pause=True)
    out = SlowService(service="rabbitmq-3", pause_secs=0.1, every_secs=0.2, for_secs=0.5).run(step_ctx(lab))
    assert out["ok"] and out["failed_pauses"] >= 1 and "freezer timed out" in out["pause_error"]
    with pytest.raises(ValueError, match="nothing to do"):   # refused at validation, before any lab
        SlowService(service="rabbitmq-3")
    with pytest.raises(ValueError):
        SlowService(service="rabbitmq-x", cpus=0.1)


def test_remove_node_the_documented_way():
    lab = FakeRabbitLab()
    out = RemoveRabbitmqNode(node=3, via=1).run(step_ctx(lab))
    assert out["ok"], out
    assert [c for c in lab.calls if c[0] in ("ctl", "stop")] == [
        ("ctl", 3, "stop_app"), ("ctl", 1, "forget_cluster_node"), ("stop", "rabbitmq-3"), ("ctl", 1, "cluster_status")]
    assert out["members_after"] == "rabbit@rabbitmq, rabbit@rabbitmq-2"


def test_remove_node_stops_a_node_that_cannot_stop_its_app_and_reports_failure():
    lab = FakeRabbitLab(stop_app_code=124)
    out = RemoveRabbitmqNode(node=3, via=1).run(step_ctx(lab))
    assert out["container_stopped_first"] and out["ok"]
    assert ("stop", "rabbitmq-3") == [c for c in lab.calls if c[0] == "stop"][0]
    still = RemoveRabbitmqNode(node=3, via=1).run(step_ctx(FakeRabbitLab(still_member=True)))
    assert not still["ok"] and "still a member" in still["error"]
    with pytest.raises(ValueError, match="cannot forget itself"):   # refused at validation
        RemoveRabbitmqNode(node=2, via=2)


def experiment(extra_step=""):
    return Experiment.model_validate(__import__("yaml").safe_load(f"""
name: t
variants:
  - {{name: a, params: {{remedy: false}}}}
  - {{name: b, role: compare, params: {{remedy: true}}}}
lab: {{pulsar: false, rabbitmq_nodes: 3}}
workload: {{type: rabbitmq-events}}
probes: [{{type: rabbitmq-client}}]
method:
  - {{id: slow, type: slow-service, service: rabbitmq-3, cpus: 0.1}}
  - {{id: remove, type: remove-rabbitmq-node, enabled: $remedy}}
{extra_step}
checks: [{{type: no-loss}}]
"""))


def test_enabled_param_leaves_a_step_out_per_variant():
    exp = experiment()
    assert [s.id for s in exp.plan("a").method] == ["slow"]
    assert [s.id for s in exp.plan("b").method] == ["slow", "remove"]
    plan = exp.plan("b")
    assert plan.lab.pulsar is False and plan.lab.rabbitmq_nodes == 3
    assert isinstance(plan.workload, RabbitmqEvents) and plan.workload.queue_names == [
        "deployment-events-1", "deployment-events-2", "deployment-events-3"]
    # a step that waits for a step the variant left out is an error in that variant
    with pytest.raises(SpecError, match="after"):
        experiment("  - {id: note, type: remove-rabbitmq-node, after: remove, via: 2}").plan("a")


def test_lab_profiles_and_rabbitmq_addresses():
    assert LabState().profiles == ["pulsar"]
    assert LabState(pulsar=False, rabbitmq_nodes=3).profiles == ["rabbitmq-cluster"]
    s = LabSettings()
    assert s.rabbitmq_node(1) == "rabbit@rabbitmq" and s.rabbitmq_node(3) == "rabbit@rabbitmq-3"
    assert s.rabbitmq_amqp_url(3).endswith(f":{s.rabbitmq_port + 2}/%2F")
    assert s.rabbitmq_mgmt_url(2) == f"http://127.0.0.1:{s.rabbitmq_mgmt_port + 1}"


def test_lab_error_is_not_swallowed_by_lift():
    class Gone(FakeRabbitLab):
        def __init__(self):
            super().__init__()
            self.gone = {"rabbitmq-3"}
    step = SlowService(service="rabbitmq-3", cpus=0.1, for_secs=0.1)
    step._slow, step._before = True, {"quota": 0}
    out = step.undo(step_ctx(Gone()))
    assert out["lifted"] is False and "not running" in out["note"]


def test_slow_service_ends_when_the_remedy_took_the_node_away():
    class Removed(FakeRabbitLab):
        def __init__(self):
            super().__init__()
            self.gone = {"rabbitmq-3"}
    out = SlowService(service="rabbitmq-3", pause_secs=0.1, every_secs=0.2, for_secs=5).run(step_ctx(Removed()))
    assert out["ok"] and out["ended_early"] == "rabbitmq-3 is not running" and out["slow_secs"] < 2
