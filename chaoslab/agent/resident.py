"""The VM's resident application: keeps RESIDENT_MB of file-backed pages hot, as a real app's
binaries and data files would be. It maps a file and reads every page in a loop, so that when the
agent's anonymous memory grows against the cgroup cap, the kernel evicts these pages and the app
faults them back in from disk (pgmajfault, blkio reads) instead of the container dying at once.

    RESIDENT_MB=96 python3 -m chaoslab.agent.resident
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import time

PAGE = mmap.PAGESIZE


def main() -> int:
    size_mb = int(os.environ.get("RESIDENT_MB", "0") or 0)
    if size_mb <= 0:
        return 0
    path = os.environ.get("RESIDENT_FILE", "/var/lib/app/data.bin")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    size = size_mb * 1024 * 1024
    if not os.path.exists(path) or os.path.getsize(path) != size:
        with open(path, "wb") as fh:
            chunk = os.urandom(1024 * 1024)
            for _ in range(size_mb):
                fh.write(chunk)
    running = True

    def stop(*_):
        nonlocal running
        running = False
    signal.signal(signal.SIGTERM, stop)
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ)
        total = 0
        while running:
            for offset in range(0, size, PAGE):
                total += mm[offset]
            time.sleep(float(os.environ.get("RESIDENT_PAUSE_SECS", "0.5")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
