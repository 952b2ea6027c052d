"""One run per lab on this host: an flock on <lock dir>/<project>.lock.

The compose project, its containers and its ports belong to the engine, not to a checkout, so
the lock lives where every checkout on the host sees it: /run/lock/chaoslab (or the system's
temporary folder when that cannot be written; CHAOSLAB_LOCK_DIR overrides). The kernel releases
an flock when its holder dies (even by SIGKILL), so a killed runner never leaves a stale lock.
The file says who holds it: pid, run folder, checkout."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path

from chaoslab.errors import LabError
from chaoslab.settings import REPO_ROOT


class LabBusy(LabError):
    pass


def lock_dir() -> Path:
    """/run/lock/chaoslab, shared by every user and checkout of the host (created world-writable
    with the sticky bit, like /tmp). Only when /run/lock itself cannot be written is the system's
    temporary folder used; a shared folder that exists but is not writable is an error, never a
    silent fall-back (two users would then hold two different locks on one engine)."""
    if os.environ.get("CHAOSLAB_LOCK_DIR"):
        return Path(os.environ["CHAOSLAB_LOCK_DIR"])
    for parent in (Path("/run/lock"), Path(tempfile.gettempdir())):
        folder = parent / "chaoslab" if parent.name == "lock" else parent / "chaoslab-locks"
        if folder.is_dir():
            if not os.access(folder, os.W_OK):
                raise LabError(f"the lab lock folder {folder} is not writable by this user: make it world-writable "
                               f"(chmod 1777 {folder}) or set CHAOSLAB_LOCK_DIR for every user of this engine")
            return folder
        if os.access(parent, os.W_OK):
            try:
                folder.mkdir(exist_ok=True)
                folder.chmod(0o1777)
                return folder
            except OSError:
                continue
    raise LabError("no folder for the lab lock can be written (set CHAOSLAB_LOCK_DIR)")


class LabLock:
    def __init__(self, project: str, folder: Path | None = None, run_dir: Path | None = None, what: str = "run"):
        self.path = Path(folder or lock_dir()) / f"{project}.lock"
        self.project = project
        self.run_dir = run_dir
        self.what = what
        self._fh = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "LabLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            h = self.holder()
            raise LabBusy(f"lab busy: pid {h.get('pid', '?')}, {h.get('what', 'run')}"
                          + (f", run folder {h['run_folder']}" if h.get("run_folder") else "")
                          + (f", checkout {h['checkout']}" if h.get("checkout") else "")
                          + f" holds the lab '{self.project}' (lock {self.path}); nothing was touched. Wait "
                          "for it, or run beside it with CHAOSLAB_PROJECT=<name> and other CHAOSLAB_*_PORT values") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "what": self.what, "checkout": str(REPO_ROOT),
                             "run_folder": str(self.run_dir) if self.run_dir else None}))
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
