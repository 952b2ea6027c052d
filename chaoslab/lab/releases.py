"""Whether a Pulsar release can be had at all, asked cheaply before anything is started or torn
down (`gate --to 9.9.9` must fail before `lab.down()`, not after).

A release resolves when its classpath is assembled already (build/pulsar/<version>/, as
pulsar_dist.resolve leaves it), when the component's jar is in the local Maven repository, or
when Maven can fetch that one jar (no dependencies: a few seconds, and the jar is needed by the
build anyway). This does not prove that the whole dependency closure resolves; pulsar_dist.resolve
still names the first missing artifact if it does not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from chaoslab.errors import ArtifactUnavailable
from chaoslab.lab import supplied
from chaoslab.lab.pulsar_dist import classpath_dir, maven_args, missing_artifact
from chaoslab.settings import VERSION_RE, check_version

MAVEN_TIMEOUT_SECS = 120
_resolved: set[tuple[str, str]] = set()   # (version, component) found once in this process


class UnresolvableRelease(ArtifactUnavailable):
    """A Pulsar release (or one of its components) that cannot be had: exit 2, nothing started."""


def _local_jar(version: str, component: str) -> Path:
    return (Path.home() / ".m2" / "repository" / "org" / "apache" / "pulsar" / f"pulsar-{component}" / version
            / f"pulsar-{component}-{version}.jar")


def _assembled(version: str, component: str) -> bool:
    stamp = classpath_dir(version) / "components"
    try:
        return component in stamp.read_text().split()
    except OSError:
        return False


def check_release_resolves(version: str, components: tuple[str, ...] = ("broker",), maven: bool = True) -> str | None:
    """How Pulsar `version` can be had (see the module's docstring), in words: "a supplied
    build (PULSAR_DIST_...)", "assembled in build/pulsar/<v>", "in the local Maven repository"
    or "on Maven"; otherwise one LabError line: UnknownPulsarVersion for a string that is not
    X.Y.Z, UnresolvableRelease for a release Maven cannot find or when Maven cannot be asked.
    With maven=False (offline) Maven is never run: None when only Maven could tell."""
    check_version(version)
    if supplied.check_supplied(version) is not None:   # the user's own build (chaoslab/lab/supplied.py)
        return f"a supplied build ({supplied.env_name(version)})"
    if not VERSION_RE.match(version):
        raise UnresolvableRelease(f"Pulsar {version}: a labelled release is a build you supply: set "
                                  f"{supplied.env_name(version)}=<distribution tarball, unpacked distribution or lib/ folder>")
    # a folder assembled from a supplied build that is no longer named says nothing about Maven
    assembled_from_maven = supplied.read_source(classpath_dir(version)) is None
    how = set()
    for component in components:
        if (version, component) in _resolved:
            how.add("found earlier")
            continue
        if assembled_from_maven and _assembled(version, component):
            how.add(f"assembled in {classpath_dir(version)}")
            _resolved.add((version, component))
            continue
        if _local_jar(version, component).is_file():
            how.add("in the local Maven repository")
            _resolved.add((version, component))
            continue
        if not maven:
            return None
        how.add("on Maven")
        artifact = f"org.apache.pulsar:pulsar-{component}:{version}"
        if shutil.which("mvn") is None:
            raise UnresolvableRelease(f"Pulsar {version}: cannot check that {artifact} exists: Maven ('mvn') is "
                                      "not installed (run 'make setup' or 'apt-get install maven')")
        with tempfile.TemporaryDirectory(prefix="chaoslab-release-") as tmp:   # no project around mvn
            try:
                proc = subprocess.run(maven_args() + ["dependency:get", f"-Dartifact={artifact}", "-Dtransitive=false"],
                                      cwd=tmp, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                raise UnresolvableRelease(f"Pulsar {version}: Maven did not say within {MAVEN_TIMEOUT_SECS} s whether "
                                          f"{artifact} exists") from None
            except OSError as exc:
                raise UnresolvableRelease(f"Pulsar {version}: cannot run Maven ({exc.strerror or exc})") from None
        if proc.returncode != 0:
            missing = missing_artifact(proc.stdout + proc.stderr)
            if missing:
                raise UnresolvableRelease(f"Pulsar {version}: not a release Maven can resolve ({missing} not found)")
            output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
            first = next((line.removeprefix("[ERROR]").strip() for line in output.splitlines()
                          if line.startswith("[ERROR]") and line.removeprefix("[ERROR]").strip()),
                         f"exit {proc.returncode}")
            raise UnresolvableRelease(f"Pulsar {version}: Maven could not fetch {artifact} "
                                      f"({' '.join(first.split())[:200]})")
        _resolved.add((version, component))
    return "; ".join(sorted(how)) or "nothing to check"
