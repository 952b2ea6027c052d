"""The Pulsar image's entry script and the compose file must agree: every healthcheck and command
compose runs through pulsar-run names a component pulsar-run knows, and every JVM it starts can
take the class-data sharing archive made for it at build time."""

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
