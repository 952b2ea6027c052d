"""What the lab is running right now, read from the engine and from each broker's admin API."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from chaoslab import http
from chaoslab.lab import health
from chaoslab.lab.cluster import Lab


def _cgroup_memory_limit(container) -> int | None:
    limit = container.attrs.get("HostConfig", {}).get("Memory") or None
    return int(limit) if limit else None


def broker_status(lab: Lab, n: int) -> dict:
    name = f"broker-{n}"
    url = lab.broker_admin_url(n)
    containers = lab.containers(name)
    container = containers[0] if containers else None
    info = {
        "name": name,
        "container": container.name if container else None,
        "state": container.status if container else "absent",
        "admin_url": url,
        "version": None, "loadManagerClassName": None, "loadBalancerLoadSheddingStrategy": None,
        "healthy": False, "health_detail": None, "shallow_healthy": False, "owned_bundles": None,
    }
    if not container or container.status != "running":
        return info
    shallow = health.shallow(url)
    functional = health.functional(url)
    info.update(shallow_healthy=shallow.ok, healthy=functional.ok,
                health_detail=None if functional.ok else functional.detail,
                health_seconds=round(functional.seconds, 3))
    version = http.get_json(f"{url}/admin/v2/brokers/version")
    info["version"] = version if isinstance(version, str) else None
    runtime = http.get_json(f"{url}/admin/v2/brokers/configuration/runtime")
    if isinstance(runtime, dict):
        info["loadManagerClassName"] = runtime.get("loadManagerClassName")
        info["loadBalancerLoadSheddingStrategy"] = runtime.get("loadBalancerLoadSheddingStrategy")
    owned = http.get_json(f"{url}/admin/v2/brokers/{lab.settings.cluster}/{name}:8080/ownedNamespaces")
    if isinstance(owned, dict):
        info["owned_bundles"] = len(owned)
    return info


def cluster_members(lab, via: int) -> dict:
    """{disk_nodes, running_nodes} as node `via` sees them (rabbitmqctl cluster_status)."""
    code, out = lab.rabbitmqctl(via, "cluster_status", "--formatter", "json", timeout=60)
    if code != 0:
        return {"error": out[-200:]}
    try:
        data = json.loads(out[out.index("{"):])
    except ValueError:
        return {"error": out[-200:]}
    return {"disk_nodes": sorted(data.get("disk_nodes") or []), "running_nodes": sorted(data.get("running_nodes") or [])}


def rabbitmq_status(lab: Lab, state_of) -> dict:
    """Each RabbitMQ node's container state and, from node 1's `rabbitmqctl cluster_status`,
    the cluster's membership (who is a member, who is running): read, not assumed."""
    s = lab.settings
    nodes = [{"node": s.rabbitmq_node(n), "service": s.rabbitmq_service(n), "state": state_of(s.rabbitmq_service(n)),
              "amqp_url": s.rabbitmq_amqp_url(n)} for n in range(1, 4)]
    nodes = [n for n in nodes if n["state"] != "absent" or n["service"] == "rabbitmq"]
    out = {"state": nodes[0]["state"], "amqp_url": lab.rabbitmq_url, "nodes": nodes}
    if nodes[0]["state"] in ("healthy", "running"):
        try:
            members = cluster_members(lab, 1)
        except Exception as exc:  # a status command must not fail on one unreadable part
            members = {"error": str(exc)[:120]}
        for n in nodes:
            n["member"] = n["node"] in (members.get("disk_nodes") or [])
            n["running_in_cluster"] = n["node"] in (members.get("running_nodes") or [])
        if members.get("error"):
            out["cluster_error"] = members["error"]
    return out


def _state(by_service: dict, service: str) -> str:
    cs = by_service.get(service) or []
    if not cs:
        return "absent"
    c = cs[0]
    return c.attrs["State"].get("Health", {}).get("Status") or c.status


def collect(lab: Lab) -> dict:
    """One JSON-able object: brokers, proxy, RabbitMQ, VMs, the rest of Pulsar. A lab brought up
    without Pulsar (`chaoslab up --no-pulsar`) says so instead of listing its parts as absent."""
    by_service: dict[str, list] = {}
    for c in lab.containers():
        by_service.setdefault(c.labels.get("com.docker.compose.service", "?"), []).append(c)
    pulsar_parts = {"zookeeper", "proxy", "bookie-1", "bookie-2", *(f"broker-{n}" for n in range(1, lab.settings.brokers + 1))}
    if by_service and not pulsar_parts & set(by_service):
        return {"project": lab.project, "up": True, "pulsar": "not in this lab",
                "rabbitmq": rabbitmq_status(lab, lambda s: _state(by_service, s)), "vms": []}
    with ThreadPoolExecutor(max_workers=lab.settings.brokers) as pool:
        brokers = list(pool.map(lambda n: broker_status(lab, n), range(1, lab.settings.brokers + 1)))

    def state_of(service: str) -> str:
        return _state(by_service, service)

    proxy_health = http.get_json(f"{lab.proxy_admin_url}/admin/v2/clusters")
    vms = []
    for service in ("vm-pico", "vm-nano"):
        for c in by_service.get(service, []):
            vms.append({
                "container": c.name, "flavour": service.removeprefix("vm-"), "state": c.status,
                "memory_limit_bytes": _cgroup_memory_limit(c),
                "memory_limit_mib": (_cgroup_memory_limit(c) or 0) // (1024 * 1024) or None,
                "cpus": (c.attrs["HostConfig"].get("NanoCpus") or 0) / 1e9 or None,
                "cpu_shares": c.attrs["HostConfig"].get("CpuShares") or None,
                "image": c.attrs["Config"]["Image"],
            })
    return {
        "project": lab.project,
        "up": bool(by_service),
        "brokers": brokers,
        "proxy": {
            "container": (by_service.get("proxy") or [None])[0] and by_service["proxy"][0].name,
            "state": state_of("proxy"),
            "service_url": lab.proxy_service_url,
            "admin_url": lab.proxy_admin_url,
            "healthy": isinstance(proxy_health, list) and lab.settings.cluster in proxy_health,
        },
        "rabbitmq": rabbitmq_status(lab, state_of),
        "zookeeper": {"state": state_of("zookeeper")},
        "bookies": [{"name": s, "state": state_of(s)} for s in ("bookie-1", "bookie-2")],
        "vms": vms,
    }
