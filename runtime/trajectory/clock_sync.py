"""The control node's clock, as seen from a node that may run on another machine.

Chunks carry ``t0`` on the control node's ``CLOCK_MONOTONIC``, which another machine does not share
(its monotonic clock counts from its own boot). A producer therefore keeps an estimate of the offset
from the stamps of the control node's ``control/state`` messages:

    offset_i = stamp_ns(control) − receipt_ns(here) = (clock_control − clock_here) − latency_i

Every sample underestimates the true offset by its one-way latency, so the largest sample of a recent
window (the least-delayed message) is the estimate; it trails the truth by the smallest latency seen
(~0.1 ms on a LAN or on one machine) — a chunk then starts that much earlier on its own timeline, far
inside any planning lead. On one machine the estimate is that latency, and a remote producer needs
nothing configured.

Only *live* samples count: a message received at least half its publishing interval after the
previous one. A backlog — messages that queued while the node was busy (fitting a skill at start,
planning), read back to back — arrives far faster than it was published, and its samples would put
the clock seconds behind; they are skipped, and the clock counts as synced after ``min_live`` live
samples (the least delayed of them wins).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["ControlClock"]


class ControlClock:
    """``now()`` on the control node's clock, from stamps observed on this machine."""

    def __init__(self, window: int = 256, min_live: int = 3):
        if window < 1 or not 1 <= min_live <= window:
            raise ValueError(f"need window ≥ 1 and 1 ≤ min_live ≤ window, got window={window}, min_live={min_live}")
        self.min_live = int(min_live)
        self._samples = np.full(int(window), -np.inf)
        self._n = 0
        self._prev: tuple[int, int] | None = None
        self.skipped = 0              # samples read from a backlog

    def observe(self, remote_stamp_ns: int, local_receipt_ns: int | None = None) -> bool:
        """A message stamped ``remote_stamp_ns`` by the control node arrived at ``local_receipt_ns``
        (default: now). Returns whether the sample was live (and counted)."""
        stamp = int(remote_stamp_ns)
        receipt = time.monotonic_ns() if local_receipt_ns is None else int(local_receipt_ns)
        prev, self._prev = self._prev, (stamp, receipt)
        if prev is None or stamp <= prev[0] or 2 * (receipt - prev[1]) < stamp - prev[0]:
            self.skipped += prev is not None
            return False
        self._samples[self._n % self._samples.shape[0]] = (stamp - receipt) * 1e-9
        self._n += 1
        return True

    @property
    def synced(self) -> bool:
        """``min_live`` live samples seen (one live-looking sample may still be a delayed straggler)."""
        return self._n >= self.min_live

    @property
    def offset_s(self) -> float:
        """control clock − this machine's clock (s), as estimated; raises before the first sample."""
        if not self.synced:
            raise RuntimeError("no live control/state received yet: the control node's clock is unknown "
                               "(is the control node running and reachable?)")
        return float(self._samples.max())

    def to_control(self, local_s: float) -> float:
        """A ``time.monotonic()`` reading of this machine on the control node's clock."""
        return local_s + self.offset_s

    def now(self) -> float:
        return time.monotonic() + self.offset_s
