"""The control node: the process that owns the arm and runs the fixed-rate loop.

It connects the arm driver the configuration names (:func:`~kinebridge.drivers.arm.factory.make_arm`:
RealMan's official SDK), asks for
real-time treatment (SCHED_FIFO, pinning, mlockall, 1 ns timer slack — and reports what it got),
and runs :class:`~kinebridge.runtime.control.loop.ControlLoop`. The bus is read on the loop's own
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
setpoint from it), and ``control/limits`` (the joint limits the loop enforces — the arm model's
intersected with the controller's, speed-scaled — every second, for the planners). On SIGTERM it
decelerates to rest before it stops the arm.
"""

from __future__ import annotations

import time

import numpy as np

from kinebridge.drivers.arm.driver import ArmError
from kinebridge.drivers.arm.factory import make_arm
from kinebridge.drivers.host.realtime import configure_realtime, raise_other_threads
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.control.loop import ControlConfig, ControlLoop
from kinebridge.runtime.node import Node

__all__ = ["ControlNode", "BETWEEN_TICKS_GUARD_NS"]

# Between ticks the bus is waited on until this long before the next deadline: the time to handle one
# batch of messages (a chunk: ~10-150 µs) and to wake up late, so the sleep-then-spin that follows
# still starts the tick on time. A chunk that lands inside the guard is handled at the start of the
# tick instead (adding its handling to that tick), so the guard is kept short.
BETWEEN_TICKS_GUARD_NS = 300_000


LIMITS_EVERY_S = 1.0    # control/limits is re-announced this often (a planner that starts later hears it)


class ControlNode(Node):
    def io_priority(self, cfg) -> int:
        p = cfg.control.realtime.priority
        return max(0, p - 1)

    topics = (M.Chunk.TOPIC, M.EStop.TOPIC, M.ControlCommand.TOPIC)

    def setup(self) -> None:
        c = self.cfg.control
        self.arm = make_arm(self.cfg.arm)
        self.arm.connect()
        self.loop_ = ControlLoop(self.arm, c)
        self.detail["arm"] = self.arm.model.summary()
        self._q_meas = self.arm.read_state().q
        self.latch = self.cfg.latch_path()
        if self.latch.exists():       # an e-stop or a critical death before this start: no motion until clear
            self.loop_.estop(_read_latch(self.latch))
        rt = c.realtime
        self.rt = configure_realtime(priority=rt.priority, cpus=tuple(rt.cpus) or None, lock_memory=rt.lock_memory,
                                     cpu_dma_latency_us=0 if rt.pm_qos else None)
        self.detail["realtime"] = self.rt.summary()
        if self.rt.sched_fifo:     # the SDK's UDP receiver and ZeroMQ's I/O thread must not wait behind planning
            self.detail["helper_threads"] = raise_other_threads(max(1, rt.priority - 2))
        self.detail["rate_hz"] = c.rate_hz
        n = max(1, int(round(c.rate_hz / c.timing_hz)))
        self._timing_every = n
        self._late = np.zeros(n, dtype=np.int64)
        self._dur = np.zeros(n, dtype=np.int64)
        self._lat_ns: list[int] = []
        self._pending_stamp = None
        self.rejected_chunks = 0
        self.superseded_chunks = 0      # valid chunks replaced by a newer one before a tick took them
        self._tick_start_ns = 0
        self._next_limits_s = 0.0
        self.sub.on_drop = self._refused
        lim = self.arm.limits
        self._limits_msg = (M.ArmLimitsMsg(model=self.arm.model.name, d7=self.arm.model.d7,
                                           speed_fraction=self.arm.model.speed_fraction),
                            {"q_min": lim.q_min, "q_max": lim.q_max, "qd_max": lim.qd_max, "qdd_max": lim.qdd_max})

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

    def _refused(self, topic: str, reason: str, msg) -> None:
        """A chunk that failed its schema at the bus (wrong dtype, shape, a missing field): the producer
        hears why on control/reject, like any chunk the loop refuses."""
        if topic != M.Chunk.TOPIC:
            return
        self.rejected_chunks += 1
        h = msg.header
        stamp = None
        if type(h.get("src")) is str and type(h.get("seq")) is int and h["seq"] >= 0 and type(h.get("stamp_ns")) is int:
            stamp = M.Stamp(src=h["src"], topic=topic, seq=h["seq"], stamp_ns=h["stamp_ns"])
        self.pub.send(M.ChunkReject(reason=reason[:2000]), derived=[stamp] if stamp is not None else ())

    def _take(self, messages) -> None:
        for msg in messages:
            if msg.topic == M.EStop.TOPIC:  # from anyone: the supervisor, `kinebridge estop`, a UI
                reason = f"{msg.body.reason} (from {msg.stamp.src})"
                self.loop_.estop(reason)
                _write_latch(self.latch, reason)
                self.detail["estop_by"] = msg.stamp.src
                continue
            if msg.topic == M.ControlCommand.TOPIC:
                cmd: M.ControlCommand = msg.body
                if cmd.action == "hold":
                    self.loop_.hold(cmd.reason)
                else:
                    self.latch.unlink(missing_ok=True)
                    self.loop_.clear()
                continue
            body = msg.body                 # a Chunk: types, shape and dtype checked by the bus
            try:
                self.loop_.submit(body.t0, body.dt, msg.arrays["q"])
            except ValueError as exc:       # stale, non-finite, outside the joint limits, …
                self.rejected_chunks += 1
                self.pub.send(M.ChunkReject(reason=str(exc)[:2000]), derived=[msg.stamp])
                continue
            if self._pending_stamp is not None:
                self.superseded_chunks += 1
            self._pending_stamp = msg.stamp   # the newest chunk wins (drain-to-latest)

    def _after(self, t: float, sent: bool) -> None:
        loop, st = self.loop_, self.loop_.stats
        now_ns = time.monotonic_ns()
        if self._pending_stamp is not None:
            stamp, self._pending_stamp = self._pending_stamp, None
            if sent:
                lat = now_ns - stamp.stamp_ns
                self._lat_ns.append(lat)
                # latency = waiting (bus hop + until this tick drained it) + this tick's work up to the send
                self.pub.send(M.ChunkLatency(latency_ns=lat, waiting_ns=self._tick_start_ns - stamp.stamp_ns,
                                             tick_work_ns=now_ns - self._tick_start_ns), derived=[stamp])
        k = st.ticks % self._timing_every
        self._late[k] = loop.timer.lateness_ns[(loop.timer.ticks - 1) % loop.timer.lateness_ns.shape[0]]
        self._dur[k] = now_ns - self._tick_start_ns
        if st.ticks % self.cfg.control.state_every == 0:
            self.pub.send(M.ControlState(t=t, tick=st.ticks, sent=sent, starved=st.starved_ticks, held=st.held_ticks,
                                         at_rest=bool(loop.follower.at_rest), latched=loop.latched),
                          {"q_cmd": loop.q_cmd, "q": self._measured()})
        if k == self._timing_every - 1:
            self._publish_timing()
        if t >= self._next_limits_s:
            self._next_limits_s = t + LIMITS_EVERY_S
            self.pub.send(*self._limits_msg)
        self.heartbeat(t)

    def _measured(self) -> np.ndarray:
        """The newest measured joints (the last known ones while the link is down)."""
        try:
            self._q_meas = self.arm.read_state().q
        except ArmError:
            pass
        return self._q_meas

    def _publish_timing(self, final: bool = False) -> None:
        st = self.loop_.stats
        self.pub.send(M.ControlTiming(
            final=final, ticks=st.ticks, sent=st.sent, starved_ticks=st.starved_ticks, held_ticks=st.held_ticks,
            chunks_accepted=st.chunks_accepted, chunks_rejected=st.chunks_rejected + self.rejected_chunks,
            chunks_superseded=self.superseded_chunks, late_ticks=st.late_ticks, links_lost=st.links_lost,
            reconnects=st.reconnects, workspace_violations=st.workspace_violations,
            setpoints_rejected=st.setpoints_rejected, overruns=self.loop_.timer.overruns,
            rate_hz=self.cfg.control.rate_hz, chunk_latency_ns=self._lat_ns[-64:]),
            {"lateness_ns": self._late, "tick_ns": self._dur})
        self._lat_ns.clear()
        self.detail.update(ticks=st.ticks, starved=st.starved_ticks, chunks=st.chunks_accepted,
                           latched=self.loop_.latched, link="lost" if (self.loop_.latched or "").startswith("link lost")
                           else "streaming", links_lost=st.links_lost, reconnects=st.reconnects, late_ticks=st.late_ticks)


def _write_latch(path, reason: str) -> None:
    """Remember an e-stop until `kinebridge clear` (survives restarts of the node and the daemon)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason[:2000] + "\n")
    except OSError:
        pass                # the loop is latched anyway; only the memory across restarts is lost


def _read_latch(path) -> str:
    try:
        return "latched before this start: " + (path.read_text().strip() or "unknown reason")
    except OSError:
        return "latched before this start"
