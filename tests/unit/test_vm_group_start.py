"""Starting a VM group: several containers at once, the list in VM order, each VM in its hypervisor."""

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import pytest
import requests.exceptions

from chaoslab.errors import LabError
from chaoslab.lab import vms


class Containers:
    def __init__(self, fail: str | None = None, timeout: str | None = None):
        self.fail, self.timeout, self.running, self.peak, self.calls = fail, timeout, 0, 0, []
        self.lock = threading.Lock()

    def get(self, name):
        raise docker.errors.NotFound("no such container")

    def run(self, image, name, **kw):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.calls.append((name, kw))
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
        if name == self.fail:
            raise docker.errors.APIError("out of memory", explanation="cannot allocate memory")
        if name == self.timeout:
            raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=120)")
        return SimpleNamespace(name=name)


def lab(containers):
    return SimpleNamespace(project="p", client=SimpleNamespace(containers=containers),
                           settings=SimpleNamespace(agent_image="chaoslab/agent"))


def spec(count, **kw):
    return vms.VmGroupSpec("g", "pico", count, Path("agent.toml"), {}, **kw)


def test_vms_start_several_at_once_and_come_back_in_order():
    c = Containers()
    started = vms.start_group(lab(c), spec(20, cgroup_parents=("/chaoslab-p/hv-g-1", "/chaoslab-p/hv-g-2")))
    assert [x.name for x in started] == [f"p-vm-g-{i}" for i in range(1, 21)]
    assert 1 < c.peak <= vms.START_PARALLEL
    placed = {name: kw["cgroup_parent"] for name, kw in c.calls}
    assert placed["p-vm-g-1"] == "/chaoslab-p/hv-g-1" and placed["p-vm-g-2"] == "/chaoslab-p/hv-g-2"


def test_a_vm_that_cannot_start_is_a_lab_error_naming_it():
    with pytest.raises(LabError, match="p-vm-g-7: cannot allocate memory"):
        vms.start_group(lab(Containers(fail="p-vm-g-7")), spec(10))


def test_an_engine_that_does_not_answer_is_a_lab_error_not_an_internal_one():
    c = Containers(timeout="p-vm-g-3")
    with pytest.raises(LabError, match="the container engine did not answer"):
        vms.start_group(lab(c), spec(4))


def test_a_sampler_that_never_started_stops_quietly():
    import threading

    from chaoslab.run.runner import Sampler
    s = Sampler.__new__(Sampler)
    s._stop, s._thread = threading.Event(), threading.Thread(target=lambda: None)
    s.stop()   # no RuntimeError: the variant failed before its sampler started
    assert s._stop.is_set()
