"""The Pulsar image's entry script and the compose file must agree: every healthcheck and command
compose runs through pulsar-run names a component pulsar-run knows, and every JVM it starts can
take the class-data sharing archive made for it at build time. The image's bin/pulsar (the
official image's way in) starts the same JVMs from conf/<component>.conf."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PULSAR_RUN = (ROOT / "images" / "pulsar" / "pulsar-run").read_text()
CDS_TRAIN = (ROOT / "images" / "pulsar" / "cds-train").read_text()


def known_components() -> set[str]:
    case = PULSAR_RUN[PULSAR_RUN.index('case "$component" in\n  zookeeper)'):]
    return {name for label in re.findall(r"^  ([a-z|-]+)\)", case, re.M) for name in label.split("|")}


def compose_components() -> set[tuple[str, str]]:
    services = yaml.safe_load((ROOT / "compose" / "lab.yaml").read_text())["services"]
    used = set()
    for name, svc in services.items():
        if "pulsar" not in svc.get("image", "").lower():
            continue
        for argv in (svc.get("command") or [], (svc.get("healthcheck") or {}).get("test") or []):
            if argv[:2] == ["CMD", "pulsar-run"]:
                used.add((name, argv[2]))
            elif argv and argv[0] != "CMD" and argv[0] != "CMD-SHELL":
                used.add((name, argv[0]))
    return used


def test_every_component_compose_runs_is_one_pulsar_run_knows():
    known = known_components()
    used = compose_components()
    assert {"zookeeper", "bookie", "broker", "proxy", "init-cluster", "health"} <= {c for _, c in used}
    assert [(s, c) for s, c in sorted(used) if c not in known] == []


def test_every_jvm_pulsar_run_starts_takes_its_archive_and_cds_train_makes_each():
    # one function starts every JVM (pulsar-run's components and bin/pulsar's), with its archive
    assert PULSAR_RUN.count("exec java") == 1 and '$(cds "$component")' in PULSAR_RUN
    case = PULSAR_RUN[PULSAR_RUN.index('case "$component" in\n  zookeeper)'):]
    for component in ("zookeeper", "bookie", "broker", "proxy", "init-cluster"):
        assert re.search(rf"^    jvm {component} ", case, re.M), component
        assert re.search(rf"^      {component}\)", PULSAR_RUN[PULSAR_RUN.index("jvm() {"):], re.M), component
        assert component in CDS_TRAIN, component
    # the switch the benches use to compare with and without the archives
    assert 'PULSAR_CDS:-on' in PULSAR_RUN


# -- bin/pulsar: the official image's way of starting a component, on the lab's image ----------------------
def bin_pulsar(tmp_path: Path, *args: str, **env: str):
    """images/pulsar/bin/pulsar from a /pulsar-like folder, pulsar-run on PATH and a `java` that
    writes down its arguments instead of starting; (process, java's arguments)."""
    import shutil
    import subprocess
    home, tools = tmp_path / "pulsar", tmp_path / "tools"
    (home / "conf").mkdir(parents=True, exist_ok=True)
    tools.mkdir(exist_ok=True)
    shutil.copytree(ROOT / "images" / "pulsar" / "bin", home / "bin", dirs_exist_ok=True)
    shutil.copy(ROOT / "images" / "pulsar" / "pulsar-run", tools / "pulsar-run")
    (tools / "java").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$JAVA_ARGS"\n')
    (tools / "java").chmod(0o755)
    out = tmp_path / "java.args"
    out.unlink(missing_ok=True)
    proc = subprocess.run([str(home / "bin" / "pulsar"), *args], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": f"{tools}:/usr/bin:/bin", "JAVA_ARGS": str(out), **env}, timeout=60)
    return proc, (out.read_text().splitlines() if out.exists() else None)


def test_bin_pulsar_starts_each_component_with_its_official_config_file_and_jvm_settings(tmp_path):
    home = tmp_path / "pulsar"
    for command, main, conf in [("zookeeper", "org.apache.zookeeper.server.quorum.QuorumPeerMain", "zookeeper.conf"),
                                ("bookie", "org.apache.bookkeeper.server.Main", "bookkeeper.conf"),
                                ("broker", "org.apache.pulsar.PulsarBrokerStarter", "broker.conf"),
                                ("proxy", "org.apache.pulsar.proxy.server.ProxyServiceStarter", "proxy.conf")]:
        proc, argv = bin_pulsar(tmp_path, command, "--extra", PULSAR_MEM="-Xmx7m", PULSAR_GC="-XX:+UseG1GC")
        assert proc.returncode == 0, proc.stderr
        assert argv[0] == "-Xmx7m" and "-XX:+UseG1GC" in argv and "-XX:+UseSerialGC" not in argv
        after = argv[argv.index(main) + 1:]   # the config file (after its flag, if the class takes one), then ours
        assert after[-2:] == [str(home / "conf" / conf), "--extra"] and len(after) <= 3
    proc, argv = bin_pulsar(tmp_path, "bookie", PULSAR_MEM="-Xmx7m", BOOKIE_MEM="-Xmx5m")
    assert argv[0] == "-Xmx5m"
    proc, argv = bin_pulsar(tmp_path, "broker", PULSAR_BROKER_CONF="/elsewhere/b.conf")
    assert argv[-2:] == ["--broker-conf", "/elsewhere/b.conf"] and "-XX:+UseSerialGC" in argv
    proc, argv = bin_pulsar(tmp_path, "initialize-cluster-metadata", "--cluster", "lab")
    assert argv[0] == "-Xmx128m" and argv[-3:] == ["org.apache.pulsar.PulsarClusterMetadataSetup", "--cluster", "lab"]


def test_bin_pulsar_says_its_release_and_refuses_what_it_cannot_start(tmp_path):
    proc, _ = bin_pulsar(tmp_path, "version", PULSAR_VERSION="3.2.2")
    assert proc.returncode == 0 and proc.stdout == "3.2.2\n"
    proc, argv = bin_pulsar(tmp_path, "functions-worker")
    assert proc.returncode == 2 and argv is None and "'functions-worker' is not a command of this image" in proc.stderr
    proc, _ = bin_pulsar(tmp_path)
    assert proc.returncode == 1 and "usage: bin/pulsar" in proc.stderr
