"""The simulated world: a built scene, stepped by MuJoCo, with the arm following joint states.

How the arm moves. The arm is **driven kinematically**: before every physics step the seven
arm joints get the position of the commanded trajectory at the step's start and the velocity
that reaches its position at the step's end, ``qvel = (q(t + h) − q(t)) / h``. MuJoCo then
integrates one step; with the arm's large joint armature and gravity compensation
(:mod:`.arm_model`) the contact impulses from water and objects barely accelerate it, so after
the step it sits on the commanded trajectory (to ~1e-9 rad) and the next step overwrites the
residue. Contacts see a wall moving at the commanded velocity — the water is pushed and
carried by the held mug as by a real one, and the mug pose is exactly ``fk(q) · T_flange_mug``.
Position actuators were the alternative: they would lag the reported states by their servo
dynamics, need gains tuned against the tool's load and still overshoot on the 200 Hz steps —
the real controller already closed that loop; the states it reports are what the world shows.

Following the controller. :meth:`World.follow` queues joint states with their CLOCK_MONOTONIC
stamps (seconds; ``stamp_ns * 1e-9`` of a bus header); :meth:`World.advance_to` steps the
physics up to a time on that clock, the arm on the piecewise-linear interpolant of the queued
states, holding the newest state once time passes it (the usual driver calls
``advance_to(stamp)`` right after ``follow(q, stamp)``). The world's clock is tied to CLOCK_MONOTONIC
at the first ``follow``/``advance_to`` (``epoch_s``); the first state places the arm
(:meth:`set_arm`) if it is more than 1 mrad from where the arm is.

Offline use (data generation faster than real time): :meth:`set_arm` places the arm, carrying
the water inside the held mug along; :meth:`step` runs n physics steps, moving the arm linearly
to a target across them.

All stepping and reading happens under :attr:`World.lock` (an ``RLock``) so a camera thread
can render a consistent state while another thread steps.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque

import numpy as np

from kinebridge.drivers.world.builder import BuiltWorld, build
from kinebridge.drivers.world.spec import SceneSpec

__all__ = ["World"]

_PLACE_TOL = 1e-3       # rad: a first state further than this from the arm places it


class World:
    """A MuJoCo world built from a :class:`SceneSpec` (or an already :class:`BuiltWorld`)."""

    def __init__(self, scene: SceneSpec | BuiltWorld, *, max_queue: int = 4096):
        from kinebridge.drivers.world.gl import load_mujoco

        mujoco = load_mujoco()

        self._mj = mujoco
        self.built = scene if isinstance(scene, BuiltWorld) else build(scene)
        self.scene: SceneSpec = self.built.scene
        self.model = self.built.model
        self.data = mujoco.MjData(self.model)
        self.lock = threading.RLock()
        self._queue: deque[tuple[float, np.ndarray]] = deque(maxlen=max_queue)
        self._stamps: list[float] = []
        self.epoch_s: float | None = None
        self._q_lo = np.asarray(self.scene.arm.q_min, float)
        self._q_hi = np.asarray(self.scene.arm.q_max, float)
        self._hooks: list = []
        self.reset()

    @classmethod
    def random(cls, seed: int, **kwargs) -> "World":
        """``World(SceneSpec.random(seed, **kwargs))``."""
        return cls(SceneSpec.random(seed, **kwargs))

    # ------------------------------------------------------------------------------ state

    @property
    def labels(self) -> tuple[str, ...]:
        """Segmentation label of each id (``labels[id]``): reserved labels, then the objects."""
        return self.built.labels

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        """Simulated time since the scene was built or reset, s."""
        return float(self.data.time)

    @property
    def clock_s(self) -> float | None:
        """The world's time on CLOCK_MONOTONIC (s), once tied to it by follow/advance_to."""
        return None if self.epoch_s is None else self.epoch_s + self.data.time

    @property
    def arm_q(self) -> np.ndarray:
        with self.lock:
            return self.data.qpos[self.built.arm_qpos].copy()

    def reset(self):
        """Back to the built initial state (arm at ``q0``, water in the held mug, objects placed)."""
        mj = self._mj
        with self.lock:
            mj.mj_resetData(self.model, self.data)
            self.data.qpos[:] = self.built.initial_qpos
            mj.mj_forward(self.model, self.data)
            self._queue.clear()
            self._stamps.clear()
            self.epoch_s = None
            for hook in self._hooks:
                hook("reset")

    def add_step_hook(self, hook) -> None:
        """``hook(event)`` after each physics step (``"step"``) and on ``"reset"`` — the scoring
        monitor uses it to accumulate contacts."""
        self._hooks.append(hook)

    def remove_step_hook(self, hook) -> None:
        self._hooks.remove(hook)

    def _check_q(self, q, name="q") -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"{name}: expected 7 finite joint angles in rad, got shape {q.shape}")
        bad = np.flatnonzero((q < self._q_lo - 1e-6) | (q > self._q_hi + 1e-6))
        if bad.size:
            j = int(bad[0])
            raise ValueError(f"{name}: joint {j + 1} = {q[j]:.4f} rad is outside its limits "
                             f"[{self._q_lo[j]:.4f}, {self._q_hi[j]:.4f}] rad")
        return q

    # --------------------------------------------------------------------------- offline

    def set_arm(self, q, carry_water: bool = True) -> None:
        """Place the arm at ``q`` (rad) at rest; water inside the held mug moves with it."""
        mj = self._mj
        q = self._check_q(q)
        with self.lock:
            b, d = self.built, self.data
            inside = self.water_in_tool() if (carry_water and b.particle_bodies.size and b.tool_body >= 0) else None
            T_old = self.pose_of_body(b.tool_body) if inside is not None else None
            d.qpos[b.arm_qpos] = q
            d.qvel[b.arm_dof] = 0.0
            mj.mj_kinematics(self.model, d)
            if inside is not None and inside.any():
                T_new = self.pose_of_body(b.tool_body)
                M = T_new @ np.linalg.inv(T_old)
                for k in np.flatnonzero(inside):
                    body = b.particle_bodies[k]
                    adr = self.model.jnt_qposadr[self.model.body_jntadr[body]]
                    dof = self.model.body_dofadr[body]
                    p_new = M[:3, :3] @ d.xpos[body] + M[:3, 3]
                    d.qpos[adr:adr + 3] += p_new - d.xpos[body]
                    d.qvel[dof:dof + 3] = 0.0
            mj.mj_forward(self.model, d)

    def step(self, n: int = 1, q=None) -> None:
        """``n`` physics steps; with ``q``, the arm moves linearly from where it is to ``q`` over them."""
        if n < 1:
            raise ValueError(f"n: expected a positive number of steps, got {n}")
        with self.lock:
            q_a = self.data.qpos[self.built.arm_qpos].copy()
            q_b = q_a if q is None else self._check_q(q)
            for k in range(n):
                self._physics_step(q_a + (q_b - q_a) * (k / n), q_a + (q_b - q_a) * ((k + 1) / n))
            self._mj.mj_kinematics(self.model, self.data)       # poses of the stepped qpos (mj_step leaves the previous)

    def _physics_step(self, q_now: np.ndarray, q_next: np.ndarray) -> None:
        b, d = self.built, self.data
        d.qpos[b.arm_qpos] = q_now
        d.qvel[b.arm_dof] = (q_next - q_now) / self.model.opt.timestep
        self._mj.mj_step(self.model, d)
        for hook in self._hooks:
            hook("step")

    # ---------------------------------------------------------------- following the controller

    def follow(self, q, stamp_s: float) -> None:
        """Queue the joint state ``q`` (rad) the controller reported at ``stamp_s`` (CLOCK_MONOTONIC, s).

        Stamps must increase. The first state ties the world's clock to CLOCK_MONOTONIC (if
        :meth:`advance_to` has not) and places the arm there if it is elsewhere.
        """
        q = self._check_q(q)
        stamp_s = float(stamp_s)
        if not math.isfinite(stamp_s):
            raise ValueError(f"stamp_s: expected a finite CLOCK_MONOTONIC time in s, got {stamp_s}")
        with self.lock:
            if self._stamps and stamp_s <= self._stamps[-1]:
                raise ValueError(f"stamp_s = {stamp_s:.6f} s is not after the previous state's "
                                 f"{self._stamps[-1]:.6f} s; states must arrive in stamp order")
            if self.epoch_s is None:
                self.epoch_s = stamp_s - self.data.time
            if not self._queue and np.max(np.abs(q - self.arm_q)) > _PLACE_TOL:
                self.set_arm(q)
            if len(self._queue) == self._queue.maxlen:
                self._stamps.pop(0)
            self._queue.append((stamp_s, q))
            self._stamps.append(stamp_s)

    def _target(self, t_clock: float) -> np.ndarray:
        """The commanded arm joints at CLOCK_MONOTONIC time ``t_clock`` (interpolated, held at the ends)."""
        st = self._stamps
        if not st:
            return self.data.qpos[self.built.arm_qpos].copy()
        k = bisect.bisect_right(st, t_clock)
        if k == 0:
            return self._queue[0][1]
        if k == len(st):
            return self._queue[-1][1]
        (t0, q0), (t1, q1) = self._queue[k - 1], self._queue[k]
        return q0 + (q1 - q0) * ((t_clock - t0) / (t1 - t0))

    def advance_to(self, t_s: float) -> int:
        """Step the physics until the world's clock reaches ``t_s`` (CLOCK_MONOTONIC, s); returns
        the number of steps taken (0 if the world is already there)."""
        t_s = float(t_s)
        with self.lock:
            if self.epoch_s is None:
                self.epoch_s = t_s - self.data.time
            h = self.model.opt.timestep
            n = int(math.floor((t_s - self.clock_s) / h + 1e-9))
            for _ in range(max(n, 0)):
                t = self.clock_s
                self._physics_step(self._target(t), self._target(t + h))
            if n > 0:
                self._mj.mj_kinematics(self.model, self.data)   # poses of the stepped qpos (mj_step leaves the previous)
            # forget states that no interpolation will need again
            while len(self._stamps) > 2 and self._stamps[1] <= self.clock_s:
                self._queue.popleft()
                self._stamps.pop(0)
            return max(n, 0)

    # ---------------------------------------------------------------------- ground truth

    def pose_of_body(self, body: int) -> np.ndarray:
        """(4, 4) pose of MuJoCo body ``body`` in the base frame."""
        T = np.eye(4)
        T[:3, :3] = self.data.xmat[body].reshape(3, 3)
        T[:3, 3] = self.data.xpos[body]
        return T

    def flange_pose(self) -> np.ndarray:
        """The flange (4, 4) in the base frame — ``rm75.fk(arm_q, d7)``."""
        with self.lock:
            s = self.built.flange_site
            T = np.eye(4)
            T[:3, :3] = self.data.site_xmat[s].reshape(3, 3)
            T[:3, 3] = self.data.site_xpos[s]
            return T

    def held_pose(self) -> np.ndarray | None:
        """The held mug's frame (4, 4) in the base frame, or None without one."""
        with self.lock:
            return None if self.built.tool_body < 0 else self.pose_of_body(self.built.tool_body)

    def object_poses(self) -> dict[str, np.ndarray]:
        """Each object's frame (4, 4) in the base frame (the drawer's cabinet for a drawer)."""
        with self.lock:
            return {name: self.pose_of_body(b) for name, b in self.built.object_bodies.items()}

    def keypoints(self) -> dict[str, dict[str, np.ndarray]]:
        """Semantic keypoints in the base frame (m): ``{label: {"K_i": xyz, ...}}``, the held mug
        under ``"tool"``."""
        with self.lock:
            x = self.data.site_xpos
            return {label: {k: x[s].copy() for k, s in kps.items()} for label, kps in self.built.keypoint_sites.items()}

    def particles(self) -> np.ndarray:
        """(N, 3) water sphere centres in the base frame."""
        with self.lock:
            return self.data.xpos[self.built.particle_bodies].copy()

    def _inside(self, pts: np.ndarray, T: np.ndarray, r_in: float, z_lo: float, z_hi: float,
                slack: float = 0.0) -> np.ndarray:
        loc = (pts - T[:3, 3]) @ T[:3, :3]
        return (np.hypot(loc[:, 0], loc[:, 1]) < r_in + slack) & (loc[:, 2] > z_lo - slack) & (loc[:, 2] < z_hi + slack)

    def water_in_tool(self) -> np.ndarray:
        """Boolean (N,): which water spheres are inside the held mug (below its rim)."""
        with self.lock:
            b = self.built
            if b.tool_body < 0 or not b.particle_bodies.size:
                return np.zeros(b.particle_bodies.size, bool)
            m = self.scene.tool.mug
            return self._inside(self.data.xpos[b.particle_bodies], self.pose_of_body(b.tool_body), m.inner_radius,
                                0.0, m.height)

    def ground_truth(self) -> dict:
        """Everything a perception test needs, base frame: keypoints, object poses, flange and held
        mug poses, arm joints, water positions, time."""
        with self.lock:
            return {"time": self.time, "arm_q": self.arm_q, "flange": self.flange_pose(), "held": self.held_pose(),
                    "objects": self.object_poses(), "keypoints": self.keypoints(), "particles": self.particles()}
