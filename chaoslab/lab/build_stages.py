"""Timings of the build stages that did work (debootstrap, Maven, each image and its Dockerfile
steps, cargo, jlink), one JSON line each in build/build-stages.jsonl: bench/cold_start.py prints
them."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from chaoslab.settings import BUILD_DIR

STAGES_FILE = BUILD_DIR / "build-stages.jsonl"


@contextmanager
def stage(name: str, log=None):
    """Time one build stage into STAGES_FILE; yields a dict the stage may add details to."""
    record: dict = {"stage": name, "start": time.time()}
    started = time.monotonic()
    try:
        yield record
    finally:
        record["seconds"] = round(time.monotonic() - started, 1)
        record["end"] = time.time()
        try:
            STAGES_FILE.parent.mkdir(parents=True, exist_ok=True)
            with STAGES_FILE.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError:
            pass  # timing is a figure for the bench, never a reason to fail a build
        if log is not None:
            log(f"{name}: {record['seconds']:.0f} s")


def read_stages(path: Path = STAGES_FILE) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


