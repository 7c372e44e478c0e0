"""Motion segments for the Kine data set, from kinebridge's own planners.

Every segment of an episode (approach, descend, lift, transport, push, pull, tilt, retreat) is planned
the way the trajectory node plans a skill — :class:`~kinebridge.runtime.trajectory.planner.SkillPlanner`:
LFE-KMP generalises a demonstrated motion to the segment's task frames [start pose, goal pose], the
result is re-timed onto the 10 ms grid with a phase profile that starts and ends at rest, converted to
joint space with one warm-started :func:`~kinebridge.kernels.rm75.ik_path` call and slowed until the
joint speeds and accelerations fit the RM75's limits.

What the instruction asks of the path's *shape* goes in as KMP via-points (:class:`ShapedPlanner`): a
KMP is fitted on the LFE-KMP trajectory (its mean and covariance — the reference database) and the
shape's via-points are inserted with tight position variance in x, y (z and velocities free), so the
path bends through them while keeping the skill's timing, lift and orientation profile:

* straight / diagonal — points on the chord; arc — a half sine off the chord (amplitude 0.3 × the chord,
  at least 4 cm) on the named side; S-curve — a full sine (0.2 ×). An L (first one direction, then the
  other: the ordering attribute) is two straight segments, each starting and ending at rest.

Two skills are demonstrated (seeded, synthetic, like the bundled pour): ``carry`` — point-to-point with a
lift arc of ~5 cm over the table (transport, approach) — and ``slide`` — point-to-point without lift
(descend, lift, push, pull). Poses are the tool centre point's (``TCP_OFFSET`` below the flange along its
z axis); the planners work on the flange.
"""

from __future__ import annotations

import math

import numpy as np

from kinebridge.drivers.arm.model import arm_model
from kinebridge.kernels import quaternion as quat
from kinebridge.kernels import rm75
from kinebridge.kernels.kmp import KMP
from kinebridge.kernels.lfe_kmp import Demonstration, TaskFrame
from kinebridge.runtime.skills.format import Skill
from kinebridge.runtime.trajectory.config import PlannerConfig
from kinebridge.runtime.trajectory.planner import JointPlan, PlanError, SkillPlanner

__all__ = ["TCP_OFFSET", "T_FLANGE_TCP", "tool_down", "ShapedPlanner", "SegmentPlanner", "PlanError",
           "shape_vias", "move_demos"]

TCP_OFFSET = 0.08                       # m along the flange z: the gripper's tool/tcp site
T_FLANGE_TCP = np.eye(4)
T_FLANGE_TCP[2, 3] = TCP_OFFSET
_T_TCP_FLANGE = np.linalg.inv(T_FLANGE_TCP)
TOOL_DOWN = np.diag([1.0, -1.0, -1.0])


def tool_down(yaw: float) -> np.ndarray:
    """Rotation of a tool pointing at the table, turned by ``yaw`` about the vertical (flange x at yaw)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ TOOL_DOWN


def _smooth(u):
    return u * u * (3.0 - 2.0 * u)


def move_demos(lift: float, n_demos: int = 7, seed: int = 0, duration: float = 3.0, n_points: int = 150):
    """Point-to-point flange motions with a ``lift`` (m) arc, between random tool-down poses in reach;
    returns (demos, frames). Orientation: geodesic from the start to the goal, smoothstep in time."""
    rng = np.random.default_rng(seed)
    demos, frames = [], []
    t = np.linspace(duration / n_points, duration, n_points)
    u = (t - t[0]) / (t[-1] - t[0])
    s = _smooth(u)
    for _ in range(n_demos):
        p0 = np.array([rng.uniform(0.28, 0.5), rng.uniform(-0.3, 0.3), rng.uniform(0.14, 0.3)])
        p1 = np.array([rng.uniform(0.28, 0.5), rng.uniform(-0.3, 0.3), rng.uniform(0.14, 0.3)])
        R0, R1 = tool_down(rng.uniform(-0.8, 0.8)), tool_down(rng.uniform(-0.8, 0.8))
        pos = (1 - s)[:, None] * p0 + s[:, None] * p1
        pos[:, 2] += lift * np.sin(np.pi * u)
        q0, q1 = quat.from_matrix(R0), quat.from_matrix(R1)
        rel = quat.log_at(q0[None], q1[None])
        q = quat.exp_at(np.broadcast_to(q0, (n_points, 4)), s[:, None] * rel)
        demos.append(Demonstration(t=t, position=pos, orientation=quat.make_continuous(q)))
        frames.append([TaskFrame(p0, R0), TaskFrame(p1, R1)])
    return demos, frames


def _skill(name: str, lift: float, seed: int) -> Skill:
    demos, frames = move_demos(lift, seed=seed)
    return Skill(name, demos, frames, f"tool-down point-to-point move, lift {lift * 100:.0f} cm (synthetic, seeded)")


def shape_vias(p0, p1, shape: dict | None, pin_z: bool = False) -> list[tuple[float, np.ndarray]]:
    """Via-points (phase u in (0, 1), xyz) that give the path from ``p0`` to ``p1`` (x, y, z) its
    ``shape`` ({"shape": straight|diagonal|arc|s_curve, "side": left|right of travel}): 19 points
    evenly in phase over 5–95 % of the motion, on the chord or off it in the table plane by a half
    sine (arc, 0.3 × the chord, ≥ 4 cm) or a full sine (S-curve, 0.2 ×, ≥ 3.5 cm). ``pin_z``: z is on
    the chord too (a slide); else only x, y are meant (a carry lifts as its skill does)."""
    kind = (shape or {"shape": "straight"})["shape"]
    a, b = np.asarray(p0, float)[:3], np.asarray(p1, float)[:3]
    c = b - a
    L = float(np.linalg.norm(c[:2]))
    us = np.linspace(0.05, 0.95, 19)
    if kind in ("straight", "diagonal") or L < 1e-3:
        off = np.zeros_like(us)
        n = np.zeros(3)
    else:
        n = np.array([-c[1], c[0], 0.0]) / L                 # left of travel, in the table plane
        side = 1.0 if shape.get("side", "left") == "left" else -1.0
        if kind == "arc":
            off = side * max(0.3 * L, 0.04) * np.sin(np.pi * us)
        elif kind == "s_curve":
            off = side * max(0.2 * L, 0.035) * np.sin(2 * np.pi * us)
        else:
            raise ValueError(f"shape: unknown path shape {kind!r} (an L is two straight segments)")
    if not pin_z and L < 1e-3:
        return []
    return [(float(u), a + u * c + o * n) for u, o in zip(us, off)]


class ShapedPlanner(SkillPlanner):
    """A :class:`SkillPlanner` whose generalised path is bent through KMP via-points (see the module)."""

    def __init__(self, skill: Skill, config: PlannerConfig | None = None, arm=None, via_h: float = 20.0,
                 via_lam: float = 2.0, pin_z: bool = False):
        self._shape = None
        self.pin_z = pin_z
        self.via_h, self.via_lam = via_h, via_lam
        super().__init__(skill, config, arm)

    def generalize(self, frames):
        traj = self.model.generalize(frames)
        t, pos = traj.t, traj.position
        ori = quat.make_continuous(traj.orientation)
        span = t[-1] - t[0]
        # the reference database: LFE-KMP's mean and covariance, re-fitted by a wide-kernel KMP that
        # smooths the enhancement windows' seams; the ends are pinned exactly (the goal is a grasp pose)
        kmp = KMP(h=self.via_h / span ** 2, lam=self.via_lam, lam_c=60.0, kernel="analytic")
        kmp.fit(t, np.concatenate([traj.position, traj.velocity], axis=1), traj.covariance + 1e-8 * np.eye(6))
        vias = [(0.0, pos[0], 3), (1.0, pos[-1], 3)]
        pin = 3 if self.pin_z else 2
        vias += [(u, p, pin) for u, p in shape_vias(pos[0], pos[-1], self._shape, self.pin_z)]
        tv = np.array([t[0] + u * span for u, _, _ in vias])
        ref = kmp.predict(tv)
        mv = ref.copy()
        sv = np.empty((len(vias), 6, 6))
        for i, (_, p, k) in enumerate(vias):
            mv[i, :k] = p[:k]
            sv[i] = np.diag([1e-8] * k + [1e2] * (6 - k))
        kmp.set_via_points(tv, mv, sv)
        return t, kmp.predict(t)[:, :3], ori

    def plan_shaped(self, goal: TaskFrame, q_start, shape=None, speed: float = 1.0) -> JointPlan:
        self._shape = shape
        self.cfg = self.cfg.model_copy(update={"speed": float(speed)})
        try:
            return self.plan(goal, q_start=q_start, t_start=0.0)
        finally:
            self._shape = None


class SegmentPlanner:
    """The two skills, fitted once (a few seconds); :meth:`move` plans one TCP segment."""

    def __init__(self, model: str = "RM75-B", dt: float = 0.01, seed: int = 0):
        self.arm = arm_model(model)
        self.d7 = self.arm.d7
        cfg = PlannerConfig(dt=dt, n_components=5, n_ref=100, rest_ramp=0.2, max_slowdown=6.0, start_blend=0.15)
        self.skills = {"carry": ShapedPlanner(_skill("carry", 0.05, seed), cfg, self.arm),
                       "slide": ShapedPlanner(_skill("slide", 0.0, seed + 1), cfg, self.arm, pin_z=True)}
        self.dt = dt

    def tcp_pose(self, q) -> np.ndarray:
        return rm75.fk(q, self.d7) @ T_FLANGE_TCP

    def move(self, q_start, tcp_goal: np.ndarray, skill: str = "carry", shape=None, duration: float | None = None,
             speed_scale: float = 1.0) -> np.ndarray:
        """Joint samples (N, 7) every ``dt`` from ``q_start`` to the TCP pose ``tcp_goal`` (4, 4): the
        first row is ``q_start``. ``duration`` (s) defaults to 0.9 s + 1 s per 15 cm of travel (at
        least 1.2 s); the planner may stretch it to fit the joint limits. PlanError if unreachable."""
        q_start = np.asarray(q_start, float)
        T0 = self.tcp_pose(q_start)
        dist = float(np.linalg.norm(tcp_goal[:3, 3] - T0[:3, 3]))
        rot = float(np.arccos(np.clip((np.trace(T0[:3, :3].T @ tcp_goal[:3, :3]) - 1) / 2, -1, 1)))
        if duration is None:
            duration = max(1.2, 0.9 + dist / 0.15 + rot / 1.5)
        duration /= speed_scale
        planner = self.skills[skill]
        T_f = tcp_goal @ _T_TCP_FLANGE
        plan = planner.plan_shaped(TaskFrame(T_f[:3, 3].copy(), T_f[:3, :3].copy()), q_start, shape,
                                   speed=planner.skill.duration / duration)
        return plan.q

    def hold(self, q, seconds: float) -> np.ndarray:
        return np.repeat(np.asarray(q, float)[None], max(1, int(round(seconds / self.dt))), axis=0)
