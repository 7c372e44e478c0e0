"""The pouring skill kinebridge ships: its demonstrations, its cup frame, its task parameters.

The demonstrations are synthetic and seeded (no recordings can be downloaded; a lab replaces them
with its own, `kinebridge skill record|fit`): each starts at its own grasp pose, lifts, travels,
descends beside its own cup and tilts the held object about the cup-facing horizontal axis, the
way VL-MP's pouring skill is demonstrated. The task frames are the start pose and the cup frame
(origin at the cup, z pointing down along the tool's approach, turned by the cup's yaw), as the
bridge layer builds them from keypoints.

Task parameters: ``{"cup": [x, y, z (m), yaw (°)]}`` in the arm's base frame → the goal frame
:func:`arm_cup_frame`.
"""

from __future__ import annotations

import math

import numpy as np

from kinebridge.kernels import quaternion as quat
from kinebridge.kernels.lfe_kmp import Demonstration, TaskFrame

__all__ = ["pour", "yaw_matrix", "arm_cup_frame", "arm_pouring_demos", "pouring_skill", "goal_from_params",
           "TOOL_DOWN", "ARM_POUR_OFFSET", "ARM_POUR_TILT", "POUR_OFFSET", "POUR_TILT"]

POUR_OFFSET = np.array([-0.06, 0.0, 0.12])   # where the pour happens, in the cup frame [m]
POUR_TILT = 1.9                              # final tilt about the cup frame's y axis [rad]


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _axis_angle(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def pour(start: TaskFrame, cup: TaskFrame, n_points: int = 200, duration: float = 2.0, wobble: float = 0.0,
         rng=None, offset=POUR_OFFSET, tilt_max: float = POUR_TILT, tilt_axis=(0.0, 1.0, 0.0),
         smooth_tilt: bool = False) -> Demonstration:
    """One pour from the ``start`` pose to the ``cup`` frame; ``wobble`` adds smooth noise (m, rad).

    ``offset`` is where the pour happens in the cup frame, ``tilt_max`` the final tilt (rad) about
    ``tilt_axis`` (cup frame); ``smooth_tilt`` ends the tilt at rest (smoothstep) instead of at full
    tilt rate."""
    rng = np.random.default_rng(rng)
    t = np.linspace(duration / n_points, duration, n_points)
    u = (t - t[0]) / (t[-1] - t[0])
    s = u * u * (3 - 2 * u)                                   # smoothstep progress
    p0 = np.asarray(start.origin, float)
    p1 = cup.origin + cup.rotation @ np.asarray(offset, float)
    lift = 0.10 * np.sin(np.pi * u)                           # arc over the table
    pos = (1 - s)[:, None] * p0 + s[:, None] * p1
    pos[:, 2] += lift
    q0 = quat.from_matrix(start.rotation)
    q_cup = quat.from_matrix(cup.rotation)
    ut = np.clip((u - 0.6) / 0.4, 0, 1)
    tilt = (ut * ut * (3 - 2 * ut) if smooth_tilt else ut ** 2) * tilt_max   # tilt during the last 40 %
    q_goal = quat.mul(q_cup[None], np.stack([_axis_angle(tilt_axis, a) for a in tilt]))
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


TOOL_DOWN = np.diag([1.0, -1.0, -1.0])          # flange z pointing at the table
ARM_POUR_OFFSET = np.array([-0.05, 0.0, -0.10])  # cup frame (z down): 10 cm above the cup, 5 cm behind it
ARM_POUR_TILT = 1.2                              # rad about the cup frame's x axis


def arm_cup_frame(x: float, y: float, z: float, yaw: float) -> TaskFrame:
    """The cup frame an RM75 skill uses: origin at the cup, z pointing down (the tool's approach)."""
    return TaskFrame(np.array([x, y, z], float), yaw_matrix(yaw) @ TOOL_DOWN)


def arm_pouring_demos(n_demos: int = 6, n_points: int = 200, seed: int = 0, wobble: float = 0.003,
                      duration: float = 3.0):
    """Pours an RM75-B can execute with the tool pointing down: start poses and cups within reach.

    Same motion as :func:`pour` (lift, travel, descend beside the cup, tilt during the last 40 %),
    with frames in the arm's base frame: the start is a grasp pose, the cup frame
    :func:`arm_cup_frame`. Returns (demos, frames per demo)."""
    rng = np.random.default_rng(seed)
    demos, frames = [], []
    for _ in range(n_demos):
        start = TaskFrame(np.array([rng.uniform(0.30, 0.40), rng.uniform(-0.22, -0.12), rng.uniform(0.15, 0.22)]),
                          yaw_matrix(rng.uniform(-0.3, 0.3)) @ TOOL_DOWN)
        cup = arm_cup_frame(rng.uniform(0.32, 0.45), rng.uniform(0.05, 0.20), rng.uniform(0.08, 0.12),
                            rng.uniform(-0.4, 0.4))
        demos.append(pour(start, cup, n_points, duration=duration, wobble=wobble, rng=rng, offset=ARM_POUR_OFFSET,
                          tilt_max=ARM_POUR_TILT, tilt_axis=(1.0, 0.0, 0.0), smooth_tilt=True))
        frames.append([start, cup])
    return demos, frames


def pouring_skill():
    """The bundled pour: 6 demonstrations an RM75-B executes with the tool pointing down."""
    from kinebridge.runtime.skills.format import Skill
    demos, frames = arm_pouring_demos(n_demos=6, n_points=200, seed=0, duration=4.0)
    return Skill("pour", demos, frames, "lift from a grasp pose, carry to a cup, tilt 69° over it (synthetic, seeded)")


def goal_from_params(params: dict) -> TaskFrame:
    """``{"cup": [x, y, z, yaw_deg]}`` → the goal frame; ValueError naming what is wrong."""
    cup = params.get("cup") if isinstance(params, dict) else None
    if (not isinstance(cup, list) or len(cup) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in cup)):
        raise ValueError(f"the pour skill takes params {{'cup': [x, y, z (m), yaw (°)]}} (4 finite numbers), "
                         f"got {params!r}")
    return arm_cup_frame(cup[0], cup[1], cup[2], math.radians(cup[3]))
