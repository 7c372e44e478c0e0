"""One runtime per bus directory and per arm: an advisory lock, and what the running one is.

``kinebridge run`` takes ``<bus.ipc_dir>/runtime.lock`` (and, for a real arm, a lock named after the
arm's address under ``/run/lock``, else the temp directory) with ``flock``: a second start is refused
naming the running one (pid, since when, its config). The lock dies with the process, so a crashed
runtime never blocks the next start. The file also says where the running runtime listens — the
supervisor's command socket, the ingress, every node's endpoint — for `kinebridge status|task|…`.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from pathlib import Path

__all__ = ["RuntimeLock", "AlreadyRunning", "read_runtime_info"]

LOCK_NAME = "runtime.lock"


class AlreadyRunning(RuntimeError):
    """Another kinebridge runtime holds the bus directory or the arm."""


def _arm_lock_dir() -> Path:
    for d in ("/run/lock", tempfile.gettempdir()):
        if os.access(d, os.W_OK):
            return Path(d)
    return Path(tempfile.gettempdir())


def read_runtime_info(ipc_dir: str | Path) -> dict | None:
    """What the runtime on ``ipc_dir`` wrote about itself, or None if none is running there."""
    path = Path(ipc_dir) / LOCK_NAME
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return None          # nobody holds it: stale
            except BlockingIOError:
                pass
            return json.loads(f.read() or "{}")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class RuntimeLock:
    """Hold the bus directory (and the arm at ``arm_address``, if given) for this process."""

    def __init__(self, ipc_dir: str | Path, arm_address: str | None = None):
        self.paths = [Path(ipc_dir) / LOCK_NAME]
        if arm_address:
            safe = "".join(c if c.isalnum() else "_" for c in arm_address)
            self.paths.append(_arm_lock_dir() / f"kinebridge-arm-{safe}.lock")
        self._files = []

    def acquire(self, info: dict) -> "RuntimeLock":
        info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                try:
                    other = json.loads(f.read() or "{}")
                except json.JSONDecodeError:
                    other = {}
                f.close()
                self.release()
                what = "the bus directory" if path.name == LOCK_NAME else "this arm"
                raise AlreadyRunning(
                    f"another kinebridge runtime holds {what} ({path}): pid {other.get('pid', '?')}, started "
                    f"{other.get('started', '?')}, config {other.get('config') or 'embedded default'}; stop it "
                    f"(`kinebridge stop` holds the arm, SIGTERM ends it) or use another bus.ipc_dir") from None
            f.seek(0)
            f.truncate()
            f.write(json.dumps(info, default=str))
            f.flush()
            self._files.append(f)
        return self

    def update(self, info: dict) -> None:
        """Rewrite what the runtime says about itself (e.g. the simulator's port once it is known)."""
        for f in self._files:
            f.seek(0)
            cur = json.loads(f.read() or "{}")
            f.seek(0)
            f.truncate()
            f.write(json.dumps({**cur, **info}, default=str))
            f.flush()

    def release(self) -> None:
        for f in self._files:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            except (OSError, ValueError):
                pass
        self._files = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
