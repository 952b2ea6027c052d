"""`chaoslab doctor`: each check is a small function over a Context; here the engine, psutil, the
tools, the ports and the cgroup tree are fakes, so each problem can be made to happen. A problem is
one line with its fix; a fatal one makes the exit 2."""

import json
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaoslab import cli, doctor
from chaoslab.lab import pulsar_dist
from chaoslab.settings import LabSettings

ROOT = Path(__file__).resolve().parents[2]
GiB = 2**30


def v1_tree(tmp_path: Path, missing: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A cgroup v1 mount and /proc/cgroups, with the named controllers left out."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc.mkdir(parents=True)
    rows = ["#subsys_name\thierarchy\tnum_cgroups\tenabled"]
    for name in ("cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "pids"):
        if name in missing:
            continue
        rows.append(f"{name}\t1\t1\t1")
        (root / name).mkdir(parents=True)
    if "cpu" not in missing:
        (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (proc / "cgroups").write_text("\n".join(rows) + "\n")
    return root, proc


def ctx_for(tmp_path, files=(), **kw) -> doctor.Context:
    root, proc = v1_tree(tmp_path, kw.pop("missing", ()))
    return doctor.Context(files=list(files), offline=True, settings=LabSettings(), cgroup_root=root, proc=proc, **kw)


class Engine:
    """A docker client that answers: its version, info, images and the lab's containers."""

    def __init__(self, images=(), containers=()):
        self.images = SimpleNamespace(get=self._image)
        self._images = set(images)
        self.containers = SimpleNamespace(list=lambda **kw: list(containers))

    def _image(self, tag):
        if tag not in self._images:
            raise KeyError(tag)
        return object()

    def version(self):
        return {"Platform": {"Name": "Docker Engine - Community"}, "Version": "28.2.2", "ApiVersion": "1.50"}

    def info(self):
        return {"CgroupVersion": "1", "CgroupDriver": "cgroupfs", "Driver": "overlay2", "DockerRootDir": "/"}


def no_engine():
    raise ConnectionError("Error while fetching server API version: connection refused")


def by_check(findings, name):
    return [f for f in findings if f.check == name]


# -- the engine -------------------------------------------------------------------------------------------
def test_no_engine_is_fatal_with_a_one_line_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "engine_client", no_engine)
    monkeypatch.setattr(doctor, "CHECKS", [doctor.engine])
    assert cli.main(["doctor", "--offline"]) == 2
    lines = capsys.readouterr().out.splitlines()
    fail = [line for line in lines if line.startswith("FAIL")]
    assert len(fail) == 1 and "no container engine answers" in fail[0]
    assert "; fix: start the engine" in fail[0]
    assert lines[-1].startswith("doctor: the lab cannot run here: 1 fatal problem")
    # and as JSON: a list of {check, ok, detail, fix, fatal}
    assert cli.main(["doctor", "--offline", "--json"]) == 2
    [finding] = json.loads(capsys.readouterr().out)
    assert set(finding) == {"check", "ok", "detail", "fix", "fatal"}
    assert finding["check"] == "engine" and finding["fatal"] and not finding["ok"] and finding["fix"]


def test_an_engine_that_answers_is_ok(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "engine_client", lambda: Engine())
    monkeypatch.setattr(doctor, "CHECKS", [doctor.engine])
    assert cli.main(["doctor", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "ok    engine: Docker Engine - Community 28.2.2 answers (API 1.50); cgroup v1" in out
    assert "the lab can run here" in out


# -- compose ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, ok", [((0, "2.26.1-4"), True), ((0, "v2.24.0"), True), ((0, "2.20.2"), False),
                                        ((0, "1.29.2"), False), ((127, "not found"), False)])
def test_compose_must_be_v2_new_enough(tmp_path, monkeypatch, answer, ok):
    monkeypatch.setattr(doctor, "_run", lambda argv: answer)
    f = doctor.compose(ctx_for(tmp_path))
    assert f.ok is ok and f.fatal is (not ok)
    if not ok:
        assert f.fix


# -- cgroups -----------------------------------------------------------------------------------------------
def test_a_missing_freezer_is_reported_with_its_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "engine_client", no_engine)
    findings = doctor.cgroups(ctx_for(tmp_path, missing=("freezer",)))
    [f] = by_check(findings, "cgroup freezer")
    assert not f.ok and not f.fatal   # nothing named here pauses a service: a warning
    assert f.detail.startswith("cgroup controller freezer missing: the pause step")
    assert "mount -t cgroup -o freezer" in f.fix and "cgroup v2" in f.fix
    assert "freezer no" in by_check(findings, "cgroup")[0].detail
    assert doctor.line(f).count("\n") == 0 and "; fix: " in doctor.line(f)


def test_a_missing_freezer_is_fatal_for_an_experiment_that_pauses(tmp_path, monkeypatch):
    monkeypatch.setenv("SLOW_PAUSE_SECS", "2")    # rabbitmq-fallback's slow node frozen in bursts
    findings = doctor.cgroups(ctx_for(tmp_path, files=[ROOT / "experiments/rabbitmq-fallback.yaml"],
                                      missing=("freezer",)))
    [f] = by_check(findings, "cgroup freezer")
    assert f.fatal and "an experiment named here needs it" in f.detail
    assert doctor.exit_code(findings) == 2


def test_a_missing_memory_controller_is_fatal_and_a_full_tree_is_ok(tmp_path):
    findings = doctor.cgroups(ctx_for(tmp_path / "a", missing=("memory",)))
    assert [f.check for f in findings if not f.ok] == ["cgroup memory"] and doctor.exit_code(findings) == 2
    findings = doctor.cgroups(ctx_for(tmp_path / "b"))
    assert all(f.ok for f in findings) and "freezer yes, cpu yes, blkio yes, memory yes" in findings[0].detail


def test_cgroup_v2_controllers_and_freezer(tmp_path):
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert doctor.cgroup_controllers(root, tmp_path) == (2, {"freezer": False, "cpu": True, "io": True, "memory": True})
    (root / "system.slice").mkdir()
    (root / "system.slice" / "cgroup.freeze").write_text("0\n")
    assert doctor.cgroup_controllers(root, tmp_path)[1]["freezer"] is True


# -- memory ---------------------------------------------------------------------------------------------------
def fake_psutil(monkeypatch, total_gib, available_gib):
    vm = SimpleNamespace(total=total_gib * GiB, available=available_gib * GiB)
    monkeypatch.setattr(doctor.psutil, "virtual_memory", lambda: vm)


def test_the_lab_caps_come_from_compose_and_pulsar_run():
    caps = doctor.lab_memory_caps(doctor.COMPOSE_FILE, LabSettings(pico_vms=2, nano_vms=1))
    assert caps["rabbitmq"] == 1024                     # mem_limit: 1g
    assert caps["broker-1"] == 512                      # pulsar-run's default: -Xmx256m + 256m direct
    assert caps["bookie-1"] == 384 and caps["zookeeper"] == 256   # PULSAR_MEM; direct defaults to the heap
    assert caps["vm-pico x2"] == 512 and caps["vm-nano"] == 512
    assert "rabbitmq-2" not in caps and "pulsar-init" not in caps


@pytest.mark.parametrize("total, available, ok, fatal", [(23.5, 22, True, False), (23.5, 3, False, False),
                                                         (3, 2, False, True)])
def test_memory_against_the_caps(tmp_path, monkeypatch, total, available, ok, fatal):
    fake_psutil(monkeypatch, total, available)
    findings = doctor.memory(ctx_for(tmp_path))
    [f] = by_check(findings, "memory")
    assert (f.ok, f.fatal) == (ok, fatal)
    [hv] = by_check(findings, "memory for hypervisors")
    assert hv.ok is (available > 6) and not hv.fatal


# -- ports --------------------------------------------------------------------------------------------------
def test_a_port_held_by_a_foreign_process_is_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "engine_client", lambda: Engine())
    monkeypatch.setattr(doctor, "port_free", lambda port: port != 18081)
    monkeypatch.setattr(doctor, "port_holder", lambda port: (4242, "nginx"))
    findings = doctor.ports(ctx_for(tmp_path))
    [f] = by_check(findings, "port 18081")
    assert not f.ok and f.fatal
    assert "port 18081 on 127.0.0.1 (broker-1 (http)) is held by nginx (pid 4242), not by the lab" in f.detail
    assert "CHAOSLAB_BROKER_HTTP_BASE_PORT" in f.fix
    assert "18081" not in by_check(findings, "ports")[0].detail and "18082" in by_check(findings, "ports")[0].detail


def test_a_port_held_by_the_labs_own_container_is_fine(tmp_path, monkeypatch):
    broker = SimpleNamespace(name="chaoslab-broker-1-1",
                             attrs={"NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}]}}})
    monkeypatch.setattr(doctor, "engine_client", lambda: Engine(containers=[broker]))
    monkeypatch.setattr(doctor, "port_free", lambda port: port != 18081)
    monkeypatch.setattr(doctor, "port_holder", lambda port: pytest.fail("the lab's own port needs no holder"))
    [f] = by_check(doctor.ports(ctx_for(tmp_path)), "port 18081")
    assert f.ok and "the lab's own container chaoslab-broker-1-1" in f.detail


def test_a_rabbitmq_cluster_port_is_only_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "engine_client", lambda: Engine())
    monkeypatch.setattr(doctor, "port_free", lambda port: port != 15673)
    monkeypatch.setattr(doctor, "port_holder", lambda port: None)
    [f] = by_check(doctor.ports(ctx_for(tmp_path)), "port 15673")
    assert not f.ok and not f.fatal and "held by another process" in f.detail and "3-node RabbitMQ" in f.detail


def test_port_holder_reads_the_listening_sockets(monkeypatch):
    Conn = namedtuple("Conn", "laddr status pid")
    conns = [Conn(SimpleNamespace(port=80), doctor.psutil.CONN_LISTEN, 1),
             Conn(SimpleNamespace(port=18080), "ESTABLISHED", 2),
             Conn(SimpleNamespace(port=18080), doctor.psutil.CONN_LISTEN, 3)]
    monkeypatch.setattr(doctor.psutil, "net_connections", lambda kind: conns)
    monkeypatch.setattr(doctor.psutil, "Process", lambda pid: SimpleNamespace(name=lambda: f"proc{pid}"))
    assert doctor.port_holder(18080) == (3, "proc3")
    assert doctor.port_holder(9) is None


# -- disk, releases, tools -------------------------------------------------------------------------------------
def test_disk_under_the_floor_is_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "engine_client", no_engine)
    monkeypatch.setattr(doctor.psutil, "disk_usage", lambda path: SimpleNamespace(free=1 * GiB, total=100 * GiB))
    findings = doctor.disk(ctx_for(tmp_path))
    images = findings[0]
    assert images.check == "disk /var/lib/docker" and images.fatal and "1.0 GiB free" in images.detail
    assert not any(f.fatal for f in findings[1:])     # build/ and runs/ need less


def test_releases_of_the_named_files(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nvariants: [{name: a}]\nmethod: [{type: wait}]\n")
    monkeypatch.delenv("PULSAR_DIST_3_3_1_KNOCKOUT", raising=False)
    monkeypatch.setattr(pulsar_dist, "BUILD_DIR", tmp_path / "build")
    findings = doctor.releases(ctx_for(tmp_path, files=[bad, ROOT / "experiments/store-knockout.yaml",
                                                        ROOT / "experiments/rabbitmq-fallback.yaml"]))
    [f] = by_check(findings, f"experiment {bad}")
    assert f.fatal and "method[0].secs: required" in f.detail
    [ko] = by_check(findings, "release 3.3.1-knockout")
    assert ko.fatal and "PULSAR_DIST_3_3_1_KNOCKOUT" in ko.detail
    assert by_check(findings, f"experiment {ROOT / 'experiments/rabbitmq-fallback.yaml'}")[0].ok
    assert doctor.exit_code(findings) == 2


def test_a_missing_tool_is_fatal_only_when_its_image_must_be_built(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None if name == "protoc" else f"/usr/bin/{name}")
    monkeypatch.setattr(doctor, "_cargo", lambda: "/usr/bin/cargo")
    monkeypatch.setattr(doctor, "_run", lambda argv: (0, f"{Path(argv[0]).name} 1.0"))
    monkeypatch.setattr(doctor, "engine_client", lambda: Engine(images=[]))
    [f] = [x for x in doctor.tools(ctx_for(tmp_path)) if x.check == "protoc"]
    assert f.fatal and "chaoslab/agent:latest" in f.detail and "protobuf-compiler" in f.fix
    monkeypatch.setattr(doctor, "engine_client", lambda: Engine(images=["chaoslab/agent:latest"]))
    [f] = [x for x in doctor.tools(ctx_for(tmp_path / "x")) if x.check == "protoc"]
    assert not f.ok and not f.fatal and "already" in f.detail
    monkeypatch.setattr(doctor, "engine_client", no_engine)
    found = doctor.tools(ctx_for(tmp_path / "y"))
    [f] = [x for x in found if x.check == "protoc"]
    assert not f.ok and not f.fatal and "no engine answers" in f.detail
    assert [x.detail for x in found if x.check == "cargo"] == ["cargo: cargo 1.0"]


def test_a_check_that_breaks_does_not_stop_the_others(tmp_path):
    def broken(ctx):
        raise RuntimeError("boom")

    def fine(ctx):
        return doctor.Finding("fine", True, "fine")
    findings = doctor.run_checks(ctx_for(tmp_path), [broken, fine])
    assert [f.check for f in findings] == ["broken", "fine"]
    assert "the check itself failed: RuntimeError: boom" in findings[0].detail and not findings[0].fatal
    assert doctor.exit_code(findings) == 0


def test_a_missing_blkio_is_fatal_only_for_hypervisors_with_a_read_budget(tmp_path):
    vector = ROOT / "experiments/vector-buffer-fleet.yaml"      # 4 hypervisors with read_mib_per_sec
    [f] = by_check(doctor.cgroups(ctx_for(tmp_path / "a", files=[vector], missing=("blkio",))), "cgroup blkio")
    assert f.fatal and "read_mib_per_sec" in f.detail
    [f] = by_check(doctor.cgroups(ctx_for(tmp_path / "b", missing=("blkio",))), "cgroup blkio")
    assert not f.fatal
