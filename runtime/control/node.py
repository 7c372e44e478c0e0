"""The control node: the process that owns the arm and runs the fixed-rate loop.

It connects the :class:`~kinebridge.drivers.realman_arm.RealmanArm` (the official SDK), asks for
real-time treatment (SCHED_FIFO, pinning, mlockall, 1 ns timer slack — and reports what it got),
and runs :class:`~kinebridge.runtime.control_loop.ControlLoop`. The bus is read on the loop's own
thread — no second thread competes for the GIL: between ticks it waits on the subscriber socket until
``BETWEEN_TICKS_GUARD_NS`` before the next deadline, decoding, validating and blending each chunk as it
arrives, so the tick itself only steps and sends; what arrives inside the guard is drained at the start
of the tick.

* ``chunk`` (``t0``, ``dt`` in the header, ``q`` (N, 7) array): validated at the boundary; a bad
  chunk is counted and reported on ``control/reject`` with the reason, never sent on;
* ``estop``: stops streaming and stops the arm at once.

It publishes ``control/state`` (every ``control.state_every`` ticks: the setpoint sent, the measured
joints, the tick's counters), ``control/timing`` (batches of wake-up lateness and tick duration,
``control.timing_hz``) and ``control/chunk_latency`` (chunk stamp → the tick that first sent a
setpoint from it). On SIGTERM it decelerates to rest before it stops the arm.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from kinebridge.drivers.realman_arm import RealmanArm
from kinebridge.runtime.control_loop import ControlConfig, ControlLoop
from kinebridge.runtime.node import Node
from kinebridge.runtime.realtime import configure_realtime

__all__ = ["ControlNode", "BETWEEN_TICKS_GUARD_NS"]

# Between ticks the bus is waited on until this long before the next deadline: the time to handle one
# batch of messages (a chunk: ~10-150 µs) and to wake up late, so the sleep-then-spin that follows
# still starts the tick on time. A chunk that lands inside the guard is handled at the start of the
# tick instead (adding its handling to that tick), so the guard is kept short.
BETWEEN_TICKS_GUARD_NS = 300_000


def _raise_helper_threads(priority: int) -> str:
    """SCHED_FIFO ``priority`` for the process's other threads: the SDK's UDP state receiver and
    ZeroMQ's I/O thread must not wait behind the trajectory node's planning either, or the state
    push looks late and the driver declares the link lost. Reports how many it raised."""
    main = threading.get_native_id()
    raised, refused = 0, 0
    for tid in os.listdir("/proc/self/task"):
        tid = int(tid)
        if tid == main:
            continue
        try:
            if os.sched_getscheduler(tid) != os.SCHED_FIFO:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
            raised += 1
        except OSError:
            refused += 1
    return f"{raised} at SCHED_FIFO {priority}" + (f", {refused} refused" if refused else "")


class ControlNode(Node):
    def io_priority(self, cfg) -> int:
        p = cfg.control.realtime.priority
        return max(0, p - 1)

    def subscriptions(self) -> tuple[str, ...]:
        return (self.cfg.control.chunk_topic, "estop")

    def setup(self) -> None:
        c = self.cfg.control
        self.arm = RealmanArm(self.cfg.arm.realman)
        self.arm.connect()
        loop_cfg = ControlConfig(**{k: getattr(c, k) for k in ControlConfig.model_fields})
        self.loop_ = ControlLoop(self.arm, loop_cfg)
        rt = c.realtime
        self.rt = configure_realtime(priority=rt.priority, cpus=tuple(rt.cpus) or None, lock_memory=rt.lock_memory,
                                     cpu_dma_latency_us=0 if rt.pm_qos else None)
        self.detail["realtime"] = self.rt.summary()
        if self.rt.sched_fifo:
            self.detail["helper_threads"] = _raise_helper_threads(max(1, rt.priority - 2))
        self.detail["rate_hz"] = c.rate_hz
        n = max(1, int(round(c.rate_hz / c.timing_hz)))
        self._timing_every = n
        self._late = np.zeros(n, dtype=np.int64)
        self._dur = np.zeros(n, dtype=np.int64)
        self._lat_ns: list[int] = []
        self._pending_stamp = None
        self.rejected_chunks = 0
        self._tick_start_ns = 0

    def teardown(self) -> None:
        arm = getattr(self, "arm", None)
        if arm is not None:
            arm.stop()
            arm.close()

    # ------------------------------------------------------------------------------ the loop
    def loop(self) -> None:
        self.status = "streaming"
        self.heartbeat(force=True)
        st = self.loop_.run(before_tick=self._before, after_tick=self._after, between_ticks=self._between)
        self.detail["stopped_reason"] = st.stopped_reason
        self._publish_timing(final=True)
        if st.stopped_reason is not None and not self.stopping:
            raise RuntimeError(st.stopped_reason)   # the supervisor sees a failed critical node

    def stop(self) -> None:  # SIGTERM: come to rest, then stop
        super().stop()
        loop = getattr(self, "loop_", None)
        if loop is not None:
            loop.stop(decelerate=True)

    def _before(self, t: float) -> None:
        if self.stopping:
            self.loop_.stop(decelerate=True)
            return
        self._tick_start_ns = time.monotonic_ns()
        self._take(self.sub.drain(limit=64))     # what arrived in the guard window before this tick

    def _between(self, next_deadline_ns: int) -> None:
        """Wait on the bus until ``BETWEEN_TICKS_GUARD_NS`` before the next deadline, validating and
        handing in chunks as they arrive: the tick that follows only steps and sends."""
        end = next_deadline_ns - BETWEEN_TICKS_GUARD_NS
        while not self.stopping and self.sub.wait_until(end):
            self._take(self.sub.drain(limit=64))

    def _take(self, messages) -> None:
        for msg in messages:
            if msg.topic == "estop":  # from anyone: the supervisor, `kinebridge estop`, a UI
                self.loop_.estop()
                self.detail["estop_by"] = msg.header.get("src")
                continue
            h = msg.header
            try:
                q = msg.arrays["q"]
                self.loop_.submit(float(h["t0"]), float(h["dt"]), q)
            except (KeyError, TypeError, ValueError) as exc:
                self.rejected_chunks += 1
                reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                self.pub.publish("control/reject", {"reason": reason}, derived=[self._stamp(msg)])
                continue
            self._pending_stamp = self._stamp(msg)   # the newest chunk wins (drain-to-latest)

    @staticmethod
    def _stamp(msg):
        h = msg.header
        return {"src": h["src"], "topic": msg.topic, "seq": h["seq"], "stamp_ns": h["stamp_ns"]}

    def _after(self, t: float, sent: bool) -> None:
        loop, st = self.loop_, self.loop_.stats
        now_ns = time.monotonic_ns()
        if self._pending_stamp is not None:
            stamp, self._pending_stamp = self._pending_stamp, None
            if sent:
                lat = now_ns - stamp["stamp_ns"]
                self._lat_ns.append(lat)
                # latency = waiting (bus hop + until this tick drained it) + this tick's work up to the send
                self.pub.publish("control/chunk_latency", {
                    "latency_ns": lat, "waiting_ns": self._tick_start_ns - stamp["stamp_ns"],
                    "tick_work_ns": now_ns - self._tick_start_ns}, derived=[stamp])
        k = st.ticks % self._timing_every
        self._late[k] = loop.timer.lateness_ns[(loop.timer.ticks - 1) % loop.timer.lateness_ns.shape[0]]
        self._dur[k] = now_ns - self._tick_start_ns
        if st.ticks % self.cfg.control.state_every == 0:
            self.pub.publish("control/state", {
                "t": t, "tick": st.ticks, "sent": sent, "starved": st.starved_ticks, "held": st.held_ticks,
                "at_rest": bool(loop.follower.at_rest)},
                {"q_cmd": loop.q_cmd, "q": self.arm.read_state().q})
        if k == self._timing_every - 1:
            self._publish_timing()
        self.heartbeat(t)

    def _publish_timing(self, final: bool = False) -> None:
        st = self.loop_.stats
        self.pub.publish("control/timing", {
            "final": final, "ticks": st.ticks, "sent": st.sent, "starved_ticks": st.starved_ticks,
            "held_ticks": st.held_ticks, "chunks_accepted": st.chunks_accepted,
            "chunks_rejected": st.chunks_rejected + self.rejected_chunks,
            "workspace_violations": st.workspace_violations, "setpoints_rejected": st.setpoints_rejected,
            "overruns": self.loop_.timer.overruns, "rate_hz": self.cfg.control.rate_hz,
            "chunk_latency_ns": self._lat_ns[-64:]},
            {"lateness_ns": self._late, "tick_ns": self._dur})
        self._lat_ns.clear()
        self.detail.update(ticks=st.ticks, starved=st.starved_ticks, chunks=st.chunks_accepted)
