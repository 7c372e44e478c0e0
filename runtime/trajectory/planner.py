"""The trajectory node's planning core: skill + task frames → LFE-KMP → IK → timestamped joint chunks.

No I/O here. A :class:`Skill` is a set of demonstrations (flange position and orientation in the
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
   accelerations are within the RM75's limits. A goal it cannot plan raises :class:`PlanError`
   naming the goal and the worst error (or the joint over its limit) — never NaN or a jump.

:meth:`SkillPlanner.replan` handles new task parameters mid-motion: the new goal is generalised with
the *original* start frame, the motion continues at the phase it had reached, and the offset between
the pose reached and the new trajectory at that phase fades out the same way — so the new plan
starts where the old one is, and the control loop's seam blend joins the velocities.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.interpolate import CubicSpline

from kinebridge.kernels import quaternion as quat
from kinebridge.kernels import rm75
from kinebridge.kernels.lfe_kmp import LFEKMP, Demonstration, TaskFrame

__all__ = ["Skill", "PlannerConfig", "JointPlan", "PlanError", "SkillPlanner", "chunks", "bundled_skill",
           "bundled_skill_names", "pouring_skill", "write_bundled_skills", "task_frame_from_pose7",
           "pose7_from_task_frame", "cup_frame"]

SKILL_DIR = Path(__file__).parent / "skills"
SKILL_FORMAT = "kinebridge-skill-1"


class PlanError(ValueError):
    """A goal that cannot be planned (unreachable, too fast); the text says which and why."""


# ---------------------------------------------------------------------------------- skills
@dataclass
class Skill:
    """Demonstrations of one skill with their task frames ``frames[i] = [start, goal]``."""

    name: str
    demos: list
    frames: list
    description: str = ""

    @property
    def duration(self) -> float:
        return float(np.median([d.t[-1] - d.t[0] for d in self.demos]))

    def save(self, path) -> None:
        """One ``.npz`` (no pickle): ``demo{i}_t|position|orientation``, ``frame{i}_{p}_origin|rotation``."""
        arrays = {"meta": np.array(json.dumps({"format": SKILL_FORMAT, "name": self.name, "n_demos": len(self.demos),
                                               "n_frames": len(self.frames[0]), "description": self.description}))}
        for i, d in enumerate(self.demos):
            arrays[f"demo{i}_t"] = np.asarray(d.t, float)
            arrays[f"demo{i}_position"] = np.asarray(d.position, float)
            if d.orientation is not None:
                arrays[f"demo{i}_orientation"] = np.asarray(d.orientation, float)
            for p, f in enumerate(self.frames[i]):
                arrays[f"frame{i}_{p}_origin"] = np.asarray(f.origin, float)
                arrays[f"frame{i}_{p}_rotation"] = np.asarray(f.rotation, float)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path) -> "Skill":
        """Read a file written by :meth:`save`; ValueError naming the bad or missing entry otherwise."""
        path = Path(path)
        fix = "regenerate it with Skill.save (bundled skills: write_bundled_skills())"
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: not a kinebridge skill file ({exc}); write one with Skill.save") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: a single .npy array, not a kinebridge skill file (.npz); "
                             "write one with Skill.save")
        with z:
            def entry(key):
                if key not in z.files:
                    raise ValueError(f"{path}: missing {key!r} — the file is incomplete; {fix}")
                try:
                    return z[key]
                except (ValueError, OSError, EOFError) as exc:   # object arrays (pickle), damaged member
                    raise ValueError(f"{path}: {key!r} cannot be read ({exc}); {fix}") from None

            if "meta" not in z.files:
                raise ValueError(f"{path}: no 'meta' entry — not a kinebridge skill file (write one with Skill.save)")
            raw = entry("meta")
            try:
                meta = json.loads(str(raw)) if raw.dtype.kind == "U" and raw.ndim == 0 else None
            except json.JSONDecodeError:
                meta = None
            if not isinstance(meta, dict):
                raise ValueError(f"{path}: 'meta' is not a JSON object string — the file is damaged; {fix}")
            if meta.get("format") != SKILL_FORMAT:
                raise ValueError(f"{path}: 'meta' format {meta.get('format')!r}, expected {SKILL_FORMAT!r}; {fix}")
            for key, kind in (("name", str), ("n_demos", int), ("n_frames", int)):
                v = meta.get(key)
                if not isinstance(v, kind) or isinstance(v, bool) or (kind is int and v < 1):
                    raise ValueError(f"{path}: 'meta' field {key!r} must be "
                                     f"{'a string' if kind is str else 'a positive integer'}, got {v!r}; {fix}")

            def get(key, shape):
                a = entry(key)
                if a.dtype.kind != "f" or a.shape != shape or not np.all(np.isfinite(a)):
                    want = "×".join(str(n) for n in shape) or "scalar"
                    raise ValueError(f"{path}: {key!r} must hold finite floats of shape ({want}), "
                                     f"got {a.dtype} {a.shape}; {fix}")
                return a

            demos, frames = [], []
            for i in range(meta["n_demos"]):
                t = entry(f"demo{i}_t")
                if (t.dtype.kind != "f" or t.ndim != 1 or t.size < 3 or not np.all(np.isfinite(t))
                        or np.any(np.diff(t) <= 0)):
                    raise ValueError(f"{path}: 'demo{i}_t' must hold at least 3 finite, strictly increasing times "
                                     f"(float, shape (T,)), got {t.dtype} {t.shape}; {fix}")
                n = t.size
                pos = get(f"demo{i}_position", (n, 3))
                ori = get(f"demo{i}_orientation", (n, 4)) if f"demo{i}_orientation" in z.files else None
                if ori is not None and np.abs(np.linalg.norm(ori, axis=1) - 1).max() > 1e-6:
                    raise ValueError(f"{path}: 'demo{i}_orientation' must hold unit quaternions (w, x, y, z); {fix}")
                demos.append(Demonstration(t=t, position=pos, orientation=ori))
                row = []
                for p in range(meta["n_frames"]):
                    R = get(f"frame{i}_{p}_rotation", (3, 3))
                    if np.abs(R.T @ R - np.eye(3)).max() > 1e-6 or np.linalg.det(R) < 0:
                        raise ValueError(f"{path}: 'frame{i}_{p}_rotation' is not a proper rotation matrix; {fix}")
                    row.append(TaskFrame(get(f"frame{i}_{p}_origin", (3,)), R))
                frames.append(row)
        if any((d.orientation is None) != (demos[0].orientation is None) for d in demos):
            raise ValueError(f"{path}: some demonstrations have orientations and some do not; {fix}")
        return cls(meta["name"], demos, frames, str(meta.get("description", "")))


def cup_frame(x: float, y: float, z: float, yaw: float) -> TaskFrame:
    """The goal frame of the pouring skill: origin at the cup, z towards the table, turned by ``yaw``."""
    from kinebridge.bench.synthetic_skills import arm_cup_frame
    return arm_cup_frame(x, y, z, yaw)


def pouring_skill() -> Skill:
    """The bundled pour: 6 demonstrations an RM75-B executes with the tool pointing down."""
    from kinebridge.bench.synthetic_skills import arm_pouring_demos
    demos, frames = arm_pouring_demos(n_demos=6, n_points=200, seed=0, duration=4.0)
    return Skill("pour", demos, frames, "lift from a grasp pose, carry to a cup, tilt 69° over it (synthetic, seeded)")


def write_bundled_skills(directory=SKILL_DIR) -> list[Path]:
    """(Re)generate the skill files shipped with kinebridge."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = d / "pour.npz"
    pouring_skill().save(out)
    return [out]


def bundled_skill_names() -> list[str]:
    return sorted(p.stem for p in SKILL_DIR.glob("*.npz"))


def bundled_skill(name: str = "pour") -> Skill:
    path = SKILL_DIR / f"{name}.npz"
    if not path.is_file():
        raise ValueError(f"no bundled skill {name!r}; available: {bundled_skill_names()} (or give a .npz path)")
    return Skill.load(path)


def task_frame_from_pose7(pose7) -> TaskFrame:
    """[x, y, z, qw, qx, qy, qz] → :class:`TaskFrame`."""
    T = rm75.pose7_to_matrix(np.asarray(pose7, float))
    return TaskFrame(T[:3, 3].copy(), T[:3, :3].copy())


def pose7_from_task_frame(f: TaskFrame) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = f.rotation, f.origin
    return rm75.matrix_to_pose7(T)


# --------------------------------------------------------------------------------- planning
class PlannerConfig(BaseModel):
    """Settings of the trajectory planner (the ``[trajectory]`` table feeds these)."""

    model_config = ConfigDict(extra="forbid")

    dt: float = Field(0.01, gt=0.0005, le=0.1, description="joint sample period (s)")
    speed: float = Field(1.0, gt=0.0, le=4.0, description="time scaling of the demonstrated duration")
    chunk_len: int = Field(50, ge=2, le=2000)
    d7: float = Field(rm75.D7_B, gt=0.0, lt=0.5, description="flange length of the RM75 variant (m)")
    max_joint_step: float = Field(0.1, gt=0.0, le=1.0, description="largest IK joint change between samples (rad)")
    start_blend: float = Field(0.2, gt=0.0, le=1.0, description="share of the motion over which the start offset fades")
    rest_ramp: float = Field(0.12, ge=0.0, le=0.5,
                             description="share of the motion at each end over which the phase speed eases to rest")
    n_components: int = Field(6, ge=1, le=30, description="GMM components of the LFE-KMP fit")
    n_ref: int = Field(100, ge=10, le=1000, description="LFE-KMP reference points")
    pos_tol: float = Field(1e-4, gt=0.0, description="largest IK position error accepted (m)")
    rot_tol: float = Field(1e-3, gt=0.0, description="largest IK rotation error accepted (rad)")
    max_slowdown: float = Field(4.0, ge=1.0, le=20.0,
                                description="how many times slower than `speed` a plan may be re-timed to fit the "
                                            "joint limits before it is rejected")


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


class SkillPlanner:
    """LFE-KMP fitted once on ``skill``; :meth:`plan` / :meth:`replan` give joint plans."""

    def __init__(self, skill: Skill, config: PlannerConfig | None = None):
        self.skill = skill
        self.cfg = config or PlannerConfig()
        t = time.perf_counter()
        self.model = LFEKMP(n_components=self.cfg.n_components, n_ref=self.cfg.n_ref).fit(skill.demos, skill.frames)
        self.fit_ms = (time.perf_counter() - t) * 1e3
        self._warm_up()

    def _warm_up(self) -> None:
        """Run the whole pipeline once (spline, geodesics, compiled IK) so the first task is fast."""
        d = self.skill.demos[0]
        r = rm75.ik(np.concatenate([d.position[0], d.orientation[0]]), rm75.Q_HOME, self.cfg.d7)
        if r.ok:
            try:
                self.plan(self.skill.frames[0][1], q_start=r.q, t_start=0.0)
            except PlanError:
                pass

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
        u = u_all[k0:]
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
        q, ok = rm75.ik_path(T, q_start, cfg.d7, max_step=cfg.max_joint_step)
        pe, re = _rot_errors(q, T, cfg.d7)
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
        v = np.abs(np.diff(q, axis=0)) / dt / rm75.QD_MAX
        a = np.abs(np.diff(q, n=2, axis=0)) / dt ** 2 / rm75.QDD_MAX
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
        pose_now = rm75.matrix_to_pose7(rm75.fk(q_start, self.cfg.d7))
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
        pose_here = rm75.matrix_to_pose7(rm75.fk(q_here, self.cfg.d7))
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
