"""Joint-level model of a RealMan RM75 controller, for the simulated controller.

Pure Python/NumPy, no sockets, no threads, no wall clock: the caller passes times (seconds on any
monotonic clock) and :meth:`ArmSim.advance_to` integrates with fixed substeps of at most 1 ms. The
same calls give the same states (deterministic), and nothing can produce NaN (every input is
checked finite; every division is guarded).

What is modelled
----------------
* **State**: joint positions and velocities (rad, rad/s); limits from
  :mod:`kinebridge.kernels.rm75` (``Q_MIN/Q_MAX/QD_MAX``) and 600 °/s² acceleration by default
  (the controller's ``get_joint_max_acc`` reply in RealMan's logs).
* **Planned moves** (``movej``, ``movel``, ``movej_p``): every move is a path ``Q(u)``,
  ``u ∈ [0, 1]``, driven by a 1-D online trapezoidal profile on ``u``:

  - ``movej``: straight line in joint space; all joints arrive together; the path speed and
    acceleration are the largest for which no joint exceeds ``v``% of its speed *and* acceleration
    limit (synchronised trapezoid). Duration: :func:`trapezoid_duration`.
  - ``movel``: straight Cartesian line of the flange with the orientation slerped, sampled every
    ≤ 2 mm / ≤ 0.01 rad and turned into joints with ``ik_path`` (warm-started from the start joints).
    Path speed: ``v``% of :data:`LINEAR_SPEED` (0.25 m/s) and :data:`ANGULAR_SPEED` (1.0 rad/s), with
    accelerations ``v``% of :data:`LINEAR_ACC` (1.6 m/s²) / :data:`ANGULAR_ACC` (4 rad/s²) — the
    simulator's own values, RealMan does not document the controller's defaults — and further
    slowed so that no joint exceeds ``v``% of its limits (near singularities the line gets slow, it
    never gets fast). A jump of more than 10° between neighbouring IK samples (a branch flip) or an
    IK failure makes the target unreachable (0x1003).
  - ``movej_p``: IK to the pose, seeded with the joints the move starts from, then a ``movej``.
  - pause decelerates along the path (full acceleration) and holds; continue resumes; slow stop
    decelerates along the path and drops the trajectory; quick stop decelerates every joint
    independently at its full acceleration (leaving the path); delete works only while paused.
  - ``trajectory_connect``: simplified to a FIFO queue (≤ 300 moves, Gen-3's buffer): each move runs
    after the previous one from rest, without blending (``r`` is ignored). Each finished move emits a
    completion event with ``trajectory_connect`` 1 if more moves are queued, else 0.
  - stops and deletes emit no completion event: a blocking SDK call then sees the trajectory type go
    ``none`` and returns −6, "stopped externally" (verified with SDK 1.1.6: after ≈3.5 s).
* **Pass-through** (``movej_canfd`` / ``movep_canfd``):

  - high follow (``follow: true``): the joints are at the streamed point from the next servo substep
    on; the reported velocity is the step divided by the stream period estimate.
  - low follow (``follow: false``): an online second-order planner per joint moves toward the newest
    point at the joint's full speed and acceleration limits; targets are clamped to the joint limits
    (protocol 3.7.3 behaviour: no step limit, no error).
  - ``movep_canfd``: IK warm-started from the last accepted point (or the current joints), without
    restarts from other postures (so the solution never jumps to another IK branch; the null space
    keeps the redundancy close to the seed — RealMan does not document how the controller resolves
    it), then as ``movej_canfd``; IK failure → 0x1003, point rejected.
  - the **stream period** is the median of the last 16 inter-arrival intervals, bounded to
    [2 ms, 20 ms] (20 ms while fewer than one interval is known; an arrival gap > 100 ms starts a new
    stream). A high-follow point whose step from the last accepted point exceeds
    ``step_tolerance`` (1.5) × max joint speed × period, or the documented hard rule of 10° per
    frame, is an **overspeed** (0x1007): the point is rejected, the arm decelerates to a stop at full
    acceleration and every pass-through point is ignored until ``clear_errors`` (clear_system_err).
  - a high-follow point beyond a joint limit is rejected with 0x1002; the arm holds.
  - after 100 ms without a point the arm holds its last point and reports ``idle``.
  - pass-through points are refused (``busy``) while a planned move or a stop runs; a planned move is
    refused (``busy``) while pass-through still moves the arm (a high-follow point within the last two
    stream periods, or low follow not yet at its target).
* **Errors** latch in :attr:`ArmSim.errors` until :meth:`clear_errors`; an accepted planned move also
  clears 0x1002/0x1003 ("errors also clear on the next motion command"). Target beyond a joint limit:
  0x1002; unreachable pose: 0x1003; overspeed: 0x1007.
* **Power off** brakes the joints where they are (velocity 0, trajectory and queue dropped, no
  completion) and refuses every motion command until power is back on (no error code).
* **Gripper** (:class:`GripperSim`): position 0…1000 moving linearly to its target in 1 s.

Simplified or not modelled: blending (``r``), ``trajectory_mode``/``radio`` smoothing of
pass-through, dynamics/torques/currents (constant nominal values are reported), collision detection,
tool/work frames (the pose is always the flange in the base frame), ``expand``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from kinebridge.drivers.realman import protocol as proto
from kinebridge.drivers.arm.driver import JointLimits
from kinebridge.kernels import rm75 as kin

__all__ = [
    "ArmSim", "GripperSim", "Completion", "default_limits", "trapezoid_duration",
    "SUBSTEP", "LINEAR_SPEED", "LINEAR_ACC", "ANGULAR_SPEED", "ANGULAR_ACC", "DEFAULT_ACC_DEG",
    "STEP_TOLERANCE", "MAX_STEP_DEG", "PERIOD_MIN", "PERIOD_MAX", "STREAM_GAP", "MAX_QUEUE",
]

SUBSTEP = 1e-3            # s, longest integration substep
DEFAULT_ACC_DEG = 600.0   # °/s², every joint (controller reply 100000 × 0.001 RPM/s)
LINEAR_SPEED = 0.25       # m/s at v = 100 % (movel)
LINEAR_ACC = 1.6          # m/s²
ANGULAR_SPEED = 1.0       # rad/s
ANGULAR_ACC = 4.0         # rad/s²
STEP_TOLERANCE = 1.5      # high follow: allowed step = tolerance × qd_max × period
MAX_STEP_DEG = 10.0       # documented hard limit per pass-through frame
PERIOD_MIN, PERIOD_MAX = 0.002, 0.020
STREAM_GAP = 0.100        # s without a point: the stream has ended
MAX_QUEUE = 300           # queued planned moves (Gen-3 buffer)
_MOVEL_DS = 0.002         # m between movel IK samples
_MOVEL_DTHETA = 0.01      # rad between movel IK samples
_MOVEL_MAX_SAMPLES = 2000
_BRANCH_JUMP = math.radians(10.0)
_LIMIT_EPS = 1e-9


def default_limits(acc_deg: float = DEFAULT_ACC_DEG) -> JointLimits:
    """The RM75's joint limits (:func:`kinebridge.drivers.arm.model.arm_model`), with ``acc_deg`` °/s² on
    every joint."""
    from kinebridge.drivers.arm.model import arm_model
    lim = arm_model("RM75-B").limits
    return JointLimits(lim.q_min, lim.q_max, lim.qd_max, np.full(lim.dof, math.radians(acc_deg)))


def trapezoid_duration(distance: float, v: float, a: float) -> float:
    """Time of a rest-to-rest trapezoidal (or triangular) profile over ``distance``."""
    if distance <= 0.0:
        return 0.0
    if v * v >= a * distance:                      # never reaches cruise speed
        return 2.0 * math.sqrt(distance / a)
    return distance / v + v / a


@dataclass
class Completion:
    """A finished planned move or gripper action, to be reported to ``owner``."""

    owner: object
    ok: bool
    device: int = proto.DEVICE_ARM
    trajectory_connect: int = 0


# --------------------------------------------------------------------------------------- segments
class _Segment:
    """One planned move: piecewise-linear joint path Q(u) and a 1-D trapezoid on u."""

    def __init__(self, kind: str, Q: np.ndarray, W: float, A: float, A_full: float, owner, connect: int):
        self.kind = kind                  # "movej" | "movel" (movej_p reports "movej")
        self.Q = Q                        # (N, dof), N ≥ 2
        self.dQ = np.diff(Q, axis=0) * (len(Q) - 1)   # dQ/du per piece
        self.W, self.A, self.A_full = W, A, A_full
        self.owner, self.connect = owner, int(connect)
        self.u = 0.0
        self.w = 0.0
        self.hold = False                 # pause or slow stop: decelerate to w = 0
        self.drop_on_rest = False         # slow stop: discard when at rest
        self.duration = trapezoid_duration(1.0, W, A)

    @property
    def q_end(self) -> np.ndarray:
        return self.Q[-1]

    def sample(self, u: float) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.Q) - 1
        x = min(max(u, 0.0), 1.0) * n
        k = min(int(x), n - 1)
        f = x - k
        return self.Q[k] + (self.Q[k + 1] - self.Q[k]) * f, self.dQ[k]

    def step(self, dt: float) -> bool:
        """Advance ``dt``; True when the end is reached.

        The braking bound is exact for the discrete update ``u += (w + w')/2·dt``: w' is the largest
        speed from which the remaining distance *after* this step still suffices to stop at ``A``."""
        d = 1.0 - self.u
        w, A = self.w, self.A
        disc = A * A * dt * dt + 8.0 * A * d - 4.0 * A * dt * w
        w_brake = 0.5 * (math.sqrt(disc) - A * dt) if disc > 0.0 else 0.0
        w_des = min(0.0 if self.hold else self.W, max(w_brake, 0.0))
        if w_des >= w:
            w_new = min(w_des, w + A * dt)
        else:
            dec = self.A_full if self.hold else A
            w_new = max(w_des, w - dec * dt)
        u_new = self.u + 0.5 * (w + w_new) * dt
        if u_new >= 1.0 - 1e-12 or (w_new == 0.0 and d <= 1e-12):
            self.u, self.w = 1.0, 0.0
            return True
        self.u, self.w = u_new, w_new
        return False


def _path_rates(G: np.ndarray, limits: JointLimits, scale: float) -> tuple[float, float, float]:
    """Largest path speed/acceleration (du/dt, d²u/dt²) keeping |dQ/du|·rate within the limits.

    Returns (W, A) at ``scale`` (= v %) and the full-acceleration A for stops."""
    W = A = A_full = math.inf
    for i in range(len(G)):
        g = float(G[i])
        if g > 1e-12:
            W = min(W, scale * limits.qd_max[i] / g)
            A = min(A, scale * limits.qdd_max[i] / g)
            A_full = min(A_full, limits.qdd_max[i] / g)
    return W, A, A_full


# ------------------------------------------------------------------------------------------ arm
class ArmSim:
    """The simulated arm. Not thread-safe: the controller serialises calls with one lock.

    Motion commands return ``None`` when accepted, else a short reason string (``"joint_limit"``,
    ``"unreachable"``, ``"overspeed"``, ``"overspeed_latched"``, ``"power_off"``, ``"busy"``,
    ``"bad_value"``, ``"queue_full"``); errors that the controller reports set :attr:`errors` too.
    """

    def __init__(self, d7: float | None = None, limits: JointLimits | None = None, q0=None, t0: float = 0.0,
                 substep: float = SUBSTEP, step_tolerance: float = STEP_TOLERANCE,
                 max_step_deg: float = MAX_STEP_DEG):
        self.d7 = float(kin.D7_B if d7 is None else d7)
        self.limits = limits or default_limits()
        self.dof = self.limits.dof
        q0 = np.zeros(self.dof) if q0 is None else np.asarray(q0, dtype=float).copy()
        if q0.shape != (self.dof,) or not np.all(np.isfinite(q0)):
            raise ValueError(f"q0 must be {self.dof} finite joint angles (rad)")
        self.q = np.clip(q0, self.limits.q_min, self.limits.q_max)
        self.qd = np.zeros(self.dof)
        self.t = float(t0)
        if not 0.0 < substep <= SUBSTEP:
            raise ValueError(f"substep must be in (0, {SUBSTEP}] s")
        self.substep = float(substep)
        self.step_tolerance = float(step_tolerance)
        self.max_step = math.radians(max_step_deg)
        self.powered = True
        self.errors: list[int] = []
        self._overspeed_latched = False
        self._mode = "idle"               # idle | planned | high | low | stop
        self._stop_status = "stop"
        self._seg: _Segment | None = None
        self._queue: deque[_Segment] = deque()
        self._events: list[Completion] = []
        # pass-through
        self._pending: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        self._stream_kind = "joint"
        self._last_arrival: float | None = None
        self._intervals: deque[float] = deque(maxlen=16)
        self._last_point: np.ndarray | None = None   # last accepted high-follow point
        self._last_point_t = -math.inf               # arrival time of the last accepted point (any follow)
        self._last_applied_t = -math.inf
        self._hold_after = 0.0
        self._low_target: np.ndarray | None = None
        self._pose_cache: tuple[bytes, np.ndarray, np.ndarray] | None = None

    # --------------------------------------------------------------------------------- queries
    @property
    def status(self) -> str:
        """``arm_current_status`` name."""
        m = self._mode
        if m == "planned" and self._seg is not None:
            s = self._seg
            if s.drop_on_rest:
                return "slow_stop"
            if s.hold:
                return "pause"
            return "move_L" if s.kind == "movel" else "move_J"
        if m == "stop":
            return self._stop_status
        if m in ("high", "low"):
            return "move_through_pose" if self._stream_kind == "pose" else "move_through_joint"
        return "idle"

    @property
    def moving(self) -> bool:
        return bool(np.any(self.qd != 0.0)) or self._mode in ("planned", "stop") or bool(self._pending)

    @property
    def error_list(self) -> list[int]:
        """``err`` array as sent on the wire (``[0]`` when there is no error)."""
        return list(self.errors) if self.errors else [0]

    def trajectory_type(self) -> str:
        """``type`` of the get_arm_current_trajectory reply."""
        if self._seg is not None:
            return self._seg.kind
        return "none"

    def flange_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(``[x,y,z m, rx,ry,rz rad]``, ``[x,y,z m, w,x,y,z]``) of the flange at the current joints."""
        key = self.q.tobytes()
        c = self._pose_cache
        if c is None or c[0] != key:
            pose = np.asarray(kin.fk_pose(self.q, self.d7), dtype=float)
            quat = np.asarray(kin.fk_quat(self.q, self.d7), dtype=float)
            c = self._pose_cache = (key, pose, quat)
        return c[1], c[2]

    def pop_events(self) -> list[Completion]:
        ev, self._events = self._events, []
        return ev

    # ---------------------------------------------------------------------------------- errors
    def _raise(self, code: int) -> None:
        if code not in self.errors:
            self.errors.append(code)

    def clear_errors(self) -> None:
        """clear_system_err: drop every error and the overspeed latch."""
        self.errors.clear()
        self._overspeed_latched = False

    # ----------------------------------------------------------------------------------- power
    def set_power(self, on: bool) -> None:
        on = bool(on)
        if not on:
            self._seg = None
            self._queue.clear()
            self._pending.clear()
            self._low_target = None
            self._mode = "idle"
            self.qd[:] = 0.0
        self.powered = on

    # ----------------------------------------------------------------------------- planned moves
    def motion_refusal(self) -> str | None:
        """Why a planned move would be refused right now (``None`` if it would be accepted)."""
        if not self.powered:
            return "power_off"
        if self._mode in ("high", "low", "stop") and (np.any(self.qd != 0.0) or self._pending or
                                                      self._mode == "stop" or
                                                      (self._mode == "low" and self._low_target is not None
                                                       and np.any(self._low_target != self.q))):
            return "busy"
        if len(self._queue) >= MAX_QUEUE:
            return "queue_full"
        return None

    def plan_start(self) -> np.ndarray:
        """Joints a new planned move starts from: the end of the last queued move, else the current joints."""
        if self._queue:
            return self._queue[-1].q_end.copy()
        if self._seg is not None:
            return self._seg.q_end.copy()
        return self.q.copy()

    def _within_limits(self, q: np.ndarray) -> bool:
        return bool(np.all(q >= self.limits.q_min - _LIMIT_EPS) and np.all(q <= self.limits.q_max + _LIMIT_EPS))

    @staticmethod
    def _scale(v) -> float | None:
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        if not (1.0 <= v <= 100.0):
            return None
        return v / 100.0

    def _start(self, seg: _Segment) -> None:
        self._seg = seg
        self._mode = "planned"
        self._pending.clear()
        self._low_target = None

    # Planning (plan_*) only reads the limits and the kinematics, so the controller can run the IK
    # without holding its lock; commit() then checks the plan still starts where the arm would start.
    def plan_movej(self, q_target, v, q0, connect: int = 0, owner=None, kind: str = "movej") -> "_Segment | str":
        """Joint move from ``q0`` to ``q_target`` (rad) at ``v`` % (1–100) of the joint limits."""
        s = self._scale(v)
        q1 = np.asarray(q_target, dtype=float)
        if s is None or q1.shape != (self.dof,) or not np.all(np.isfinite(q1)):
            return "bad_value"
        if not self._within_limits(q1):
            return "joint_limit"
        q1 = np.clip(q1, self.limits.q_min, self.limits.q_max)
        q0 = np.asarray(q0, dtype=float)
        W, A, A_full = _path_rates(np.abs(q1 - q0), self.limits, s)
        if not math.isfinite(W):            # already there: a zero-length move completes at once
            W, A, A_full = 1e6, 1e9, 1e9
        return _Segment(kind, np.vstack([q0, q1]), W, A, A_full, owner, connect)

    def plan_movej_p(self, pose, v, q0, connect: int = 0, owner=None) -> "_Segment | str":
        """IK to ``pose`` (4×4, pose6 Euler or pose7 quaternion; SI) seeded with ``q0``, then a joint move."""
        if self._scale(v) is None or _as_matrix(pose) is None:
            return "bad_value"
        q1 = self._solve(pose, np.asarray(q0, dtype=float))
        if q1 is None:
            return "unreachable"
        return self.plan_movej(q1, v, q0, connect, owner)

    def plan_movel(self, pose, v, q0, connect: int = 0, owner=None) -> "_Segment | str":
        """Straight Cartesian line of the flange from FK(``q0``) to ``pose`` with slerped orientation."""
        s = self._scale(v)
        T1 = _as_matrix(pose)
        if s is None or T1 is None:
            return "bad_value"
        q0 = np.asarray(q0, dtype=float)
        T0 = np.asarray(kin.fk(q0, self.d7), dtype=float)
        p0, p1 = T0[:3, 3], T1[:3, 3]
        L = float(np.linalg.norm(p1 - p0))
        R0, R1 = T0[:3, :3], T1[:3, :3]
        theta = _rotation_angle(R0.T @ R1)
        n = int(min(_MOVEL_MAX_SAMPLES, max(2, math.ceil(max(L / _MOVEL_DS, theta / _MOVEL_DTHETA)) + 1)))
        us = np.linspace(0.0, 1.0, n)
        targets = np.empty((n, 4, 4))
        targets[:] = np.eye(4)
        targets[:, :3, 3] = p0 + (p1 - p0) * us[:, None]
        targets[:, :3, :3] = _slerp_matrices(R0, R1, us)
        try:
            Q, ok = kin.ik_path(targets, q0, self.d7, max_step=_BRANCH_JUMP)
        except Exception:                  # noqa: BLE001 - any IK failure means unreachable
            Q, ok = None, False
        Q = None if Q is None else np.asarray(Q, dtype=float)
        if (Q is None or Q.shape != (n, self.dof) or not bool(np.all(ok)) or not np.all(np.isfinite(Q))
                or np.any(np.abs(np.diff(Q, axis=0)) > _BRANCH_JUMP) or np.any(np.abs(Q[0] - q0) > _BRANCH_JUMP)):
            return "unreachable"
        if not (self._within_limits(Q.min(axis=0)) and self._within_limits(Q.max(axis=0))):
            return "joint_limit"
        Q[0] = q0                          # start exactly where the arm is
        G = np.abs(np.diff(Q, axis=0)).max(axis=0) * (n - 1)
        W, A, A_full = _path_rates(G, self.limits, s)
        for dist, vmax, amax in ((L, LINEAR_SPEED, LINEAR_ACC), (theta, ANGULAR_SPEED, ANGULAR_ACC)):
            if dist > 1e-12:
                W = min(W, s * vmax / dist)
                A = min(A, s * amax / dist)
                A_full = min(A_full, amax / dist)
        if not math.isfinite(W):
            W, A, A_full = 1e6, 1e9, 1e9
        A_full = max(A_full, A)
        return _Segment("movel", Q, W, A, A_full, owner, connect)

    def commit(self, plan: "_Segment | str") -> str | None:
        """Start or queue a plan from ``plan_*``; returns ``None`` or the refusal reason.

        A failed plan raises its error code here (0x1002 joint limit, 0x1003 unreachable). ``"stale"``
        means the plan no longer starts where a new move would start (re-plan)."""
        if isinstance(plan, str):
            code = {"joint_limit": proto.ERR_JOINT_LIMIT, "unreachable": proto.ERR_UNREACHABLE}.get(plan)
            if code is not None and self.powered:
                self._raise(code)
            return plan
        reason = self.motion_refusal()
        if reason:
            return reason
        if not np.array_equal(plan.Q[0], self.plan_start()):
            return "stale"
        for code in (proto.ERR_JOINT_LIMIT, proto.ERR_UNREACHABLE):
            if code in self.errors:
                self.errors.remove(code)
        if self._seg is None:
            self._start(plan)
        else:
            self._queue.append(plan)
        return None

    def movej(self, q_target, v, connect: int = 0, owner=None) -> str | None:
        """Plan and commit a joint move (see :meth:`plan_movej`)."""
        return self.motion_refusal() or self.commit(self.plan_movej(q_target, v, self.plan_start(), connect, owner))

    def movej_p(self, pose, v, connect: int = 0, owner=None) -> str | None:
        """Plan and commit a move to a pose through joint space (see :meth:`plan_movej_p`)."""
        return self.motion_refusal() or self.commit(self.plan_movej_p(pose, v, self.plan_start(), connect, owner))

    def movel(self, pose, v, connect: int = 0, owner=None) -> str | None:
        """Plan and commit a straight Cartesian move (see :meth:`plan_movel`)."""
        return self.motion_refusal() or self.commit(self.plan_movel(pose, v, self.plan_start(), connect, owner))

    def _solve(self, pose, q_seed: np.ndarray, restarts: bool = True) -> np.ndarray | None:
        T = _as_matrix(pose)
        if T is None:
            return None
        try:
            res = kin.ik(T, q_seed, d7=self.d7, restarts=restarts)
        except Exception:                  # noqa: BLE001
            return None
        q = np.asarray(res.q, dtype=float)
        if not bool(res.ok) or q.shape != (self.dof,) or not np.all(np.isfinite(q)) or not self._within_limits(q):
            return None
        return q

    # ------------------------------------------------------------------------------- stop family
    def pause(self) -> bool:
        if self._seg is not None:
            self._seg.hold = True
        return True

    def resume(self) -> bool:
        if self._seg is not None and not self._seg.drop_on_rest:
            self._seg.hold = False
        return True

    def slow_stop(self) -> bool:
        """Decelerate along the path (planned) or per joint (pass-through) and drop the trajectory."""
        self._queue.clear()
        if self._seg is not None:
            self._seg.hold = True
            self._seg.drop_on_rest = True
        elif self._mode in ("high", "low"):
            self._begin_stop("slow_stop")
        return True

    def quick_stop(self) -> bool:
        """Every joint decelerates at its full acceleration; trajectory and queue are dropped."""
        self._queue.clear()
        self._seg = None
        self._begin_stop("stop")
        return True

    def delete_trajectory(self) -> bool:
        """Drop the paused trajectory and the queue (False unless paused; a pause still decelerating
        finishes its deceleration first)."""
        s = self._seg
        if s is None or not s.hold:
            return False
        self._queue.clear()
        if s.w == 0.0:
            self._seg = None
            self._mode = "idle"
            self.qd = np.zeros(self.dof)
        else:
            s.drop_on_rest = True
        return True

    def _begin_stop(self, status: str) -> None:
        self._pending.clear()
        self._low_target = None
        self._stop_status = status
        self._mode = "stop"

    # ------------------------------------------------------------------------------ pass-through
    def period_estimate(self) -> float:
        """Stream period: median of recent inter-arrival intervals, bounded to [2 ms, 20 ms]."""
        if not self._intervals:
            return PERIOD_MAX
        return min(max(float(np.median(self._intervals)), PERIOD_MIN), PERIOD_MAX)

    def _arrive(self, t: float) -> None:
        """Record an arrival for the period estimate (every point counts, accepted or not)."""
        last = self._last_arrival
        if last is not None and 0.0 < t - last <= STREAM_GAP:
            self._intervals.append(t - last)
        elif last is None or t - last > STREAM_GAP:
            self._intervals.clear()
        self._last_arrival = t

    def _stream_refusal(self) -> str | None:
        if not self.powered:
            return "power_off"
        if self._overspeed_latched:
            return "overspeed_latched"
        if self._seg is not None or self._queue or self._mode == "stop":
            return "busy"
        return None

    def stream_joint(self, q, follow: bool, t: float) -> str | None:
        """One ``movej_canfd`` point (rad) arriving at time ``t``."""
        t = float(t)
        self._arrive(t)
        return self._stream_refusal() or self._accept(q, bool(follow), t, "joint")

    def stream_pose(self, pose, follow: bool, t: float) -> str | None:
        """One ``movep_canfd`` point (4×4 / pose6 / pose7, SI): IK warm-started, then as a joint point."""
        t = float(t)
        self._arrive(t)
        reason = self._stream_refusal()
        if reason:
            return reason
        if self._mode == "high" and self._last_point is not None:
            seed = self._last_point
        elif self._mode == "low" and self._low_target is not None:
            seed = self._low_target
        else:
            seed = self.q
        q = self._solve(pose, np.asarray(seed, dtype=float), restarts=False)
        if q is None:
            if _as_matrix(pose) is None:
                return "bad_value"
            self._raise(proto.ERR_UNREACHABLE)
            return "unreachable"
        return self._accept(q, bool(follow), t, "pose")

    def _accept(self, q, follow: bool, t: float, kind: str) -> str | None:
        q = np.asarray(q, dtype=float)
        if q.shape != (self.dof,) or not np.all(np.isfinite(q)):
            return "bad_value"
        if not follow:
            self._low_target = np.clip(q, self.limits.q_min, self.limits.q_max)
            self._mode = "low"
            self._stream_kind = kind
            self._last_point = None
            self._last_point_t = t
            return None
        if not self._within_limits(q):
            self._raise(proto.ERR_JOINT_LIMIT)
            return "joint_limit"
        fresh = self._mode == "high" and self._last_point is not None and t - self._last_point_t <= STREAM_GAP
        ref = self._last_point if fresh else self.q
        period = self.period_estimate()
        step = np.abs(q - ref)
        allowed = np.minimum(self.step_tolerance * self.limits.qd_max * period, self.max_step)
        if np.any(step > allowed):
            self._raise(proto.ERR_OVERSPEED)
            self._overspeed_latched = True
            self._flush_pending()
            self._begin_stop("stop")
            return "overspeed"
        self._pending.append((t, q.copy(), (q - ref) / period))
        self._last_point = q.copy()
        self._last_point_t = t
        self._hold_after = 2.0 * period
        self._mode = "high"
        self._stream_kind = kind
        return None

    def _flush_pending(self) -> None:
        """Apply the accepted points still waiting for their servo step (used before an overspeed stop)."""
        while self._pending:
            _, q, v = self._pending.popleft()
            self.q, self.qd = q, v

    # ------------------------------------------------------------------------------- integration
    def advance_to(self, t: float) -> None:
        """Integrate up to time ``t`` in equal substeps of at most ``substep``."""
        t = float(t)
        span = t - self.t
        if not span > 0.0:
            return
        if self._mode == "idle" and not self._pending:
            self.t = t
            return
        n = max(1, math.ceil(span / self.substep - 1e-9))
        dt = span / n
        t0 = self.t
        for k in range(1, n + 1):
            self._substep(dt, t0 + k * dt)
            if self._mode == "idle" and not self._pending:
                break
        self.t = t

    def _substep(self, dt: float, te: float) -> None:
        m = self._mode
        if m == "planned":
            self._step_planned(dt)
        elif m == "high":
            self._step_high(te)
        elif m == "low":
            self._step_low(dt, te)
        elif m == "stop":
            self._step_stop(dt)

    def _step_planned(self, dt: float) -> None:
        s = self._seg
        if s is None:
            self._mode = "idle"
            return
        done = s.step(dt)
        q, dq = s.sample(s.u)
        self.q = np.clip(q, self.limits.q_min, self.limits.q_max)
        self.qd = dq * s.w
        if done:
            self.qd = np.zeros(self.dof)
            self._seg = None
            more = bool(self._queue)
            self._events.append(Completion(s.owner, True, proto.DEVICE_ARM, 1 if more else 0))
            if more:
                self._seg = self._queue.popleft()
            else:
                self._mode = "idle"
        elif s.hold and s.w == 0.0 and s.drop_on_rest:
            self.qd = np.zeros(self.dof)
            self._seg = None
            self._queue.clear()
            self._mode = "idle"

    def _step_high(self, te: float) -> None:
        applied = False
        while self._pending and self._pending[0][0] <= te:
            _, q, v = self._pending.popleft()
            self.q, self.qd = q, v
            applied = True
        if applied:
            self._last_applied_t = te
        elif te - self._last_applied_t > self._hold_after:
            self.qd = np.zeros(self.dof)
            if te - self._last_point_t > STREAM_GAP and not self._pending:
                self._mode = "idle"

    def _step_low(self, dt: float, te: float) -> None:
        target = self._low_target
        if target is None:
            self._begin_stop("stop")
            return
        a = self.limits.qdd_max
        vmax = self.limits.qd_max
        q, v = self.q, self.qd
        e = target - q
        sgn = np.sign(e)
        # largest speed toward the target from which, after this step, braking at `a` still stops on it
        disc = a * a * dt * dt + 8.0 * a * np.abs(e) - 4.0 * a * dt * (v * sgn)
        v_brake = 0.5 * (np.sqrt(np.maximum(disc, 0.0)) - a * dt)
        v_des = sgn * np.clip(v_brake, 0.0, vmax)
        v_new = v + np.clip(v_des - v, -a * dt, a * dt)
        q_new = q + 0.5 * (v + v_new) * dt
        snap = (np.abs(e) <= np.abs(v_new) * dt + 1e-12) & (np.abs(v) <= a * dt * (1 + 1e-9))
        q_new = np.where(snap, target, q_new)
        v_new = np.where(snap, 0.0, v_new)
        self.q = np.clip(q_new, self.limits.q_min, self.limits.q_max)
        self.qd = v_new
        if not np.any(v_new) and np.array_equal(self.q, target) and te - self._last_point_t > STREAM_GAP:
            self._low_target = None
            self._mode = "idle"

    def _step_stop(self, dt: float) -> None:
        a = self.limits.qdd_max
        v = self.qd
        v_new = np.sign(v) * np.maximum(np.abs(v) - a * dt, 0.0)
        q_new = q_raw = self.q + 0.5 * (v + v_new) * dt
        q_new = np.clip(q_raw, self.limits.q_min, self.limits.q_max)
        v_new = np.where(q_new != q_raw, 0.0, v_new)
        self.q, self.qd = q_new, v_new
        if not np.any(v_new):
            self._mode = "idle"


# ------------------------------------------------------------------------------------- geometry
def _as_matrix(pose) -> np.ndarray | None:
    """4×4, ``[x,y,z,rx,ry,rz]`` (m, rad; R = Rz·Ry·Rx) or ``[x,y,z,w,x,y,z]`` → 4×4; None if invalid."""
    try:
        p = np.asarray(pose, dtype=float)
    except (TypeError, ValueError):
        return None
    if not np.all(np.isfinite(p)):
        return None
    try:
        if p.shape == (4, 4):
            return p.copy()
        if p.shape == (6,):
            return np.asarray(kin.pose6_to_matrix(p), dtype=float)
        if p.shape == (7,):
            n = float(np.linalg.norm(p[3:7]))
            if n < 1e-9:
                return None
            return np.asarray(kin.pose7_to_matrix(np.concatenate([p[:3], p[3:7] / n])), dtype=float)
    except ValueError:
        return None
    return None


def _rotation_angle(R: np.ndarray) -> float:
    c = (float(np.trace(R)) - 1.0) / 2.0
    return math.acos(min(1.0, max(-1.0, c)))


def _slerp_matrices(R0: np.ndarray, R1: np.ndarray, us: np.ndarray) -> np.ndarray:
    """Rotations along the geodesic from R0 to R1 at fractions ``us`` (Rodrigues on the relative rotation)."""
    Rrel = R0.T @ R1
    theta = _rotation_angle(Rrel)
    out = np.empty((len(us), 3, 3))
    if theta < 1e-12:
        out[:] = R0
        return out
    if math.pi - theta < 1e-6:             # 180°: axis from the symmetric part
        M = (Rrel + np.eye(3)) / 2.0
        axis = M[:, int(np.argmax(np.diag(M)))]
    else:
        axis = np.array([Rrel[2, 1] - Rrel[1, 2], Rrel[0, 2] - Rrel[2, 0], Rrel[1, 0] - Rrel[0, 1]])
    axis = axis / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    K2 = K @ K
    for i, u in enumerate(us):
        a = theta * float(u)
        out[i] = R0 @ (np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K2)
    return out


# -------------------------------------------------------------------------------------- gripper
class GripperSim:
    """EG2-4C-style gripper: position 0…1000 (no unit) reached linearly in ``duration`` seconds."""

    def __init__(self, duration: float = 1.0):
        self.duration = float(duration)
        self.position = 1000.0
        self.route = (0, 1000)
        self._from = self.position
        self._target = self.position
        self._t0 = 0.0
        self._owner = None
        self._block = False
        self.moving = False
        self.force = 0

    def command(self, target: float, t: float, owner=None, block: bool = False, force: int = 0) -> None:
        lo, hi = self.route
        self._from = self.position
        self._target = float(min(max(target, lo), hi))
        self._t0 = float(t)
        self._owner, self._block = owner, bool(block)
        self.moving = True
        self.force = int(force)

    def advance_to(self, t: float) -> list[Completion]:
        if not self.moving:
            return []
        f = (float(t) - self._t0) / self.duration
        if f < 1.0:
            self.position = self._from + (self._target - self._from) * max(f, 0.0)
            return []
        self.position = self._target
        self.moving = False
        if self._block:
            return [Completion(self._owner, True, proto.DEVICE_GRIPPER, 0)]
        return []
