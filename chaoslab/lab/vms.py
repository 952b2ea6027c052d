"""Groups of small-VM containers started beside the compose lab, each group with its own agent
configuration (the vector-buffer experiment compares buffer settings side by side).

Same limits as compose's vm-pico / vm-nano (settings.FLAVOURS): a hard memory cap with no swap beyond it, one vCPU
at reduced priority. Containers carry org.chaoslab.project so that `chaoslab down` removes them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import requests.exceptions

from chaoslab.errors import LabError
from chaoslab.lab import hypervisors
from chaoslab.lab.cluster import Lab
from chaoslab.settings import FLAVOURS

START_PARALLEL = 6   # VM containers started at once


@dataclass(frozen=True)
class VmGroupSpec:
    name: str
    flavour: str
    count: int
    config_path: Path          # the agent's TOML for this group
    environment: dict
    memory_mib: int | None = None  # a declared scale-down of the flavour's memory cap
    cgroup_parents: tuple[str, ...] = ()   # VM i runs in cgroup_parents[i % len]: its hypervisor (lab/hypervisors.py)
    read_bps: tuple[int | None, ...] = ()  # VM i's own disk-read cap (its hypervisor's budget split over its VMs)


def start_group(lab: Lab, group: VmGroupSpec) -> list:
    if group.flavour not in FLAVOURS:
        raise LabError(f"unknown VM flavour {group.flavour!r} (known: {', '.join(FLAVOURS)})")
    f = dict(FLAVOURS[group.flavour])
    if group.memory_mib:
        f["memory_mib"] = group.memory_mib
    network = f"{lab.project}_default"

    def start_one(i: int):
        name = f"{lab.project}-vm-{group.name}-{i}"
        try:
            lab.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        placed = {"cgroup_parent": group.cgroup_parents[(i - 1) % len(group.cgroup_parents)]} if group.cgroup_parents else {}
        rate = group.read_bps[(i - 1) % len(group.read_bps)] if group.read_bps else None
        if rate:   # cgroup v1 throttling is flat (not hierarchical): each VM gets its share of its hypervisor's budget
            placed["device_read_bps"] = [{"Path": hypervisors.device_path(), "Rate": int(rate)}]
        try:
            return lab.client.containers.run(
                lab.settings.agent_image, name=name, hostname=f"vm-{group.name}-{i}", detach=True, init=True,
                mem_limit=f"{f['memory_mib']}m", memswap_limit=f"{f['memory_mib']}m",
                nano_cpus=int(f["cpus"] * 1e9), cpu_shares=f["cpu_shares"], network=network,
                environment={"VECTOR_CONFIG": "/etc/vector/vector.toml", "VM_FLAVOUR": group.flavour,
                             "VM_GROUP": group.name, **{k: str(v) for k, v in group.environment.items()}},
                volumes={str(group.config_path.resolve()): {"bind": "/etc/vector/vector.toml", "mode": "ro"}},
                labels={"org.chaoslab.lab": "true", "org.chaoslab.vm": "true", "org.chaoslab.project": lab.project,
                        "org.chaoslab.vm-group": group.name, "org.chaoslab.flavour": group.flavour,
                        **({"org.chaoslab.hypervisor": placed["cgroup_parent"].rsplit("/", 1)[-1]} if "cgroup_parent" in placed else {})},
                **placed,
            )
        except docker.errors.APIError as exc:
            raise LabError(f"could not start VM container {name}: {exc.explanation or exc}") from exc
        except requests.exceptions.RequestException as exc:   # the engine itself did not answer in time
            raise LabError(f"could not start VM container {name}: the container engine did not answer ({exc}); "
                           "the host's disk or memory may be saturated by the VMs already running") from exc

    # several at once: at fleet scale (hundreds of VMs) one after another takes minutes; the order
    # of the list stays VM 1..count
    with ThreadPoolExecutor(max_workers=min(START_PARALLEL, group.count)) as pool:
        return list(pool.map(start_one, range(1, group.count + 1)))


def group_containers(lab: Lab, group: str | None = None, all: bool = True) -> list:
    labels = [f"org.chaoslab.project={lab.project}", "org.chaoslab.vm=true"]
    if group:
        labels.append(f"org.chaoslab.vm-group={group}")
    return sorted(lab.client.containers.list(all=all, filters={"label": labels}), key=lambda c: c.name)


def remove_groups(lab: Lab) -> None:
    for c in group_containers(lab):
        try:
            c.remove(force=True)
        except docker.errors.APIError:
            pass
    hypervisors.remove_all(lab.project)   # their VMs are gone: the hypervisors' cgroups go too
