"""Chunk sampling, seam blending and the limiter that makes any chunk sequence safe to stream.

A chunk is ``(t0, dt, Q)``: joint positions ``Q[k]`` for times ``t0 + k·dt``. The control loop
needs, at every tick ``t`` (period ``h``), one setpoint. Two layers produce it:

**1. Reference** (what the chunks ask for)

* Sampling: cubic Hermite between samples with central-difference tangents (one-sided at the ends),
  so the reference is C¹ inside a chunk; before ``t0`` the first sample, after the last one the last
  sample, both with zero velocity.
* Replacement: a chunk submitted at ``t_sub`` takes over from ``t_s = max(t_sub, t0)`` over a window
  ``T_b``: ``q_ref = (1 − w)·q_old + w·q_new`` with the quintic smoothstep
  ``w(τ) = 10τ³ − 15τ⁴ + 6τ⁵``, ``τ = (t − t_s)/T_b`` (``w' = w'' = 0`` at both ends), and
  ``q̇_ref = (1 − w)·q̇_old + w·q̇_new + ẇ·(q_new − q_old)``. Position and velocity of the reference
  are continuous at the seam. This is ACT's temporal ensembling reduced to two chunks with a
  time-varying weight, and the "soft prefix" of real-time chunking (RTC) done at execution time
  instead of inside the policy: the old chunk keeps driving while the new one fades in.

**2. Limiter** (what the arm gets), per joint, every tick, on the commanded state ``(q, v)``::

    e   = q_ref − v_ref·h − q                            # tracking error at the previous tick
    u   = sign(e)·min(|e|/h, b(|e|))                     # close it: dead-beat, or the braking curve
    v*  = v_ref + u                                      # feed-forward + correction
    v   = clip(v*, lo, hi)
    lo  = max(v_prev − a·h, −v_max, −b(q − q_min))       # acceleration, speed, lower position limit
    hi  = min(v_prev + a·h,  v_max,  b(q_max − q))       # acceleration, speed, upper position limit
    q  += v·h
    b(d) = −a·h + √(a²h² + 2·a·d)                        # fastest speed that still stops within d

**Guarantee.** ``|v_k − v_{k−1}| ≤ a·h`` and ``|v_k| ≤ v_max`` by the clip, so every position step is
≤ ``v_max·h`` and every second difference ≤ ``a·h²``. The position caps keep the invariant
``q + v²/(2a) ≤ q_max`` (and its mirror): braking every later tick at ``a`` covers at most
``v²/(2a)``, and ``b`` is the largest ``v`` with ``q + v·h + v²/(2a) ≤ q_max``. The interval
``[lo, hi]`` is never empty while the invariant holds: ``v_prev − a·h`` satisfies the upper cap
(substitute it: ``q + v_prev²/(2a) − a·h²/2 ≤ q_max``), and symmetrically below. ``reset`` starts at
rest inside the limits, so the invariant holds from the first tick, whatever the chunks contain —
late, overlapping, discontinuous, beyond the limits.

When the reference is feasible the correction is zero after convergence (``e = 0 ⇒ v = v_ref``):
no lag; a reference that stops is reached exactly (the dead-beat branch lands on it). A new chunk
far from the current motion is reached along the braking curve — bounded, never a jump.

**Starvation**: when the current chunk ended while still moving (last step faster than 1e-3 rad/s) and
nothing replaced it, the reference is dropped: ``v* = 0``, the limiter decelerates at ``a`` and holds
where the arm comes to rest. The same ``hold`` is used by the control loop's watchdog.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: a chunk whose last step is slower than this (rad/s) ends at rest: its last sample is a target to
#: hold, not a motion cut short (running off its end is not starvation)
ENDS_AT_REST_RAD_S = 1e-3

__all__ = ["sample_chunk", "blend_weight", "reference_at", "limit_step", "braking_speed", "validate_chunk",
           "ChunkFollower"]


@njit(cache=True, inline="always")
def braking_speed(d, a, h):
    """b(d) = −a·h + √(a²h² + 2ad): the largest speed that still stops within d (discrete, step h)."""
    if d <= 0.0:
        return 0.0
    return -a * h + math.sqrt(a * a * h * h + 2.0 * a * d)


@njit(cache=True)
def sample_chunk(t, t0, dt, Q, q_out, qd_out):
    """Cubic Hermite sample of chunk (t0, dt, Q) at t into q_out/qd_out; holds (zero velocity) outside."""
    H, n = Q.shape
    s = (t - t0) / dt
    if H == 1 or s <= 0.0 or s >= H - 1:
        k = 0 if (H == 1 or s <= 0.0) else H - 1
        for j in range(n):
            q_out[j] = Q[k, j]
            qd_out[j] = 0.0
        return
    k = int(math.floor(s))
    u = s - k
    u2 = u * u
    u3 = u2 * u
    h00, h10, h01, h11 = 2 * u3 - 3 * u2 + 1, u3 - 2 * u2 + u, -2 * u3 + 3 * u2, u3 - u2      # Hermite basis
    d00, d10, d01, d11 = 6 * u2 - 6 * u, 3 * u2 - 4 * u + 1, -6 * u2 + 6 * u, 3 * u2 - 2 * u  # its derivative
    for j in range(n):
        m0 = (Q[k + 1, j] - Q[k - 1, j]) * 0.5 if k > 0 else Q[k + 1, j] - Q[k, j]          # tangents / sample
        m1 = (Q[k + 2, j] - Q[k, j]) * 0.5 if k + 2 < H else Q[k + 1, j] - Q[k, j]
        q_out[j] = h00 * Q[k, j] + h10 * m0 + h01 * Q[k + 1, j] + h11 * m1
        qd_out[j] = (d00 * Q[k, j] + d10 * m0 + d01 * Q[k + 1, j] + d11 * m1) / dt


@njit(cache=True, inline="always")
def blend_weight(tau):
    """w(τ) = 10τ³ − 15τ⁴ + 6τ⁵ on [0, 1] and its derivative dw/dτ."""
    if tau <= 0.0:
        return 0.0, 0.0
    if tau >= 1.0:
        return 1.0, 0.0
    t2 = tau * tau
    return t2 * tau * (10.0 - 15.0 * tau + 6.0 * t2), 30.0 * t2 * (1.0 - 2.0 * tau + t2)


@njit(cache=True)
def reference_at(t, t0, dt, Q, has_old, t0_old, dt_old, Q_old, t_s, blend_s, q_ref, v_ref, q_tmp, v_tmp):
    """Reference of the current chunk, blended from the old one over [t_s, t_s + blend_s]."""
    sample_chunk(t, t0, dt, Q, q_ref, v_ref)
    if not has_old or t >= t_s + blend_s:
        return
    sample_chunk(t, t0_old, dt_old, Q_old, q_tmp, v_tmp)
    w, dw = blend_weight((t - t_s) / blend_s)
    dw /= blend_s
    for j in range(q_ref.shape[0]):
        diff = q_ref[j] - q_tmp[j]
        q_ref[j] = q_tmp[j] + w * diff                                   # (1−w)·q_old + w·q_new
        v_ref[j] = (1.0 - w) * v_tmp[j] + w * v_ref[j] + dw * diff       # its time derivative


@njit(cache=True)
def limit_step(q, v, q_ref, v_ref, track, h, q_min, q_max, v_max, a_max):
    """One limiter tick, in place on the commanded state (q, v); ``track`` False = decelerate and hold."""
    for j in range(q.shape[0]):
        a = a_max[j]
        if track:
            e = q_ref[j] - v_ref[j] * h - q[j]
            u = min(abs(e) / h, braking_speed(abs(e), a, h))
            v_star = v_ref[j] + (u if e >= 0.0 else -u)
        else:
            v_star = 0.0
        lo = max(v[j] - a * h, -v_max[j], -braking_speed(q[j] - q_min[j], a, h))
        hi = min(v[j] + a * h, v_max[j], braking_speed(q_max[j] - q[j], a, h))
        if lo > hi:                    # only by rounding: both bounds are within ulps of each other
            lo = hi = 0.5 * (lo + hi)
        vj = min(max(v_star, lo), hi)
        v[j] = vj
        q[j] = q[j] + vj * h


def validate_chunk(t0, dt, positions, dof: int, t_now: float | None = None, horizon_s: float = 30.0) -> np.ndarray:
    """Check a chunk and return its positions as a C-contiguous float64 (H, dof) copy; ValueError otherwise."""
    if not (isinstance(t0, (int, float, np.floating, np.integer)) and math.isfinite(t0)):
        raise ValueError(f"chunk t0 must be a finite time in seconds (time.monotonic()), got {t0!r}")
    if not (isinstance(dt, (int, float, np.floating, np.integer)) and math.isfinite(dt) and 0.0 < dt <= 1.0):
        raise ValueError(f"chunk dt must be in (0, 1] s, got {dt!r}")
    try:
        Q = np.array(positions, dtype=np.float64, order="C")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"chunk positions must be numbers of shape (H, {dof}), got {positions!r}") from exc
    if Q.ndim != 2 or Q.shape[1] != dof or Q.shape[0] < 1:
        raise ValueError(f"chunk positions must have shape (H ≥ 1, {dof}), got {Q.shape}")
    if not np.all(np.isfinite(Q)):
        rows = np.flatnonzero(~np.all(np.isfinite(Q), axis=1))
        raise ValueError(f"chunk positions have non-finite values in rows {rows[:5].tolist()}")
    if t_now is not None:
        if t0 + (Q.shape[0] - 1) * dt < t_now and Q.shape[0] > 1:
            raise ValueError(f"stale chunk: it ended {t_now - (t0 + (Q.shape[0] - 1) * dt):.3f} s before it arrived")
        if abs(t0 - t_now) > horizon_s:
            raise ValueError(f"chunk t0 is {t0 - t_now:+.1f} s from now; expected within ±{horizon_s:g} s "
                             f"(stamp chunks with time.monotonic())")
    return Q


class ChunkFollower:
    """Stateful wrapper: submit chunks, call :meth:`step` every tick; zero allocation per tick."""

    def __init__(self, dof, q_min, q_max, qd_max, qdd_max, dt, blend_s=0.1):
        for name, value in (("dt", dt), ("blend_s", blend_s)):
            if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: dt and blend_s must be positive finite seconds, "
                                 f"got dt={dt}, blend_s={blend_s}")
        self.dof = int(dof)
        if self.dof < 1:
            raise ValueError(f"dof: expected at least one joint, got {dof!r}")
        self.h = float(dt)
        self.blend_s = float(blend_s)
        self.q_min, self.q_max = np.array(q_min, float), np.array(q_max, float)
        self.v_max, self.a_max = np.array(qd_max, float), np.array(qdd_max, float)
        for name in ("q_min", "q_max", "v_max", "a_max"):
            arr = getattr(self, name)
            if arr.shape != (self.dof,):
                raise ValueError(f"{name} must have {self.dof} entries")
            if not np.isfinite(arr).all():
                raise ValueError(f"{name}: limits must be finite, got {arr.tolist()}")
        if not (self.q_min < self.q_max).all():
            raise ValueError(f"q_min/q_max: expected q_min < q_max for every joint, got {self.q_min.tolist()} "
                             f"and {self.q_max.tolist()}")
        for name in ("v_max", "a_max"):
            if not (getattr(self, name) > 0).all():
                raise ValueError(f"{name}: limits must be positive, got {getattr(self, name).tolist()}")
        self.q = np.zeros(self.dof)
        self.v = np.zeros(self.dof)
        self._q_ref, self._v_ref = np.zeros(self.dof), np.zeros(self.dof)
        self._q_tmp, self._v_tmp = np.zeros(self.dof), np.zeros(self.dof)
        self._cur = None
        self._old = None
        self._t_s = -math.inf
        self.starved_ticks = 0
        self.rejected_chunks = 0
        self.blends = 0
        self.last_reject_reason: str | None = None

    def reset(self, q) -> None:
        """Start at rest at ``q`` (clamped into the limits), forgetting every chunk."""
        self.q[:] = np.clip(np.asarray(q, float), self.q_min, self.q_max)
        self.v[:] = 0.0
        self._cur = self._old = None

    @property
    def at_rest(self) -> bool:
        return bool(np.all(np.abs(self.v) < 1e-9))

    def submit(self, t0, dt, Q, t_now) -> bool:
        """Take a chunk over from ``max(t_now, t0)``. Returns False (and counts why) if it is invalid."""
        try:
            Qc = validate_chunk(t0, dt, Q, self.dof, t_now)
        except ValueError as exc:
            self.rejected_chunks += 1
            self.last_reject_reason = str(exc)
            return False
        if self._cur is not None:
            self._old = self._cur
            self._t_s = max(float(t_now), float(t0))
            self.blends += 1
        ends_moving = Qc.shape[0] > 1 and np.any(np.abs(Qc[-1] - Qc[-2]) > ENDS_AT_REST_RAD_S * dt)
        self._cur = (float(t0), float(dt), Qc, bool(ends_moving))
        return True

    def step(self, t: float) -> np.ndarray:
        """The setpoint for time ``t`` (a view of an internal buffer: copy it to keep it)."""
        cur = self._cur
        if cur is None:
            limit_step(self.q, self.v, self._q_ref, self._v_ref, False, self.h, self.q_min, self.q_max,
                       self.v_max, self.a_max)
            return self.q
        t0, dt, Q, ends_moving = cur
        if ends_moving and t > t0 + (Q.shape[0] - 1) * dt:   # ran off the end of a moving chunk: starved
            self.starved_ticks += 1
            return self.hold(t)
        old = self._old
        if old is not None and t >= self._t_s + self.blend_s:
            self._old = old = None
        if old is None:
            reference_at(t, t0, dt, Q, False, 0.0, 1.0, Q, 0.0, self.blend_s, self._q_ref, self._v_ref,
                         self._q_tmp, self._v_tmp)
        else:
            reference_at(t, t0, dt, Q, True, old[0], old[1], old[2], self._t_s, self.blend_s, self._q_ref,
                         self._v_ref, self._q_tmp, self._v_tmp)
        limit_step(self.q, self.v, self._q_ref, self._v_ref, True, self.h, self.q_min, self.q_max, self.v_max,
                   self.a_max)
        return self.q

    def hold(self, t: float) -> np.ndarray:  # noqa: ARG002 - same signature as step
        """Decelerate at the acceleration limit and hold where the arm comes to rest."""
        limit_step(self.q, self.v, self._q_ref, self._v_ref, False, self.h, self.q_min, self.q_max,
                   self.v_max, self.a_max)
        return self.q
