"""A Pulsar build the user supplies (PULSAR_DIST_<release>): found, checked, assembled, recorded,
and never confused with the Apache release."""

import json
import tarfile
import zipfile

import pytest

from chaoslab.errors import ArtifactUnavailable
from chaoslab.lab import broker_settings, pulsar_dist, releases, supplied
from chaoslab.settings import check_version, release_number


def jar(path, entries):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def fake_lib(folder, version="3.3.1", label=None):
    folder.mkdir(parents=True, exist_ok=True)
    v = label or version
    jar(folder / f"pulsar-common-{v}.jar", {"META-INF/maven/org.apache.pulsar/pulsar-common/pom.properties":
                                               f"groupId=org.apache.pulsar\nversion={version}\n"})
    jar(folder / f"pulsar-broker-common-{v}.jar", {"x.txt": "broker-common"})
    jar(folder / "netty-buffer-4.1.jar", {"y.txt": "netty"})
    return folder


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(pulsar_dist, "BUILD_DIR", tmp_path / "build")
    return tmp_path / "build"


@pytest.mark.parametrize("release, name", [("3.3.1", "PULSAR_DIST_3_3_1"),
                                           ("3.3.2-patched", "PULSAR_DIST_3_3_2_PATCHED"),
                                           ("3.3.2-ko.2", "PULSAR_DIST_3_3_2_KO_2")])
def test_the_variable_is_the_release_name_upper_cased_with_underscores(release, name):
    assert supplied.env_name(release) == name
    assert check_version(release) == release


def test_a_labelled_release_reports_its_number():
    assert release_number("3.3.2-knockout") == "3.3.2" and release_number("3.3.1") == "3.3.1"


def test_a_path_that_does_not_exist_is_one_clear_error(tmp_path):
    with pytest.raises(supplied.SuppliedDistError, match="PULSAR_DIST_3_3_1=.*no such file"):
        supplied.supplied_path("3.3.1", {"PULSAR_DIST_3_3_1": str(tmp_path / "nope.tar.gz")})


def test_a_folder_without_jars_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(supplied.SuppliedDistError, match="no jars found"):
        supplied.check_supplied("3.3.1", {"PULSAR_DIST_3_3_1": str(tmp_path / "empty")})


def test_a_file_that_is_not_a_tarball_is_refused(tmp_path):
    (tmp_path / "broker.jar").write_bytes(b"PK")
    with pytest.raises(supplied.SuppliedDistError, match="not a .tar.gz"):
        supplied.check_supplied("3.3.1", {"PULSAR_DIST_3_3_1": str(tmp_path / "broker.jar")})


def test_a_lib_folder_is_assembled_with_its_source_recorded_and_reused_until_it_changes(tmp_path, build_dir, monkeypatch):
    lib = fake_lib(tmp_path / "mine" / "lib")
    monkeypatch.setenv("PULSAR_DIST_3_3_1", str(lib))
    out = pulsar_dist.resolve("3.3.1", log=lambda *_: None)
    assert out == build_dir / "pulsar" / "3.3.1"
    assert sorted(p.name for p in (out / "lib").glob("*.jar")) == sorted(p.name for p in lib.glob("*.jar"))
    source = json.loads((out / "source.json").read_text())
    assert source["kind"] == "lib" and source["supplied"] and source["env"] == "PULSAR_DIST_3_3_1"
    assert source["pulsar_version"] == "3.3.1" and len(source["sha256"]) == 64
    assert (out / "components").read_text().split() == ["broker"]
    stamp = (out / "source.json").stat().st_mtime_ns
    assert pulsar_dist.resolve("3.3.1", log=lambda *_: None) == out
    assert (out / "source.json").stat().st_mtime_ns == stamp          # unchanged: reused
    jar(lib / "netty-buffer-4.1.jar", {"y.txt": "a rebuilt jar"})
    pulsar_dist.resolve("3.3.1", log=lambda *_: None)
    assert json.loads((out / "source.json").read_text())["sha256"] != source["sha256"]


def test_a_distribution_tarball_is_unpacked_and_its_lib_used(tmp_path, build_dir, monkeypatch):
    dist = fake_lib(tmp_path / "apache-pulsar-3.3.1" / "lib")
    (tmp_path / "apache-pulsar-3.3.1" / "bin").mkdir()
    tarball = tmp_path / "apache-pulsar-3.3.1-bin.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(dist.parent, arcname="apache-pulsar-3.3.1")
    monkeypatch.setenv("PULSAR_DIST_3_3_1", str(tarball))
    out = pulsar_dist.resolve("3.3.1", log=lambda *_: None)
    assert (out / "lib" / "pulsar-broker-common-3.3.1.jar").is_file()
    assert not (out / "unpacked").exists()
    assert json.loads((out / "source.json").read_text())["kind"] == "tarball"


def test_a_labelled_release_is_never_looked_up_on_maven(build_dir, monkeypatch):
    monkeypatch.delenv("PULSAR_DIST_3_3_2_KNOCKOUT", raising=False)
    with pytest.raises(ArtifactUnavailable, match="PULSAR_DIST_3_3_2_KNOCKOUT="):
        pulsar_dist.resolve("3.3.2-knockout", log=lambda *_: None)
    with pytest.raises(releases.UnresolvableRelease, match="PULSAR_DIST_3_3_2_KNOCKOUT="):
        releases.check_release_resolves("3.3.2-knockout")


def test_a_supplied_release_resolves_without_asking_maven(tmp_path, monkeypatch):
    lib = fake_lib(tmp_path / "lib", version="3.3.2", label="3.3.2")
    monkeypatch.setenv("PULSAR_DIST_3_3_2_KNOCKOUT", str(lib))
    monkeypatch.setattr(releases.shutil, "which", lambda *_: pytest.fail("Maven was asked"))
    monkeypatch.setattr(releases.subprocess, "run", lambda *a, **k: pytest.fail("Maven was run"))
    assert releases.check_release_resolves("3.3.2-knockout") == "a supplied build (PULSAR_DIST_3_3_2_KNOCKOUT)"


def test_a_folder_left_by_a_supplied_build_is_not_taken_for_a_maven_release(tmp_path, build_dir, monkeypatch):
    lib = fake_lib(tmp_path / "lib")
    monkeypatch.setenv("PULSAR_DIST_3_3_1", str(lib))
    pulsar_dist.resolve("3.3.1", log=lambda *_: None)
    monkeypatch.delenv("PULSAR_DIST_3_3_1")
    asked = []
    monkeypatch.setattr(releases, "_local_jar", lambda *a: tmp_path / "absent.jar")

    class Proc:
        returncode, stdout, stderr = 1, "", "[ERROR] Could not find artifact org.apache.pulsar:pulsar-broker:jar:3.3.1"

    monkeypatch.setattr(releases.shutil, "which", lambda *_: "/usr/bin/mvn")
    monkeypatch.setattr(releases.subprocess, "run", lambda *a, **k: asked.append(a) or Proc())
    with pytest.raises(releases.UnresolvableRelease, match="not a release Maven can resolve"):
        releases.check_release_resolves("3.3.1")
    assert asked


def test_the_broker_settings_jar_of_a_labelled_build_and_of_a_distribution_is_found(tmp_path):
    lib = fake_lib(tmp_path / "a", version="3.3.2", label="3.3.2")
    assert broker_settings.broker_common_jar(lib, "3.3.2-knockout").name == "pulsar-broker-common-3.3.2.jar"
    dist = tmp_path / "b"
    dist.mkdir()
    jar(dist / "org.apache.pulsar-pulsar-broker-common-3.3.1.jar", {"x": "y"})
    assert broker_settings.broker_common_jar(dist, "3.3.1").name.startswith("org.apache.pulsar-")


def test_the_manifest_record_names_the_build(tmp_path, build_dir, monkeypatch):
    lib = fake_lib(tmp_path / "lib")
    monkeypatch.setenv("PULSAR_DIST_3_3_1", str(lib))
    assert supplied.supplied_releases(["3.3.1", "3.2.2"]) == {
        "3.3.1": {"release": "3.3.1", "supplied": True, "env": "PULSAR_DIST_3_3_1", "path": str(lib.resolve())}}
    pulsar_dist.resolve("3.3.1", log=lambda *_: None)
    record = supplied.supplied_releases(["3.3.1"])["3.3.1"]
    assert record["sha256"] and record["pulsar_version"] == "3.3.1"


def test_an_experiment_may_name_a_labelled_release():
    from chaoslab.spec.experiment import Versions
    assert Versions.model_validate({"from": "3.3.0", "to": "3.3.2-knockout"}).to == "3.3.2-knockout"


def test_the_report_says_a_release_ran_from_a_supplied_build(tmp_path):
    from chaoslab.report.blocks import open_run
    lines = [{"type": "run-start", "t": 1, "run_id": "r", "experiment": "x", "seed": 1, "versions": {"to": "3.3.1"}},
             {"type": "supplied-builds", "t": 2, "builds": {"3.3.1": {"env": "PULSAR_DIST_3_3_1", "kind": "tarball",
                                                                     "path": "/opt/p.tgz", "sha256": "ab" * 32,
                                                                     "pulsar_version": "3.3.1"}}}]
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _, _, _, opening = open_run(tmp_path)
    text = " ".join(str(b[-1]) for b in opening)
    assert "Release 3.3.1 is a build supplied with PULSAR_DIST_3_3_1, not a published release" in text
    assert "sha256 abababab" in text
