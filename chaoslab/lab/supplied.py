"""Pulsar builds the user supplies: a team's own patched broker, or a release the Maven
repository cannot serve (the incident's 3.3.1 here), run by the lab like any release.

    PULSAR_DIST_<RELEASE>=<path>      e.g. PULSAR_DIST_3_3_1=/opt/apache-pulsar-3.3.1-bin.tar.gz
                                           PULSAR_DIST_3_3_2_PATCHED=/src/pulsar/distribution/server/target/lib

<RELEASE> is the release name as experiment files and `gate --to` write it, upper-cased, with every
character that is not a letter or digit written `_` (3.3.2-patched -> PULSAR_DIST_3_3_2_PATCHED).
A name is a release number (`3.3.1`) or a number with a label (`3.3.2-patched`); a labelled name
is only ever a supplied build, never looked up on Maven.

<path> is one of:
- a binary distribution tarball (`apache-pulsar-X-bin.tar.gz`, `.tgz`, `.tar`): unpacked, its `lib/` used;
- an unpacked distribution (a folder with `lib/`);
- a `lib/` folder itself (a folder holding the classpath's jars).

The jars are copied into build/pulsar/<release>/lib/ next to `source.json`: where they came from, the
digest of what was supplied, and the Pulsar version the build's own jars carry. The image recipe
includes that digest, so a rebuilt jar rebuilds the image; the run's manifest and report carry the
same record, so a result on a supplied build is never mistaken for one on the Apache release.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

from chaoslab.errors import ArtifactUnavailable

ENV_PREFIX = "PULSAR_DIST_"
SOURCE_FILE = "source.json"
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class SuppliedDistError(ArtifactUnavailable):
    """A supplied distribution that cannot be used (missing path, no jars, broken tarball): exit 2."""


def env_name(release: str) -> str:
    """3.3.2-patched -> PULSAR_DIST_3_3_2_PATCHED"""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", release).upper()


def supplied_path(release: str, env: dict | None = None) -> Path | None:
    """The path the user supplied for `release`, or None. SuppliedDistError when it is set but
    does not exist."""
    env = os.environ if env is None else env
    name = env_name(release)
    value = (env.get(name) or "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise SuppliedDistError(f"{name}={value}: no such file or folder (expected a Pulsar distribution "
                                "tarball, an unpacked distribution or a lib/ folder)")
    return path


def is_tarball(path: Path) -> bool:
    return path.is_file() and path.name.endswith(TARBALL_SUFFIXES)


def lib_folder(path: Path, what: str) -> Path:
    """The folder holding the jars: `path/lib`, `path` itself, or the one top folder's lib/."""
    candidates = [path / "lib", path]
    tops = [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
    if len(tops) == 1:
        candidates.append(tops[0] / "lib")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.jar")):
            return c
    raise SuppliedDistError(f"{what}: no jars found (looked in {', '.join(str(c) for c in candidates)}); "
                            "expected a Pulsar distribution with lib/*.jar or a lib/ folder")


def check_supplied(release: str, env: dict | None = None) -> Path | None:
    """Cheap check before anything starts: the supplied path exists and holds jars (a tarball is
    only checked to be a readable tar). None when nothing is supplied for `release`."""
    path = supplied_path(release, env)
    if path is None:
        return None
    what = f"{env_name(release)}={path}"
    if path.is_file():
        if not is_tarball(path):
            raise SuppliedDistError(f"{what}: a file that is not a .tar.gz/.tgz/.tar distribution")
        if not tarfile.is_tarfile(path):
            raise SuppliedDistError(f"{what}: not a readable tar archive")
        return path
    lib_folder(path, what)
    return path


def digest(path: Path) -> str:
    """sha256 of a tarball, or of a lib folder's (name, sha256) list."""
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    for jar in sorted(path.glob("*.jar")):
        jh = hashlib.sha256()
        with jar.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                jh.update(chunk)
        h.update(f"{jar.name} {jh.hexdigest()}\n".encode())
    return h.hexdigest()


def jar_version(lib: Path) -> str | None:
    """The Pulsar version the build's pulsar-common jar says it is (PulsarVersion's
    pulsar-version.properties or the jar's manifest), None when it cannot tell."""
    for jar in sorted(lib.glob("*pulsar-common-*.jar")):
        try:
            with zipfile.ZipFile(jar) as z:
                names = set(z.namelist())
                for props in ("pulsar-version.properties", "META-INF/maven/org.apache.pulsar/pulsar-common/pom.properties"):
                    if props in names:
                        for line in z.read(props).decode(errors="replace").splitlines():
                            if line.startswith("version="):
                                return line.split("=", 1)[1].strip()
                if "META-INF/MANIFEST.MF" in names:
                    for line in z.read("META-INF/MANIFEST.MF").decode(errors="replace").splitlines():
                        if line.startswith(("Implementation-Version:", "Bundle-Version:")):
                            return line.split(":", 1)[1].strip()
        except (OSError, zipfile.BadZipFile):
            continue
        m = re.search(r"pulsar-common-(\d+\.\d+\.\d+[^/]*?)\.jar$", jar.name)
        if m:
            return m.group(1)
    return None


def read_source(folder: Path) -> dict | None:
    try:
        return json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def assemble(release: str, path: Path, out: Path, log=print) -> Path:
    """build/pulsar/<release>/ from the supplied `path` (see the module's docstring); reused when
    what was supplied has not changed since."""
    what = f"{env_name(release)}={path}"
    check_supplied(release, {env_name(release): str(path)})
    kind = "tarball" if path.is_file() else ("distribution" if (path / "lib").is_dir() else "lib")
    sha = digest(path if kind == "tarball" else lib_folder(path, what))
    known = read_source(out)
    if known and known.get("sha256") == sha and (out / "lib").is_dir():
        return out
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "lib").mkdir(parents=True)
    if kind == "tarball":
        unpacked = work / "unpacked"
        try:
            with tarfile.open(path) as tar:
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise SuppliedDistError(f"{what}: cannot unpack ({exc})") from None
        lib = lib_folder(unpacked, what)
    else:
        lib = lib_folder(path, what)
    for jar in sorted(lib.glob("*.jar")):
        shutil.copy2(jar, work / "lib" / jar.name)
    shutil.rmtree(work / "unpacked", ignore_errors=True)
    jars = sorted(p.name for p in (work / "lib").glob("*.jar"))
    source = {"release": release, "supplied": True, "env": env_name(release), "path": str(path.resolve()),
              "kind": kind, "sha256": sha, "jars": len(jars), "pulsar_version": jar_version(work / "lib")}
    (work / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
    (work / "classpath.txt").write_text("\n".join(jars) + "\n")
    components = ["broker"] + (["proxy"] if any("pulsar-proxy-" in j for j in jars) else [])
    (work / "components").write_text(" ".join(components) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    log(f"Pulsar {release}: {len(jars)} jars from the supplied build ({kind}, sha256 {sha[:12]}, "
        f"its jars say Pulsar {source['pulsar_version'] or 'unknown'})")
    return out


def supplied_releases(releases: list[str], env: dict | None = None) -> dict[str, dict]:
    """{release: record} for each of `releases` run from a supplied build: its source.json once
    assembled (with the digest of what ran), else the variable and path named."""
    from chaoslab.lab.pulsar_dist import classpath_dir
    out = {}
    for release in dict.fromkeys(releases):
        try:
            path = supplied_path(release, env)
        except SuppliedDistError as exc:
            out[release] = {"env": env_name(release), "error": str(exc)}
            continue
        if path is None:
            continue
        record = read_source(classpath_dir(release))
        if record is None or record.get("path") != str(path.resolve()):
            record = {"release": release, "supplied": True, "env": env_name(release), "path": str(path.resolve())}
        out[release] = record
    return out
