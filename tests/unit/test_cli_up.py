"""`chaoslab up`: the shapes a team can bring up from the command line (no engine: a fake lab)."""

import pytest

from chaoslab import cli


class FakeLab:
    project = "chaoslab"
    proxy_service_url, proxy_admin_url = "pulsar://localhost:6650", "http://localhost:8080"
    calls: list = []

    def __init__(self, log=None):
        from chaoslab.lab.cluster import LabSettings
        self.settings = LabSettings()

    @property
    def client(self):
        return object()

    def up(self, **kw):
        FakeLab.calls.append(kw)
        return 12.0


@pytest.fixture
def fake(monkeypatch):
    import chaoslab.lab.cluster as cluster
    import chaoslab.lab.lock as lock
    monkeypatch.setattr(cluster, "Lab", FakeLab)
    monkeypatch.setattr(lock.LabLock, "__enter__", lambda self: self)
    monkeypatch.setattr(lock.LabLock, "__exit__", lambda self, *a: False)
    monkeypatch.delenv("RABBITMQ_NODES", raising=False)
    FakeLab.calls = []
    return FakeLab


def test_up_brings_a_rabbitmq_cluster_without_pulsar_and_names_every_nodes_amqp_url(fake, capsys):
    assert cli.main(["up", "--rabbitmq-nodes", "3", "--no-pulsar"]) == 0
    assert fake.calls[-1] | {} == {"pico": None, "nano": None, "pulsar": False, "rabbitmq_nodes": 3}
    err = capsys.readouterr().err
    assert "proxy" not in err and err.count("amqp://") == 3


def test_up_takes_the_node_count_from_the_environment_and_refuses_what_the_lab_has_not(fake, monkeypatch, capsys):
    monkeypatch.setenv("RABBITMQ_NODES", "3")
    assert cli.main(["up"]) == 0 and fake.calls[-1]["rabbitmq_nodes"] == 3 and fake.calls[-1]["pulsar"] is True
    monkeypatch.setenv("RABBITMQ_NODES", "2")
    assert cli.main(["up"]) == 2
    assert "RABBITMQ_NODES='2': the lab runs 1 RabbitMQ node or a cluster of 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["up", "--rabbitmq-nodes", "2"])


def test_status_of_a_lab_without_pulsar_says_so_and_lists_every_rabbitmq_node():
    from types import SimpleNamespace

    from chaoslab.lab.status import collect
    from chaoslab.settings import LabSettings

    def container(service):
        return SimpleNamespace(name=f"chaoslab-{service}-1", status="running",
                               labels={"com.docker.compose.service": service},
                               attrs={"State": {"Health": {"Status": "healthy"}}})
    members = '{"disk_nodes": ["rabbit@rabbitmq", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"], ' \
              '"running_nodes": ["rabbit@rabbitmq", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"]}'
    lab = SimpleNamespace(project="chaoslab", settings=LabSettings(), rabbitmq_url="amqp://x",
                          containers=lambda: [container(s) for s in ("rabbitmq", "rabbitmq-2", "rabbitmq-3")],
                          rabbitmqctl=lambda via, *a, timeout=60: (0, members))
    status = collect(lab)
    assert status["pulsar"] == "not in this lab" and "brokers" not in status
    assert [n["state"] for n in status["rabbitmq"]["nodes"]] == ["healthy"] * 3
    assert all(n["amqp_url"].startswith("amqp://") for n in status["rabbitmq"]["nodes"])


def test_the_pre_commit_hook_validates_every_staged_experiment_file_at_once(tmp_path, capsys):
    import re

    import yaml

    from chaoslab.settings import REPO_ROOT
    hook = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    assert hook["id"] == "chaoslab-validate" and hook["entry"] == "chaoslab validate"
    shipped = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "experiments").glob("*.yaml"))
    assert all(re.search(hook["files"], f) for f in shipped)
    argv = hook["entry"].split()[1:] + [str(REPO_ROOT / f) for f in shipped]   # what pre-commit runs
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.count(": ok (") == len(shipped)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: b\nvariants: [{name: a}]\nmethod: [{type: reboot-everything}]\n")
    assert cli.main(argv[:1] + [argv[1], str(broken)]) == 2
    captured = capsys.readouterr()
    assert captured.out.count(": ok (") == 1 and str(broken) in captured.err and captured.err.count("\n") == 1
