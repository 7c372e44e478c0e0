"""Synthetic 3-D demonstrations with orientation for the benchmarks: random pours into random cups.

The pour generator itself (and the RM75 pouring skill kinebridge ships) is
:mod:`kinebridge.runtime.skills.pour`; this module draws random task frames for it.
Used where a 6-D skill is needed without recordings (the LFE-KMP position + orientation benchmark
and tests). Everything is seeded and deterministic.
"""

from __future__ import annotations

import numpy as np

from kinebridge.kernels.lfe_kmp import TaskFrame
from kinebridge.runtime.skills.pour import (ARM_POUR_OFFSET, ARM_POUR_TILT, POUR_OFFSET, POUR_TILT,  # noqa: F401
                                            TOOL_DOWN, arm_cup_frame, arm_pouring_demos, pour, yaw_matrix)


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
