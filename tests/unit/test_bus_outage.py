import pytest

from chaoslab.agent import config as agent_config
from chaoslab.experiment import spec
from chaoslab.experiment.bus_outage import agent_toml
from chaoslab.experiment.bus_outage_spec import OutageExperiment, parse
from chaoslab.experiment.spec import SpecError
from chaoslab.observe import cgroups
from chaoslab.settings import REPO_ROOT

GOOD = """
kind: bus-outage
name: vb
vm_groups:
  - {name: a, role: control, flavour: pico, count: 2, buffer: {type: memory, max_events: 100000, when_full: block}}
  - {name: b, role: primary, flavour: nano, count: 1, buffer: {type: disk, max_size: 268435488, when_full: drop_newest}}
"""


def test_shipped_file_dispatches_by_kind():
    exp = spec.load(REPO_ROOT / "experiments" / "vector-buffer.yaml", env={})
    assert isinstance(exp, OutageExperiment) and exp.primary.buffer.type == "disk"
    assert sum(g.count for g in exp.groups) >= 15


@pytest.mark.parametrize("text,message", [
    (GOOD.replace("max_size: 268435488", "max_size: 1000"), "at least 268435488"),
    (GOOD.replace("when_full: block", "when_full: panic"), "when_full must be"),
    (GOOD.replace("flavour: nano", "flavour: large"), "flavour: must be one of pico, nano"),
    (GOOD.replace("count: 2", "count: 500"), "count: must be <= 100"),
    (GOOD.replace("role: primary", "role: control"), "exactly one group must have role: primary"),
    (GOOD + "outage: {target: moon}\n", "outage.target: must be one of proxy, brokers"),
    (GOOD + "hypothesis: {oom_kills_max: many}\n", "hypothesis.oom_kills_max: expected an integer"),
    (GOOD.replace("count: 2,", "count: 2, resident_mb: 300,"), "does not fit in a pico VM"),
])
def test_broken_outage_files(text, message):
    with pytest.raises(SpecError, match=message):
        parse(text, env={})


def test_generated_agent_config_is_valid_for_the_agent():
    exp = parse(GOOD, env={})
    for group in exp.groups:
        cfg = agent_config.parse(agent_toml(group, "persistent://public/default/x"), env={})
        assert cfg.sink.buffer == group.buffer
        assert cfg.sources["app_logs"].format == "shuffle" and cfg.sources["app_logs"].sequence


def test_cgroup_v1_files_are_read_with_kernel_names(tmp_path):
    cid = "abc"
    mem = tmp_path / "memory" / "docker" / cid
    mem.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("1000\n")
    (mem / "memory.limit_in_bytes").write_text("268435456\n")
    (mem / "memory.max_usage_in_bytes").write_text("2000\n")
    (mem / "memory.failcnt").write_text("3\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (mem / "memory.stat").write_text("total_rss 10\ntotal_cache 20\ntotal_pgmajfault 7\ntotal_pgpgin 9\ntotal_mapped_file 4\n")
    blk = tmp_path / "blkio" / "docker" / cid
    blk.mkdir(parents=True)
    (blk / "blkio.throttle.io_service_bytes").write_text("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n")
    f = cgroups.container_figures(cid, root=tmp_path)
    assert f["memory.limit_in_bytes"] == 268435456 and f["oom_kill"] == 1 and f["total_pgmajfault"] == 7
    assert f["blkio_read_bytes"] == 4096 and f["blkio_write_bytes"] == 512 and f["memory.failcnt"] == 3
    assert cgroups.container_figures("gone", root=tmp_path) is None
