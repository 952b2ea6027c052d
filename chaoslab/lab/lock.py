"""One run per lab: an flock on build/lab/<project>.lock. The kernel releases it when the holder
dies (even by SIGKILL), so a killed runner never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from chaoslab.errors import LabError
from chaoslab.settings import BUILD_DIR


class LabBusy(LabError):
    pass


class LabLock:
    def __init__(self, project: str, folder: Path | None = None):
        self.path = Path(folder or BUILD_DIR / "lab") / f"{project}.lock"
        self.project = project
        self._fh = None

    def acquire(self) -> "LabLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise LabBusy(f"another chaoslab run (pid {holder}) is using the lab '{self.project}': wait for it, "
                          "or run beside it with CHAOSLAB_PROJECT=<name> and other CHAOSLAB_*_PORT values") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "LabLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
