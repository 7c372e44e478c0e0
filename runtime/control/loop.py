"""The fixed-rate control loop: timestamped joint chunks in, validated setpoints to the arm out.

One loop per arm. Every tick (200 Hz by default, up to 500 Hz), on an absolute-deadline grid:

1. take the newest chunk handed in since the last tick (``submit``, any thread; a chunk is
   validated at the boundary and only a reference swap happens here);
2. sample it by time and blend it into the one it replaces, then pass the result through the
   second-order limiter (:mod:`kinebridge.kernels.chunk_blend`): joint position, velocity and
   acceleration limits hold at every tick whatever the chunks do; with no chunk covering the
   present the command decelerates at the acceleration limit and holds (starved tick);
3. safety last: the e-stop flag, the watchdog on stale input (no chunk for ``watchdog_s`` → hold
   and decelerate), the workspace box on the flange position (a setpoint whose forward kinematics
   leaves the box is not sent; the loop holds);
4. send through the :class:`~kinebridge.drivers.arm.driver.ArmDriver` and record the tick's timing.

No allocation, logging or GC happens in the tick: the follower writes into preallocated buffers,
timings go into ring buffers read from outside, counters are plain integers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from kinebridge.drivers.arm.driver import ArmDriver, ArmError, LinkLost, SetpointRejected
from kinebridge.kernels import rm75
from kinebridge.kernels.chunk_blend import ChunkFollower, validate_chunk
from kinebridge.runtime.control.config import ControlConfig
from kinebridge.drivers.host.realtime import CycleTimer

__all__ = ["ControlConfig", "ControlLoop", "LoopStats"]


@dataclass
class LoopStats:
    ticks: int = 0
    sent: int = 0
    starved_ticks: int = 0
    held_ticks: int = 0
    chunks_accepted: int = 0
    chunks_rejected: int = 0
    workspace_violations: int = 0
    setpoints_rejected: int = 0
    overruns: int = 0
    estopped: bool = False
    stopped_reason: str | None = None
    latched_reason: str | None = None    # why the loop holds and refuses chunks (e-stop, operator hold, a fault)
    late_ticks: int = 0                  # ticks with a late state (no push for a few periods): decelerating
    faults: int = 0                      # link losses and controller faults the loop latched on
    links_lost: int = 0
    reconnects: int = 0


class ControlLoop:
    """Streams chunks to ``driver`` at ``config.rate_hz`` until :meth:`stop` or an unrecoverable error."""

    def __init__(self, driver: ArmDriver, config: ControlConfig | None = None, history: int = 65536):
        self.driver = driver
        self.cfg = config or ControlConfig()
        lim = driver.limits        # the arm model's limits ∩ the controller's, speed-scaled (ArmModel)
        self.dt = 1.0 / self.cfg.rate_hz
        self.follower = ChunkFollower(driver.dof, lim.q_min, lim.q_max, lim.qd_max, lim.qdd_max, self.dt,
                                      blend_s=self.cfg.blend_s)
        self.timer = CycleTimer(self.cfg.rate_hz, history=history)
        self.stats = LoopStats()
        self.tick_ns = np.zeros(history, dtype=np.int64)      # duration of each tick's work
        self._box_lo = np.asarray(self.cfg.workspace_min, dtype=np.float64)
        self._box_hi = np.asarray(self.cfg.workspace_max, dtype=np.float64)
        self._pending = None
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._estop = threading.Event()
        self._hold = threading.Event()
        self._clear = threading.Event()
        self._latch: str | None = None        # e-stop, operator hold, controller fault: until clear()
        self.link_down: str | None = None     # the link is lost: until it is re-established (by itself)
        self._estop_reason = "e-stop"
        self._next_relink = 0.0
        self._hold_reason = "hold"
        self._last_chunk_s = 0.0
        self._T = np.eye(4)                                   # FK scratch for the workspace check
        self.d7 = driver.model.d7                             # the flange of the configured arm model
        self.q_cmd = np.zeros(driver.dof)                     # the last setpoint sent
        self._ramp_deadline: float | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile / load every kernel the tick uses before the first tick needs it."""
        f = ChunkFollower(self.driver.dof, self.follower.q_min, self.follower.q_max, self.follower.v_max,
                          self.follower.a_max, self.dt, self.cfg.blend_s)
        q = 0.5 * (self.follower.q_min + self.follower.q_max)
        f.reset(q)
        f.submit(0.0, 0.02, np.stack([q, q]), 0.0)
        f.step(0.005)
        f.submit(0.01, 0.02, np.stack([q, q + 1e-3]), 0.01)
        f.step(0.015)
        f.hold(0.02)
        self._outside_box(q)

    # ------------------------------------------------------------------------ inputs (any thread)
    def submit(self, t0: float, dt: float, positions) -> None:
        """Hand in a chunk (``t0`` on ``time.monotonic()``, s). Validated here; raises ValueError
        (also while latched: after an e-stop or a hold nothing moves the arm until :meth:`clear`)."""
        if self.latched is not None:
            raise ValueError(f"the control loop is latched ({self.latched}); `kinebridge clear` resumes")
        Q = validate_chunk(t0, dt, positions, self.driver.dof, t_now=time.monotonic())
        lo, hi = self.follower.q_min, self.follower.q_max
        out = (Q < lo - 1e-9) | (Q > hi + 1e-9)
        if out.any():
            row, j = map(int, np.argwhere(out)[0])
            raise ValueError(f"chunk row {row} puts joint {j + 1} at {np.degrees(Q[row, j]):.1f}°, outside its limits "
                             f"[{np.degrees(lo[j]):.1f}°, {np.degrees(hi[j]):.1f}°]")
        with self._pending_lock:
            self._pending = (float(t0), float(dt), Q)

    def estop(self, reason: str = "e-stop") -> None:
        """Stop the arm now (the controller's stop) and latch: the loop keeps running — state keeps
        flowing — but sends nothing and refuses chunks until :meth:`clear`."""
        self._estop_reason = reason
        self._estop.set()

    def hold(self, reason: str = "hold") -> None:
        """Decelerate to rest at the acceleration limit and hold there, refusing chunks until :meth:`clear`."""
        self._hold_reason = reason
        self._hold.set()

    def clear(self) -> None:
        """Acknowledge an e-stop or hold: the controller's errors are cleared and streaming resumes from
        where the arm is (nothing that arrived while latched is executed)."""
        self._clear.set()

    def stop(self, decelerate: bool = False, timeout_s: float = 2.0) -> None:
        """End the loop. ``decelerate``: first bring the command to rest at the acceleration limit
        (holding, as on starvation) for at most ``timeout_s``, then exit — a daemon shut down
        mid-motion never leaves the arm on its last velocity."""
        if decelerate:
            self._ramp_deadline = time.monotonic() + timeout_s
        self._stop.set()

    # ---------------------------------------------------------------------------------- loop
    def run(self, max_ticks: int | None = None, before_tick=None, after_tick=None, between_ticks=None) -> LoopStats:
        """Tick until :meth:`stop` or ``max_ticks``. An e-stop, a hold, a controller fault or a lost link
        latches the loop (it keeps ticking, sends nothing or the resting setpoint, refuses chunks) instead of
        ending it; :meth:`clear` resumes, a lost link is re-established by itself.

        ``before_tick(t)`` runs at the start of each tick (the control node drains what is left on
        the bus there and calls :meth:`submit`); ``after_tick(t, sent)`` after the setpoint went out
        (publishing state). Both run inside the tick's time budget and must not block.
        ``between_ticks(next_deadline_ns)`` runs after a tick and may wait, but must return well before
        ``next_deadline_ns`` (the control node waits on the bus there and submits chunks as they
        arrive); a chunk submitted by then is blended in before the next tick starts, so the tick
        itself only steps and sends."""
        st = self.stats
        q0 = self.driver.read_state().q
        self.follower.reset(q0)
        self.q_cmd[:] = q0
        self._last_chunk_s = time.monotonic()
        self.timer.start()
        try:
            while True:
                if self._stop.is_set():
                    if self._ramp_deadline is None or self.follower.at_rest or time.monotonic() > self._ramp_deadline:
                        break
                    self._last_chunk_s = -1e9          # ramping down: the watchdog path holds
                if max_ticks is not None and st.ticks >= max_ticks:
                    break
                self.timer.wait()
                a = time.monotonic_ns()
                t = a * 1e-9
                try:
                    self._latches(t)
                    if before_tick is not None:
                        before_tick(t)
                    sent = (self._tick(t) if self.link_down is None and (self._latch is None or
                                                                          self._latch.startswith("hold")) else False)
                    if after_tick is not None:
                        after_tick(t, sent)
                except LinkLost as exc:          # hold, say why, reconnect by itself (see _relink)
                    self._latch_fault("link lost", exc, t)
                except ArmError as exc:          # a controller fault: hold until `clear`
                    self._latch_fault("arm error", exc, t)
                self.tick_ns[st.ticks % self.tick_ns.shape[0]] = time.monotonic_ns() - a
                st.ticks += 1
                if between_ticks is not None:
                    nxt = self.timer.deadline_ns + self.timer.period_ns
                    if time.monotonic_ns() < nxt:      # a late tick goes straight on to the next one
                        between_ticks(nxt)
                    self._take_pending(nxt * 1e-9)
        finally:
            st.overruns = self.timer.overruns
        return st

    @property
    def latched(self) -> str | None:
        """Why the loop holds and refuses chunks (an e-stop, a hold, a fault, a lost link), or None."""
        if self._latch and self.link_down:
            return f"{self._latch}; {self.link_down}"
        return self._latch or self.link_down

    def _sync(self) -> None:
        self.stats.latched_reason = self.latched

    def _latch_fault(self, kind: str, exc: Exception, t: float) -> None:
        """The link or the controller failed: nothing more is sent (the controller stops a pass-through
        stream that ends), the loop keeps running and latches; a lost link is re-established by itself."""
        st = self.stats
        text = f"{kind}: {exc}"[:500]
        self._pending = None
        if kind == "link lost":
            first = self.link_down is None
            self.link_down = text
            if first:
                st.links_lost += 1
                self._next_relink = t + 0.2
        else:
            first = not (self._latch or "").startswith(("e-stop", kind))
            if first:
                self._latch = text
        if first:
            st.faults += 1
            try:
                self.driver.stop()
            except Exception:
                pass
        self._sync()

    def _resume_from_arm(self) -> None:
        q = self.driver.read_state().q
        self.follower.reset(q)
        self.q_cmd[:] = q
        self._last_chunk_s = time.monotonic()

    def _relink(self, t: float) -> None:
        """While the link is lost: try to reconnect (once a second); on success the arm is where it
        stopped, the follower restarts from there and — unless an e-stop or a hold is latched — the loop
        streams again (nothing queued is replayed)."""
        if t < self._next_relink:
            return
        self._next_relink = t + 1.0
        try:
            self.driver.reconnect(timeout_s=self.cfg.reconnect_timeout_s)
            self._resume_from_arm()
        except ArmError:
            return
        self.link_down = None
        self.stats.reconnects += 1
        self._sync()

    def _latches(self, t: float) -> None:
        """E-stop (stop the arm, send nothing), hold (decelerate, then keep the resting setpoint), clear;
        a lost link is retried here."""
        st = self.stats
        if self.link_down is not None:
            self._relink(t)
        if self._estop.is_set():
            self._estop.clear()
            if not (self._latch or "").startswith("e-stop"):
                self.driver.stop()
                st.estopped = True
            self._latch = f"e-stop: {self._estop_reason}"
            self._pending = None
        if self._hold.is_set():
            self._hold.clear()
            if self._latch is None:
                self._latch = f"hold: {self._hold_reason}"
                self._pending = None
                self._last_chunk_s = -1e9           # the watchdog path decelerates to rest and holds
        if self._clear.is_set() and self.link_down is None:   # a lost link clears itself once it is back
            self._clear.clear()
            if self._latch is not None:
                state = self.driver.read_state()
                if state.errors and hasattr(self.driver, "clear_errors"):   # only when the controller latched one
                    try:
                        self.driver.clear_errors()
                    except ArmError:
                        pass
                self._resume_from_arm()
                self._latch = None
                self._last_chunk_s = t
        self._sync()

    def _take_pending(self, t: float) -> None:
        """Blend the chunk handed in since the last tick into the follower, taking over at ``t``."""
        if self._pending is None:
            return
        with self._pending_lock:       # (only this thread clears it: still there)
            pending, self._pending = self._pending, None
        if pending is None or self.latched is not None:
            return
        if self.follower.submit(pending[0], pending[1], pending[2], t):
            self.stats.chunks_accepted += 1
            self._last_chunk_s = t
        else:
            self.stats.chunks_rejected += 1

    def _tick(self, t: float) -> bool:
        st = self.stats
        self._take_pending(t)
        starved_before = self.follower.starved_ticks
        late = self._state_late()
        if late:
            st.late_ticks += 1              # the arm's state is late (not yet lost): decelerate, resume when it is back
        if (late or (t - self._last_chunk_s > self.cfg.watchdog_s and not self.follower.at_rest)
                or self._latch is not None):
            q = self.follower.hold(t)       # a late state, the watchdog (input went stale) or an operator hold
            st.held_ticks += 1
        else:
            q = self.follower.step(t)
        if self.follower.starved_ticks != starved_before:
            st.starved_ticks += 1
        if self._outside_box(q):
            st.workspace_violations += 1
            q = self.follower.hold(t)       # decelerate along the current motion instead of entering
            if self._outside_box(q):
                return False                # nothing safe to send this tick: the arm holds its last point
        try:
            self.driver.send_joint_setpoint(q)
        except SetpointRejected:
            st.setpoints_rejected += 1
            return False
        st.sent += 1
        self.q_cmd[:] = q
        return True

    def _state_late(self) -> bool:
        """Is the arm's newest state late (a driver that tells: ``state_late``)? The command then decelerates
        along the current motion instead of running on blind; a driver declares the link lost only after
        its window (``[arm.realman] link_lost_s``)."""
        return bool(getattr(self.driver, "state_late", False))

    def _outside_box(self, q) -> bool:
        """Is the flange of ``q`` outside the workspace box? (FK into a preallocated matrix.)"""
        rm75.fk_into(q, self.d7, self._T)
        T, lo, hi = self._T, self._box_lo, self._box_hi
        return not (lo[0] <= T[0, 3] <= hi[0] and lo[1] <= T[1, 3] <= hi[1] and lo[2] <= T[2, 3] <= hi[2])

    def tick_durations_us(self) -> np.ndarray:
        n = min(self.stats.ticks, self.tick_ns.shape[0])
        return self.tick_ns[:n] / 1e3
