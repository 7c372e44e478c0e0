"""systemd's notification protocol (sd_notify) without a dependency: READY, WATCHDOG, STATUS, STOPPING.

Under ``Type=notify`` systemd sets ``$NOTIFY_SOCKET``; the daemon sends ``READY=1`` once every node is
ready, ``WATCHDOG=1`` from the supervisor's own poll loop (so ``WatchdogSec`` restarts a daemon whose
supervisor hangs), ``STATUS=...`` lines that ``systemctl status`` shows, and ``STOPPING=1`` on the way
out. Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, environ=os.environ):
        addr = environ.get("NOTIFY_SOCKET")
        self.addr = ("\0" + addr[1:]) if addr and addr.startswith("@") else addr
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        self.watchdog_s = (int(usec) / 1e6) if usec and (not pid or int(pid) == os.getpid()) else None
        self._next_ping = 0.0
        self._sock = None

    @property
    def active(self) -> bool:
        return bool(self.addr)

    def send(self, *fields: str) -> None:
        if not self.addr:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto("\n".join(fields).encode(), self.addr)
        except OSError:
            pass              # systemd gone or the socket unusable: nothing to tell

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self, now: float | None = None) -> None:
        """Ping at twice the watchdog's rate; cheap enough for every poll of the supervisor."""
        if self.watchdog_s is None:
            return
        now = time.monotonic() if now is None else now
        if now >= self._next_ping:
            self._next_ping = now + self.watchdog_s / 2
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
