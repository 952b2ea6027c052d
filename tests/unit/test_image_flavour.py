"""The image flavour (chaoslab/lab/flavour.py): which Pulsar images the lab runs and how it starts
them. Local (the default) is the lab's own images through pulsar-run; official (PULSAR_IMAGE) is
an image made like Apache Pulsar's, started with its contract. No engine: the files the lab
writes, the commands it gives compose, and those commands run for real in a temporary /pulsar
built the way images/pulsar/Dockerfile builds it, with a stand-in `java`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import pytest
import yaml

from chaoslab.errors import LabError, UnknownPulsarVersion
from chaoslab.lab import flavour as fl
from chaoslab.lab.cluster import Lab, LabState
from chaoslab.settings import LabSettings

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "images" / "pulsar"
OFFICIAL = "apachepulsar/pulsar:{version}"


def lab_in(tmp_path: Path, **settings) -> Lab:
    lab = Lab(LabSettings(**settings), log=lambda m: None)
    lab.state_dir, lab.state_path = tmp_path / "lab", tmp_path / "lab" / "state.json"
    return lab


def env_file(path: Path) -> dict[str, str]:
    """An env file as compose reads the lines the lab writes (KEY=VALUE, unquoted, no '#' or '$')."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        assert re.fullmatch(r"[A-Za-z0-9_.]+", key) and "#" not in value and "$" not in value
        assert value == value.strip() and value[:1] not in ("'", '"')
        out[key] = value
    return out


def properties(path: Path) -> dict[str, str]:
    """key=value lines as Java's Properties reads the ones the lab lets through (last one wins)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.lstrip()
    return out


# -- choosing the flavour ----------------------------------------------------------------------------
def test_without_pulsar_image_the_lab_runs_its_own_images_through_pulsar_run(tmp_path):
    lab = lab_in(tmp_path)
    assert lab.flavour.name == "local" and lab.flavour.image("3.2.2") == "chaoslab/pulsar:3.2.2"
    lab._write(lab.state())
    assert lab.flavour.compose_files(lab.state_dir) == [fl.COMPOSE_FILE]
    assert not (lab.state_dir / fl.OVERRIDE_NAME).exists() and not (lab.state_dir / "zookeeper.env").exists()
    assert (lab.state_dir / "broker-1.env").read_text() == ""


def test_pulsar_image_names_every_release_through_version(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSAR_IMAGE", OFFICIAL)
    lab = Lab(LabSettings.from_env(), log=lambda m: None)
    lab.state_dir, lab.state_path = tmp_path, tmp_path / "state.json"
    state = lab.state()
    state.broker_versions["2"] = "3.2.3"
    lab._write(state)
    env = env_file(tmp_path / "lab.env")
    assert env["PULSAR_IMAGE_FROM"] == "apachepulsar/pulsar:3.2.2" and env["BROKER_2_IMAGE"] == "apachepulsar/pulsar:3.2.3"
    assert env["PROXY_IMAGE"] == "apachepulsar/pulsar:3.0.0"
    for bad in ("apachepulsar/pulsar:3.2.2", "apachepulsar/pulsar:{version} x", "/x:{version}", "a/b:{Version}"):
        monkeypatch.setenv("PULSAR_IMAGE", bad)
        with pytest.raises(UnknownPulsarVersion, match="PULSAR_IMAGE"):
            LabSettings.from_env()


# -- settings through the official mechanism -------------------------------------------------------------
def test_every_pulsar_service_gets_the_labs_settings_its_identity_and_then_the_experiments(tmp_path):
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    state = lab.state()
    state.broker_config["2"] = {"numIOThreads": "4", "brokerClientAuthenticationParameters": '{"token": "a b"}'}
    state.proxy_config = {"numHttpServerThreads": "3"}
    lab._write(state)
    files = {p.name for p in lab.state_dir.glob("*.env")} - {"lab.env"}
    assert files == {"zookeeper.env", "bookie-1.env", "bookie-2.env", "broker-1.env", "broker-2.env", "broker-3.env",
                     "proxy.env"}
    for service, component in [("zookeeper", "zookeeper"), ("bookie-2", "bookie"), ("broker-2", "broker"),
                               ("proxy", "proxy")]:
        env = env_file(lab.state_dir / f"{service}.env")
        assert all(k.startswith("PULSAR_PREFIX_") for k in env)
        got = {k.removeprefix("PULSAR_PREFIX_"): v for k, v in env.items()}
        want = fl.template_settings(component)
        if component in ("bookie", "broker"):
            want["advertisedAddress"] = service
        want.update({"broker-2": state.broker_config["2"], "proxy": state.proxy_config}.get(service, {}))
        assert got == want, service
    assert list(env_file(lab.state_dir / "broker-2.env"))[-2:] == [   # the experiment's last, by name
        "PULSAR_PREFIX_brokerClientAuthenticationParameters", "PULSAR_PREFIX_numIOThreads"]


@pytest.mark.parametrize("value,why", [
    ("2\nloadBalancerSheddingEnabled=false", "a newline"),
    ("a\rb", "a carriage return"),
    ("caf\u00e9", "non-ASCII"),
    ("C:\\path", "backslash"),
    ("x#y", "'#'"),
    ("${HOME}", "'\\$'"),
    ("'quoted'", "starts with a quote"),
    (" padded", "space"),
    ("padded ", "space"),
])
def test_a_value_the_official_mechanism_cannot_carry_exactly_is_refused_and_nothing_is_written(tmp_path, value, why):
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    state = lab.state()
    state.broker_config["1"] = {"numIOThreads": value}
    with pytest.raises(LabError, match=f"numIOThreads.*broker-1.*cannot pass it exactly.*{why}"):
        lab._write(state)
    assert not lab.state_dir.exists()
    # the local images take it (percent-encoded, exactly), all but a line break
    if "\n" not in value and "\r" not in value:
        local = lab_in(tmp_path / "local")
        local._write(state)
        assert "PULSAR_CONF_numIOThreads=" in (local.state_dir / "broker-1.env").read_text()


def test_the_settings_are_checked_before_any_image_is_built_or_pulled(tmp_path):
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    lab._client = SimpleNamespace()
    lab.check_ports = lambda state: None
    lab.build_images = lambda *a, **k: pytest.fail("images before the settings were checked")
    with pytest.raises(LabError, match="cannot pass it exactly"):
        lab.prepare(broker_config={"clusterName": "a$b"})


# -- the commands ---------------------------------------------------------------------------------------
def pulsar_services() -> dict[str, dict]:
    services = yaml.safe_load(fl.COMPOSE_FILE.read_text())["services"]
    return {name: s for name, s in services.items() if "pulsar" in s.get("image", "")}


def test_the_override_starts_every_pulsar_service_the_official_way_and_never_through_pulsar_run(tmp_path):
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    lab._write(lab.state())
    text = (lab.state_dir / fl.OVERRIDE_NAME).read_text()
    assert "pulsar-run" not in text and "conf-templates" not in text and "PULSAR_CONF_" not in text
    override = yaml.safe_load(text)["services"]
    assert set(override) == set(pulsar_services())
    for name, svc in override.items():
        assert svc["entrypoint"] == ["/bin/sh", "-c"] and len(svc["command"]) == 1, name
        command = svc["command"][0]
        assert re.fullmatch(r"(bin/apply-config-from-env\.py conf/\w+\.conf && (touch \S+ && )?)?exec bin/pulsar .+",
                            command), command
        if name != "pulsar-init":
            assert svc["healthcheck"]["test"][:3] == ["CMD", "bash", "-c"]
            # bash, curl and coreutils: what the official image has
            assert set(re.findall(r"(?:^|&& |\| )(\w+)", svc["healthcheck"]["test"][3])) <= {"exec", "echo", "timeout",
                                                                                            "grep", "curl"}
    assert override["bookie-1"]["command"] == ["bin/apply-config-from-env.py conf/bookkeeper.conf && exec bin/pulsar bookie"]
    assert override["broker-3"]["command"] == [
        "bin/apply-config-from-env.py conf/broker.conf && touch /pulsar/data/status && exec bin/pulsar broker"]
    assert override["zookeeper"]["env_file"] == [{"path": str(lab.state_dir / "zookeeper.env"), "required": True}]
    # the brokers' and the proxy's env files are the ones compose/lab.yaml already names
    assert all("env_file" in pulsar_services()[s] for s in ("broker-1", "proxy"))


def test_a_dollar_in_a_command_reaches_the_shell_as_one_dollar():
    assert fl._compose_escaped({"a": ["x $y", {"b": "$$"}]}) == {"a": ["x $$y", {"b": "$$$$"}]}


def test_each_command_the_official_flavour_gives_is_one_the_local_images_bin_pulsar_knows(tmp_path):
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    state = lab.state()
    script = (IMAGE_DIR / "bin" / "pulsar").read_text()
    known = {name for label in re.findall(r"^  ([a-z|-]+)\)", script, re.M) for name in label.split("|")}
    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    # what images/pulsar/Dockerfile copies into /pulsar/conf: {conf/<file>: template}
    images_conf = {f"conf/{c}.conf": f"{c}.conf"
                   for c in re.search(r"for c in ([\w ]+); do cp /pulsar/conf-templates/\$c\.conf /pulsar/conf/\$c\.conf",
                                      dockerfile).group(1).split()}
    images_conf.update({f"conf/{target}": template for template, target in
                        re.findall(r"cp /pulsar/conf-templates/(\w+\.conf) /pulsar/conf/(\w+\.conf)", dockerfile)})
    for service in ["pulsar-init", *lab.flavour.services(lab.settings)]:
        command = lab.flavour.command(service, state, lab.settings)
        assert re.search(r"exec bin/pulsar (\S+)", command).group(1) in known
        conf = re.search(r"apply-config-from-env\.py (conf/\S+)", command)
        if conf:   # the file is in the local image's conf/, from the lab's settings for that component
            assert images_conf[conf.group(1)] == fl.CONF_FILES[re.sub(r"-\d+$", "", service)][0], service


def fake_pulsar_home(tmp_path: Path) -> tuple[Path, Path]:
    """A /pulsar laid out as images/pulsar/Dockerfile lays it out (bin/, conf/), and a folder for
    PATH with pulsar-run and a `java` that writes down its arguments instead of starting."""
    home, tools = tmp_path / "pulsar", tmp_path / "tools"
    (home / "conf").mkdir(parents=True)
    tools.mkdir()
    shutil.copytree(IMAGE_DIR / "bin", home / "bin")
    for component, (template, target) in fl.CONF_FILES.items():
        shutil.copy(IMAGE_DIR / "conf" / template, home / target)
    shutil.copy(IMAGE_DIR / "pulsar-run", tools / "pulsar-run")
    (tools / "java").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$JAVA_ARGS"\n')
    (tools / "java").chmod(0o755)
    return home, tools


def test_the_official_commands_configure_and_start_each_component_on_the_local_images_layout(tmp_path):
    # the whole contract without an engine: the env file the lab writes, the override's command run
    # by sh in /pulsar, the image's apply-config-from-env.py and bin/pulsar, a java stand-in
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    state = lab.state()
    status = tmp_path / "status"
    state.broker_config["1"] = {"statusFilePath": str(status), "loadManagerClassName": "org.example.Manager",
                                "brokerClientAuthenticationParameters": '{"token": "a b=c"}'}
    lab._write(state)
    override = yaml.safe_load((lab.state_dir / fl.OVERRIDE_NAME).read_text())["services"]
    compose = pulsar_services()
    for service in ["zookeeper", "bookie-1", "broker-1", "proxy", "pulsar-init"]:
        home, tools = fake_pulsar_home(tmp_path / service)
        files = [e["path"] if isinstance(e, dict) else e for e in override[service].get("env_file", [])]
        files += [f["path"].replace("${CHAOSLAB_STATE:-../build/lab}", str(lab.state_dir))
                  for f in compose[service].get("env_file", [])]
        env = {"PATH": f"{tools}:/usr/bin:/bin", "JAVA_ARGS": str(tmp_path / f"{service}.args")}
        env.update({k: str(v) for k, v in (compose[service].get("environment") or {}).items() if "$" not in str(v)})
        env.update(override[service]["environment"])
        for path in files:
            env.update(env_file(Path(path)))
        proc = subprocess.run([*override[service]["entrypoint"], *override[service]["command"]], cwd=home, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (service, proc.stderr)
        argv = (tmp_path / f"{service}.args").read_text().splitlines()
        if service == "pulsar-init":
            main = argv.index("org.apache.pulsar.PulsarClusterMetadataSetup")
            assert argv[main + 1:] == lab.flavour.init_args(lab.settings) and argv[0] == "-Xmx128m"
            continue
        component = re.sub(r"-\d+$", "", service)
        conf = home / fl.CONF_FILES[component][1]
        assert str(conf) in argv and "-XX:+UseSerialGC" in argv
        assert properties(conf) == {**properties(IMAGE_DIR / "conf" / fl.CONF_FILES[component][0]),
                                    **{k.removeprefix("PULSAR_PREFIX_"): v for k, v in env.items()
                                       if k.startswith("PULSAR_PREFIX_")}}
    assert status.exists()   # the broker's /status.html answers only while its statusFilePath exists
    assert properties(tmp_path / "broker-1" / "pulsar" / "conf" / "broker.conf")["brokerClientAuthenticationParameters"] \
        == '{"token": "a b=c"}'


# -- what the official flavour does instead ------------------------------------------------------------
def test_compose_gets_the_override_with_official_images_only(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or SimpleNamespace(returncode=0, stdout="", stderr=""))
    for settings, extra in (({}, []), ({"pulsar_image": OFFICIAL}, ["-f", None])):
        lab = lab_in(tmp_path / str(bool(settings)), **settings)
        lab.compose("ps")
        files = [calls[-1][i + 1] for i, a in enumerate(calls[-1]) if a == "-f"]
        assert files[0] == str(fl.COMPOSE_FILE)
        assert files[1:] == ([str(lab.state_dir / fl.OVERRIDE_NAME)] if extra else [])


class FakeImages:
    def __init__(self, present):
        self.present, self.pulled = set(present), []

    def get(self, ref):
        if ref not in self.present:
            raise docker.errors.ImageNotFound(ref)
        return SimpleNamespace(id="sha256:" + ref)

    def pull(self, repository, tag):
        self.pulled.append(f"{repository}:{tag}")
        self.present.add(f"{repository}:{tag}")

    def get_registry_data(self, ref):
        if "9.9.9" in ref:
            raise docker.errors.NotFound("manifest unknown")
        return SimpleNamespace()


def test_official_images_are_pulled_when_missing_and_nothing_local_only_is_made(tmp_path, monkeypatch):
    from chaoslab.lab import cluster, images
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    lab._client = SimpleNamespace(images=FakeImages({"apachepulsar/pulsar:3.2.2"}))
    for name in ("base", "rabbitmq", "agent"):
        monkeypatch.setattr(images.ImageBuilder, name, lambda self, n=name: f"chaoslab/{n}")
    monkeypatch.setattr(images.ImageBuilder, "pulsar", lambda *a, **k: pytest.fail("built a Pulsar image"))
    monkeypatch.setattr(cluster, "jcmd_runtime", lambda **k: pytest.fail("made the jcmd runtime"))
    lab.settings = LabSettings(pulsar_image=OFFICIAL, agent_image="chaoslab/agent")
    got = lab.build_images(["3.2.3"])
    assert lab._client.images.pulled == ["apachepulsar/pulsar:3.2.3", "apachepulsar/pulsar:3.0.0"]
    assert got["pulsar-3.2.2"] == "apachepulsar/pulsar:3.2.2" and got["proxy"] == "apachepulsar/pulsar:3.0.0"
    assert lab._jcmd_dump(None) is None   # thread dumps by SIGQUIT
    assert set(lab.image_ids(["3.2.2"])) >= {"apachepulsar/pulsar:3.2.2", "apachepulsar/pulsar:3.0.0"}


def test_a_release_without_an_image_or_only_a_local_build_is_refused_before_anything_starts(tmp_path, monkeypatch):
    from chaoslab.lab.releases import UnresolvableRelease
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    lab._client = SimpleNamespace(images=FakeImages(set()))
    lab.check_releases(["3.2.2", "3.2.3"])     # the registry has them
    with pytest.raises(UnresolvableRelease, match="apachepulsar/pulsar:9.9.9 cannot be had.*manifest unknown"):
        lab.check_releases(["9.9.9"])
    with pytest.raises(UnknownPulsarVersion, match="runs on the lab's own images"):
        lab.check_releases(["3.3.2-patched"])
    monkeypatch.setenv("PULSAR_DIST_3_2_3", str(tmp_path))
    with pytest.raises(UnknownPulsarVersion, match="PULSAR_DIST_3_2_3 runs on the lab's own images"):
        lab.check_releases(["3.2.3"])


def test_pulsar_image_naming_the_labs_own_images_builds_them_and_runs_them_the_official_way(tmp_path, monkeypatch):
    # the contract test for a whole lab on a machine with an engine: PULSAR_IMAGE='chaoslab/pulsar:{version}'
    from chaoslab.lab import images, releases
    lab = lab_in(tmp_path, pulsar_image="chaoslab/pulsar:{version}")
    assert lab.flavour.name == "official" and lab.flavour.builds_locally
    built = []
    monkeypatch.setattr(images.ImageBuilder, "all", lambda self, wanted, proxy, agent=True: built.append(wanted) or {"agent": "a"})
    made = []
    monkeypatch.setattr("chaoslab.lab.cluster.jcmd_runtime", lambda **k: made.append("jcmd"))
    lab._client = SimpleNamespace()
    lab.build_images()
    assert built == [["3.2.2", "3.2.3"]] and made == ["jcmd"]   # its own JRE: jcmd thread dumps kept
    asked = []
    monkeypatch.setattr(releases, "check_release_resolves", lambda r, c=("broker",): asked.append((r, c)))
    lab.check_releases(["3.2.3"])
    assert asked == [("3.2.3", ("broker",)), ("3.0.0", ("proxy",))]


def test_the_gate_asks_the_flavour_whether_a_release_can_be_had(monkeypatch):
    from chaoslab import cli
    monkeypatch.setenv("PULSAR_IMAGE", OFFICIAL)
    source = Path(cli.__file__).read_text()
    assert "flavour.check_release(release)" in source and "check_release_resolves(release)" not in source
    with pytest.raises(UnknownPulsarVersion, match="runs on the lab's own images"):
        fl.flavour_of(LabSettings.from_env()).check_release("3.2.3-mine")


def test_local_only_features_are_named_once_when_the_lab_starts_with_official_images(tmp_path):
    said = []
    lab = lab_in(tmp_path, pulsar_image=OFFICIAL)
    lab.log = said.append
    lab._client = SimpleNamespace()
    lab.check_ports = lambda state: None
    lab.build_images = lambda *a, **k: {}
    lab.prepare()
    lines = [m for m in said if "local-image features skipped" in m]
    assert len(lines) == 1 and "class-data sharing" in lines[0] and "jcmd" in lines[0]
    assert "apachepulsar/pulsar:{version}" in lines[0]
    # the lab's own images through the same contract keep their archives and jcmd dumps
    said.clear()
    own = lab_in(tmp_path / "own", pulsar_image="chaoslab/pulsar:{version}")
    own.log, own._client, own.check_ports, own.build_images = said.append, SimpleNamespace(), lambda s: None, lambda *a, **k: {}
    own.prepare()
    lines = [m for m in said if "local-image features skipped" in m]
    assert len(lines) == 1 and "class-data sharing" not in lines[0] and "jcmd" not in lines[0]
    assert isinstance(lab.state(), LabState) and (lab.state_dir / fl.OVERRIDE_NAME).exists()
    assert os.path.getsize(lab.state_dir / "zookeeper.env") > 0
