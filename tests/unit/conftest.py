"""Unit tests never listen on a fixed port: the live metrics a CLI run would serve by default
(chaoslab/live.py) are off here; a test that wants them passes its own port (0: any free one)."""

import pytest


@pytest.fixture(autouse=True)
def no_live_metrics_by_default(monkeypatch):
    monkeypatch.setenv("CHAOSLAB_METRICS_PORT", "off")
