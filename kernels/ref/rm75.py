"""Plain-NumPy reference for :mod:`kinebridge.kernels.rm75` (tests and speed ratios only).

Written straight from the RM75 MDH table (realman-protocol.md §3.1) with generic 4×4 matrices:
T_i = Rx(α_{i-1}) · Tx(a_{i-1}) · Rz(θ_i + offset_i) · Tz(d_i), flange = T_1 ⋯ T_7. The Jacobian is
built from the accumulated frames, and the IK is a textbook damped-least-squares loop with
``np.linalg.solve`` — no limit handling beyond clipping, no null space, no restarts. Same units and
conventions as the compiled module (SI, RealMan Euler R = Rz·Ry·Rx, w-first quaternions); no
input validation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MDH_ALPHA", "MDH_A", "mdh_d", "fk", "fk_frames", "jacobian", "rpy_to_matrix", "matrix_to_rpy",
           "rotation_log", "ik"]

MDH_ALPHA = np.radians([0.0, -90.0, 90.0, -90.0, 90.0, -90.0, 90.0])   # α_{i-1}
MDH_A = np.zeros(7)                                                      # a_{i-1}, m
MDH_OFFSET = np.zeros(7)


def mdh_d(d7: float = 0.144) -> np.ndarray:
    """d_i in m for the flange length d7."""
    return np.array([0.2405, 0.0, 0.256, 0.0, 0.210, 0.0, d7])


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0, 0.0], [0.0, c, -s, 0.0], [0.0, s, c, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _rz(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _trans(x, y, z):
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def fk_frames(q, d7: float = 0.144) -> np.ndarray:
    """(8, 4, 4): base (identity), then the frame of every joint i = 1..7 (the last is the flange)."""
    d = mdh_d(d7)
    frames = [np.eye(4)]
    for i in range(7):
        Ti = _rx(MDH_ALPHA[i]) @ _trans(MDH_A[i], 0.0, 0.0) @ _rz(q[i] + MDH_OFFSET[i]) @ _trans(0.0, 0.0, d[i])
        frames.append(frames[-1] @ Ti)
    return np.stack(frames)


def fk(q, d7: float = 0.144) -> np.ndarray:
    """Flange pose (4, 4)."""
    return fk_frames(np.asarray(q, dtype=np.float64), d7)[-1]


def jacobian(q, d7: float = 0.144) -> np.ndarray:
    """Geometric Jacobian (6, 7) [v; ω] in the base frame: column i = [z_i × (p_e − p_i); z_i]."""
    F = fk_frames(np.asarray(q, dtype=np.float64), d7)
    pe = F[-1, :3, 3]
    J = np.empty((6, 7))
    for i in range(7):
        z = F[i + 1, :3, 2]
        p = F[i + 1, :3, 3]
        J[:3, i] = np.cross(z, pe - p)
        J[3:, i] = z
    return J


def rpy_to_matrix(rpy) -> np.ndarray:
    """R = Rz(rz) Ry(ry) Rx(rx) as a product of the three elementary rotations."""
    rx, ry, rz = rpy
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    Ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    Rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return Rz @ Ry @ Rx


def matrix_to_rpy(R) -> np.ndarray:
    """Inverse of :func:`rpy_to_matrix` away from gimbal lock (rz = 0 there)."""
    cy = np.hypot(R[0, 0], R[1, 0])
    ry = np.arctan2(-R[2, 0], cy)
    if cy > 1e-9:
        return np.array([np.arctan2(R[2, 1], R[2, 2]), ry, np.arctan2(R[1, 0], R[0, 0])])
    return np.array([np.arctan2(np.sign(-R[2, 0]) * R[0, 1], R[1, 1]), ry, 0.0])


def rotation_log(R) -> np.ndarray:
    """Rotation vector of R via the eigenvector of R for eigenvalue 1 (axis) and the trace (angle)."""
    c = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    s = np.linalg.norm(v)
    theta = np.arctan2(s, c)
    if s > 1e-6 or c > 0.0:
        return v * (theta / s) if s > 0.0 else np.zeros(3)
    w, V = np.linalg.eig(R)
    axis = np.real(V[:, np.argmin(np.abs(w - 1.0))])
    if axis @ v < 0.0:
        axis = -axis
    return theta * axis / np.linalg.norm(axis)


def ik(T_target, q_seed, d7: float = 0.144, tol_pos: float = 1e-7, tol_rot: float = 1e-6,
       max_iter: int = 100, damping: float = 1e-6, q_min=None, q_max=None):
    """Textbook DLS: dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e, e = [p* − p; log(R* Rᵀ)], clipped to the limits.

    Returns (q, ok, pos_err, rot_err, iterations).
    """
    q = np.array(q_seed, dtype=np.float64)
    for it in range(max_iter + 1):
        T = fk(q, d7)
        e = np.concatenate([T_target[:3, 3] - T[:3, 3], rotation_log(T_target[:3, :3] @ T[:3, :3].T)])
        pe, re = np.linalg.norm(e[:3]), np.linalg.norm(e[3:])
        if pe <= tol_pos and re <= tol_rot:
            return q, True, pe, re, it
        if it == max_iter:
            break
        J = jacobian(q, d7)
        dq = J.T @ np.linalg.solve(J @ J.T + damping * np.eye(6), e)
        step = np.abs(dq).max()
        if step > 0.35:
            dq *= 0.35 / step
        q = q + dq
        if q_min is not None:
            q = np.clip(q, q_min, q_max)
    return q, False, pe, re, max_iter
