"""Faults and operator actions on the lab: roll one broker, wait like an operator, roll back,
recover the way the incident's operators did. Each action records itself in the journal; none
of them knows about the workload or the checks."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from chaoslab.lab import health
from chaoslab.lab.cluster import Lab
from chaoslab.observe.journal import Journal
from chaoslab.observe.pulsar_observers import topic_path


def wait_for_broker(lab: Lab, n: int, how: str, timeout: float, stop=None) -> tuple[bool, float]:
    """Poll the shallow (/status.html) or functional check every second. Returns (ok, seconds)."""
    started = time.monotonic()
    probe = health.shallow if how == "shallow" else health.functional
    while time.monotonic() - started < timeout:
        if stop is not None and stop():
            break
        if probe(lab.broker_admin_url(n), timeout=10 if how == "functional" else 3).ok:
            return True, time.monotonic() - started
        time.sleep(1)
    return False, time.monotonic() - started


def roll_broker(lab: Lab, journal: Journal, n: int, version: str, config: dict[str, str],
                wait_for: str, timeout: float) -> dict:
    """One rolling-upgrade step: recreate broker-n on `version` with `config`, wait the operator's
    way, and record what the *other* check said at the moment the operator moved on."""
    journal.event("upgrade-start", broker=f"broker-{n}", version=version, config=config)
    lab.set_broker(n, version=version, config=config, wait=False)
    journal.event("broker-recreated", broker=f"broker-{n}")
    ok, took = wait_for_broker(lab, n, wait_for, timeout)
    url = lab.broker_admin_url(n)
    shallow, functional = health.shallow(url), health.functional(url, timeout=15)
    result = {"broker": f"broker-{n}", "waited_for": wait_for, "wait_ok": ok, "wait_secs": round(took, 1),
              "shallow_ok": shallow.ok, "functional_ok": functional.ok,
              "functional_detail": None if functional.ok else functional.detail[:200]}
    journal.event("upgrade-done" if ok else "upgrade-wait-timeout", **result)
    return result


def delete_topic(url: str, fqn: str, timeout: float = 30) -> int:
    req = urllib.request.Request(f"{url}/admin/v2/{topic_path(fqn)}?force=true", method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception:
        return 0


def rollback(lab: Lab, journal: Journal, brokers: list[int], revert: dict[str, str],
             version: str | None, timeout: float) -> dict:
    """Revert settings (and optionally the version) broker by broker, newest first; then check
    that every broker serves (functional check)."""
    journal.event("rollback-start", brokers=[f"broker-{n}" for n in brokers], revert=revert, version=version)
    started = time.monotonic()
    steps = []
    for n in reversed(brokers):
        lab.set_broker(n, version=version, config=revert, wait=False)
        ok, took = wait_for_broker(lab, n, "functional", timeout)
        steps.append({"broker": f"broker-{n}", "serves": ok, "secs": round(took, 1)})
        journal.event("rollback-step", **steps[-1])
    all_ok = all(s["serves"] for s in steps) and all(
        health.functional(lab.broker_admin_url(n)).ok for n in range(1, lab.settings.brokers + 1))
    result = {"ok": all_ok, "secs": round(time.monotonic() - started, 1), "steps": steps}
    journal.event("rollback-done", **result)
    return result


def recover(lab: Lab, journal: Journal, delete_topics: list[str], timeout: float) -> dict:
    """The incident's recovery, scripted: stop every broker, start one, delete the offending
    system topics through its admin API, start the others. Timed."""
    journal.event("recovery-start", delete_topics=delete_topics)
    started = time.monotonic()
    names = lab.broker_names()
    for name in names:
        lab.stop_service(name)
    journal.event("recovery-all-brokers-stopped")
    lab.start_service(names[0], wait=False)
    first_ok, _ = wait_for_broker(lab, 1, "shallow", timeout)
    deleted = {t: delete_topic(lab.broker_admin_url(1), t) for t in delete_topics}
    journal.event("recovery-topics-deleted", status=deleted)
    for name in names[1:]:
        lab.start_service(name, wait=False)
    ok = all(wait_for_broker(lab, n, "functional", timeout)[0] for n in range(1, len(names) + 1))
    result = {"ok": ok, "first_broker_up": first_ok, "deleted": deleted,
              "secs": round(time.monotonic() - started, 1)}
    journal.event("recovery-done", **result)
    return result


def bus_outage(lab: Lab, target: str, down: bool) -> None:
    """Take the bus away from the VMs (target "proxy": their only way in; "brokers": all of them),
    or bring it back and wait until it is healthy."""
    services = ["proxy"] if target == "proxy" else lab.broker_names()
    for service in services:
        if down:
            lab.stop_service(service, timeout=5)
        else:
            lab.start_service(service, wait=True, timeout=300)
