import socket

import pytest

from chaoslab import cli
from chaoslab.errors import PortTaken
from chaoslab.lab.cluster import Lab
from chaoslab.settings import LabSettings


def test_a_version_that_is_not_a_release_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("PULSAR_FROM", "3.3")
    assert cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert "'3.3' is not a Pulsar release number" in err and err.count("\n") == 1


def test_missing_engine_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("CHAOSLAB_PROJECT", "unit-no-engine")
    assert cli.main(["down"]) == 2
    assert "no container engine answers" in capsys.readouterr().err


def test_port_taken_names_the_port_and_the_variable(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        free = []
        for _ in range(5):
            with socket.socket() as other:
                other.bind(("127.0.0.1", 0))
                free.append(other.getsockname()[1])
        lab = Lab(LabSettings(proxy_port=port, proxy_http_port=free[0], rabbitmq_port=free[1],
                              rabbitmq_mgmt_port=free[2], broker_http_base_port=max(free) + 1000))
        monkeypatch.setattr(lab, "containers", lambda *a, **k: [])
        with pytest.raises(PortTaken, match=f"port {port} .* CHAOSLAB_PROXY_PORT"):
            lab.check_ports()


def test_env_files_render_broker_versions_and_settings(tmp_path, monkeypatch):
    import chaoslab.lab.cluster as cluster
    lab = Lab(LabSettings())
    lab.state_dir = tmp_path
    lab.state_path = tmp_path / "state.json"
    state = lab.state()
    state.broker_versions["2"] = "3.2.3"
    state.broker_config["2"] = {"loadManagerClassName": "X"}
    lab._write(state)
    env = (tmp_path / "lab.env").read_text()
    assert "BROKER_2_IMAGE=chaoslab/pulsar:3.2.3" in env and "BROKER_1_IMAGE=chaoslab/pulsar:3.2.2" in env
    assert (tmp_path / "broker-2.env").read_text() == "PULSAR_CONF_loadManagerClassName=X\n"
    assert cluster.LabState.load(tmp_path / "state.json").broker_versions["2"] == "3.2.3"


def test_report_rebuilds_from_a_run_folder_and_refuses_anything_else(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    (tmp_path / "journal.jsonl").write_text('{"t": 1.0, "type": "event", "variant": "v", "name": "variant-start"}\n')
    (tmp_path / "results.json").write_text('{"title": "t", "variants": []}')
    assert cli.main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
