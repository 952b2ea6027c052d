"""One real lab for the whole integration session (brought up once, removed at the end).

CHAOSLAB_KEEP_LAB=1 leaves it running afterwards (handy while developing).
"""

from __future__ import annotations

import os

import pytest

from chaoslab.lab.cluster import Lab
from chaoslab.settings import LabSettings
from chaoslab.workload.admin import PulsarAdmin


@pytest.fixture(scope="session")
def lab():
    lab = Lab(LabSettings.from_env(), log=lambda m: print(f"[lab] {m}", flush=True))
    lab.up(pico=2, nano=1)
    yield lab
    if os.environ.get("CHAOSLAB_KEEP_LAB") != "1":
        lab.down()


@pytest.fixture(scope="session")
def admin(lab):
    return PulsarAdmin(lab.proxy_admin_url, cluster=lab.settings.cluster)
