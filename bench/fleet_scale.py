"""The VM count at which the lab itself degrades: the instrument and the bus, not the hypervisors.
VMs are added in steps and, at each count, the lab's own figures are measured.

    python bench/fleet_scale.py                  # the lab must be up (make up); 10 .. 250 VMs
    python bench/fleet_scale.py --up             # brings a lab up itself, takes it down at the end
    python bench/fleet_scale.py --steps 10,50,100,150,200,250 --hypervisors 4 --memory-mib 64 \\
        --resident-mb 48 --rate 25 --line-bytes 4096 --settle-secs 30 --overcommit 1.25 --json fleet.json

Each step ADDS VMs as a new group (pico VMs scaled to --memory-mib, each running the agent with the
group's own config and topic: memory buffer, when_full = block; a resident application of
--resident-mb) inside hypervisors of its own: --hypervisors parent cgroups (fewer when the step adds
fewer VMs), each with a memory budget of its VMs x --memory-mib / --overcommit and a read budget of
--read-mib-per-sec, made as `type: vm-agents` makes them (chaoslab/workload/vm_agents.py). The ramp
stops, saying why, before a step whose hypervisors' budgets would not fit in the host's available
memory beyond the RESERVED_FOR_LAB_BYTES kept for the bus and the lab.

At each VM count, after the step's VMs have started:
  start     seconds to make the step's hypervisors and start its VMs; seconds until every new agent
            has shipped (vector_component_sent_events_total > 0), at most --ship-timeout-secs
  sampling  one full sample of every VM the way the vm-agents probe takes it (VmAgentsProbe.collect:
            cgroup files and a scrape of every agent), taken each second over the settle window
            (--settle-secs): median and max seconds per sample, against the 1 s the probes aim at;
            agents that did not answer the last sample, and agents whose sent counter did not move
            over the window (figures only, not judged: a thrashing hypervisor stalls its own VMs)
  host      load average (1 min), CPU pressure (/proc/pressure/cpu some avg10, max over the
            window), memory available (min over the window)
  produce   --messages small messages sent one by one through the proxy with pulsar-client (after
            one unmeasured send): p50 / p99 of send() in ms
  proxy     the proxy stopped and started again through the lab driver by the stop-service step
            itself (chaoslab/steps/services.py, for_secs 0): seconds from the start until compose
            sees it healthy (`start_secs`, the step's own readiness), and the whole outage

The lab degrades at the first VM count where the proxy restart takes more than --restart-factor
(2) x the first step's, the sampling period's median exceeds --sample-period-secs (1 s), produce
p99 exceeds --produce-p99-factor (5) x the first step's, or some of the step's agents did not ship
within the timeout; a proxy that does not serve again, or a produce that fails, degrades it too.
The ramp stops at the first degraded count (--keep-going: on to the last step). The VMs and the
hypervisors' cgroups the bench made are removed at the end, Ctrl-C included; topics are left.
The bench holds the lab's lock (one run per lab), so it never runs beside an experiment.
Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaoslab.errors import LabError  # noqa: E402
from chaoslab.lab import hypervisors as hv  # noqa: E402
from chaoslab.lab import vms  # noqa: E402
from chaoslab.lab.cluster import Lab  # noqa: E402
from chaoslab.lab.driver import LabShape  # noqa: E402
from chaoslab.observe import host  # noqa: E402
from chaoslab.probes.vms import VmAgentsProbe  # noqa: E402
from chaoslab.settings import BUILD_DIR  # noqa: E402
from chaoslab.steps.services import StopService  # noqa: E402
from chaoslab.wait import wait_until  # noqa: E402
from chaoslab.workload import clientlog  # noqa: E402
from chaoslab.workload.vm_agents import (RESERVED_FOR_LAB_BYTES, Buffer, Hypervisors, VmAgents,  # noqa: E402
                                         agent_toml, agents_shipping, budget_refusal, cached_ip,
                                         create_hypervisors, vm_read_shares)
from table import print_table  # noqa: E402  (bench/table.py)

GIB = 2 ** 30
SENT = "vector_component_sent_events_total"


# -- the plan (pure) ---------------------------------------------------------------------------------
@dataclass
class RampStep:
    vms: int                 # VMs running once this step has started (all steps so far)
    added: int               # VMs this step adds: one new group
    group: VmAgents          # the group as `type: vm-agents` would declare it (validated)
    hypervisors: list[dict]  # Hypervisors.plan(): name, vms, memory_mib, read_bps, cpu_shares


def plan_ramp(steps: list[int], hypervisors: int = 4, overcommit: float = 1.25, memory_mib: int = 64,
              resident_mb: int = 48, rate: float = 25.0, line_bytes: int = 4096,
              read_mib_per_sec: float | None = 32.0, ship_timeout_secs: float = 120.0) -> list[RampStep]:
    """Each step's new group and its hypervisors; ValueError (with what is wrong) for a ramp that
    cannot be run. A step adding fewer VMs than --hypervisors gets one hypervisor per VM."""
    if not steps or any(b <= a for a, b in zip([0, *steps], steps)):
        raise ValueError(f"--steps must be VM counts that grow: {','.join(map(str, steps))}")
    out = []
    for before, total in zip([0, *steps], steps):
        added = total - before
        name = f"fleet-{len(out) + 1}"
        try:
            group = VmAgents(group=name, count=added, rate=float(rate), line_bytes=line_bytes, resident_mb=resident_mb,
                             memory_mib=memory_mib, buffer=Buffer(type="memory", when_full="block"),
                             shipping_timeout_secs=float(ship_timeout_secs),
                             hypervisors=Hypervisors(count=min(hypervisors, added), overcommit=float(overcommit),
                                                     read_mib_per_sec=None if read_mib_per_sec is None
                                                     else float(read_mib_per_sec)))
        except ValueError as exc:   # pydantic's ValidationError is one
            raise ValueError(f"the step to {total} VMs (+{added}) is not a valid vm-agents group: "
                             f"{_first_error(exc)}") from None
        out.append(RampStep(total, added, group, group.hypervisors.plan(name, added, memory_mib)))
    return out


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        return f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
    return str(exc)


def step_refusal(step: RampStep, available_bytes: int) -> str | None:
    """Why the step may not start (its hypervisors' budgets do not fit), or None."""
    why = budget_refusal(step.hypervisors, available_bytes)
    return f"the step to {step.vms} VMs (+{step.added}) is refused: {why}" if why else None


# -- the judgement (pure) ----------------------------------------------------------------------------
@dataclass
class Bounds:
    restart_factor: float = 2.0        # proxy restart over the first step's
    sample_period_secs: float = 1.0    # the sampling period's median
    produce_p99_factor: float = 5.0    # produce p99 over the first step's


def degraded_because(step: dict, first: dict, bounds: Bounds) -> list[str]:
    """Which of the lab's figures at this step crossed which bound (the first step is the base)."""
    out = []
    restart, base = step.get("proxy_restart_secs"), first.get("proxy_restart_secs")
    if step.get("proxy_error"):
        out.append(f"the proxy could not be restarted ({step['proxy_error']})")
    elif not step.get("proxy_served_again", restart is not None):
        out.append("the proxy did not serve again after its restart" +
                   (f" ({step['proxy_first_error']})" if step.get("proxy_first_error") else ""))
    elif restart is not None and base and restart > bounds.restart_factor * base:
        out.append(f"proxy restart {restart:.1f} s > {bounds.restart_factor:g} x the first step's {base:.1f} s")
    median = step.get("sample_secs_median")
    if median is not None and median > bounds.sample_period_secs:
        out.append(f"sampling period median {median:.2f} s > {bounds.sample_period_secs:g} s")
    p99, base99 = step.get("produce_p99_ms"), first.get("produce_p99_ms")
    if p99 is None:
        out.append(f"the produce round trip failed ({step.get('produce_error') or 'no send completed'})")
    elif base99 and p99 > bounds.produce_p99_factor * base99:
        out.append(f"produce p99 {p99:.1f} ms > {bounds.produce_p99_factor:g} x the first step's {base99:.1f} ms")
    if step.get("agents_not_shipped"):
        out.append(f"{step['agents_not_shipped']} of the step's {step.get('added', '?')} agents did not ship "
                   f"within {step.get('ship_timeout_secs', '?')} s")
    return out


def judge(steps: list[dict], bounds: Bounds) -> tuple[int, list[str]] | None:
    """(VM count, reasons) of the first step at which the lab degraded; None: it did not."""
    for s in steps:
        reasons = degraded_because(s, steps[0], bounds)
        if reasons:
            return s["vms"], reasons
    return None


def verdict(steps: list[dict], bounds: Bounds, stopped: str | None = None) -> str:
    found = judge(steps, bounds)
    if found:
        return f"the lab degrades at {found[0]} VMs: {'; '.join(found[1])}"
    if not steps:
        return "nothing measured" + (f": {stopped}" if stopped else "")
    return f"not degraded up to {steps[-1]['vms']} VMs" + (f" (the ramp stopped there: {stopped})" if stopped else "")


def percentile(values: list[float], p: int) -> float:
    """The p-th percentile (1..99), linear between the nearest ranks (never beyond the largest)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# -- the lab (Docker) --------------------------------------------------------------------------------
class Fleet:
    """Every VM the bench started, as the vm-agents probe reads a workload: its containers and
    each one's address (looked up once, like VmAgents.ip)."""

    def __init__(self) -> None:
        self.containers: list = []
        self.groups: list[str] = []
        self.hypervisors: list[str] = []
        self._ips: dict[str, str] = {}

    def ip(self, container) -> str | None:
        return cached_ip(self._ips, container)


def start_step(lab: Lab, fleet: Fleet, step: RampStep, workdir: Path, stamp: str) -> dict:
    """Make the step's hypervisors, start its VMs, wait until each new agent ships."""
    g = step.group
    name = g.group
    topic = f"persistent://public/default/fleet-scale-{stamp}-{name}"
    config = workdir / f"agent-{name}.toml"
    config.write_text(agent_toml(g, name, topic))
    began = time.monotonic()
    fleet.groups.append(name)
    fleet.hypervisors += [h["name"] for h in step.hypervisors]   # before they exist: a Ctrl-C removes them too
    parents = create_hypervisors(step.hypervisors, lab.project)
    shares = vm_read_shares(step.hypervisors, hv.version())
    containers = vms.start_group(lab, vms.VmGroupSpec(
        name, g.flavour, g.count, config, {"RESIDENT_MB": g.resident_mb, "AGENT_DRAIN_SECS": g.drain_secs},
        g.memory_mib, parents, shares))
    fleet.containers += containers
    start_secs = time.monotonic() - began
    shipped = wait_until(lambda: agents_shipping(containers, fleet.ip), g.shipping_timeout_secs)
    missing = 0 if shipped.ok else sum(1 for c in containers if not agents_shipping([c], fleet.ip))
    return {"vms": step.vms, "added": step.added, "group": name, "topic": topic, "hypervisors": step.hypervisors,
            "start_secs": round(start_secs, 1), "ship_secs": round(shipped.secs, 1) if shipped.ok else None,
            "agents_not_shipped": missing, "ship_timeout_secs": g.shipping_timeout_secs}


def settle(fleet: Fleet, probe, secs: float) -> dict:
    """One full sample of every VM each second (the probe's own collect), timed; host figures beside."""
    ctx = SimpleNamespace(workload=fleet)
    periods, errors, psi_cpu, available = [], 0, [], []
    first = last = None
    end = time.monotonic() + secs
    while True:
        t0 = time.monotonic()
        try:
            probe.collect(ctx)
        except Exception:   # the probe's loop would record it and go on
            errors += 1
        periods.append(time.monotonic() - t0)
        last = probe.latest()
        first = first if first is not None else last
        psi = host.psi("cpu") or {}
        if psi.get("some_avg10") is not None:
            psi_cpu.append(psi["some_avg10"])
        available.append(psutil.virtual_memory().available)
        if time.monotonic() >= end:
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))   # the probes' 1 s period, not a wait
    stalled = sum(1 for n, vm in last.items()
                  if vm.get("agent_answered") and (first.get(n) or {}).get("agent_answered")
                  and (vm["agent"] or {}).get(SENT, 0) <= ((first[n].get("agent") or {}).get(SENT, 0)))
    return {"samples": len(periods), "sample_errors": errors,
            "sample_secs_median": round(statistics.median(periods), 3), "sample_secs_max": round(max(periods), 3),
            "agents_not_answering": sum(1 for vm in last.values() if not vm.get("agent_answered")),
            "agents_stalled": stalled,
            "load1": round(os.getloadavg()[0], 2), "cpu_psi_some_avg10_max": max(psi_cpu) if psi_cpu else None,
            "mem_available_gib_min": round(min(available) / GIB, 2)}


def produce_round_trip(service_url: str, topic: str, messages: int) -> dict:
    """p50 / p99 of send() through the proxy, one small message at a time, batching off."""
    import pulsar
    latencies: list[float] = []
    client = None
    try:
        client = pulsar.Client(service_url, operation_timeout_seconds=30, logger=clientlog.logger())
        producer = client.create_producer(topic, batching_enabled=False, send_timeout_millis=30_000)
        producer.send(b"fleet-scale warm-up")
        for i in range(messages):
            t0 = time.perf_counter()
            producer.send(f"fleet-scale {i}".encode())
            latencies.append((time.perf_counter() - t0) * 1000)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        clientlog.close_quietly(client)
    out = {"produce_sent": len(latencies), "produce_error": error, "produce_p50_ms": None, "produce_p99_ms": None}
    if latencies and error is None:
        out.update(produce_p50_ms=round(statistics.median(latencies), 2), produce_p99_ms=round(percentile(latencies, 99), 2))
    return out


def restart_proxy(lab: Lab) -> dict:
    """Stop the proxy and start it again with the stop-service step (its readiness, its timing)."""
    step = StopService(service="proxy", for_secs=0.0)
    ctx = SimpleNamespace(lab=lab, interrupted=threading.Event(), check_interrupt=lambda: None)
    try:
        out = step.run(ctx)
    except LabError as exc:   # the stop itself failed: bring it back if it went down, and say so
        with no_interrupts():
            step.undo(ctx)
        return {"proxy_restart_secs": None, "proxy_down_secs": None, "proxy_restart_attempts": None,
                "proxy_served_again": False, "proxy_error": f"{exc}"[:200]}
    except BaseException:   # Ctrl-C in the middle: the proxy is brought back first
        with no_interrupts():
            step.undo(ctx)
        raise
    return {"proxy_restart_secs": out.get("start_secs") if out.get("started") else None,
            "proxy_down_secs": out.get("down_secs"), "proxy_restart_attempts": out.get("attempts"),
            "proxy_served_again": bool(out.get("started")), "proxy_first_error": out.get("first_error")}


def clean_up(lab: Lab, fleet: Fleet) -> None:
    """The bench's VMs, then its hypervisors' cgroups (and the project's, when no VM is left)."""
    mine = [c for g in fleet.groups for c in vms.group_containers(lab, g)]

    def remove(c) -> None:
        try:
            c.remove(force=True)
        except Exception:
            pass
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(remove, mine))
    for name in fleet.hypervisors:
        hv.remove(lab.project, name)
    if not vms.group_containers(lab):
        hv.remove_all(lab.project)


# -- the table ---------------------------------------------------------------------------------------
COLUMNS = [("VMs", "vms"), ("+", "added"), ("start s", "start_secs"), ("ship s", "ship_secs"),
           ("not shipped", "agents_not_shipped"), ("sample s med", "sample_secs_median"),
           ("sample s max", "sample_secs_max"), ("no answer", "agents_not_answering"), ("stalled", "agents_stalled"),
           ("produce p50 ms", "produce_p50_ms"), ("produce p99 ms", "produce_p99_ms"),
           ("proxy restart s", "proxy_restart_secs"), ("load1", "load1"), ("cpu psi avg10", "cpu_psi_some_avg10_max"),
           ("mem avail GiB", "mem_available_gib_min"), ("degraded", "degraded")]


def rows(steps: list[dict]) -> list[list]:
    return [[("; ".join(s.get(k) or []) or "no") if k == "degraded" else ("-" if s.get(k) is None else s.get(k))
             for _, k in COLUMNS] for s in steps]


@contextmanager
def no_interrupts():
    """Ctrl-C waits while the lab is put back (the proxy started, the VMs and cgroups removed)."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def ramp_up(lab: Lab, ramp: list[RampStep], args, bounds: Bounds, fleet: Fleet, steps: list[dict],
            workdir: Path, stamp: str, log) -> str | None:
    """Every step in turn until one is refused, fails to start, or degrades the lab; why it stopped."""
    probe = VmAgentsProbe()
    for step in ramp:
        refused = step_refusal(step, psutil.virtual_memory().available)
        if refused:
            return refused
        log(f"step to {step.vms} VMs: +{step.added} in {len(step.hypervisors)} hypervisors "
            f"({', '.join(str(h['memory_mib']) for h in step.hypervisors)} MiB each) ...")
        try:
            row = start_step(lab, fleet, step, workdir, stamp)
        except LabError as exc:
            return f"the step to {step.vms} VMs could not start: {exc}"
        shipping = (f"all shipping after {row['ship_secs']} s" if row["ship_secs"] is not None else
                    f"{row['agents_not_shipped']} not shipping after {row['ship_timeout_secs']:g} s")
        log(f"started in {row['start_secs']} s, {shipping}; sampling for {args.settle_secs:g} s ...")
        row.update(settle(fleet, probe, args.settle_secs))
        row.update(produce_round_trip(lab.proxy_service_url, f"persistent://public/default/fleet-scale-{stamp}-rtt",
                                      args.messages))
        log("restarting the proxy ...")
        row.update(restart_proxy(lab))
        row["degraded"] = degraded_because(row, steps[0] if steps else row, bounds)
        steps.append(row)
        print(f"\n{step.vms} VMs:")
        print_table([h for h, _ in COLUMNS], rows([row]), markdown=args.markdown)
        sys.stdout.flush()
        if not row["proxy_served_again"]:
            return "the proxy did not serve again"
        if row["degraded"] and not args.keep_going:
            return "degraded (--keep-going goes on)"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--up", action="store_true", help="bring a lab up when none is (and take it down at the end)")
    ap.add_argument("--steps", default="10,50,100,150,200,250", help="VM counts, growing (default: %(default)s)")
    ap.add_argument("--hypervisors", type=int, default=4, help="hypervisors per step (default: %(default)s)")
    ap.add_argument("--overcommit", type=float, default=1.25, help="VMs' caps over a hypervisor's budget (%(default)s)")
    ap.add_argument("--read-mib-per-sec", type=float, default=32.0,
                    help="a hypervisor's disk-read budget, MiB/s (default: %(default)s; 0: none)")
    ap.add_argument("--memory-mib", type=int, default=64, help="each VM's memory cap (default: %(default)s)")
    ap.add_argument("--resident-mb", type=int, default=48, help="each VM's resident application (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=25.0, help="events/s per VM (default: %(default)s)")
    ap.add_argument("--line-bytes", type=int, default=4096, help="bytes per event (default: %(default)s)")
    ap.add_argument("--settle-secs", type=float, default=30.0, help="the sampling window per step (%(default)s)")
    ap.add_argument("--ship-timeout-secs", type=float, default=120.0, help="for the step's agents to ship (%(default)s)")
    ap.add_argument("--messages", type=int, default=50, help="produce round trips per step (default: %(default)s)")
    ap.add_argument("--restart-factor", type=float, default=2.0, help="bound: proxy restart over the first step's")
    ap.add_argument("--sample-period-secs", type=float, default=1.0, help="bound: the sampling period's median")
    ap.add_argument("--produce-p99-factor", type=float, default=5.0, help="bound: produce p99 over the first step's")
    ap.add_argument("--keep-going", action="store_true", help="go on past the first degraded VM count")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    args = ap.parse_args(argv)
    bounds = Bounds(args.restart_factor, args.sample_period_secs, args.produce_p99_factor)
    try:
        if args.messages < 1 or args.settle_secs <= 0:
            raise ValueError("--messages and --settle-secs must be positive")
        ramp = plan_ramp([int(x) for x in args.steps.split(",") if x.strip()], args.hypervisors, args.overcommit,
                         args.memory_mib, args.resident_mb, args.rate, args.line_bytes,
                         args.read_mib_per_sec or None, args.ship_timeout_secs)
    except ValueError as exc:
        print(f"fleet_scale: {exc}", file=sys.stderr)
        return 2

    def log(m: str) -> None:
        print(f"  {m}", file=sys.stderr, flush=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    workdir = BUILD_DIR / "fleet-scale" / stamp     # the agents' configs (bind-mounted) and the client's log
    workdir.mkdir(parents=True, exist_ok=True)
    clientlog.to_file(workdir / "pulsar-client.log")
    lab = Lab(log=log)
    figures: dict = {"cpus": psutil.cpu_count(), "host_memory_gib": round(psutil.virtual_memory().total / GIB, 1),
                     "reserved_for_lab_gib": RESERVED_FOR_LAB_BYTES / GIB, "cgroup_version": hv.version(),
                     "args": vars(args), "bounds": asdict(bounds), "workdir": str(workdir), "steps": []}
    steps: list[dict] = figures["steps"]
    fleet = Fleet()
    stopped: str | None = None
    with ExitStack() as held:
        try:
            held.enter_context(lab.lock(workdir, "bench/fleet_scale.py"))   # one run per lab
            if lab.is_up():
                log(f"using the lab that is already up (project {lab.project}); it stays up")
                owned = False
            elif args.up:
                log(f"no lab is up: bringing one up (project {lab.project}); it is taken down at the end")
                owned = True
            else:
                print("fleet_scale: the lab is not up: run `make up` first, or pass --up", file=sys.stderr)
                return 2
        except LabError as exc:
            print(f"fleet_scale: {exc}", file=sys.stderr)
            return 2
        try:
            if owned:
                figures["lab_up_secs"] = round(lab.up(LabShape()), 1)
            stopped = ramp_up(lab, ramp, args, bounds, fleet, steps, workdir, stamp, log)
        except KeyboardInterrupt:
            stopped = "interrupted (Ctrl-C)"
        except LabError as exc:
            stopped = f"the lab failed: {exc}"
        finally:
            with no_interrupts():
                log("removing the bench's VMs and hypervisors (Ctrl-C waits for this) ...")
                try:
                    clean_up(lab, fleet)
                except Exception as exc:   # say what may be left, and go on to the lab's own down
                    log(f"could not remove everything ({type(exc).__name__}: {exc}"[:300] + "); may be left: the VM "
                        f"groups {', '.join(fleet.groups)} and the cgroups chaoslab-{lab.project}/hv-fleet-*")
                if owned:
                    log("taking the lab down ...")
                    lab.down()
                    hv.remove_all(lab.project)
    found = judge(steps, bounds)
    figures.update(stopped=stopped, degraded_at_vms=found[0] if found else None,
                   degraded_because=found[1] if found else [], verdict=verdict(steps, bounds, stopped))
    if steps:
        print("\nall steps:")
        print_table([h for h, _ in COLUMNS], rows(steps), markdown=args.markdown)
    if stopped and found and not stopped.startswith("degraded"):
        print(f"the ramp stopped: {stopped}")
    print(figures["verdict"])
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
