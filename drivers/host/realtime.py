"""Real-time setup and a fixed-rate cycle timer for kinebridge's control processes.

Measured on the project's 2-core box (``shared/reference/realtime.md`` §3–4):

* a plain ``time.sleep`` wake-up costs ≥ 84 µs with the default 50 µs timer slack, ~18 µs with
  ``PR_SET_TIMERSLACK`` = 1 ns (no privilege needed);
* sleeping to 200 µs before the deadline and spinning the rest makes the median period error 0 at a
  cost of ~10 % of a core at 500 Hz;
* SCHED_FIFO + CPU pinning + mlockall is the largest single win under load (1 kHz p99 2.1 ms → 1 µs),
  but needs root or ``LimitRTPRIO``/``LimitMEMLOCK`` (the systemd unit grants them);
* a FIFO thread must never spin for a whole period (RT throttling leaves ~50 ms holes);
* holding ``/dev/cpu_dma_latency`` at 0 µs (PM-QoS, root) keeps idle CPUs out of deep sleep states:
  a 100 µs sleep overshoots by 16 instead of 40 µs, and here the control tick's work after a wake-up
  (step + SDK send) fell from 216 to 108 µs p50 (523 → 280 µs p99) in the idle 200 Hz run. It is
  system-wide and costs idle power, for as long as the process holds the file open.

:func:`configure_realtime` asks for each of these and reports what it got — it never fails because
a privilege is missing. :class:`CycleTimer` paces a loop on absolute CLOCK_MONOTONIC deadlines
(no drift), counts overruns and keeps each tick's lateness in a preallocated ring buffer that another
thread can read without stopping the loop.
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RealtimeReport", "configure_realtime", "hold_cpu_dma_latency", "CycleTimer", "sleep_until",
           "try_sched_fifo", "set_timer_slack_ns", "raise_other_threads"]

PR_SET_TIMERSLACK = 29
MCL_CURRENT, MCL_FUTURE = 1, 2
DEFAULT_SPIN_NS = 200_000


@dataclass
class RealtimeReport:
    """What :func:`configure_realtime` obtained; ``notes`` says why anything was not granted."""

    sched_fifo: bool = False
    priority: int = 0
    cpus: tuple[int, ...] = ()
    mlockall: bool = False
    timer_slack_ns: int | None = None
    cpu_dma_latency_us: int | None = None
    gc_frozen: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        got = [f"SCHED_FIFO {self.priority}" if self.sched_fifo else "normal scheduling",
               f"CPUs {list(self.cpus)}" if self.cpus else "any CPU",
               "memory locked" if self.mlockall else "memory not locked",
               f"timer slack {self.timer_slack_ns} ns" if self.timer_slack_ns is not None else "default timer slack",
               f"PM-QoS {self.cpu_dma_latency_us} µs" if self.cpu_dma_latency_us is not None else "no PM-QoS"]
        return ", ".join(got) + (f" ({'; '.join(self.notes)})" if self.notes else "")


def _libc():
    return ctypes.CDLL(None, use_errno=True)


_PM_QOS_FD: list[int] = []      # the open /dev/cpu_dma_latency: the request lasts while it stays open


def try_sched_fifo(priority: int, tid: int = 0) -> bool:
    """SCHED_FIFO ``priority`` for thread ``tid`` (0: the calling thread); False where not permitted."""
    try:
        if tid and os.sched_getscheduler(tid) == os.SCHED_FIFO:
            return True
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(int(priority)))
        return True
    except (AttributeError, OSError, ValueError):
        return False


def set_timer_slack_ns(ns: int) -> bool:
    """PR_SET_TIMERSLACK for the calling thread (Linux): how late the kernel may wake it; False if refused."""
    try:
        return _libc().prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(int(ns)), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def raise_other_threads(priority: int) -> str:
    """SCHED_FIFO ``priority`` for every thread of this process but the calling one (a driver's receive
    thread, ZeroMQ's I/O thread), so they do not wait behind normal-priority work; reports how many."""
    import threading
    me = threading.get_native_id()
    raised = refused = 0
    for tid in os.listdir("/proc/self/task"):
        tid = int(tid)
        if tid == me:
            continue
        if try_sched_fifo(priority, tid):
            raised += 1
        else:
            refused += 1
    return f"{raised} at SCHED_FIFO {priority}" + (f", {refused} refused" if refused else "")


def hold_cpu_dma_latency(us: int, path: str = "/dev/cpu_dma_latency") -> int:
    """PM-QoS: keep every CPU's wake-up latency ≤ ``us`` while this process lives (the file stays
    open). Raises OSError when not permitted (root only) or absent (containers, some VMs)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, int(us).to_bytes(4, "little"))
    except OSError:
        os.close(fd)
        raise
    while _PM_QOS_FD:            # a newer request replaces the older one
        os.close(_PM_QOS_FD.pop())
    _PM_QOS_FD.append(fd)
    return fd


def configure_realtime(priority: int = 80, cpus: tuple[int, ...] | None = None, lock_memory: bool = True,
                       timer_slack_ns: int = 1, freeze_gc: bool = True,
                       cpu_dma_latency_us: int | None = None) -> RealtimeReport:
    """Ask for real-time treatment of the calling thread/process; report what was granted.

    ``priority`` 0 skips SCHED_FIFO. ``cpus`` pins the process. ``cpu_dma_latency_us`` (None = leave
    alone) holds the PM-QoS CPU wake-up latency for the life of the process. ``freeze_gc`` moves everything
    allocated so far out of the collector's reach (``gc.freeze``), so start-up garbage is never
    scanned from the loop. Nothing here raises for a missing privilege."""
    if not 0 <= priority <= 99:
        raise ValueError(f"priority must be 0..99 (SCHED_FIFO range), got {priority}")
    rep = RealtimeReport()
    libc = _libc()
    if timer_slack_ns is not None:
        if set_timer_slack_ns(timer_slack_ns):
            rep.timer_slack_ns = int(timer_slack_ns)
        else:
            rep.notes.append(f"timer slack: errno {ctypes.get_errno()}")
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
            rep.cpus = tuple(sorted(os.sched_getaffinity(0)))
        except OSError as exc:
            rep.notes.append(f"affinity {list(cpus)}: {exc.strerror}")
    if lock_memory:
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
            rep.mlockall = True
        else:
            rep.notes.append(f"mlockall: {os.strerror(ctypes.get_errno())} (raise LimitMEMLOCK)")
    if priority:
        if try_sched_fifo(priority):
            rep.sched_fifo, rep.priority = True, priority
        else:
            rep.notes.append(f"SCHED_FIFO: {os.strerror(ctypes.get_errno()) or 'not permitted'} "
                             f"(raise LimitRTPRIO or run as root)")
    if cpu_dma_latency_us is not None:
        try:
            hold_cpu_dma_latency(cpu_dma_latency_us)
            rep.cpu_dma_latency_us = int(cpu_dma_latency_us)
        except OSError as exc:
            rep.notes.append(f"PM-QoS /dev/cpu_dma_latency: {exc.strerror} (root only; absent in some containers)")
    if freeze_gc:
        gc.collect()
        gc.freeze()
        rep.gc_frozen = True
    return rep


def sleep_until(deadline_ns: int, spin_ns: int = DEFAULT_SPIN_NS) -> None:
    """Sleep until ``deadline_ns`` (CLOCK_MONOTONIC): coarse sleep, then spin the last ``spin_ns``."""
    rest = deadline_ns - time.monotonic_ns() - spin_ns
    if rest > 0:
        time.sleep(rest * 1e-9)
    while time.monotonic_ns() < deadline_ns:
        pass


class CycleTimer:
    """Absolute-deadline pacing: ``wait()`` returns at t0 + k·period for k = 1, 2, …

    A tick that starts more than one period late is an **overrun**: the missed deadlines are skipped
    (never run in a burst) and the schedule stays on the original grid. ``lateness_ns`` is a ring
    buffer of the last ``history`` wake-up errors (actual − deadline), written without allocation.
    """

    def __init__(self, rate_hz: float, spin_ns: int = DEFAULT_SPIN_NS, history: int = 65536):
        if not 0.0 < rate_hz <= 10_000.0:
            raise ValueError(f"rate_hz must be in (0, 10000], got {rate_hz}")
        if spin_ns < 0:
            raise ValueError(f"spin_ns must be ≥ 0, got {spin_ns}")
        self.period_ns = int(round(1e9 / rate_hz))
        self.spin_ns = min(int(spin_ns), self.period_ns // 2)
        self.lateness_ns = np.zeros(int(history), dtype=np.int64)
        self.ticks = 0
        self.overruns = 0
        self._deadline = 0

    def start(self, t0_ns: int | None = None) -> int:
        """Set the grid origin (default: now); the first ``wait()`` returns one period later."""
        self._deadline = time.monotonic_ns() if t0_ns is None else int(t0_ns)
        return self._deadline

    @property
    def deadline_ns(self) -> int:
        """The deadline the last ``wait()`` woke up for."""
        return self._deadline

    def wait(self) -> int:
        """Sleep until the next deadline; returns how late (ns) the wake-up was."""
        if self._deadline == 0:
            self.start()
        nxt = self._deadline + self.period_ns
        now = time.monotonic_ns()
        if now - nxt > self.period_ns:  # overrun: skip the deadlines already missed
            missed = (now - nxt) // self.period_ns
            nxt += missed * self.period_ns
            self.overruns += 1
        sleep_until(nxt, self.spin_ns)
        late = time.monotonic_ns() - nxt
        self._deadline = nxt
        self.lateness_ns[self.ticks % self.lateness_ns.shape[0]] = late
        self.ticks += 1
        return late

    def recent_lateness_us(self) -> np.ndarray:
        """The recorded wake-up errors (µs), oldest first."""
        n = min(self.ticks, self.lateness_ns.shape[0])
        if self.ticks <= self.lateness_ns.shape[0]:
            return self.lateness_ns[:n] / 1e3
        k = self.ticks % self.lateness_ns.shape[0]
        return np.concatenate([self.lateness_ns[k:], self.lateness_ns[:k]]) / 1e3
