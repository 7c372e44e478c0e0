"""Synthetic 3-D demonstrations with orientation: a pour from a source pose into a target cup.

Used where a 6-D skill is needed without recordings (the LFE-KMP position + orientation benchmark
and tests). Each demonstration starts at its own grasp pose, lifts, travels, descends next to its
own cup and tilts the held object about the cup-facing horizontal axis. The task frames are the
start pose and the cup (origin at the cup, yaw of the cup), the way VL-MP's bridge layer builds
them from keypoints. Everything is seeded and deterministic.
"""

from __future__ import annotations

import numpy as np

from kinebridge.kernels import quaternion as quat
from kinebridge.kernels.lfe_kmp import Demonstration, TaskFrame

POUR_OFFSET = np.array([-0.06, 0.0, 0.12])   # where the pour happens, in the cup frame [m]
POUR_TILT = 1.9                              # final tilt about the cup frame's y axis [rad]


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _axis_angle(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def pour(start: TaskFrame, cup: TaskFrame, n_points: int = 200, duration: float = 2.0, wobble: float = 0.0,
         rng=None) -> Demonstration:
    """One pour from the ``start`` pose to the ``cup`` frame; ``wobble`` adds smooth noise (m, rad)."""
    rng = np.random.default_rng(rng)
    t = np.linspace(duration / n_points, duration, n_points)
    u = (t - t[0]) / (t[-1] - t[0])
    s = u * u * (3 - 2 * u)                                   # smoothstep progress
    p0 = np.asarray(start.origin, float)
    p1 = cup.origin + cup.rotation @ POUR_OFFSET
    lift = 0.10 * np.sin(np.pi * u)                           # arc over the table
    pos = (1 - s)[:, None] * p0 + s[:, None] * p1
    pos[:, 2] += lift
    q0 = quat.from_matrix(start.rotation)
    q_cup = quat.from_matrix(cup.rotation)
    tilt = np.clip((u - 0.6) / 0.4, 0, 1) ** 2 * POUR_TILT    # tilt during the last 40 %
    q_goal = quat.mul(q_cup[None], np.stack([_axis_angle([0, 1, 0], a) for a in tilt]))
    rel = quat.log_at(q0[None], q_goal)                        # slerp-like blend from q0 towards the goal
    q = quat.exp_at(np.broadcast_to(q0, (n_points, 4)), s[:, None] * rel)
    if wobble:
        k = np.arange(1, 4)
        phase = rng.uniform(0, 2 * np.pi, (2, 3, 3))
        amp = rng.normal(0, wobble, (2, 3, 3)) / k[:, None]
        env = np.sin(np.pi * u)[:, None]                      # vanishes at both ends
        pos += env * np.einsum("kd,tk->td", amp[0], np.sin(np.pi * np.outer(u, k) + phase[0, :, 0]))
        drot = env * np.einsum("kd,tk->td", amp[1], np.sin(np.pi * np.outer(u, k) + phase[1, :, 0]))
        q = quat.exp_at(q, 0.5 * drot)
    return Demonstration(t=t, position=pos, orientation=quat.make_continuous(q))


def random_frames(rng) -> list[TaskFrame]:
    """A start pose (grasp, gripper pointing down, random yaw) and a cup frame (random position, yaw)."""
    start = TaskFrame(np.array([rng.uniform(0.35, 0.5), rng.uniform(-0.25, -0.1), rng.uniform(0.05, 0.1)]),
                      yaw_matrix(rng.uniform(-0.4, 0.4)) @ np.diag([1.0, -1.0, -1.0]))
    cup = TaskFrame(np.array([rng.uniform(0.35, 0.55), rng.uniform(0.1, 0.3), 0.08]), yaw_matrix(rng.uniform(-0.6, 0.6)))
    return [start, cup]


def pouring_demos(n_demos: int = 6, n_points: int = 200, seed: int = 0, wobble: float = 0.004):
    """``n_demos`` pours with random start poses and cups; returns (demos, frames per demo)."""
    rng = np.random.default_rng(seed)
    demos, frames = [], []
    for _ in range(n_demos):
        f = random_frames(rng)
        demos.append(pour(f[0], f[1], n_points, wobble=wobble, rng=rng))
        frames.append(f)
    return demos, frames
