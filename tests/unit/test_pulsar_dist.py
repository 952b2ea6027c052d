import pytest

from chaoslab.errors import UnknownPulsarVersion
from chaoslab.lab import pulsar_dist
from chaoslab.settings import LabSettings, check_version


def test_pom_imports_pulsar_root_as_bom_and_names_components():
    pom = pulsar_dist.render_pom("3.2.3", ("broker", "proxy"))
    assert "<artifactId>pulsar</artifactId>" in pom and "<scope>import</scope>" in pom
    assert "<artifactId>pulsar-broker</artifactId>" in pom
    assert "<artifactId>pulsar-proxy</artifactId>" in pom
    assert pom.count("<version>3.2.3</version>") == 4  # project, BOM, broker, proxy


@pytest.mark.parametrize("line, expected", [
    ("[ERROR] ... Could not find artifact org.apache.pulsar:pulsar-broker:jar:3.3.0 in central",
     "org.apache.pulsar:pulsar-broker:jar:3.3.0"),
    ("Failure to find org.apache.pulsar:jetcd-core-shaded:jar:3.3.6 in https://x",
     "org.apache.pulsar:jetcd-core-shaded:jar:3.3.6"),
    ("BUILD FAILURE for some other reason", None),
])
def test_missing_artifact_is_named(line, expected):
    assert pulsar_dist.missing_artifact(line) == expected


@pytest.mark.parametrize("bad", ["3.3", "latest", "3.3.1-", "3.3.1_x", "3.3.1-a b", ""])
def test_version_strings_that_are_not_releases_are_refused(bad):
    with pytest.raises(UnknownPulsarVersion):
        check_version(bad)


def test_settings_ports_are_loopback_urls():
    s = LabSettings()
    assert s.service_url.startswith("pulsar://127.0.0.1:")
    assert s.broker_http_port("broker-3") == s.broker_http_base_port + 2


def test_cached_maven_failure_names_the_artifact():
    from chaoslab.lab.pulsar_dist import missing_artifact
    out = ("[ERROR] Failed to execute goal on project pulsar-classpath: Could not resolve dependencies for project "
           "chaoslab:pulsar-classpath:pom:3.3.1: org.apache.pulsar:pulsar-broker:jar:3.3.1 was not found in "
           "https://repo.maven.apache.org/maven2 during a previous attempt.")
    assert missing_artifact(out) == "org.apache.pulsar:pulsar-broker:jar:3.3.1"
