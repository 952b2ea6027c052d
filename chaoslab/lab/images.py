"""Build the lab's images locally: nothing can be pulled here.

Chain: a Debian base made with debootstrap + `docker import`, then `FROM` it a JRE image, one
Pulsar image per exact release (classpath from pulsar_dist), RabbitMQ and the VM agent.

Every image carries a label `org.chaoslab.recipe` with a hash of everything that went into it
(its recipe folder, its build context inputs, its parent's image id). An image whose label
matches is reused, so a second `make up` builds nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from docker.utils import parse_repository_tag

from chaoslab.errors import ArtifactUnavailable, LabError
from chaoslab.lab import broker_settings, pulsar_dist, supplied
from chaoslab.lab.build_stages import stage
from chaoslab.settings import BUILD_DIR, REPO_ROOT

IMAGES_DIR = REPO_ROOT / "images"
RECIPE_LABEL = "org.chaoslab.recipe"
CDS_LABEL = "org.chaoslab.cds"

BASE_IMAGE = "chaoslab/base:bookworm"
JRE_IMAGE = "chaoslab/jre:17"
RABBITMQ_IMAGE = "chaoslab/rabbitmq:latest"
AGENT_IMAGE = "chaoslab/agent:latest"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The agent is a Rust program (agent/), built on the host with cargo and copied into the image.
AGENT_SRC = REPO_ROOT / "agent"
AGENT_TARGET = BUILD_DIR / "agent-target"


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")


def cargo() -> str:
    """cargo on PATH, or rustup's default place; a LabError says what is missing."""
    found = shutil.which("cargo") or next((str(p) for p in [Path.home() / ".cargo" / "bin" / "cargo"] if p.exists()), None)
    if not found:
        raise LabError("cargo (the Rust toolchain) is missing: install it with rustup (https://rustup.rs) "
                       "or apt-get install cargo; the VM agent is built from agent/ with it")
    return found


def build_agent_binary(log=print) -> Path:
    """`cargo build --release --locked` of agent/ into build/agent-target; returns the binary."""
    if not shutil.which("protoc"):
        raise LabError("protoc is missing (apt-get install protobuf-compiler): the agent's Pulsar client compiles "
                       "Pulsar's protocol definition with it")
    log("building the VM agent (cargo build --release) ...")
    with stage("cargo build of the VM agent", log):
        proc = subprocess.run([cargo(), "build", "--release", "--locked", "--quiet", "--manifest-path",
                               str(AGENT_SRC / "Cargo.toml"), "--target-dir", str(AGENT_TARGET)],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise LabError(f"cargo build of the VM agent failed:\n{tail}")
    return AGENT_TARGET / "release" / "chaoslab-agent"


JCMD_MODULES = "jdk.jcmd,jdk.attach,jdk.internal.jvmstat"


def jcmd_runtime(log=print) -> Path | None:
    """build/jcmd-runtime.tar: a Java runtime holding only `jcmd` (jlink of the host's JDK, ~35 MB),
    copied into a broker container to take `jcmd 1 Thread.print -l` there (the images carry a JRE
    without it, and jcmd must attach from inside the JVM's namespaces). None when the host has no
    jlink: thread dumps then fall back to SIGQUIT (the same dump without ownable synchronizers)."""
    tarball = BUILD_DIR / "jcmd-runtime.tar"
    if tarball.exists():
        return tarball
    jlink = shutil.which("jlink")
    if jlink is None:
        return None
    work = BUILD_DIR / "jcmd-runtime.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    log("making a jcmd-only Java runtime for thread dumps (jlink) ...")
    with stage("jlink of a jcmd runtime"):
        proc = subprocess.run([jlink, "--add-modules", JCMD_MODULES, "--strip-debug", "--no-header-files",
                               "--no-man-pages", "--output", str(work / "chaoslab-jcmd")],
                              capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        log(f"jlink failed; thread dumps will use SIGQUIT: {(proc.stderr or proc.stdout).strip()[-200:]}")
        shutil.rmtree(work, ignore_errors=True)
        return None
    tmp = tarball.with_suffix(".tar.tmp")
    subprocess.run(["tar", "-C", str(work), "-cf", str(tmp), "chaoslab-jcmd"], check=True)
    tmp.replace(tarball)
    shutil.rmtree(work, ignore_errors=True)
    return tarball


def pulsar_image(version: str) -> str:
    """The lab's own image of a release (the local flavour; lab/flavour.py names the image a lab runs)."""
    return f"chaoslab/pulsar:{version}"


def _on_engine(client: docker.DockerClient, ref: str) -> bool:
    """Whether this engine has `ref` (an engine that does not answer raises docker's APIError)."""
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def pull_image(client: docker.DockerClient, ref: str, log=print) -> str:
    """`ref` on this engine: kept when it is there already (a release's tag names one build),
    pulled otherwise; LabError saying why when it cannot be had. Returns `ref`."""
    try:
        if _on_engine(client, ref):
            return ref
    except docker.errors.APIError as exc:
        raise LabError(f"cannot ask the engine for {ref}: {exc.explanation or exc}") from None
    repository, tag = parse_repository_tag(ref)
    log(f"pulling {ref} ...")
    try:
        client.images.pull(repository, tag=tag or "latest")
    except docker.errors.APIError as exc:
        raise ArtifactUnavailable(f"cannot pull {ref}: {(exc.explanation or str(exc)).strip()[:240]}") from None
    return ref


def image_available(client: docker.DockerClient, ref: str) -> str | None:
    """None when `ref` is on this engine or its registry has it (asked without pulling: the
    manifest only); else why not, in a few words."""
    try:
        if _on_engine(client, ref):
            return None
    except docker.errors.APIError as exc:
        return f"the engine did not answer ({exc.explanation or exc})"
    try:
        client.images.get_registry_data(ref)
        return None
    except docker.errors.APIError as exc:
        return f"not on this engine, and its registry says: {(exc.explanation or str(exc)).strip()[:200]}"


def _hash_paths(h, paths: list[Path]) -> None:
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f.name).encode())
            h.update(f.read_bytes())


def train_cds_default() -> bool:
    """CHAOSLAB_CDS_TRAIN=1 trains class-data sharing whenever a Pulsar image is built;
    `chaoslab build --cds` does it once. Off by default: see docs/cold-start.md for the figures."""
    return os.environ.get("CHAOSLAB_CDS_TRAIN", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ImageBuilder:
    client: docker.DockerClient
    log: callable = print
    train_cds: bool = field(default_factory=train_cds_default)
    _builds_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _builds_running: int = field(default=0, init=False, repr=False)

    # -- helpers ---------------------------------------------------------------------------
    def _current(self, tag: str, recipe: str) -> bool:
        try:
            image = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        return (image.labels or {}).get(RECIPE_LABEL) == recipe

    def image_id(self, tag: str) -> str:
        return self.client.images.get(tag).id

    def _build(self, tag: str, context: Path, recipe: str, buildargs: dict | None = None) -> None:
        with self._builds_lock:
            self._builds_running += 1
        try:
            self._build_one(tag, context, recipe, buildargs)
        finally:
            with self._builds_lock:
                self._builds_running -= 1
                if self._builds_running == 0:
                    # the image this one replaced is now dangling: do not let rebuilds fill the disk.
                    # Only when no other build runs (all() builds side by side): a build's image is
                    # briefly untagged, with our label, between its last step and its tag, and a
                    # prune then would delete it under that build (seen: "failed to get destination
                    # image"). New builds wait for the prune (the lock).
                    try:
                        self.client.images.prune(filters={"dangling": True, "label": RECIPE_LABEL})
                    except docker.errors.APIError:
                        pass

    def _build_one(self, tag: str, context: Path, recipe: str, buildargs: dict | None) -> None:
        self.log(f"building {tag} ...")
        output: list[str] = []
        with stage(f"image {tag}", self.log) as record:
            steps: list[dict] = record.setdefault("steps", [])
            try:
                for chunk in self.client.api.build(
                    path=str(context), tag=tag, rm=True, forcerm=True, decode=True,
                    buildargs=buildargs or {}, labels={RECIPE_LABEL: recipe},
                ):
                    if "stream" in chunk:
                        output.append(chunk["stream"])
                        step = _STEP.match(chunk["stream"])
                        if step:
                            now = time.monotonic()
                            if steps:
                                steps[-1]["seconds"] = round(now - steps[-1].pop("_t"), 1)
                            steps.append({"step": step.group(3).strip()[:80], "_t": now})
                    if "error" in chunk:
                        tail = "".join(output[-15:])
                        raise LabError(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
            except docker.errors.APIError as exc:
                raise LabError(f"building {tag} failed: {exc.explanation or exc}") from exc
            finally:
                if steps and "_t" in steps[-1]:
                    steps[-1]["seconds"] = round(time.monotonic() - steps[-1].pop("_t"), 1)

    def _recipe(self, *parts, paths: list[Path] = ()) -> str:
        h = hashlib.sha256()
        for part in parts:
            h.update(str(part).encode())
        _hash_paths(h, list(paths))
        return h.hexdigest()[:16]

    # -- images ----------------------------------------------------------------------------
    def base(self) -> str:
        recipe = self._recipe("debootstrap", "minbase", DEBIAN_SUITE, DEBIAN_MIRROR, "v1")  # also in _agent_current
        if self._current(BASE_IMAGE, recipe):
            return BASE_IMAGE
        if shutil.which("debootstrap") is None:
            raise LabError("debootstrap is missing: run 'make setup' (apt-get install debootstrap)")
        work = BUILD_DIR / "base"
        rootfs = work / "rootfs"
        tarball = work / "rootfs.tar"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self.log(f"debootstrap {DEBIAN_SUITE} (minbase) ...")
        with stage("debootstrap", self.log):
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
                capture_output=True, text=True,
            )
        if proc.returncode != 0:
            (work / "debootstrap.log").write_text(proc.stdout + proc.stderr)
            raise LabError(f"debootstrap failed (log: {work / 'debootstrap.log'}): "
                           f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            target = rootfs / junk
            if target.exists():
                shutil.rmtree(target)
                target.mkdir(parents=True)
        (rootfs / "etc/apt/apt.conf.d/99chaoslab").write_text(
            'APT::Install-Recommends "false";\nAcquire::Retries "3";\n')
        self.log(f"docker import -> {BASE_IMAGE}")
        with stage("base image import", self.log):
            subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True)
            self.client.api.import_image_from_file(
                str(tarball), repository=BASE_IMAGE.split(":")[0], tag=BASE_IMAGE.split(":")[1],
                changes=[f"LABEL {RECIPE_LABEL}={recipe}", 'CMD ["/bin/bash"]',
                         "ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive"],
            )
        shutil.rmtree(work, ignore_errors=True)
        return BASE_IMAGE

    def _from_base(self, tag: str, folder: str) -> str:
        """An image built from a recipe folder in images/ on top of the base image."""
        src = IMAGES_DIR / folder
        recipe = self._recipe(self.image_id(self.base()), paths=[src])
        if not self._current(tag, recipe):
            self._build(tag, src, recipe)
        return tag

    def jre(self) -> str:
        return self._from_base(JRE_IMAGE, "jre")

    def pulsar(self, version: str, components: tuple[str, ...] = ("broker",)) -> str:
        """The release's image: its classpath and configuration (always), then, when this builder
        trains class-data sharing (`train_cds`), a layer on top with the archives of a training run
        (images/pulsar-cds). Either is reused while its recipe holds; an image without the layer
        starts its JVMs without archives (pulsar-run only passes an archive that exists)."""
        tag = pulsar_image(version)
        dist = pulsar_dist.resolve(version, components, log=self.log)
        # the release's broker settings go into the image with it (/pulsar/broker-settings.txt)
        settings = dist / broker_settings.SETTINGS_FILE
        if not settings.exists():
            broker_settings.write_settings_file(dist, version)
        src = IMAGES_DIR / "pulsar"
        # a supplied build's source.json carries the digest of its jars: a rebuilt jar, a new image
        source = [dist / supplied.SOURCE_FILE] if (dist / supplied.SOURCE_FILE).exists() else []
        recipe = self._recipe(self.image_id(self.jre()), version,
                              paths=[src, dist / "classpath.txt", settings, *source])
        trained = self._recipe(recipe, paths=[IMAGES_DIR / "pulsar-cds"])
        if self._current(tag, trained) or (self._current(tag, recipe) and not self.train_cds):
            return tag
        if not self._current(tag, recipe):
            for item in src.iterdir():  # stage the recipe beside lib/
                target = dist / item.name
                if item.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(item, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(item, target)
            self._build(tag, dist, recipe, buildargs={"PULSAR_VERSION": version})
        if self.train_cds:
            self._build(tag, IMAGES_DIR / "pulsar-cds", trained, buildargs={"PULSAR_IMAGE": self.image_id(tag)})
        return tag

    def cds_trained(self, version: str) -> bool | None:
        """Whether the release's image carries the class-data sharing archives (None: no image)."""
        try:
            image = self.client.images.get(pulsar_image(version))
        except docker.errors.ImageNotFound:
            return None
        return (image.labels or {}).get(CDS_LABEL) == "trained"

    def rabbitmq(self) -> str:
        return self._from_base(RABBITMQ_IMAGE, "rabbitmq")

    def _agent_recipe(self, base_id: str) -> str:
        src = IMAGES_DIR / "agent"
        agent_config = REPO_ROOT / "compose" / "vector" / "vector.toml"
        inputs = [src, AGENT_SRC / "Cargo.toml", AGENT_SRC / "Cargo.lock", AGENT_SRC / "src", agent_config]
        return self._recipe(base_id, "rust-agent", paths=inputs)

    def _agent_current(self) -> bool:
        """The agent image is current for the base image as it stands (False when there is no base
        image yet, or it is stale: then both are built anew)."""
        recipe = self._recipe("debootstrap", "minbase", DEBIAN_SUITE, DEBIAN_MIRROR, "v1")
        if not self._current(BASE_IMAGE, recipe):
            return False
        return self._current(AGENT_IMAGE, self._agent_recipe(self.image_id(BASE_IMAGE)))

    def agent(self, binary: Future | None = None) -> str:
        """The VM agent's image; `binary`: a cargo build already started (all() starts it at once,
        beside debootstrap and Maven)."""
        src = IMAGES_DIR / "agent"
        agent_config = REPO_ROOT / "compose" / "vector" / "vector.toml"
        recipe = self._agent_recipe(self.image_id(self.base()))
        if self._current(AGENT_IMAGE, recipe):
            return AGENT_IMAGE
        binary = binary.result() if binary is not None else build_agent_binary(self.log)
        ctx = BUILD_DIR / "agent"
        shutil.rmtree(ctx, ignore_errors=True)
        ctx.mkdir(parents=True)
        shutil.copy2(binary, ctx / "chaoslab-agent")
        for item in src.iterdir():
            shutil.copy2(item, ctx / item.name)
        shutil.copy2(agent_config, ctx / "vector.toml")
        self._build(AGENT_IMAGE, ctx, recipe)
        return AGENT_IMAGE

    def _resolve_side_by_side(self, maven: ThreadPoolExecutor, wanted: dict[str, list[str]]) -> dict[str, Future]:
        """Each release's classpath (pulsar_dist.resolve) as a future. The first release resolves
        alone: on an empty Maven repository it fetches Maven's plugins and the bulk of the jars every
        release shares; the others then start two at a time and mostly fetch what differs, so two
        Maven processes rarely write the same file of the shared local repository (Maven writes
        each download to a temporary file and renames it into place)."""
        versions = list(wanted)
        first: Future = maven.submit(pulsar_dist.resolve, versions[0], tuple(wanted[versions[0]]), self.log)

        def after_first(version: str):
            first.result()
            return pulsar_dist.resolve(version, tuple(wanted[version]), self.log)
        return {versions[0]: first, **{v: maven.submit(after_first, v) for v in versions[1:]}}

    def all(self, pulsar_versions: list[str], proxy_version: str, agent: bool = True) -> dict[str, str]:
        """Build (or reuse) every image the lab needs (agent=False: all but the VM agent's); return
        {role: tag}.

        What does not wait for anything starts at once, side by side: Maven resolving the releases
        (the first alone, then two at a time, see _resolve_side_by_side), cargo building the agent, jlink
        making the jcmd runtime, and debootstrap. Then the JRE and RabbitMQ images build side by
        side, the agent's image as soon as cargo is done, and each Pulsar image as soon as the JRE
        image and its release's classpath are there (one at a time). bench/cold_start.py shows
        the stages on one time line."""
        wanted: dict[str, list[str]] = {}
        for version in pulsar_versions:
            wanted.setdefault(version, ["broker"])
        wanted.setdefault(proxy_version, []).append("proxy")
        maven = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chaoslab-maven")
        pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chaoslab-build")
        try:
            dists = self._resolve_side_by_side(maven, wanted)
            binary = None if not agent or self._agent_current() else pool.submit(build_agent_binary, self.log)
            pool.submit(jcmd_runtime, self.log)
            images = {"base": self.base()}
            rabbitmq = pool.submit(self.rabbitmq)
            agent_image = pool.submit(self.agent, binary) if agent else None
            images["jre"] = self.jre()
            for version, components in wanted.items():
                dists[version].result()
                images[f"pulsar-{version}"] = self.pulsar(version, tuple(components))
            images["proxy"] = pulsar_image(proxy_version)
            images["rabbitmq"] = rabbitmq.result()
            if agent_image is not None:
                images["agent"] = agent_image.result()
        except BaseException:
            # what was not started is dropped; what runs (a Maven or cargo process) finishes on its
            # own, and an interrupt reaches those processes from the terminal as well
            maven.shutdown(wait=False, cancel_futures=True)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        maven.shutdown()
        pool.shutdown()
        return images
