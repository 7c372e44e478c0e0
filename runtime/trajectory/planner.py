"""The trajectory node's planning core: skill + task frames → LFE-KMP → IK → timestamped joint chunks.

No I/O here. A :class:`~kinebridge.runtime.skills.format.Skill` is a set of demonstrations (flange position and orientation in the
RM75 base frame) with their task frames [start pose, goal frame]. :class:`SkillPlanner` fits
LFE-KMP once, then for new task frames

1. generalises the skill (VL-MP eq. (6): the product of the frames' enhanced KMP predictions, for
   position and orientation);
2. re-times it onto the control grid ``dt`` (scaled by ``speed``) with a phase profile that eases
   in and out (:func:`phase_profile`: the plan starts and ends at rest) — cubic spline for
   position, geodesic interpolation for orientation;
3. makes it start exactly at the arm's current pose: the difference between the current flange
   pose and the generalised start fades out with a quintic over the first ``start_blend`` share
   of the motion (LFE-KMP's start anchoring makes this difference small, not zero);
4. converts it to joint space with one compiled :func:`~kinebridge.kernels.rm75.ik_path` call seeded
   at the current joints, checks the IK errors, and slows the motion down (never up, at most
   ``max_slowdown`` times; the speed used is ``JointPlan.speed``) until joint speeds and
   accelerations are within the limits the control loop enforces (``ArmModel.limits``, less
   ``limit_margin``), so the loop's limiter never has to act on a plan. A goal it cannot plan raises :class:`PlanError`
   naming the goal and the worst error (or the joint over its limit) — never NaN or a jump.

:meth:`SkillPlanner.replan` handles new task parameters mid-motion: the new goal is generalised with
the *original* start frame, the motion continues at the phase it had reached, and the offset between
the pose reached and the new trajectory at that phase fades out the same way — so the new plan
starts where the old one is, and the control loop's seam blend joins the velocities.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from kinebridge.drivers.arm.limits import JointLimits
from kinebridge.drivers.arm.model import ArmModel, arm_model
from kinebridge.kernels import quaternion as quat
from kinebridge.kernels import rm75
from kinebridge.kernels.lfe_kmp import LFEKMP, TaskFrame
from kinebridge.runtime.skills.format import Skill, task_frame_from_pose7
from kinebridge.runtime.trajectory.config import PlannerConfig

__all__ = ["PlannerConfig", "JointPlan", "PlanError", "SkillPlanner", "chunks", "phase_profile"]


class PlanError(ValueError):
    """A goal that cannot be planned (unreachable, too fast); the text says which and why."""


@dataclass
class JointPlan:
    t0: float                       # time.monotonic() of sample 0
    dt: float
    q: np.ndarray                   # (N, 7) rad
    pose: np.ndarray                # (N, 7) the flange targets [x, y, z, qw, qx, qy, qz]
    phase: np.ndarray               # (N,) progress through the skill, 0..1
    frames: list                    # the task frames it was planned for
    max_pos_err: float = 0.0        # largest flange position error of the IK along the plan (m)
    max_rot_err: float = 0.0        # ... and rotation error (rad)
    plan_ms: dict = field(default_factory=dict)   # stage timings (ms): generalise, resample, ik, total
    ik_ok: bool = True              # every sample converged (a plan that fails is never returned)
    speed: float = 1.0              # the time scaling used: PlannerConfig.speed, or lower if the limits needed it

    @property
    def t_end(self) -> float:
        return self.t0 + self.dt * (len(self.q) - 1)

    def q_at(self, t: float) -> np.ndarray:
        """Joint positions at time ``t`` (linear between samples, clamped to the ends)."""
        x = (t - self.t0) / self.dt
        k = int(np.clip(math.floor(x), 0, len(self.q) - 1))
        if k >= len(self.q) - 1:
            return self.q[-1].copy()
        a = max(0.0, x - k)
        return (1 - a) * self.q[k] + a * self.q[k + 1]

    def index_at(self, t: float) -> int:
        return int(np.clip(math.floor((t - self.t0) / self.dt + 1e-9), 0, len(self.q) - 1))


def phase_profile(n: int, ramp: float) -> np.ndarray:
    """Phase u(τ) on ``n`` even time samples: u(0) = 0, u(1) = 1, du/dτ constant in the middle and
    easing to zero over the first and last ``ramp`` share (raised cosine), so the plan starts and
    ends at rest whatever velocity the generalised trajectory has at its ends."""
    tau = np.linspace(0.0, 1.0, n)
    if ramp <= 0:
        return tau
    w = np.ones(n)
    a = tau < ramp
    w[a] = 0.5 * (1 - np.cos(np.pi * tau[a] / ramp))
    b = tau > 1 - ramp
    w[b] = 0.5 * (1 - np.cos(np.pi * (1 - tau[b]) / ramp))
    u = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]))])       # trapezoid ∫ w dτ
    return u / u[-1]


def _quintic(s):
    return s * s * s * (10 - 15 * s + 6 * s * s)


def _rot_errors(q, T_target, d7):
    T = rm75.fk_batch(q, d7)
    pe = np.linalg.norm(T[:, :3, 3] - T_target[:, :3, 3], axis=1)
    R = np.einsum("nji,njk->nik", T[:, :3, :3], T_target[:, :3, :3])
    re = np.arccos(np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1))
    return pe, re


DEFAULT_COMPONENTS = 6


def fit_components(cfg: PlannerConfig, skill: Skill) -> int:
    """GMM components for ``skill``: the config's if set, else the skill's own choice, else 6."""
    if cfg.n_components is not None:
        return int(cfg.n_components)
    n = (skill.metadata.get("fit") or {}).get("n_components") if isinstance(skill.metadata, dict) else None
    return int(n) if isinstance(n, int) and 1 <= n <= 30 else DEFAULT_COMPONENTS


class SkillPlanner:
    """LFE-KMP fitted once on ``skill``; :meth:`plan` / :meth:`replan` give joint plans for ``arm``
    (its kinematics and the joint limits the control loop enforces — :meth:`set_limits` when the
    control node announces them)."""

    def __init__(self, skill: Skill, config: PlannerConfig | None = None, arm: ArmModel | None = None):
        self.skill = skill
        self.cfg = config or PlannerConfig()
        self.arm = arm or arm_model("RM75-B")
        t = time.perf_counter()
        self.n_components = fit_components(self.cfg, skill)
        self.model = LFEKMP(n_components=self.n_components, n_ref=self.cfg.n_ref).fit(skill.demos, skill.frames)
        self.fit_ms = (time.perf_counter() - t) * 1e3
        self._warm_up()

    def _warm_up(self) -> None:
        """Run the whole pipeline once (spline, geodesics, compiled IK) so the first task is fast."""
        d = self.skill.demos[0]
        r = rm75.ik(np.concatenate([d.position[0], d.orientation[0]]), rm75.Q_HOME, self.arm.d7)
        if r.ok:
            try:
                self.plan(self.skill.frames[0][1], q_start=r.q, t_start=0.0)
            except PlanError:
                pass

    def set_limits(self, limits: JointLimits) -> None:
        """Plan within ``limits`` from now on (the limits the control loop enforces)."""
        self.arm = self.arm.with_limits(limits)

    def generalize(self, frames):
        """LFE-KMP for ``frames`` (eq. (6)): reference times, positions (N, 3), quaternions (N, 4)."""
        traj = self.model.generalize(frames)
        return traj.t, traj.position, quat.make_continuous(traj.orientation)

    def _resample(self, t_ref, pos, ori, u):
        """Positions and quaternions at the phases ``u`` (cubic spline / spline in a tangent chart)."""
        u_ref = (t_ref - t_ref[0]) / (t_ref[-1] - t_ref[0])
        p = CubicSpline(u_ref, pos, axis=0)(u)
        # orientation: a cubic spline in one tangent chart around the middle orientation (a skill turns
        # the tool by well under π), so the angular velocity is continuous — geodesics between the
        # reference points would put a kink, i.e. a joint acceleration spike, at every one of them
        base = ori[len(ori) // 2]
        base_n = np.broadcast_to(base, ori.shape)
        w = CubicSpline(u_ref, quat.log_at(base_n, ori), axis=0)(u)
        q = quat.exp_at(np.broadcast_to(base, (len(u), 4)), w)
        return p, q

    def _path(self, ref, phase0: float, pose_start: np.ndarray, speed: float):
        """Cartesian targets (pose7) of the generalised ``ref`` from ``phase0`` to the end on the ``dt``
        grid, starting exactly at ``pose_start``; returns (phases, poses)."""
        cfg = self.cfg
        t_ref, pos, ori = ref
        duration = (t_ref[-1] - t_ref[0]) / speed
        n_total = max(2, int(math.ceil(duration / cfg.dt)) + 1)
        u_all = phase_profile(n_total, cfg.rest_ramp)
        k0 = min(int(np.searchsorted(u_all, phase0 - 1e-12)), n_total - 2)
        u = u_all[k0:].copy()
        u[0] = max(float(phase0), 0.0)      # resume exactly where the old plan was (its grid may differ: re-timing)
        p, q = self._resample(t_ref, pos, ori, u)
        # fade the offset between where the arm is and where the generalised path starts
        n = len(u)
        s = np.clip(np.arange(n) / max(1.0, cfg.start_blend * (n_total - 1)), 0.0, 1.0)
        w = (1.0 - _quintic(s))[:, None]
        p = p + w * (pose_start[:3] - p[0])
        q_start = pose_start[3:] if np.dot(pose_start[3:], q[0]) >= 0 else -pose_start[3:]
        delta = quat.log_at(q[0][None], q_start[None])[0]        # body-frame correction at the start
        q = quat.exp_at(q, w * delta)
        return u, np.concatenate([p, q / np.linalg.norm(q, axis=1, keepdims=True)], axis=1)

    def _to_joints(self, pose, q_start, goal: TaskFrame) -> tuple[np.ndarray, float, float]:
        """IK of the whole path in one compiled call, seeded at ``q_start``; PlanError on any miss."""
        cfg = self.cfg
        T = rm75.pose7_to_matrix(pose)
        q, ok = rm75.ik_path(T, q_start, self.arm.d7, max_step=cfg.max_joint_step)
        pe, re = _rot_errors(q, T, self.arm.d7)
        if not ok.all() or pe.max() > cfg.pos_tol or re.max() > cfg.rot_tol:
            i = int(np.argmax(pe / cfg.pos_tol + re / cfg.rot_tol))
            raise PlanError(f"the goal at {np.round(goal.origin, 3).tolist()} m is out of the arm's reach: IK misses "
                            f"the flange target {np.round(pose[i, :3], 3).tolist()} by {pe[i] * 1e3:.1f} mm / "
                            f"{np.degrees(re[i]):.1f}° at {100 * i / max(1, len(pose) - 1):.0f} % of the motion "
                            f"(worst of the path); move the goal closer to the arm")
        return q, float(pe.max()), float(re.max())

    def _limit_ratio(self, q) -> tuple[float, int, str]:
        """How much faster than the joint limits ``q`` moves (≤ 1: within them), the joint, and which limit.

        Slowing the phase down by a factor r divides joint velocities by r and accelerations by r²,
        hence max(velocity ratio, √acceleration ratio)."""
        dt = self.cfg.dt
        lim, keep = self.arm.limits, 1.0 - self.cfg.limit_margin     # what the loop enforces, with a margin
        v = np.abs(np.diff(q, axis=0)) / dt / (lim.qd_max * keep)
        a = np.abs(np.diff(q, n=2, axis=0)) / dt ** 2 / (lim.qdd_max * keep)
        rv = v.max(axis=0) if v.size else np.zeros(7)
        ra = np.sqrt(a.max(axis=0)) if a.size else np.zeros(7)
        jv, ja = int(np.argmax(rv)), int(np.argmax(ra))
        return (float(rv[jv]), jv, "velocity") if rv[jv] >= ra[ja] else (float(ra[ja]), ja, "acceleration")

    def _build(self, frames, phase0, pose_start, q_start):
        """Generalise, then path → joints, slowed down (never sped up, at most ``max_slowdown`` times)
        until joint speeds and accelerations fit the RM75's limits."""
        cfg = self.cfg
        t = time.perf_counter()
        ref = self.generalize(frames)
        timings = {"generalise": (time.perf_counter() - t) * 1e3, "resample": 0.0, "ik": 0.0}
        speed = cfg.speed
        for _ in range(4):
            t = time.perf_counter()
            u, pose = self._path(ref, phase0, pose_start, speed)
            t_ik = time.perf_counter()
            q, pe, re = self._to_joints(pose, q_start, frames[1])
            timings["resample"] += (t_ik - t) * 1e3
            timings["ik"] += (time.perf_counter() - t_ik) * 1e3
            r, j, which = self._limit_ratio(q)
            if r <= 1.0:
                return u, pose, q, pe, re, speed, timings
            speed = speed / (r * 1.02)
            if speed < cfg.speed / cfg.max_slowdown:
                break
        raise PlanError(f"the motion to the goal at {np.round(frames[1].origin, 3).tolist()} m exceeds "
                        f"joint J{j + 1}'s {which} limit ({r:.2f}× at speed {speed * r * 1.02:.3g}): "
                        f"lower trajectory.speed (now {cfg.speed:g}) or move the goal away from singular postures")

    def plan(self, goal: TaskFrame, start_pose: TaskFrame | None = None, q_start=None,
             t_start: float | None = None) -> JointPlan:
        """The whole skill from the arm's state ``q_start`` to ``goal``, sample 0 at ``t_start``
        (``time.monotonic()`` when None). The task frames are [``start_pose`` (default: the flange
        pose FK(q_start)), ``goal``]; sample 0 is exactly ``q_start`` either way."""
        t = time.perf_counter()
        if q_start is None:
            raise PlanError("plan() needs the arm's current joints q_start")
        q_start = np.asarray(q_start, float)
        pose_now = rm75.matrix_to_pose7(rm75.fk(q_start, self.arm.d7))
        start = start_pose if start_pose is not None else task_frame_from_pose7(pose_now)
        frames = [start, goal]
        u, pose, q, pe, re, speed, timings = self._build(frames, 0.0, pose_now, q_start)
        timings["total"] = (time.perf_counter() - t) * 1e3
        return JointPlan(time.monotonic() if t_start is None else float(t_start), self.cfg.dt, q, pose, u, frames,
                         pe, re, timings, True, speed)

    def replan(self, plan: JointPlan, goal: TaskFrame, t_now: float, q_now=None) -> JointPlan:
        """Continue ``plan`` towards a new ``goal`` from the state it reaches at ``t_now`` (or ``q_now``).

        The new plan's sample 0 is at ``t_now`` and equals ``plan.q_at(t_now)`` (``q_now`` if given);
        it keeps the original start frame and resumes at the phase the old plan had reached."""
        t = time.perf_counter()
        k = plan.index_at(t_now)
        q_here = plan.q_at(t_now) if q_now is None else np.asarray(q_now, float)
        pose_here = rm75.matrix_to_pose7(rm75.fk(q_here, self.arm.d7))
        phase = float(plan.phase[k])
        frames = [plan.frames[0], goal]
        u, pose, q, pe, re, speed, timings = self._build(frames, phase, pose_here, q_here)
        timings["total"] = (time.perf_counter() - t) * 1e3
        return JointPlan(float(t_now), self.cfg.dt, q, pose, u, frames, pe, re, timings, True, speed)


def chunks(plan: JointPlan, t_from: float, chunk_len: int):
    """The chunk ``(t0, dt, q)`` covering ``[t_from, …)``: at most ``chunk_len`` samples on the
    plan's grid, starting at the sample at or before ``t_from``. The last chunk ends with the final
    sample; None once ``t_from`` is past the end."""
    if t_from > plan.t_end + 1e-9:
        return None
    k = plan.index_at(t_from)
    k = min(k, len(plan.q) - 2) if len(plan.q) > 1 else 0
    q = plan.q[k:k + chunk_len]
    return plan.t0 + k * plan.dt, plan.dt, np.ascontiguousarray(q)
