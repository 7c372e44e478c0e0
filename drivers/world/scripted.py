"""A scripted pour: the joint path of a held-mug pour into a target container, from the world's
ground truth — an oracle for tests, for checking scoring, and for generating demonstrations.

The motion pivots the held mug about its lip, the way a person pours. With the mug held as in
:mod:`.tool` (flange z down, lip K_i on the flange's +y side), tilting the flange by θ about its
own x axis lowers the lip; the lip is kept above the target's mouth while the mug turns, at a
height that keeps the mug's lowest corner above the target's rim,

    z_lip(θ) = z_rim + clearance + max(0, h · cos θ + 0.01),

and the flange follows from the lip: p_flange = p_lip − R(θ) · K_i^flange. Three phases: move
(upright) to the start of the pour, tilt to ``tilt`` rad, hold. Each flange pose is solved with
:func:`kinebridge.kernels.rm75.ik` warm-started from the previous joints, at the state rate.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

__all__ = ["pour_path", "smoothstep"]


def smoothstep(s: float) -> float:
    return s * s * (3.0 - 2.0 * s)


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def pour_path(world, target: str | None = None, *, rate_hz: float = 200.0, move_s: float = 1.5,
              tilt_s: float = 1.5, hold_s: float = 1.5, tilt: float = 2.0, offset=(0.0, 0.015),
              clearance: float = 0.015, yaw: float = 0.0) -> np.ndarray:
    """Joint path (N, 7), one row per 1/``rate_hz`` s, pouring the held mug into ``target``.

    ``offset`` (m, base frame x/y) shifts the lip from the target's mouth centre; ``yaw``
    (rad) turns the pouring direction about the vertical. Raises ValueError if a pose is out
    of reach (error above 1 mm).
    """
    from kinebridge.kernels import rm75

    b = world.built
    if b.tool_body < 0:
        raise ValueError("pour_path: the world has no held mug (ToolSpec.kind = 'mug')")
    target = target if target is not None else world.scene.target
    if target is None:
        raise ValueError("pour_path: name the target (the scene has none)")
    kp = world.keypoints()
    if target not in kp or "K_p1" not in kp[target]:
        raise ValueError(f"pour_path: {target!r} has no mouth keypoint K_p1")
    mouth = kp[target]["K_p1"]
    ki_f = b.tool.keypoints["K_i"]
    h = world.scene.tool.mug.height
    d7 = float(world.scene.arm.d7)
    c, s = np.cos(yaw), np.sin(yaw)
    R0 = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([1.0, -1.0, -1.0])
    off = np.array([offset[0], offset[1], 0.0])

    def lip(th):
        return mouth + off + np.array([0.0, 0.0, clearance + max(0.0, h * np.cos(th) + 0.01)])

    def flange(th):
        T = np.eye(4)
        T[:3, :3] = R0 @ _rx(th)
        T[:3, 3] = lip(th) - T[:3, :3] @ ki_f
        return T

    T_start = world.flange_pose()
    T_app = flange(0.0)
    turn = Slerp([0.0, 1.0], Rotation.from_matrix([T_start[:3, :3], T_app[:3, :3]]))
    poses = []
    n1, n2, n3 = (max(1, int(round(x * rate_hz))) for x in (move_s, tilt_s, hold_s))
    for k in range(n1):
        a = smoothstep((k + 1) / n1)
        T = T_app.copy()
        T[:3, 3] = (1 - a) * T_start[:3, 3] + a * T_app[:3, 3]
        T[:3, :3] = turn([a]).as_matrix()[0]     # slerp from the start orientation to the approach
        poses.append(T)
    for k in range(n2):
        poses.append(flange(tilt * smoothstep((k + 1) / n2)))
    q = world.arm_q
    out = []
    for i, T in enumerate(poses):
        r = rm75.ik(T, q, d7)
        if r.pos_err > 1e-3 or r.rot_err > 1e-2:
            raise ValueError(f"pour_path: pose {i} of {len(poses)} is out of reach (error {r.pos_err * 1e3:.1f} mm); "
                             "move the target closer to the arm")
        q = r.q
        out.append(q)
    out += [q] * n3
    return np.array(out)
