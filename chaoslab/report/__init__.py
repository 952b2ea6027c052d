"""Reports are built from a run folder's journal and results alone (chaoslab.report.build)."""

from chaoslab.report.rolling_upgrade import build_report

__all__ = ["build_report"]
