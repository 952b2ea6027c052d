"""How a load-manager flip failed, from what a run folder kept: the two mechanisms seen in this
lab, named apart, each with the evidence the brokers themselves gave.

- hang: the extensible load manager's load-data store is held while its holder waits
  (`TableViewLoadDataStoreImpl`'s monitor: a thread dump shows threads "waiting to lock" it),
  and lookups stall: no lookup completes, pending lookups pile up to the bound.
- split ownership: two brokers each say they own one bundle at once (the pulsar-cluster probe's
  comparison of every broker's own ownedNamespaces), for so many seconds, so many bundles.

The consequence of a split the brokers log themselves: managed ledgers whose metadata update hit
BadVersion ("Error updating meta data with the new list of ledgers", a cursor's "version
conflict") because another broker wrote them, and ledgers fenced by another client. Those
topics are the metadata conflict (chain link 6) with a number instead of "yes".

Everything here reads the run folder (journal samples, kept logs and thread dumps), so a report
can be rebuilt and old runs classified again.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

STORE = "TableViewLoadDataStoreImpl"
_WAITING = re.compile(r"- waiting to lock <(0x[0-9a-f]+)> \(a [\w.$]*" + STORE + r"\)")
_LOCKED = re.compile(r"- locked <(0x[0-9a-f]+)> \(a [\w.$]*" + STORE + r"\)")
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[.,](\d+))?")
# a managed ledger (topic) whose metadata another writer changed under this broker
_ML_CONFLICT = (
    re.compile(r"\[([^\]\s]+/[^\]\s]+/persistent/[^\]\s]+)\] (?:Error updating meta data with the new list of ledgers"
               r"|Failed to update cursor metadata .* due to version conflict)"),
    re.compile(r"BadVersion for /managed-ledgers/(\S+?)(?:/[^/\s]*-cursor|\s|$)"),
)
_FENCED = re.compile(r"Ledger has been fenced off")
# the extensible load manager's load-data store closing and recreating its table view (under the
# store's monitor, from validateTableView) because it looked inactive for longer than
# 2 x loadBalancerReportUpdateMaxIntervalMinutes; an inactivity of ~1.7e9 s means "since time 0":
# the view's last-update time was never set when it started (fixed by setting it at start). A
# line is written once a restart completed ("Restarted") or failed ("Failed to [restart]
# tableview", with the same reason): a restart that hangs (the hang) leaves no line, its thread
# dump shows the holder in startTableView instead. Anchored on the store's own logger, so a line
# that only quotes its message (a failed lookup's errorMsg) is not counted.
_VIEW_RESTART = re.compile(r"TableViewLoadDataStoreImpl - (Restarted tableview|Failed to (?:restart )?tableview) on "
                           r"([^,\s]+)(?:,(?: restart reason:)? ([^\n\"]*))?")
_INACTIVE = re.compile(r"inactiveDuration=(\d+) secs")
SINCE_EPOCH_SECS = 10 ** 9
STALL_SECS = 10     # lookups stalled this long (no lookup completing) is a hang's symptom, not a restart's blip


def store_waiters(dump: str) -> dict:
    """Threads waiting for the load-data store's monitor in one thread dump, whether the holder is
    in the dump too, and the wait-for cycles through it (wait_for_cycles)."""
    waiting = _WAITING.findall(dump)
    held = set(_LOCKED.findall(dump))
    return {"waiting": len(waiting), "holder_seen": bool(set(waiting) & held), "cycles": wait_for_cycles(dump)}


_THREAD_HEAD = re.compile(r'^"([^"]+)"', re.M)
_FRAME = re.compile(r"^\s+at ([\w.$]+)\.([\w$<>]+)\(", re.M)
# the Pulsar client's internal executor: a single thread in 3.x, the one that completes a table
# view's close and delivers its messages to the load manager's handlers
_INTERNAL_EXECUTOR = re.compile(r"internal-executor|pulsar-client-internal")


def _threads(dump: str) -> list[tuple[str, str]]:
    heads = list(_THREAD_HEAD.finditer(dump))
    return [(m.group(1), dump[m.start():heads[i + 1].start() if i + 1 < len(heads) else len(dump)])
            for i, m in enumerate(heads)]


def wait_for_cycles(dump: str) -> list[dict]:
    """Both sides of a wait-for cycle through the store's monitor, from one thread dump: a thread
    that holds the monitor while it waits for a CompletableFuture (what it waits in: e.g.
    TableViewImpl.close, TableViewBuilderImpl.create), and, BLOCKED on the same monitor, the
    client's internal executor, the thread that would complete that future. jstack reports no
    deadlock here (one side waits on a future, not a monitor); the dump shows it all the same."""
    threads = _threads(dump)
    cycles = []
    for holder, text in threads:
        for addr in dict.fromkeys(_LOCKED.findall(text)):
            before = text.split(f"- locked <{addr}>", 1)[0]
            if "CompletableFuture" not in before or "parking to wait for" not in before:
                continue
            waits_in = next((f"{c.rsplit('.', 1)[-1]}.{m}" for c, m in _FRAME.findall(before)
                             if "org.apache.pulsar" in c), None)
            blocked = [name for name, t in threads if f"- waiting to lock <{addr}>" in t]
            executors = [n for n in blocked if _INTERNAL_EXECUTOR.search(n)]
            if executors:
                cycles.append({"monitor": addr, "holder": holder, "holder_waits_in": waits_in,
                               "executor_blocked": executors, "blocked": len(blocked)})
    return cycles


def _log_time(line: str) -> float | None:
    m = _TS.match(line)
    if not m:
        return None
    try:
        # the fraction counts: a line just after `since`, in the same second, is after it
        return datetime.fromisoformat(m.group(1) + "+00:00").timestamp() + float(f"0.{m.group(2) or 0}")
    except ValueError:
        return None


def _broker_of(path: Path) -> str | None:
    m = re.match(r"chaoslab-(broker-\d+)-\d+-", path.name)
    return m.group(1) if m else None


def metadata_conflicts(log_dir: Path, since: float | None = None) -> dict:
    """From a variant's kept broker logs (one file per incarnation), after `since`: the topics
    whose managed-ledger metadata another writer changed, per broker, and fenced ledgers."""
    topics: dict[str, set[str]] = {}
    fenced: dict[str, int] = {}
    for path in sorted(Path(log_dir).glob("chaoslab-broker-*.log")):
        broker = _broker_of(path)
        if broker is None:
            continue
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if since is not None:
                t = _log_time(line)
                if t is not None and t < since:
                    continue
            if _FENCED.search(line):
                fenced[broker] = fenced.get(broker, 0) + 1
            for pattern in _ML_CONFLICT:
                m = pattern.search(line)
                if m:
                    topics.setdefault(m.group(1).rstrip("/"), set()).add(broker)
                    break
    by_broker: dict[str, int] = {}
    for brokers in topics.values():
        for b in brokers:
            by_broker[b] = by_broker.get(b, 0) + 1
    return {"topics": len(topics), "by_broker": dict(sorted(by_broker.items())),
            "fenced_lines": dict(sorted(fenced.items())),
            "example": sorted(topics)[:3]}


def _broker_lines(log_dir: Path, since: float | None, *patterns: re.Pattern):
    """(broker, line) for every line of a variant's kept broker logs that matches one of
    `patterns`, written at or after `since` (a line without a time is kept)."""
    for path in sorted(Path(log_dir).glob("chaoslab-broker-*.log")):
        broker = _broker_of(path)
        if broker is None:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if not any(rx.search(line) for rx in patterns):
                continue
            t = _log_time(line) if since is not None else None
            if t is not None and t < since:
                continue
            yield broker, line


def view_restarts(log_dir: Path, since: float | None = None) -> dict:
    """The load-data store's table-view restarts in a variant's kept broker logs, after `since`:
    completed (`Restarted tableview`) and failed (`Failed to [restart] tableview`), per broker, and
    why: judged inactive since time 0 (the view's clock never set when it started), inactive past
    the threshold, or no view at all ("object is null" / "table view is null": it was closed)."""
    per: dict[str, int] = {}
    counts = {"restarts": 0, "failed": 0, "from_time_zero": 0, "inactive": 0, "view_missing": 0}
    longest_inactive = 0
    for broker, line in _broker_lines(log_dir, since, _VIEW_RESTART):
        m = _VIEW_RESTART.search(line)
        per[broker] = per.get(broker, 0) + 1
        counts["restarts" if m.group(1).startswith("Restarted") else "failed"] += 1
        reason = m.group(3) or ""
        inactive = _INACTIVE.search(reason)
        if inactive:
            secs = int(inactive.group(1))
            counts["from_time_zero" if secs >= SINCE_EPOCH_SECS else "inactive"] += 1
            longest_inactive = max(longest_inactive, secs)
        elif "is null" in reason:
            counts["view_missing"] += 1
    return {**counts, "by_broker": dict(sorted(per.items())), "longest_inactive_secs": longest_inactive}


# the extensible load manager's own lines about its start and its leader/follower role loop,
# anchored on its logger: a start that failed (3.3.1 keeps the process up after it), the role loop
# retrying (it never gives up), and a registration refused because the old one is still there
_ELM_LINES = {
    "failed_to_start": re.compile(r"ExtensibleLoadManagerImpl - .*Failed to start the extensible load balance"),
    "failed_to_set_role": re.compile(r"ExtensibleLoadManagerImpl - .*failed to set the role"),
    "registration_lock_busy": re.compile(r"LockBusyException.*?/loadbalance/brokers/"),
}


def load_manager_lines(log_dir: Path, since: float | None = None) -> dict:
    """Per kind (_ELM_LINES), the lines in a variant's kept broker logs after `since`, per broker."""
    out: dict[str, dict[str, int]] = {k: {} for k in _ELM_LINES}
    for broker, line in _broker_lines(log_dir, since, *_ELM_LINES.values()):
        for k in (k for k, rx in _ELM_LINES.items() if rx.search(line)):
            out[k][broker] = out[k].get(broker, 0) + 1
    return {k: {"lines": sum(v.values()), "by_broker": dict(sorted(v.items()))} for k, v in out.items()}


def longest(flags: list[bool]) -> int:
    """The longest run of True (seconds, one flag a sample)."""
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def peak_pending(sample: dict) -> float:
    """The highest pulsar_broker_lookup_pending_requests of any broker in one sample."""
    brokers = [b for b in (sample.get("brokers") or {}).values() if isinstance(b, dict)]
    return max(((b.get("metrics") or {}).get("pulsar_broker_lookup_pending_requests") or 0 for b in brokers), default=0)


def classify(samples: list[dict], log_dir: Path | None, since: float | None = None,
             pending_bound: float | None = None) -> dict:
    """hang | split | both | none for one variant, with the evidence behind each name.
    `samples`: the variant's samples from the method on (method, rollback, recovery, after)."""
    watched = [s for s in samples if s.get("phase") in ("method", "rollback", "recovery", "after")]
    splits = [len((s.get("cluster") or {}).get("split") or []) for s in watched]
    split_secs = sum(1 for n in splits if n)
    compared = any((s.get("cluster") or {}).get("split") is not None for s in watched)
    stalled = longest([bool((s.get("client") or {}).get("lookups_expected"))
                        and (s.get("client") or {}).get("lookup_ok", 1) == 0 for s in watched])

    piled = longest([peak_pending(s) >= pending_bound for s in watched]) if pending_bound else 0
    dumps = {}
    if log_dir is not None:
        for path in sorted(Path(log_dir).glob("threaddump-*.txt")):
            try:
                w = store_waiters(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
            if w["waiting"]:
                dumps[path.name] = w
    split = split_secs > 0
    stall = stalled >= STALL_SECS or piled >= STALL_SECS
    # the hang is named on its own evidence: a thread dump of the store's monitor held and waited
    # for; a stall without one is a hang only when nothing else (a split) explains it
    hang = bool(dumps) or (stall and not split)
    mechanism = "both" if hang and split else "hang" if hang else "split" if split else "none"
    out = {"mechanism": mechanism,
           "split": {"compared": compared, "secs": split_secs, "max_bundles": max(splits, default=0)},
           "hang": {"lookups_stalled_secs": stalled, "pending_at_bound_secs": piled,
                    "store_monitor_dumps": dumps, "shown_by_thread_dump": bool(dumps)}}
    if log_dir is not None:
        out["conflicts"] = metadata_conflicts(log_dir, since)
        out["view_restarts"] = view_restarts(log_dir, since)
        out["load_manager_lines"] = load_manager_lines(log_dir, since)
    return out


def describe(c: dict) -> str:
    """One line for people."""
    parts = []
    if c["mechanism"] in ("hang", "both"):
        h = c["hang"]
        bits = [f"lookups stalled {h['lookups_stalled_secs']} s"] if h["lookups_stalled_secs"] else []
        bits += [f"pending lookups at the bound {h['pending_at_bound_secs']} s"] if h["pending_at_bound_secs"] else []
        waiting = sum(d["waiting"] for d in h["store_monitor_dumps"].values())
        if waiting:
            bits.append(f"{waiting} threads waiting for the load-data store's monitor in "
                        f"{len(h['store_monitor_dumps'])} thread dump(s)")
        cycle = next((c for d in h["store_monitor_dumps"].values() for c in d.get("cycles") or []), None)
        if cycle:
            bits.append(f"wait-for cycle: {cycle['holder']} holds the monitor waiting in {cycle['holder_waits_in']}, "
                        f"{cycle['executor_blocked'][0]} (the client's internal executor) is blocked on it")
        if not waiting:
            bits.append("no thread dump: suspected")
        parts.append("hang (" + ", ".join(bits) + ")")
    if c["mechanism"] in ("split", "both"):
        stall = c["hang"]["lookups_stalled_secs"]
        parts.append(f"split ownership ({c['split']['secs']} s, up to {c['split']['max_bundles']} bundles owned by two brokers"
                     + (f"; lookups stalled {stall} s" if stall and c["mechanism"] == "split" else "") + ")")
    if not parts:
        parts.append("none seen" + ("" if c["split"]["compared"] else " (ownership was not compared across brokers)"))
    views = c.get("view_restarts") or {}
    if views.get("restarts") or views.get("failed"):
        why = [f"{views[k]} {label}" for k, label in (("from_time_zero", "judged inactive since time 0"),
                                                       ("inactive", "inactive past the threshold"),
                                                       ("view_missing", "with no view left"))
               if views.get(k)]
        parts.append(f"the load-data store restarted its table view under its monitor {views['restarts']} times"
                     + (f", {views['failed']} restarts failed" if views.get("failed") else "")
                     + (f" ({', '.join(why)})" if why else ""))
    conf = c.get("conflicts") or {}
    if conf.get("topics"):
        parts.append(f"metadata conflict: {conf['topics']} topics whose managed ledger another broker wrote ("
                     + ", ".join(f"{b} {n}" for b, n in conf["by_broker"].items()) + ")")
    return "; ".join(parts)
