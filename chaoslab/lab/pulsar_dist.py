"""Assemble a Pulsar server classpath of one exact release from Maven Central.

No Pulsar binary distribution can be pulled here, so each release is rebuilt from its Maven
artifacts: a throw-away POM depends on `pulsar-broker` (and `pulsar-proxy` where published)
with Pulsar's own root POM imported as a BOM, so the dependency versions are the ones that
release was built and tested with. The machine's `mvn` does the work, so its settings apply.

Beside lib/ it stores broker-settings.txt: the names of the release's broker settings, read
from its own pulsar-broker-common jar (broker_settings.write_settings_file), which the image
build copies into the image and `check_broker_settings` checks keys against.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from chaoslab.errors import ArtifactUnavailable, LabError
from chaoslab.lab.broker_settings import SETTINGS_FILE, broker_common_jar, write_settings_file
from chaoslab.lab import supplied
from chaoslab.lab.build_stages import stage
from chaoslab.settings import BUILD_DIR, VERSION_RE, check_version

RECIPES = Path(__file__).parent / "recipes"

POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>chaoslab</groupId>
  <artifactId>pulsar-classpath</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.pulsar</groupId>
        <artifactId>pulsar</artifactId>
        <version>{version}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""

DEPENDENCY = """    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      {version}
    </dependency>"""


def classpath_dir(version: str) -> Path:
    return BUILD_DIR / "pulsar" / version


def render_pom(version: str, components: tuple[str, ...]) -> str:
    deps = [
        DEPENDENCY.format(group="org.apache.pulsar", artifact=f"pulsar-{c}",
                          version=f"<version>{version}</version>")
        for c in components
    ]
    # log4j-core is optional in Pulsar's POMs (the distribution adds it); take the managed version
    deps.append(DEPENDENCY.format(group="org.apache.logging.log4j", artifact="log4j-core", version=""))
    return POM_TEMPLATE.format(version=version, dependencies="\n".join(deps))


def missing_artifact(maven_output: str) -> str | None:
    """The first artifact Maven says it could not find, as group:artifact:type:version."""
    for pattern in (
        r"Could not find artifact (\S+)",
        r"Failure to find (\S+)",
        r"Non-resolvable import POM: (?:Could not find artifact |Failure to find )?(\S+)",
        r"(\S+:\S+:\S+:[\w.\-]+) was not found in",
    ):
        match = re.search(pattern, maven_output)
        if match:
            return match.group(1)
    return None


def maven_args() -> list[str]:
    args = ["mvn", "-B", "-q"]
    if not (Path.home() / ".m2" / "settings.xml").exists():
        args += ["-s", str(RECIPES / "maven-settings.xml")]
    return args


def resolve(version: str, components: tuple[str, ...] = ("broker",), log=print) -> Path:
    """Return build/pulsar/<version>/ with lib/ holding every jar of the classpath.

    Idempotent: a finished folder carries a `components` stamp and is reused. A build the user
    supplied (PULSAR_DIST_<release>, chaoslab/lab/supplied.py) takes the place of Maven.
    """
    check_version(version)
    out = classpath_dir(version)
    path = supplied.supplied_path(version)
    if path is not None:
        return supplied.assemble(version, path, out, log=log)
    if not VERSION_RE.match(version):
        raise supplied.SuppliedDistError(
            f"Pulsar {version}: a labelled release is a build you supply, never one Maven has: set "
            f"{supplied.env_name(version)}=<distribution tarball, unpacked distribution or lib/ folder>")
    if supplied.read_source(out) is not None:   # assembled from a supplied build that is no longer named
        shutil.rmtree(out, ignore_errors=True)
    if shutil.which("mvn") is None:
        raise LabError("Maven ('mvn') is not installed; run 'make setup' or 'apt-get install maven'")
    stamp = out / "components"
    if stamp.exists() and set(components) <= set(stamp.read_text().split()):
        if not (out / SETTINGS_FILE).exists() and broker_common_jar(out / "lib", version):
            write_settings_file(out, version)   # a folder assembled before the list was kept
        return out
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "pom.xml").write_text(render_pom(version, components))
    log(f"resolving Pulsar {version} ({', '.join(components)}) from Maven Central ...")
    with stage(f"maven resolve of Pulsar {version}", log):
        proc = subprocess.run(
            maven_args() + ["dependency:copy-dependencies", "-DoutputDirectory=lib",
                            "-DincludeScope=runtime"],
            cwd=work, capture_output=True, text=True, timeout=1800,
        )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        (work / "maven.log").write_text(output)
        artifact = missing_artifact(output)
        if artifact:
            raise ArtifactUnavailable(
                f"Pulsar {version}: Maven cannot resolve {artifact} (log: {work / 'maven.log'}); a build of "
                f"it you have can be run with {supplied.env_name(version)}=<tarball or lib/ folder>"
            )
        raise ArtifactUnavailable(
            f"Pulsar {version}: Maven failed to assemble the classpath (log: {work / 'maven.log'})"
        )
    jars = sorted(p.name for p in (work / "lib").glob("*.jar"))
    (work / "classpath.txt").write_text("\n".join(jars) + "\n")
    if broker_common_jar(work / "lib", version):
        write_settings_file(work, version)
    (work / "components").write_text(" ".join(components) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    log(f"Pulsar {version}: {len(jars)} jars in {out / 'lib'}")
    return out
