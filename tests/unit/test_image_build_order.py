"""ImageBuilder: what runs side by side on a cold machine (Maven, cargo, debootstrap), what waits
for what, and the class-data sharing layer trained only when asked for. The engine is faked."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import docker.errors
import pytest

from chaoslab.errors import LabError
from chaoslab.lab import images as images_mod
from chaoslab.lab.images import CDS_LABEL, RECIPE_LABEL, ImageBuilder


class FakeImages:
    def __init__(self):
        self.by_tag: dict[str, SimpleNamespace] = {}

    def get(self, ref):
        for tag, image in self.by_tag.items():
            if ref in (tag, image.id):
                return image
        raise docker.errors.ImageNotFound(ref)

    def prune(self, filters=None):
        return {}


class FakeClient:
    def __init__(self):
        self.images = FakeImages()
        self.builds: list[dict] = []
        self.api = SimpleNamespace(build=self._build)

    def _build(self, path, tag, labels, buildargs, **kw):
        self.builds.append({"path": path, "tag": tag, "buildargs": buildargs, "labels": labels})
        image_labels = dict(labels)
        if path.endswith("pulsar-cds"):
            image_labels[CDS_LABEL] = "trained"
        self.images.by_tag[tag] = SimpleNamespace(id=f"sha256:{len(self.builds)}", labels=image_labels)
        yield {"stream": "Step 1/1 : FROM x\n"}


@pytest.fixture
def pulsar_builder(tmp_path, monkeypatch):
    client = FakeClient()
    client.images.by_tag["chaoslab/jre:17"] = SimpleNamespace(id="sha256:jre", labels={})
    dist = tmp_path / "3.2.3"
    (dist / "lib").mkdir(parents=True)
    (dist / "classpath.txt").write_text("a.jar\n")
    (dist / "broker-settings.txt").write_text("loadManagerClassName\n")
    monkeypatch.setattr(images_mod.pulsar_dist, "resolve", lambda v, c, log=None: dist)
    monkeypatch.setattr(ImageBuilder, "jre", lambda self: "chaoslab/jre:17")
    monkeypatch.setattr(images_mod, "STAGES_FILE", tmp_path / "stages.jsonl", raising=False)
    monkeypatch.setattr("chaoslab.lab.build_stages.STAGES_FILE", tmp_path / "stages.jsonl")
    return client


def test_without_training_one_image_and_no_archives(pulsar_builder):
    builder = ImageBuilder(pulsar_builder, log=lambda m: None, train_cds=False)
    assert builder.pulsar("3.2.3") == "chaoslab/pulsar:3.2.3"
    assert [b["path"].rsplit("/", 1)[-1] for b in pulsar_builder.builds] == ["3.2.3"]
    assert builder.cds_trained("3.2.3") is False
    builder.pulsar("3.2.3")
    assert len(pulsar_builder.builds) == 1, "a current image is reused"


def test_training_adds_a_layer_on_the_plain_image_then_both_modes_reuse_it(pulsar_builder):
    ImageBuilder(pulsar_builder, log=lambda m: None, train_cds=False).pulsar("3.2.3")
    plain_id = pulsar_builder.images.by_tag["chaoslab/pulsar:3.2.3"].id
    trainer = ImageBuilder(pulsar_builder, log=lambda m: None, train_cds=True)
    trainer.pulsar("3.2.3")
    assert len(pulsar_builder.builds) == 2, "the plain image is not built again, only the layer"
    layer = pulsar_builder.builds[-1]
    assert layer["path"].endswith("pulsar-cds") and layer["buildargs"] == {"PULSAR_IMAGE": plain_id}
    assert trainer.cds_trained("3.2.3") is True
    ImageBuilder(pulsar_builder, log=lambda m: None, train_cds=False).pulsar("3.2.3")
    trainer.pulsar("3.2.3")
    assert len(pulsar_builder.builds) == 2, "a trained image serves both modes"
    assert layer["labels"][RECIPE_LABEL] != pulsar_builder.builds[0]["labels"][RECIPE_LABEL]


def test_cds_training_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv("CHAOSLAB_CDS_TRAIN", raising=False)
    assert ImageBuilder(FakeClient()).train_cds is False
    monkeypatch.setenv("CHAOSLAB_CDS_TRAIN", "1")
    assert ImageBuilder(FakeClient()).train_cds is True


def test_maven_and_cargo_run_beside_debootstrap_and_each_release_waits_for_its_classpath(monkeypatch):
    events: list[str] = []
    lock = threading.Lock()
    base_may_finish = threading.Event()
    started = {"maven 3.2.3", "maven 3.3.2", "cargo"}

    def note(what):
        with lock:
            events.append(what)
            if started <= set(events):
                base_may_finish.set()

    def resolve(version, components, log=None):
        note(f"maven {version}")
        return f"/dist/{version}"

    def cargo(log=None):
        note("cargo")
        return "/bin/agent"

    def base(self):
        # debootstrap only ends once Maven (both releases) and cargo have started: they run beside it
        if not getattr(self, "_based", False):
            assert base_may_finish.wait(10), f"started beside debootstrap: {events}"
            self._based = True
            note("base")
        return "chaoslab/base:bookworm"

    monkeypatch.setattr(images_mod.pulsar_dist, "resolve", resolve)
    monkeypatch.setattr(images_mod, "build_agent_binary", cargo)
    monkeypatch.setattr(images_mod, "jcmd_runtime", lambda log=None: None)
    monkeypatch.setattr(ImageBuilder, "base", base)
    monkeypatch.setattr(ImageBuilder, "_agent_current", lambda self: False)
    monkeypatch.setattr(ImageBuilder, "jre", lambda self: note("jre") or "chaoslab/jre:17")
    monkeypatch.setattr(ImageBuilder, "rabbitmq", lambda self: note("rabbitmq") or "chaoslab/rabbitmq:latest")
    monkeypatch.setattr(ImageBuilder, "agent", lambda self, binary=None: note(f"agent with {binary.result()}")
                        or "chaoslab/agent:latest")
    monkeypatch.setattr(ImageBuilder, "pulsar", lambda self, v, c=("broker",): note(f"image {v} {','.join(c)}")
                        or f"chaoslab/pulsar:{v}")
    got = ImageBuilder(FakeClient(), log=lambda m: None, train_cds=False).all(["3.2.3", "3.3.2"], "3.2.3")
    assert got["pulsar-3.3.2"] == "chaoslab/pulsar:3.3.2" and got["proxy"] == "chaoslab/pulsar:3.2.3"
    assert got["agent"] == "chaoslab/agent:latest" and got["rabbitmq"] == "chaoslab/rabbitmq:latest"
    assert "agent with /bin/agent" in events
    for version in ("3.2.3", "3.3.2"):
        assert events.index(f"maven {version}") < events.index(next(e for e in events if e.startswith(f"image {version}")))
    assert events.index("jre") < events.index("image 3.2.3 broker,proxy")


def test_a_failed_cargo_build_fails_the_build(monkeypatch):
    def cargo(log=None):
        raise LabError("cargo build of the VM agent failed")
    monkeypatch.setattr(images_mod.pulsar_dist, "resolve", lambda v, c, log=None: f"/dist/{v}")
    monkeypatch.setattr(images_mod, "build_agent_binary", cargo)
    monkeypatch.setattr(images_mod, "jcmd_runtime", lambda log=None: None)
    monkeypatch.setattr(ImageBuilder, "base", lambda self: "chaoslab/base:bookworm")
    monkeypatch.setattr(ImageBuilder, "_agent_current", lambda self: False)
    monkeypatch.setattr(ImageBuilder, "jre", lambda self: "chaoslab/jre:17")
    monkeypatch.setattr(ImageBuilder, "rabbitmq", lambda self: "chaoslab/rabbitmq:latest")
    monkeypatch.setattr(ImageBuilder, "agent", lambda self, binary=None: binary.result())
    monkeypatch.setattr(ImageBuilder, "pulsar", lambda self, v, c=("broker",): f"chaoslab/pulsar:{v}")
    with pytest.raises(LabError, match="cargo build"):
        ImageBuilder(FakeClient(), log=lambda m: None, train_cds=False).all(["3.2.3"], "3.2.3")


def test_the_agent_is_built_only_for_runs_that_start_vms():
    """The VM agent's image is a cargo build (the longest stage of a cold start): a run none of
    whose variants starts a VM does without it."""
    from chaoslab.run.runner import Runner
    from chaoslab.settings import REPO_ROOT
    from chaoslab.spec.experiment import load
    from fakelab import FakeLab

    def needs(name):
        return Runner(load(REPO_ROOT / "experiments" / f"{name}.yaml"), lab=FakeLab(), log=lambda m: None).needs_agent()
    assert needs("transfer-shedder") is False
    assert needs("rabbitmq-fallback") is False
    assert needs("vector-buffer") is True


def test_all_skips_the_agent_when_told(monkeypatch):
    monkeypatch.setattr(images_mod.pulsar_dist, "resolve", lambda v, c, log=None: f"/dist/{v}")
    monkeypatch.setattr(images_mod, "build_agent_binary", lambda log=None: pytest.fail("cargo ran"))
    monkeypatch.setattr(images_mod, "jcmd_runtime", lambda log=None: None)
    monkeypatch.setattr(ImageBuilder, "base", lambda self: "chaoslab/base:bookworm")
    monkeypatch.setattr(ImageBuilder, "_agent_current", lambda self: False)
    monkeypatch.setattr(ImageBuilder, "jre", lambda self: "chaoslab/jre:17")
    monkeypatch.setattr(ImageBuilder, "rabbitmq", lambda self: "chaoslab/rabbitmq:latest")
    monkeypatch.setattr(ImageBuilder, "agent", lambda self, binary=None: pytest.fail("agent image built"))
    monkeypatch.setattr(ImageBuilder, "pulsar", lambda self, v, c=("broker",): f"chaoslab/pulsar:{v}")
    got = ImageBuilder(FakeClient(), log=lambda m: None, train_cds=False).all(["3.2.3"], "3.2.3", agent=False)
    assert "agent" not in got and got["pulsar-3.2.3"] == "chaoslab/pulsar:3.2.3"


def test_no_prune_while_another_build_runs(monkeypatch, tmp_path):
    """Builds run side by side: a prune of dangling images while another build has not tagged its
    image yet would delete that image. The prune waits until the last running build ends."""
    monkeypatch.setattr("chaoslab.lab.build_stages.STAGES_FILE", tmp_path / "stages.jsonl")
    client = FakeClient()
    pruned_while: list[int] = []
    builder = ImageBuilder(client, log=lambda m: None, train_cds=False)
    client.images.prune = lambda filters=None: pruned_while.append(builder._builds_running) or {}
    first_started, release_first = threading.Event(), threading.Event()
    real = client._build

    def build(path, tag, labels, buildargs, **kw):
        if tag == "one":
            first_started.set()
            assert release_first.wait(10)
        yield from real(path, tag, labels, buildargs, **kw)
    client.api.build = build
    t = threading.Thread(target=builder._build, args=("one", tmp_path, "r1"))
    t.start()
    assert first_started.wait(10)
    builder._build("two", tmp_path, "r2")      # ends while "one" still runs: no prune yet
    assert pruned_while == []
    release_first.set()
    t.join(10)
    assert pruned_while == [0], "one prune, once no build ran"


@pytest.mark.parametrize("pico, never_pull", [(0, True), (2, False)])
def test_a_lab_without_vms_never_pulls_the_agent_it_did_not_build(monkeypatch, pico, never_pull):
    """Without VMs the agent's image is not built; compose must not try to pull it for a VM service
    scaled to 0. With VMs compose keeps its own policy (an AGENT_IMAGE from a registry)."""
    from chaoslab.lab.cluster import Lab, LabState
    from chaoslab.settings import LabSettings
    lab = Lab(LabSettings(), log=lambda m: None)
    monkeypatch.setattr(lab, "prepare", lambda *a, **k: LabState(pico=pico))
    composed = []
    monkeypatch.setattr(lab, "compose", lambda *args, **k: composed.append(args))
    lab.up(pico=pico)
    [args] = composed
    assert (("--pull", "never") == args[4:6]) is never_pull, args
