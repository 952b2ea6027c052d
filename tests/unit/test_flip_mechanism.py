"""How a flip failed, named from what a run folder keeps (no containers): a thread dump of the
load-data store's monitor, split ownership in the samples, the brokers' own conflict lines."""

from __future__ import annotations

from datetime import datetime, timezone

from chaoslab.stories.incident_chain import links
from chaoslab.stories.flip import classify, describe, metadata_conflicts, store_waiters

DUMP = """
"pulsar-load-manager-1" #80 prio=5
   java.lang.Thread.State: WAITING (parking)
	at org.apache.pulsar.broker.loadbalance.extensions.store.TableViewLoadDataStoreImpl.startTableView(TableViewLoadDataStoreImpl.java:126)
	- locked <0x00000000f1ce6ea0> (a org.apache.pulsar.broker.loadbalance.extensions.store.TableViewLoadDataStoreImpl)
"pulsar-client-internal-4-1" #60 prio=5
   java.lang.Thread.State: BLOCKED (on object monitor)
	at org.apache.pulsar.broker.loadbalance.extensions.store.TableViewLoadDataStoreImpl.get(TableViewLoadDataStoreImpl.java:87)
	- waiting to lock <0x00000000f1ce6ea0> (a org.apache.pulsar.broker.loadbalance.extensions.store.TableViewLoadDataStoreImpl)
"""

LOG_B2 = """2026-12-01T16:12:13.995870377Z 2026-12-01T16:12:13,995+0000 [sched] WARN  org.apache.bookkeeper.mledger.impl.ManagedLedgerImpl - [orga_a/logs/persistent/app-008] Error updating meta data with the new list of ledgers: BadVersion
2026-12-01T16:12:14.000000000Z 2026-12-01T16:12:14,000+0000 [w] ERROR org.apache.bookkeeper.client.LedgerHandle - Closing ledger 119 due to LedgerFencedException: Ledger has been fenced off. Some other client must have opened it to read
2026-12-01T16:00:00.000000000Z KeeperErrorCode = BadVersion for /managed-ledgers/orga_old/logs/persistent/app-001 before the method
"""
LOG_B3 = """2026-12-01T16:12:17.187117304Z org.apache.bookkeeper.mledger.ManagedLedgerException$BadVersionException: KeeperErrorCode = BadVersion for /managed-ledgers/orga_b/logs/persistent/app-002
2026-12-01T16:12:18.000000000Z [orga_a/logs/persistent/app-008] Error updating meta data with the new list of ledgers: x
"""
T_METHOD = 1796140800.0 + 11 * 60 + 0   # 2026-12-01T16:11:00Z


def samples(split=0, stalled=0, n=40):
    out = []
    for i in range(n):
        out.append({"phase": "method",
                    "cluster": {"split": [{"bundle": "b", "brokers": ["broker-1", "broker-3"]}] * (split if i < 20 else 0)},
                    "client": {"lookups_expected": True, "lookup_ok": 0 if i < stalled else 5},
                    "brokers": {"broker-1": {"metrics": {"pulsar_broker_lookup_pending_requests": 3.0}}}})
    return out


def test_a_thread_dump_shows_the_store_monitor_held_and_waited_for():
    assert store_waiters(DUMP)["waiting"] == 1 and store_waiters(DUMP)["holder_seen"]
    assert store_waiters("nothing here")["waiting"] == 0


STORE_CLASS = "org.apache.pulsar.broker.loadbalance.extensions.store.TableViewLoadDataStoreImpl"
CYCLE_DUMP = f"""Full thread dump OpenJDK 64-Bit Server VM:

"Thread-20" #97 prio=5 waiting on condition
   java.lang.Thread.State: WAITING (parking)
	at jdk.internal.misc.Unsafe.park(java.base@17/Native Method)
	- parking to wait for  <0x00000000f1cb9790> (a java.util.concurrent.CompletableFuture$Signaller)
	at java.util.concurrent.CompletableFuture.get(java.base@17/CompletableFuture.java:2072)
	at org.apache.pulsar.client.impl.TableViewImpl.close(TableViewImpl.java:176)
	at {STORE_CLASS}.closeTableView(TableViewLoadDataStoreImpl.java:111)
	- locked <0x00000000f8ada930> (a {STORE_CLASS})

"broker-client-shared-internal-executor-5-1" #78 prio=5 waiting for monitor entry
   java.lang.Thread.State: BLOCKED (on object monitor)
	at {STORE_CLASS}.removeAsync(TableViewLoadDataStoreImpl.java:81)
	- waiting to lock <0x00000000f8ada930> (a {STORE_CLASS})
	at org.apache.pulsar.broker.loadbalance.extensions.reporter.BrokerLoadDataReporter.tombstone(BrokerLoadDataReporter.java:188)

   Locked ownable synchronizers:
	- None

"metadata-store-9-1" #16 prio=5 waiting for monitor entry
   java.lang.Thread.State: BLOCKED (on object monitor)
	at {STORE_CLASS}.get(TableViewLoadDataStoreImpl.java:87)
	- waiting to lock <0x00000000f8ada930> (a {STORE_CLASS})
"""


def test_a_thread_dump_shows_both_sides_of_the_wait_for_cycle():
    cycles = store_waiters(CYCLE_DUMP)["cycles"]
    assert cycles == [{"monitor": "0x00000000f8ada930", "holder": "Thread-20", "holder_waits_in": "TableViewImpl.close",
                       "executor_blocked": ["broker-client-shared-internal-executor-5-1"], "blocked": 2}]
    # a holder that waits on nothing, or no internal executor among the blocked: no cycle
    assert store_waiters(CYCLE_DUMP.replace("parking to wait for", "sleeping"))["cycles"] == []
    assert store_waiters(CYCLE_DUMP.replace("internal-executor", "io"))["cycles"] == []


def test_the_cycle_is_named_in_the_runs_description(tmp_path):
    (tmp_path / "threaddump-chaoslab-broker-1-1-x-1.txt").write_text(CYCLE_DUMP)
    c = classify(samples(split=3, stalled=15), tmp_path)
    assert "wait-for cycle: Thread-20 holds the monitor waiting in TableViewImpl.close" in describe(c)


def test_the_brokers_conflict_lines_name_the_topics_after_the_method_began(tmp_path):
    (tmp_path / "chaoslab-broker-2-1-abc.log").write_text(LOG_B2)
    (tmp_path / "chaoslab-broker-3-1-def.log").write_text(LOG_B3)
    c = metadata_conflicts(tmp_path, since=T_METHOD)
    assert c["topics"] == 2 and c["by_broker"] == {"broker-2": 1, "broker-3": 2}
    assert c["fenced_lines"] == {"broker-2": 1}
    assert metadata_conflicts(tmp_path)["topics"] == 3   # without `since`, the earlier line counts too


def test_hang_split_both_none(tmp_path):
    assert classify(samples(), None)["mechanism"] == "none"
    odd = samples()
    odd[0]["brokers"]["probe_error"] = "TimeoutError"   # a probe's error beside the brokers' figures
    assert classify(odd, None, pending_bound=40)["mechanism"] == "none"
    assert classify(samples(split=3), None)["mechanism"] == "split"
    assert classify(samples(stalled=15), None)["mechanism"] == "hang"
    # a stall during a split, without a thread dump, is the split's: the hang needs its own evidence
    assert classify(samples(split=3, stalled=15), None)["mechanism"] == "split"
    (tmp_path / "threaddump-chaoslab-broker-1-1-x-1.txt").write_text(DUMP)
    both = classify(samples(split=3, stalled=15), tmp_path)
    assert both["mechanism"] == "both" and both["hang"]["shown_by_thread_dump"]
    assert "1 threads waiting for the load-data store's monitor" in describe(both)


def test_chain_link_6_carries_the_number_of_topics():
    v = {"steps": [{"type": "roll-broker", "broker": "broker-1", "config": {}}], "undone": [], "rollbacks": []}
    row = next(r for r in links(v, samples(), 50, conflicts={"topics": 72, "by_broker": {"broker-2": 24, "broker-3": 45}})
               if r["link"] == 6)
    assert row["observed"] and row["number"].startswith("metadata conflict: 72 topics written by two brokers")


def test_view_restarts_are_counted_and_those_since_time_zero_named(tmp_path):
    from chaoslab.stories.flip import view_restarts
    line = ("2026-12-01T17:02:04.269Z 2026-12-01T17:02:04,269+0000 [Thread-18] INFO  org.apache.pulsar.broker."
            "loadbalance.extensions.store.TableViewLoadDataStoreImpl - Restarted tableview on "
            "non-persistent://pulsar/system/loadbalancer-broker-load-data, inactiveDuration={} secs > threshold = 1800 secs")
    failed = ("2026-12-01T18:45:47,230+0000 [Thread-26] ERROR org.apache.pulsar.broker.loadbalance.extensions.store."
              "TableViewLoadDataStoreImpl - Failed to tableview on non-persistent://pulsar/system/loadbalancer-broker-"
              "load-data, restart reason: object is null")
    failed_old = ("2026-12-01T18:45:48,230+0000 [Thread-24] ERROR org.apache.pulsar.broker.loadbalance.extensions.store."
                  "TableViewLoadDataStoreImpl - Failed to restart tableview on non-persistent://pulsar/system/x")
    (tmp_path / "chaoslab-broker-1-1-abc.log").write_text("\n".join([line.format(1796143682), line.format(1796143683),
                                                                      line.format(2000), "unrelated"]))
    (tmp_path / "chaoslab-broker-2-1-def.log").write_text("\n".join(["nothing here", failed, failed_old]))
    v = view_restarts(tmp_path)
    assert v == {"restarts": 3, "failed": 2, "from_time_zero": 2, "inactive": 1, "view_missing": 1,
                 "by_broker": {"broker-1": 3, "broker-2": 2}, "longest_inactive_secs": 1796143683}
    assert view_restarts(tmp_path, since=2e9)["restarts"] == 0      # only after `since`
    assert view_restarts(tmp_path / "missing")["restarts"] == 0


def test_view_restarts_count_only_the_stores_own_lines_and_since_keeps_the_fraction(tmp_path):
    from chaoslab.stories.flip import view_restarts
    own = ("2026-12-01T18:45:47.900000000Z 2026-12-01T18:45:47,900+0000 [Thread-26] ERROR org.apache.pulsar.broker."
           "loadbalance.extensions.store.TableViewLoadDataStoreImpl - Failed to tableview on non-persistent://pulsar/"
           "system/loadbalancer-broker-load-data, restart reason: object is null")
    quoted = [  # the same text quoted by other classes (a lookup's error message): not the store's own line
        '2026-12-01T18:45:48,000+0000 [pulsar-proxy-io-2-1] WARN  org.apache.pulsar.proxy.server.LookupProxyHandler - '
        '[/10.0.0.5:40000] Failed to lookup topic persistent://t/ns/x: {"errorMsg":"Failed to tableview on '
        'non-persistent://pulsar/system/loadbalancer-broker-load-data, restart reason: object is null"}',
        "2026-12-01T18:45:48,100+0000 [pulsar-web-41-3] ERROR org.apache.pulsar.broker.lookup.TopicLookupBase - "
        "Failed to lookup: java.lang.IllegalStateException: Failed to tableview on non-persistent://pulsar/system/x",
    ]
    (tmp_path / "chaoslab-broker-1-1-abc.log").write_text("\n".join([own, *quoted]))
    assert view_restarts(tmp_path)["failed"] == 1
    since = 1_796_150_747.5       # 2026-12-01T18:45:47.5 UTC: the line at .9 of that second is after it
    assert view_restarts(tmp_path, since=since)["failed"] == 1
    assert view_restarts(tmp_path, since=since + 0.5)["failed"] == 0


def test_the_load_managers_start_and_role_lines_are_counted_per_broker(tmp_path):
    from chaoslab.stories.flip import load_manager_lines
    (tmp_path / "chaoslab-broker-1-1-abc.log").write_text(
        "2026-12-01T21:47:13,046+0000 [pulsar-load-manager-1-1] WARN  org.apache.pulsar.broker.loadbalance.extensions."
        "ExtensibleLoadManagerImpl - The broker:broker-1:8080 failed to set the role. Retrying 1 th ...\n"
        "2026-12-01T21:47:14,046+0000 [main] ERROR org.apache.pulsar.broker.loadbalance.extensions."
        "ExtensibleLoadManagerImpl - Failed to start the extensible load balance and close broker registry.\n"
        "2026-12-01T21:40:00,000+0000 [x] WARN  org.apache.pulsar.broker.loadbalance.extensions."
        "ExtensibleLoadManagerImpl - failed to set the role. Retrying 0 th ...\n"
        "errorMsg: failed to set the role (a lookup quoting it)\n")
    since = datetime(2026, 12, 1, 21, 45, tzinfo=timezone.utc).timestamp()
    lines = load_manager_lines(tmp_path, since)
    assert lines["failed_to_set_role"] == {"lines": 1, "by_broker": {"broker-1": 1}}
    assert lines["failed_to_start"]["lines"] == 1 and lines["registration_lock_busy"]["lines"] == 0
