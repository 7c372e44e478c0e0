"""RealMan RM75 kinematics: forward kinematics, geometric Jacobian, damped-least-squares IK.

SI units everywhere (radians, metres, rad/s). The arm is the RM75 in RealMan's modified DH (MDH)
convention (realman-protocol.md §3.1): a_{i-1} = 0 for every joint,

    α_{i-1} = [0, −90, 90, −90, 90, −90, 90]°,   d = [240.5, 0, 256, 0, 210, 0, d7] mm, offsets 0,
    T_i = Rx(α_{i-1}) · Tx(a_{i-1}) · Rz(θ_i) · Tz(d_i),       T_flange = T_1 T_2 … T_7,

with d7 = 144 mm (RM75-B) or 172.5 mm (RM75-6F). Because every α is 0 or ±90°, one link step is a
column update of the running rotation R = [r0 r1 r2] (c = cos θ_i, s = sin θ_i, σ = sin α_{i-1}):

    α = 0:   r0' = c r0 + s r1,    r1' = −s r0 + c r1,    r2' = r2
    α = σ·90°: r0' = c r0 + σ s r2,  r1' = −s r0 + σ c r2,  r2' = −σ r1
    p' = p + d_i r2'                 (joint axis z_i = r2', joint origin p_i = p')

so the compiled FK is one sin/cos pair and ~30 flops per joint, with no 4×4 products. The
geometric Jacobian of the flange (base frame, rows [v; ω]) is J_i = [z_i × (p_e − p_i); z_i].

Orientation conventions: RealMan Euler angles are roll-pitch-yaw with R = Rz(rz)·Ry(ry)·Rx(rx)
("pose6" = [x, y, z, rx, ry, rz]); quaternions are w-first like :mod:`kinebridge.kernels.quaternion`
("pose7" = [x, y, z, w, qx, qy, qz], w ≥ 0).

IK (:func:`ik`, :func:`ik_path`, :func:`ik_solve_into`) is damped least squares on the 6-D pose
error e = [p* − p; log(R* Rᵀ)] (rotation error as a base-frame rotation vector):

    dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e  +  (I − Jᵀ (J Jᵀ + ε I)⁻¹ J) z,
    z  = k_null (q_pref − q) + k_lim · (push out of the band within 10° of a joint limit),
    λ² = λ_LM² ‖e‖² + λ_max² (1 − σ_min²/σ_s²)₊ · min(1, ‖e‖_w / 1 cm)
         (error-based Levenberg–Marquardt damping plus Nakamura/Chiaverini damping near
          singularities; λ_LM² = 1e-2, λ_max = 0.05, σ_s = 0.04, ‖e‖_w = ‖e_p‖ + 0.1 m·‖e_r‖),

the 6×6 systems solved by an inline Cholesky (no inverse). σ_min² (smallest eigenvalue of J Jᵀ)
is estimated by one inverse iteration per IK iteration on the projector's factor, its vector
carried over between iterations and calls. The singularity damping fades out linearly below a
1 cm error, so it shapes the path of the iteration but not its end point (damping that stayed on
would stall the last digits near singularities). The null-space term uses a (nearly) exact
projector, so it never biases the converged pose. Each step is scaled to ‖dq‖∞ ≤ 0.35 rad and
clamped into [Q_MIN + margin, Q_MAX − margin]; a joint clamped by a step sits out the next
iteration (its Jacobian column is zeroed), then rejoins. A solve stops at the tolerances, after
``max_iter`` iterations, or when the error has not dropped by 1 % in 12 iterations (unreachable
targets cost ~15–30 iterations, not 100), and returns the lowest-error configuration it visited.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from kinebridge.kernels import checks
from kinebridge.kernels import quaternion as _quat

__all__ = [
    "D7_B", "D7_6F", "Q_MIN", "Q_MAX", "QD_MAX", "QDD_MAX", "Q_HOME", "RM75Model", "IKResult",
    "fk", "fk_pose", "fk_quat", "fk_batch", "jacobian",
    "rpy_to_matrix", "matrix_to_rpy", "pose6_to_matrix", "matrix_to_pose6", "pose7_to_matrix",
    "matrix_to_pose7", "quat_to_matrix", "matrix_to_quat",
    "ik", "ik_path", "ik_solve_into", "ik_workspace", "W_ROWS", "fk_into",
]

# ------------------------------------------------------------------------------------ constants

D1, D3, D5 = 0.2405, 0.256, 0.210   # m, MDH d_1, d_3, d_5 (d_2 = d_4 = d_6 = 0)
D7_B = 0.144                        # m, d_7 of the RM75-B (flange without force sensor)
D7_6F = 0.1725                      # m, d_7 of the RM75-6F (six-axis force sensor in the flange)

_DEG = math.pi / 180.0
Q_MAX = np.array([178.0, 130.0, 178.0, 135.0, 178.0, 128.0, 360.0]) * _DEG    # rad
Q_MIN = -Q_MAX                                                                   # rad
QD_MAX = np.array([180.0, 180.0, 225.0, 225.0, 225.0, 225.0, 225.0]) * _DEG    # rad/s
QDD_MAX = np.full(7, 600.0 * _DEG)                  # rad/s², the controller default 600 °/s²
#: Preferred posture [0, 30, 0, 60, 0, 45, 0]°: elbow bent 60° and wrist bent 45° (both far from
#: the q4 = 0 / q6 = 0 singularities and from their limits), shoulder tilted 30° so the wrist centre
#: is well off the J1 axis (smallest singular value of J: 0.09); every joint is at least 70° from
#: its limit. The flange is then 0.44 m in front of the base at 0.36 m height with the tool axis
#: pointing forward-down at 45° — the middle of the tabletop workspace, so restarts from here
#: reach most targets in a few iterations.
Q_HOME = np.array([0.0, 30.0, 0.0, 60.0, 0.0, 45.0, 0.0]) * _DEG
for _a in (Q_MIN, Q_MAX, QD_MAX, QDD_MAX, Q_HOME):
    _a.flags.writeable = False

SEED_LIMIT_TOL = 1e-4   # rad, how far outside [Q_MIN, Q_MAX] an IK seed may be (wire rounding)

# IK tuning (see the module docstring)
_EPS_PROJ = 1e-10       # regulariser of the null-space projector's J Jᵀ
_LAMBDA_REUSE2 = 1e-9   # λ² below which the task step reuses the projector's factor (J Jᵀ + ε I)
_SIGMA_S2 = 0.04 ** 2   # σ_min² below which singularity damping starts (σ in m/rad units of J)
_LAMBDA_MAX2 = 0.05 ** 2
_LAMBDA_LM2 = 1e-2      # λ² += 1e-2 ‖e‖²: Levenberg–Marquardt damping for far-away starts
_SING_ERR_REF = 1e-2  # m, weighted error below which the singularity damping fades out linearly
_STEP_MAX = 0.35        # rad, max ‖dq‖∞ per iteration
_LIM_BAND = 10.0 * _DEG  # rad, limit-avoidance band
_LIM_GAIN = 0.2
_ROT_WEIGHT = 0.1       # m/rad, characteristic length to compare position and rotation errors
_STALL_ITERS = 12       # stop when the error has not improved by 1 % in this many iterations


@dataclass(frozen=True)
class RM75Model:
    """One RM75 variant: flange length ``d7`` (m) and joint limits (rad, rad/s, rad/s²).

    The limits are the same for both variants (realman-protocol.md §3.2); the IK always uses
    :data:`Q_MIN`/:data:`Q_MAX`. The methods are the module functions with this ``d7``.
    """

    d7: float = D7_B
    q_min: tuple = tuple(Q_MIN)
    q_max: tuple = tuple(Q_MAX)
    qd_max: tuple = tuple(QD_MAX)
    qdd_max: tuple = tuple(QDD_MAX)

    @classmethod
    def for_variant(cls, variant: str) -> "RM75Model":
        """``"B"`` (d7 = 0.144 m) or ``"6F"`` (d7 = 0.1725 m, six-axis force sensor flange)."""
        key = str(variant).upper().removeprefix("RM75-").removeprefix("RM75")
        if key == "B":
            return cls(d7=D7_B)
        if key == "6F":
            return cls(d7=D7_6F)
        raise ValueError(f"variant: expected 'B' or '6F', got {variant!r}")

    def fk(self, q) -> np.ndarray:
        """:func:`fk` with this variant's d7."""
        return fk(q, self.d7)

    def fk_pose(self, q) -> np.ndarray:
        """:func:`fk_pose` with this variant's d7."""
        return fk_pose(q, self.d7)

    def jacobian(self, q) -> np.ndarray:
        """:func:`jacobian` with this variant's d7."""
        return jacobian(q, self.d7)

    def ik(self, target, q_seed, **kwargs) -> "IKResult":
        """:func:`ik` with this variant's d7."""
        return ik(target, q_seed, self.d7, **kwargs)

    def ik_path(self, targets, q_seed, **kwargs):
        """:func:`ik_path` with this variant's d7."""
        return ik_path(targets, q_seed, self.d7, **kwargs)


# ------------------------------------------------------------------------------- compiled cores

# Every kernel here is compiled with FMA contraction only (a·b + c in one rounding): no
# reassociation, no finite-math assumptions. The small helpers are inlined into their callers at
# Numba-IR level (a call between separately compiled Numba functions cannot be inlined by LLVM and
# costs reference counting on every array argument).
_FMA = {"contract"}

# sin/cos: x = k·π/2 + r with |r| ≤ π/4 (Cody–Waite, π/2 split so that k·_PIO2_HI is exact for
# |k| < 2¹⁹), then the Taylor series of sin r to r¹⁷ and of cos r to r¹⁸ (truncation < 1e-19 on
# |r| ≤ π/4) — with FMA contraction about 2.5× faster than two libm calls over the joint range
# (as fast for small arguments) and within 1 ulp of them.
_PIO2_HI = 1.5707963267341256        # π/2 rounded to 34 significant bits
_PIO2_LO = 6.077100506506192e-11     # π/2 − _PIO2_HI
_TWO_OVER_PI = 2.0 / math.pi
_SIN = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 9))   # −1/3!, 1/5!, …, 1/17!
_COS = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(1, 10))      # −1/2!, 1/4!, …, −1/18!
_S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8 = _SIN
_C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9 = _COS


@njit(cache=True, fastmath=_FMA, inline="always")
def _sincos(x):
    """(sin x, cos x) in one range reduction; libm for |x| > 1e5."""
    if not abs(x) < 1e5:
        return math.sin(x), math.cos(x)
    k = math.floor(x * _TWO_OVER_PI + 0.5)
    r = (x - k * _PIO2_HI) - k * _PIO2_LO
    r2 = r * r
    # sin r = r + r³ Σ_k S_k r^(2k−2),  cos r = 1 + r² Σ_k C_k r^(2k−2)   (Horner in r²)
    ts = _S5 + r2 * (_S6 + r2 * (_S7 + r2 * _S8))
    s = r + r * r2 * (_S1 + r2 * (_S2 + r2 * (_S3 + r2 * (_S4 + r2 * ts))))
    tc = _C5 + r2 * (_C6 + r2 * (_C7 + r2 * (_C8 + r2 * _C9)))
    c = 1.0 + r2 * (_C1 + r2 * (_C2 + r2 * (_C3 + r2 * (_C4 + r2 * tc))))
    # quadrant n = k mod 4: (sin, cos) = (s, c), (c, −s), (−s, −c), (−c, s) — as selects, not branches
    n = int(k) & 3
    odd = (n & 1) != 0
    sin_x = c if odd else s
    cos_x = s if odd else c
    sin_x = -sin_x if (n & 2) != 0 else sin_x
    cos_x = -cos_x if ((n + 1) & 2) != 0 else cos_x
    return sin_x, cos_x


# Rows of the (W_ROWS, 8) float64 workspace W shared by the compiled routines (no views are made:
# slicing/reshaping inside a hot loop costs more than the arithmetic here).
_W_AXES = 0     # rows 0..6: joint axis z_i in cols 0..2, joint origin p_i in cols 3..5
_W_J = 7        # rows 7..12: Jacobian (6 × 7)
_W_A = 13       # rows 13..18: J Jᵀ (lower triangle)
_W_L = 19       # rows 19..24: Cholesky factor (strict lower triangle, 1/L_jj in column 6)
_W_Y = 25       # right-hand side / solution of the 6×6 solves (6)
_W_V = 26       # inverse-iteration vector v (6)
_W_Z = 27       # null-space motion z (7)
_W_DQ = 28      # step dq (7)
_W_LOCK = 29    # joint clamped at a bound by the last step (0/1) (7)
_W_BEST = 30    # lowest-error configuration so far (7)
W_ROWS = 31


@njit(cache=True, fastmath=_FMA, inline="always")
def _chain(q, d7, W):
    """Flange pose of the MDH chain as 12 scalars (columns r0, r1, r2 of R, then p).

    With a workspace ``W`` (not None) the joint axes z_i and origins p_i are stored in its rows 0..6.
    """
    # joint 1 (α0 = 0) from the identity: R = Rz(θ1), p = d1 ẑ
    s, c = _sincos(q[0])
    r0x, r0y, r0z = c, s, 0.0
    r1x, r1y, r1z = -s, c, 0.0
    r2x, r2y, r2z = 0.0, 0.0, 1.0
    px, py, pz = 0.0, 0.0, D1
    if W is not None:
        a = _W_AXES
        W[a, 0], W[a, 1], W[a, 2], W[a, 3], W[a, 4], W[a, 5] = r2x, r2y, r2z, px, py, pz
    for i in range(1, 7):
        sg = -1.0 if i % 2 == 1 else 1.0            # σ = sin α_{i-1}: −90, 90, −90, 90, −90, 90
        s, c = _sincos(q[i])
        # r0' = c r0 + σ s r2,  r1' = −s r0 + σ c r2,  r2' = −σ r1
        ss = sg * s
        sc = sg * c
        n0x = c * r0x + ss * r2x
        n0y = c * r0y + ss * r2y
        n0z = c * r0z + ss * r2z
        n1x = sc * r2x - s * r0x
        n1y = sc * r2y - s * r0y
        n1z = sc * r2z - s * r0z
        r2x, r2y, r2z = -sg * r1x, -sg * r1y, -sg * r1z
        r0x, r0y, r0z = n0x, n0y, n0z
        r1x, r1y, r1z = n1x, n1y, n1z
        # p' = p + d_i r2'   (d_2 = d_4 = d_6 = 0)
        if i == 2:
            px, py, pz = px + D3 * r2x, py + D3 * r2y, pz + D3 * r2z
        elif i == 4:
            px, py, pz = px + D5 * r2x, py + D5 * r2y, pz + D5 * r2z
        elif i == 6:
            px, py, pz = px + d7 * r2x, py + d7 * r2y, pz + d7 * r2z
        if W is not None:
            a = _W_AXES + i
            W[a, 0], W[a, 1], W[a, 2], W[a, 3], W[a, 4], W[a, 5] = r2x, r2y, r2z, px, py, pz
    return r0x, r0y, r0z, r1x, r1y, r1z, r2x, r2y, r2z, px, py, pz


@njit(cache=True, fastmath=_FMA)
def fk_into(q, d7, T):
    """T (4, 4) ← flange pose of joint vector q (for compiled callers; no validation)."""
    r0x, r0y, r0z, r1x, r1y, r1z, r2x, r2y, r2z, px, py, pz = _chain(q, d7, None)
    T[0, 0], T[0, 1], T[0, 2], T[0, 3] = r0x, r1x, r2x, px
    T[1, 0], T[1, 1], T[1, 2], T[1, 3] = r0y, r1y, r2y, py
    T[2, 0], T[2, 1], T[2, 2], T[2, 3] = r0z, r1z, r2z, pz
    T[3, 0], T[3, 1], T[3, 2], T[3, 3] = 0.0, 0.0, 0.0, 1.0


@njit(cache=True, fastmath=_FMA)
def _fk_one(q, d7):
    """Flange pose (4, 4) of q (7,); T[3, 3] = 0 flags a non-finite q (one call does both)."""
    T = np.empty((4, 4))
    for i in range(7):
        if not math.isfinite(q[i]):
            T[:] = 0.0
            return T
    fk_into(q, d7, T)
    return T


@njit(cache=True, fastmath=_FMA)
def _all_finite(x):
    for i in range(x.shape[0]):
        if not math.isfinite(x[i]):
            return False
    return True


@njit(cache=True, fastmath=_FMA)
def _fk_batch(Q, d7):
    out = np.empty((Q.shape[0], 4, 4))
    for n in range(Q.shape[0]):
        r0x, r0y, r0z, r1x, r1y, r1z, r2x, r2y, r2z, px, py, pz = _chain(Q[n], d7, None)
        out[n, 0, 0], out[n, 0, 1], out[n, 0, 2], out[n, 0, 3] = r0x, r1x, r2x, px
        out[n, 1, 0], out[n, 1, 1], out[n, 1, 2], out[n, 1, 3] = r0y, r1y, r2y, py
        out[n, 2, 0], out[n, 2, 1], out[n, 2, 2], out[n, 2, 3] = r0z, r1z, r2z, pz
        out[n, 3, 0], out[n, 3, 1], out[n, 3, 2], out[n, 3, 3] = 0.0, 0.0, 0.0, 1.0
    return out


@njit(cache=True, fastmath=_FMA, inline="always")
def _rpy_from_matrix_s(r00, r10, r20, r01, r11, r21, r22):
    # R = Rz(rz) Ry(ry) Rx(rx):  R20 = −sin ry,  R21 = cos ry sin rx,  R22 = cos ry cos rx,
    #                            R10 = sin rz cos ry,  R00 = cos rz cos ry
    cy = math.sqrt(r00 * r00 + r10 * r10)
    ry = math.atan2(-r20, cy)
    if cy > 1e-9:
        return math.atan2(r21, r22), ry, math.atan2(r10, r00)
    # gimbal lock (ry = ±90°): only rx ∓ rz is defined; take rz = 0, then R01 = sin ry sin rx, R11 = cos rx
    sy = 1.0 if r20 < 0.0 else -1.0
    return math.atan2(sy * r01, r11), ry, 0.0


@njit(cache=True, fastmath=_FMA)
def _fk_pose(Q, d7):
    out = np.empty((Q.shape[0], 6))
    for n in range(Q.shape[0]):
        r0x, r0y, r0z, r1x, r1y, r1z, r2x, r2y, r2z, px, py, pz = _chain(Q[n], d7, None)
        rx, ry, rz = _rpy_from_matrix_s(r0x, r0y, r0z, r1x, r1y, r1z, r2z)
        out[n, 0], out[n, 1], out[n, 2] = px, py, pz
        out[n, 3], out[n, 4], out[n, 5] = rx, ry, rz
    return out


@njit(cache=True, fastmath=_FMA)
def _rpy_to_matrix(rpy):
    # R = Rz(rz) Ry(ry) Rx(rx), written out
    n = rpy.shape[0]
    out = np.empty((n, 3, 3))
    for i in range(n):
        sx, cx = _sincos(rpy[i, 0])
        sy, cy = _sincos(rpy[i, 1])
        sz, cz = _sincos(rpy[i, 2])
        out[i, 0, 0] = cz * cy
        out[i, 0, 1] = cz * sy * sx - sz * cx
        out[i, 0, 2] = cz * sy * cx + sz * sx
        out[i, 1, 0] = sz * cy
        out[i, 1, 1] = sz * sy * sx + cz * cx
        out[i, 1, 2] = sz * sy * cx - cz * sx
        out[i, 2, 0] = -sy
        out[i, 2, 1] = cy * sx
        out[i, 2, 2] = cy * cx
    return out


@njit(cache=True, fastmath=_FMA)
def _matrix_to_rpy(R):
    n = R.shape[0]
    out = np.empty((n, 3))
    for i in range(n):
        out[i, 0], out[i, 1], out[i, 2] = _rpy_from_matrix_s(R[i, 0, 0], R[i, 1, 0], R[i, 2, 0], R[i, 0, 1],
                                                             R[i, 1, 1], R[i, 2, 1], R[i, 2, 2])
    return out


@njit(cache=True, fastmath=_FMA, inline="always")
def _jacobian_into(q, d7, W):
    """W rows 7..12 ← geometric flange Jacobian J_i = [z_i × (p_e − p_i); z_i]; returns the flange pose."""
    pose = _chain(q, d7, W)
    pex, pey, pez = pose[9], pose[10], pose[11]
    for i in range(7):
        a = _W_AXES + i
        zx, zy, zz = W[a, 0], W[a, 1], W[a, 2]
        dx, dy, dz = pex - W[a, 3], pey - W[a, 4], pez - W[a, 5]
        W[_W_J + 0, i] = zy * dz - zz * dy
        W[_W_J + 1, i] = zz * dx - zx * dz
        W[_W_J + 2, i] = zx * dy - zy * dx
        W[_W_J + 3, i] = zx
        W[_W_J + 4, i] = zy
        W[_W_J + 5, i] = zz
    return pose


@njit(cache=True, fastmath=_FMA)
def _jacobian(q, d7):
    W = np.empty((W_ROWS, 8))
    _jacobian_into(q, d7, W)
    return W[_W_J:_W_J + 6, :7].copy()


@njit(cache=True, fastmath=_FMA, inline="always")
def _rotvec_s(m00, m01, m02, m10, m11, m12, m20, m21, m22):
    """Rotation vector θ â = log(M) of a rotation matrix M, accurate for every angle up to π."""
    # sin θ â = vee(M − Mᵀ)/2,  cos θ = (tr M − 1)/2
    vx = 0.5 * (m21 - m12)
    vy = 0.5 * (m02 - m20)
    vz = 0.5 * (m10 - m01)
    s = math.sqrt(vx * vx + vy * vy + vz * vz)
    c = 0.5 * (m00 + m11 + m22 - 1.0)
    if c > -0.99:                        # θ < ~172°: θ/sin θ is well conditioned
        if s < 1e-4:                     # θ/sin θ = asin(s)/s = 1 + s²/6 + 3s⁴/40 + O(s⁶ < 1e-24)
            s2 = s * s
            k = 1.0 + s2 * (1.0 / 6.0 + s2 * (3.0 / 40.0))
        else:
            k = math.atan2(s, c) / s
        return k * vx, k * vy, k * vz
    # near π: (M + Mᵀ)/2 − cos θ I = (1 − cos θ) â âᵀ; take the largest diagonal column, sign from vee
    theta = math.atan2(s, c)
    b00 = m00 - c
    b11 = m11 - c
    b22 = m22 - c
    if b00 >= b11 and b00 >= b22:
        ax, ay, az = b00, 0.5 * (m01 + m10), 0.5 * (m02 + m20)
    elif b11 >= b22:
        ax, ay, az = 0.5 * (m01 + m10), b11, 0.5 * (m12 + m21)
    else:
        ax, ay, az = 0.5 * (m02 + m20), 0.5 * (m12 + m21), b22
    n = math.sqrt(ax * ax + ay * ay + az * az)
    if ax * vx + ay * vy + az * vz < 0.0:
        n = -n
    k = theta / n
    return k * ax, k * ay, k * az


@njit(cache=True, fastmath=_FMA)
def _chol6(W, shift):
    """L Lᵀ = A + shift·I for the 6×6 A in W rows _W_A (lower triangle read); False if not SPD.

    L goes to W rows _W_L (strict lower triangle) with 1/L_jj in column 6 (no divisions later).
    """
    for j in range(6):
        s = W[_W_A + j, j] + shift
        for k in range(j):
            s -= W[_W_L + j, k] * W[_W_L + j, k]
        if not s > 0.0:
            return False
        inv = 1.0 / math.sqrt(s)
        W[_W_L + j, 6] = inv
        for i in range(j + 1, 6):
            t = W[_W_A + i, j]
            for k in range(j):
                t -= W[_W_L + i, k] * W[_W_L + j, k]
            W[_W_L + i, j] = t * inv
    return True


@njit(cache=True, fastmath=_FMA)
def _chol_solve6(W, row):
    """W[row, :6] ← (L Lᵀ)⁻¹ W[row, :6]: forward (L u = b) then backward (Lᵀ x = u) substitution."""
    for i in range(6):
        t = W[row, i]
        for k in range(i):
            t -= W[_W_L + i, k] * W[row, k]
        W[row, i] = t * W[_W_L + i, 6]
    for i in range(5, -1, -1):
        t = W[row, i]
        for k in range(i + 1, 6):
            t -= W[_W_L + k, i] * W[row, k]
        W[row, i] = t * W[_W_L + i, 6]


@njit(cache=True, fastmath=_FMA)
def ik_solve_into(T_target, q_seed, q_pref, d7, q_lo, q_hi, tol_pos, tol_rot, max_iter, null_gain,
                  q_out, W):
    """DLS inverse kinematics of one flange pose, for use from other compiled code.

    ``T_target`` (4, 4) flange pose; ``q_seed`` (7,) start (clipped into [q_lo, q_hi]); ``q_pref``
    (7,) posture the null-space term pulls towards with gain ``null_gain`` (per iteration);
    ``q_lo``/``q_hi`` (7,) hard bounds (already shrunk by any margin); ``tol_pos`` m and
    ``tol_rot`` rad convergence tolerances; ``max_iter`` iterations at most; ``q_out`` (7,)
    receives the lowest-error configuration found (it must not alias ``q_seed``); ``W`` is the
    float64 ``(W_ROWS, 8)`` scratch of :func:`ik_workspace` (reuse it: nothing is allocated here).
    Returns ``(ok, pos_err, rot_err, iterations)``.
    """
    q = q_out
    rt00, rt01, rt02 = T_target[0, 0], T_target[0, 1], T_target[0, 2]
    rt10, rt11, rt12 = T_target[1, 0], T_target[1, 1], T_target[1, 2]
    rt20, rt21, rt22 = T_target[2, 0], T_target[2, 1], T_target[2, 2]
    ptx, pty, ptz = T_target[0, 3], T_target[1, 3], T_target[2, 3]
    for i in range(7):
        q[i] = min(max(q_seed[i], q_lo[i]), q_hi[i])
        W[_W_LOCK, i] = 0.0
    nv = 0.0
    for a in range(6):
        nv += W[_W_V, a] * W[_W_V, a]
    if not 0.25 < nv < 4.0:                 # the σ_min inverse-iteration vector persists in W
        for a in range(6):                  # between calls (warm start when streaming); else 1/√6
            W[_W_V, a] = 0.4082482904638631
    best = np.inf
    best_p = np.inf
    best_r = np.inf
    stall_ref = np.inf
    stall_it = 0
    ok = False
    it = 0
    pe = np.inf
    re = np.inf
    while True:
        r0x, r0y, r0z, r1x, r1y, r1z, r2x, r2y, r2z, px, py, pz = _jacobian_into(q, d7, W)
        # e = [p* − p; log(R* Rᵀ)]
        ex, ey, ez = ptx - px, pty - py, ptz - pz
        wx, wy, wz = _rotvec_s(
            rt00 * r0x + rt01 * r1x + rt02 * r2x, rt00 * r0y + rt01 * r1y + rt02 * r2y,
            rt00 * r0z + rt01 * r1z + rt02 * r2z,
            rt10 * r0x + rt11 * r1x + rt12 * r2x, rt10 * r0y + rt11 * r1y + rt12 * r2y,
            rt10 * r0z + rt11 * r1z + rt12 * r2z,
            rt20 * r0x + rt21 * r1x + rt22 * r2x, rt20 * r0y + rt21 * r1y + rt22 * r2y,
            rt20 * r0z + rt21 * r1z + rt22 * r2z)
        ep2 = ex * ex + ey * ey + ez * ez
        er2 = wx * wx + wy * wy + wz * wz
        pe = math.sqrt(ep2)
        re = math.sqrt(er2)
        if pe <= tol_pos and re <= tol_rot:
            ok = True
            break
        score = pe + _ROT_WEIGHT * re
        if score < best:
            best = score
            best_p = pe
            best_r = re
            for i in range(7):
                W[_W_BEST, i] = q[i]
        if it >= max_iter:
            break
        if score < 0.99 * stall_ref:
            stall_ref = score
            stall_it = it
        elif it - stall_it >= _STALL_ITERS:
            break
        it += 1
        for i in range(7):
            if W[_W_LOCK, i] != 0.0:
                for r in range(6):
                    W[_W_J + r, i] = 0.0
        # A = J Jᵀ (lower triangle)
        for a in range(6):
            for b in range(a + 1):
                s = 0.0
                for i in range(7):
                    s += W[_W_J + a, i] * W[_W_J + b, i]
                W[_W_A + a, b] = s
        if not _chol6(W, _EPS_PROJ):
            break
        # σ_min² of J Jᵀ: one inverse iteration per IK iteration (v carried over), 1/‖(J Jᵀ)⁻¹ v‖ ≥ σ_min²
        _chol_solve6(W, _W_V)
        nv = 0.0
        for a in range(6):
            nv += W[_W_V, a] * W[_W_V, a]
        nv = math.sqrt(nv)
        sig2 = 1.0 / nv
        for a in range(6):
            W[_W_V, a] *= sig2
        # null-space motion z: posture pull and limit avoidance, projected by I − Jᵀ (J Jᵀ + ε)⁻¹ J
        znz = False
        for i in range(7):
            zi = 0.0
            if W[_W_LOCK, i] == 0.0:
                zi = null_gain * (q_pref[i] - q[i])
                if q[i] > q_hi[i] - _LIM_BAND:
                    zi -= _LIM_GAIN * (q[i] - (q_hi[i] - _LIM_BAND)) / _LIM_BAND
                elif q[i] < q_lo[i] + _LIM_BAND:
                    zi += _LIM_GAIN * ((q_lo[i] + _LIM_BAND) - q[i]) / _LIM_BAND
            W[_W_Z, i] = zi
            W[_W_DQ, i] = zi
            znz = znz or zi != 0.0
        if znz:
            for a in range(6):
                s = 0.0
                for i in range(7):
                    s += W[_W_J + a, i] * W[_W_Z, i]
                W[_W_Y, a] = s
            _chol_solve6(W, _W_Y)
            for i in range(7):
                s = W[_W_Z, i]
                for a in range(6):
                    s -= W[_W_J + a, i] * W[_W_Y, a]
                W[_W_DQ, i] = s
        # task step Jᵀ (J Jᵀ + λ² I)⁻¹ e,  λ² = λ_LM² ‖e‖² + λ_max² (1 − σ²/σ_s²)₊ · min(1, ‖e‖/e_ref)
        lam2 = _LAMBDA_LM2 * (ep2 + er2)
        if sig2 < _SIGMA_S2:
            lam2 += _LAMBDA_MAX2 * (1.0 - sig2 / _SIGMA_S2) * min(1.0, score / _SING_ERR_REF)
        if lam2 > _LAMBDA_REUSE2:           # (below this the projector's factor serves as well)
            if not _chol6(W, _EPS_PROJ + lam2):
                break
        W[_W_Y, 0], W[_W_Y, 1], W[_W_Y, 2], W[_W_Y, 3], W[_W_Y, 4], W[_W_Y, 5] = ex, ey, ez, wx, wy, wz
        _chol_solve6(W, _W_Y)
        step = 0.0
        for i in range(7):
            s = W[_W_DQ, i]
            for a in range(6):
                s += W[_W_J + a, i] * W[_W_Y, a]
            W[_W_DQ, i] = s
            step = max(step, abs(s))
        # ‖dq‖∞ ≤ step_max, then clamp into the bounds; a clamped joint sits out the next iteration
        scale = _STEP_MAX / step if step > _STEP_MAX else 1.0
        for i in range(7):
            qi = q[i] + scale * W[_W_DQ, i]
            W[_W_LOCK, i] = 0.0
            if qi > q_hi[i]:
                qi = q_hi[i]
                W[_W_LOCK, i] = 1.0
            elif qi < q_lo[i]:
                qi = q_lo[i]
                W[_W_LOCK, i] = 1.0
            q[i] = qi
    if not ok:
        for i in range(7):
            q[i] = W[_W_BEST, i]
        pe = best_p
        re = best_r
    return ok, pe, re, it


@njit(cache=True, fastmath=_FMA)
def _ik_restarts(T, q_seed, q_pref, d7, q_lo, q_hi, tol_pos, tol_rot, max_iter, null_gain, restarts,
                 q_out, W):
    """ik_solve_into from q_seed, then (if that fails) from every row of ``restarts``; best result."""
    ok, pe, re, it = ik_solve_into(T, q_seed, q_pref, d7, q_lo, q_hi, tol_pos, tol_rot, max_iter,
                                   null_gain, q_out, W)
    total = it
    if ok:
        return ok, pe, re, total
    qt = np.empty(7)
    best_d = np.inf
    best_s = pe + _ROT_WEIGHT * re
    for r in range(restarts.shape[0]):
        okr, per, rer, itr = ik_solve_into(T, restarts[r], q_pref, d7, q_lo, q_hi, tol_pos, tol_rot,
                                           max_iter, null_gain, qt, W)
        total += itr
        # prefer converged solutions, among them the one closest to the seed (joint 2-norm)
        d = 0.0
        for i in range(7):
            d += (qt[i] - q_seed[i]) ** 2
        sr = per + _ROT_WEIGHT * rer
        if (okr and (not ok or d < best_d)) or (not ok and not okr and sr < best_s):
            ok = okr
            pe = per
            re = rer
            best_s = sr
            if okr:
                best_d = d
            for i in range(7):
                q_out[i] = qt[i]
    return ok, pe, re, total


@njit(cache=True, fastmath=_FMA)
def _ik_path(targets, q_seed, d7, q_lo, q_hi, tol_pos, tol_rot, max_iter, null_gain, max_step):
    """Streamed IK: point n warm-starts from (and pulls to) the last converged solution."""
    n = targets.shape[0]
    Q = np.empty((n, 7))
    ok = np.zeros(n, dtype=np.bool_)
    W = np.zeros((W_ROWS, 8))
    prev = q_seed.copy()
    for k in range(n):
        okk, pe, re, it = ik_solve_into(targets[k], prev, prev, d7, q_lo, q_hi, tol_pos, tol_rot,
                                        max_iter, null_gain, Q[k], W)
        if okk and max_step > 0.0:
            for i in range(7):
                if abs(Q[k, i] - prev[i]) > max_step:
                    okk = False
        ok[k] = okk
        if okk:
            for i in range(7):
                prev[i] = Q[k, i]
    return Q, ok


# ---------------------------------------------------------------------------------- validation


def _joints(q, name: str = "q") -> np.ndarray:
    return checks.finite_array(q, name, shape=(7,), what="(7,) joint angles in rad")


def _d7(d7) -> float:
    return checks.positive(d7, "d7")


def _vec(x) -> np.ndarray:
    """float64 C-contiguous writeable array (one Numba specialisation for every caller)."""
    arr = np.asarray(x, dtype=np.float64)
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        arr = np.array(arr, dtype=np.float64, order="C")
    return arr


def _fast_joints(q, d7):
    """(q, d7) ready for the kernels on the fast path (one compiled finiteness check), else the
    detailed checks, which raise."""
    try:
        arr = _vec(q)
    except (TypeError, ValueError):
        arr = None
    if (arr is not None and arr.shape == (7,) and isinstance(d7, float) and 0.0 < d7 < math.inf
            and _all_finite(arr)):
        return arr, d7
    return _vec(_joints(q)), _d7(d7)


def _joint_rows(q, d7):
    """(Q (N, 7), d7, single) from a (7,) or (N, 7) joint array."""
    try:
        arr = _vec(q)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.ndim == 1:
        q1, d7 = _fast_joints(arr, d7)
        return q1.reshape(1, 7), d7, True
    arr = checks.finite_array(q, "q")
    if arr.shape[-1:] != (7,) or arr.ndim != 2:
        raise ValueError(f"q: expected (7,) or (N, 7) joint angles in rad, got shape {arr.shape}")
    return _vec(arr), _d7(d7), False


def _rotation(R, name: str, atol: float = 1e-6) -> np.ndarray:
    """A proper rotation matrix (3, 3) within ``atol`` of orthonormal."""
    R = checks.finite_array(R, name, shape=(3, 3), what="(3, 3) rotation matrix")
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > atol or np.linalg.det(R) <= 0.0:
        raise ValueError(f"{name}: not a rotation matrix (max |RᵀR − I| = {err:.3g}, det = "
                         f"{np.linalg.det(R):.6g}); expected orthonormal with det +1")
    return R


# ------------------------------------------------------------------------------------ public FK


def fk(q, d7: float = D7_B) -> np.ndarray:
    """Flange pose ``(4, 4)`` (homogeneous, base frame, m) of joint angles ``q`` ``(7,)`` in rad.

    ``d7`` is the flange length: :data:`D7_B` (RM75-B) or :data:`D7_6F` (RM75-6F). Joint limits
    are not enforced here. ``fk(zeros)`` is the identity rotation at (0, 0, 0.2405+0.256+0.21+d7).
    """
    try:
        arr = _vec(q)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.shape == (7,) and isinstance(d7, float) and 0.0 < d7 < math.inf:
        T = _fk_one(arr, d7)
        if T[3, 3] == 1.0:
            return T
    return _fk_one(_vec(_joints(q)), _d7(d7))


def fk_pose(q, d7: float = D7_B) -> np.ndarray:
    """Flange pose ``(6,)`` ``[x, y, z, rx, ry, rz]`` (m, rad), RealMan Euler R = Rz(rz)·Ry(ry)·Rx(rx).

    ``q`` may also be ``(N, 7)``, giving ``(N, 6)``. At ry = ±90° (gimbal lock) rz is set to 0.
    """
    Q, d7, single = _joint_rows(q, d7)
    out = _fk_pose(Q, d7)
    return out[0] if single else out


def fk_quat(q, d7: float = D7_B) -> np.ndarray:
    """Flange pose ``(7,)`` ``[x, y, z, w, qx, qy, qz]`` (m; w-first unit quaternion with w ≥ 0).

    ``q`` may also be ``(N, 7)``, giving ``(N, 7)``.
    """
    Q, d7, single = _joint_rows(q, d7)
    T = _fk_batch(Q, d7)
    out = np.empty((T.shape[0], 7))
    out[:, :3] = T[:, :3, 3]
    out[:, 3:] = _quat._from_matrix(np.ascontiguousarray(T[:, :3, :3]))
    return out[0] if single else out


def fk_batch(Q, d7: float = D7_B) -> np.ndarray:
    """Flange poses ``(N, 4, 4)`` of joint vectors ``Q`` ``(N, 7)`` in one compiled loop."""
    Q = checks.finite_array(Q, "Q", shape=(None, 7), what="(N, 7) joint angles in rad")
    return _fk_batch(_vec(Q), _d7(d7))


def jacobian(q, d7: float = D7_B) -> np.ndarray:
    """Geometric Jacobian ``(6, 7)`` of the flange in the base frame: rows [v (m/s); ω (rad/s)] per rad/s."""
    return _jacobian(*_fast_joints(q, d7))


# ------------------------------------------------------------------------------ conversions


def rpy_to_matrix(rpy) -> np.ndarray:
    """Rotation ``(..., 3, 3)`` of RealMan Euler angles ``(..., 3)`` [rx, ry, rz]: R = Rz(rz)·Ry(ry)·Rx(rx)."""
    arr = checks.finite_array(rpy, "rpy")
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ValueError(f"rpy: expected (..., 3) Euler angles [rx, ry, rz] in rad, got shape {arr.shape}")
    return _rpy_to_matrix(_vec(arr.reshape(-1, 3))).reshape(arr.shape[:-1] + (3, 3))


def matrix_to_rpy(R) -> np.ndarray:
    """RealMan Euler angles ``(..., 3)`` [rx, ry, rz] of rotations ``(..., 3, 3)`` (inverse of :func:`rpy_to_matrix`).

    rx, rz ∈ (−π, π], ry ∈ [−π/2, π/2]. At gimbal lock (|ry| = π/2, cos ry < 1e-9) only rx ∓ rz is
    defined and rz = 0 is returned. Input is not checked for orthonormality.
    """
    arr = checks.finite_array(R, "R")
    if arr.ndim < 2 or arr.shape[-2:] != (3, 3):
        raise ValueError(f"R: expected rotation matrices of shape (..., 3, 3), got shape {arr.shape}")
    return _matrix_to_rpy(_vec(arr.reshape(-1, 3, 3))).reshape(arr.shape[:-2] + (3,))


def quat_to_matrix(quat) -> np.ndarray:
    """Rotation ``(..., 3, 3)`` of w-first unit quaternions ``(..., 4)`` (:func:`.quaternion.to_matrix`)."""
    return _quat.to_matrix(quat)


def matrix_to_quat(R) -> np.ndarray:
    """w-first unit quaternions ``(..., 4)`` with w ≥ 0 of rotations ``(..., 3, 3)`` (Shepperd's method)."""
    return _quat.from_matrix(R)


def pose6_to_matrix(pose) -> np.ndarray:
    """Homogeneous ``(..., 4, 4)`` of ``[x, y, z, rx, ry, rz]`` poses ``(..., 6)`` (m, RealMan Euler rad)."""
    arr = checks.finite_array(pose, "pose")
    if arr.ndim == 0 or arr.shape[-1] != 6:
        raise ValueError(f"pose: expected (..., 6) poses [x, y, z, rx, ry, rz], got shape {arr.shape}")
    out = np.zeros(arr.shape[:-1] + (4, 4))
    out[..., :3, :3] = rpy_to_matrix(arr[..., 3:])
    out[..., :3, 3] = arr[..., :3]
    out[..., 3, 3] = 1.0
    return out


def matrix_to_pose6(T) -> np.ndarray:
    """``[x, y, z, rx, ry, rz]`` ``(..., 6)`` of homogeneous poses ``(..., 4, 4)``."""
    arr = checks.finite_array(T, "T")
    if arr.ndim < 2 or arr.shape[-2:] != (4, 4):
        raise ValueError(f"T: expected homogeneous poses of shape (..., 4, 4), got shape {arr.shape}")
    return np.concatenate([arr[..., :3, 3], matrix_to_rpy(arr[..., :3, :3])], axis=-1)


def pose7_to_matrix(pose) -> np.ndarray:
    """Homogeneous ``(..., 4, 4)`` of ``[x, y, z, w, qx, qy, qz]`` poses ``(..., 7)`` (unit quaternion, 1e-6)."""
    arr = checks.finite_array(pose, "pose")
    if arr.ndim == 0 or arr.shape[-1] != 7:
        raise ValueError(f"pose: expected (..., 7) poses [x, y, z, w, qx, qy, qz], got shape {arr.shape}")
    quat = checks.unit_quaternions(arr[..., 3:], "pose[..., 3:7] (quaternion)")
    out = np.zeros(arr.shape[:-1] + (4, 4))
    out[..., :3, :3] = _quat.to_matrix(quat)
    out[..., :3, 3] = arr[..., :3]
    out[..., 3, 3] = 1.0
    return out


def matrix_to_pose7(T) -> np.ndarray:
    """``[x, y, z, w, qx, qy, qz]`` ``(..., 7)`` (w ≥ 0) of homogeneous poses ``(..., 4, 4)``."""
    arr = checks.finite_array(T, "T")
    if arr.ndim < 2 or arr.shape[-2:] != (4, 4):
        raise ValueError(f"T: expected homogeneous poses of shape (..., 4, 4), got shape {arr.shape}")
    return np.concatenate([arr[..., :3, 3], _quat.from_matrix(arr[..., :3, :3])], axis=-1)


# ------------------------------------------------------------------------------------ public IK

#: Deterministic restart seeds of :func:`ik` (deg): home, its elbow/wrist mirror images, the
#: shoulder turned to the sides and back, a folded and a stretched posture.
_RESTART_SEEDS = np.array([
    [0.0, 30.0, 0.0, 60.0, 0.0, 45.0, 0.0],
    [0.0, -30.0, 0.0, -60.0, 0.0, -45.0, 0.0],
    [0.0, 30.0, 0.0, 60.0, 0.0, -45.0, 0.0],
    [90.0, 30.0, 0.0, 60.0, 0.0, 45.0, 0.0],
    [-90.0, 30.0, 0.0, 60.0, 0.0, 45.0, 0.0],
    [150.0, 30.0, 0.0, 60.0, 0.0, 45.0, 0.0],
    [-150.0, 30.0, 0.0, 60.0, 0.0, 45.0, 0.0],
    [0.0, 60.0, 90.0, 100.0, -90.0, 60.0, 0.0],
    [0.0, 10.0, -90.0, 30.0, 90.0, 30.0, 0.0],
]) * _DEG   # (writeable: a read-only array would make Numba compile a second specialisation)
_NO_RESTARTS = _RESTART_SEEDS[:0].copy()

# error codes of the compiled input checks (see _raise_bad_input)
_BAD_TARGET_NONFINITE, _BAD_TARGET_ROTATION, _BAD_TARGET_ROW, _BAD_TARGET_QUAT = 1, 2, 3, 4
_BAD_SEED_NONFINITE, _BAD_SEED_LIMITS, _BAD_PREF_NONFINITE = 5, 6, 7


@dataclass(frozen=True, slots=True)
class IKResult:
    """Result of :func:`ik`: joint angles ``q`` (7,) rad, whether both tolerances were met, the
    remaining position (m) and rotation (rad) errors, and the iterations spent (all restarts)."""

    q: np.ndarray
    ok: bool
    pos_err: float
    rot_err: float
    iterations: int


def ik_workspace() -> np.ndarray:
    """Scratch ``(W_ROWS, 8)`` float64 buffer for :func:`ik_solve_into` (reuse one per thread)."""
    return np.zeros((W_ROWS, 8))


@njit(cache=True, fastmath=_FMA, inline="always")
def _check_T(T):
    """0 if T (4, 4) is a finite rigid pose (|RᵀR − I| ≤ 1e-6, det R > 0, last row [0, 0, 0, 1]), else a code."""
    for a in range(4):
        for b in range(4):
            if not math.isfinite(T[a, b]):
                return _BAD_TARGET_NONFINITE
    for a in range(3):
        for b in range(a, 3):
            s = T[0, a] * T[0, b] + T[1, a] * T[1, b] + T[2, a] * T[2, b]
            if abs(s - (1.0 if a == b else 0.0)) > 1e-6:
                return _BAD_TARGET_ROTATION
    # det R = r0 · (r1 × r2)
    det = (T[0, 0] * (T[1, 1] * T[2, 2] - T[2, 1] * T[1, 2]) - T[1, 0] * (T[0, 1] * T[2, 2] - T[2, 1] * T[0, 2])
           + T[2, 0] * (T[0, 1] * T[1, 2] - T[1, 1] * T[0, 2]))
    if not det > 0.0:
        return _BAD_TARGET_ROTATION
    if abs(T[3, 0]) > 1e-9 or abs(T[3, 1]) > 1e-9 or abs(T[3, 2]) > 1e-9 or abs(T[3, 3] - 1.0) > 1e-9:
        return _BAD_TARGET_ROW
    return 0


@njit(cache=True, fastmath=_FMA)
def _ik_entry(target, seed, pref, d7, q_lo, q_hi, seed_lo, seed_hi, tol_pos, tol_rot, max_iter, null_gain,
              restarts, q_out, W):
    """Validate (target as 16 / 6 / 7 numbers, seed, pref) and solve; returns (code, ok, pos, rot, iters)."""
    for i in range(target.shape[0]):
        if not math.isfinite(target[i]):
            return _BAD_TARGET_NONFINITE, False, 0.0, 0.0, 0
    for i in range(7):
        if not math.isfinite(seed[i]):
            return _BAD_SEED_NONFINITE, False, 0.0, 0.0, 0
        if seed[i] < seed_lo[i] or seed[i] > seed_hi[i]:
            return _BAD_SEED_LIMITS, False, 0.0, 0.0, 0
        if not math.isfinite(pref[i]):
            return _BAD_PREF_NONFINITE, False, 0.0, 0.0, 0
    T = np.zeros((4, 4))
    T[3, 3] = 1.0
    n = target.shape[0]
    if n == 16:
        for a in range(4):
            for b in range(4):
                T[a, b] = target[4 * a + b]
        code = _check_T(T)
        if code != 0:
            return code, False, 0.0, 0.0, 0
    elif n == 6:
        R = _rpy_to_matrix(target[3:6].reshape((1, 3)))
        for a in range(3):
            for b in range(3):
                T[a, b] = R[0, a, b]
    else:
        w, x, y, z = target[3], target[4], target[5], target[6]
        nq = math.sqrt(w * w + x * x + y * y + z * z)
        if abs(nq - 1.0) > 1e-6:
            return _BAD_TARGET_QUAT, False, 0.0, 0.0, 0
        w, x, y, z = w / nq, x / nq, y / nq, z / nq
        # R(q) = I + 2w[v]x + 2[v]x²
        T[0, 0], T[0, 1], T[0, 2] = 1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)
        T[1, 0], T[1, 1], T[1, 2] = 2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)
        T[2, 0], T[2, 1], T[2, 2] = 2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)
    if n != 16:
        T[0, 3], T[1, 3], T[2, 3] = target[0], target[1], target[2]
    ok, pe, re, it = _ik_restarts(T, seed, pref, d7, q_lo, q_hi, tol_pos, tol_rot, max_iter, null_gain,
                                  restarts, q_out, W)
    return 0, ok, pe, re, it


@njit(cache=True, fastmath=_FMA)
def _check_targets(T):
    """(code, index) of the first bad pose in T (N, 4, 4), or (0, -1)."""
    for k in range(T.shape[0]):
        code = _check_T(T[k])
        if code != 0:
            return code, k
    return 0, -1


def _target_matrix(target, name: str = "target") -> np.ndarray:
    """(4, 4) pose from a homogeneous matrix, pose6 [x,y,z,rx,ry,rz] or pose7 [x,y,z,w,qx,qy,qz]."""
    arr = checks.finite_array(target, name)
    if arr.shape == (4, 4):
        _rotation(arr[:3, :3], f"{name}[:3, :3]")
        if np.abs(arr[3] - (0.0, 0.0, 0.0, 1.0)).max() > 1e-9:
            raise ValueError(f"{name}: last row of a homogeneous pose must be [0, 0, 0, 1], got {arr[3]}")
        return np.ascontiguousarray(arr)
    if arr.shape == (6,):
        return pose6_to_matrix(arr)
    if arr.shape == (7,):
        return pose7_to_matrix(arr)
    raise ValueError(f"{name}: expected a (4, 4) homogeneous pose, a (6,) [x, y, z, rx, ry, rz] pose or a "
                     f"(7,) [x, y, z, w, qx, qy, qz] pose, got shape {arr.shape}")


def _seed(q_seed, name: str = "q_seed") -> np.ndarray:
    q = _joints(q_seed, name)
    out = np.flatnonzero((q < Q_MIN - SEED_LIMIT_TOL) | (q > Q_MAX + SEED_LIMIT_TOL))
    if out.size:
        i = int(out[0])
        raise ValueError(f"{name}[{i}]: {q[i]:.6g} rad is outside the joint limits "
                         f"[{Q_MIN[i]:.6g}, {Q_MAX[i]:.6g}] rad (tolerance {SEED_LIMIT_TOL:g})")
    return q


def _raise_bad_input(code: int, target, q_seed, q_pref) -> None:
    """Re-run the detailed Python checks on the argument the compiled check rejected (they raise)."""
    if code <= _BAD_TARGET_QUAT:
        _target_matrix(target)
    elif code <= _BAD_SEED_LIMITS:
        _seed(q_seed)
    else:
        _joints(q_pref, "q_pref")
    raise ValueError(f"invalid input (check code {code})")  # pragma: no cover - the checks above raise


@functools.lru_cache(maxsize=64)
def _ik_args(d7, tol_pos, tol_rot, max_iter, null_gain, limit_margin):
    """Validated scalars and bounds (cached: the same settings are used call after call)."""
    d7 = _d7(d7)
    tol_pos = checks.positive(tol_pos, "tol_pos")
    tol_rot = checks.positive(tol_rot, "tol_rot")
    max_iter = checks.count(max_iter, "max_iter", minimum=1)
    null_gain = float(null_gain)
    if not (np.isfinite(null_gain) and 0.0 <= null_gain <= 1.0):
        raise ValueError(f"null_gain: expected a number in [0, 1], got {null_gain!r}")
    margin = float(limit_margin)
    if not (np.isfinite(margin) and 0.0 <= margin < 0.1):
        raise ValueError(f"limit_margin: expected a number of rad in [0, 0.1), got {limit_margin!r}")
    return d7, tol_pos, tol_rot, max_iter, null_gain, Q_MIN + margin, Q_MAX - margin


def _ik_settings(d7, tol_pos, tol_rot, max_iter, null_gain, limit_margin):
    try:
        return _ik_args(d7, tol_pos, tol_rot, max_iter, null_gain, limit_margin)
    except TypeError:  # unhashable (e.g. a 0-d array): validate without the cache
        return _ik_args.__wrapped__(d7, tol_pos, tol_rot, max_iter, null_gain, limit_margin)


_SEED_LO = Q_MIN - SEED_LIMIT_TOL
_SEED_HI = Q_MAX + SEED_LIMIT_TOL


def ik(target, q_seed, d7: float = D7_B, q_pref=None, *, tol_pos: float = 1e-7, tol_rot: float = 1e-6,
       max_iter: int = 100, null_gain: float = 0.1, limit_margin: float = 1e-3,
       restarts: bool = True) -> IKResult:
    """Joint angles reaching the flange pose ``target``, warm-started from ``q_seed`` (7,) rad.

    ``target`` is a ``(4, 4)`` homogeneous pose, a ``(6,)`` ``[x, y, z, rx, ry, rz]`` (RealMan
    Euler) or a ``(7,)`` ``[x, y, z, w, qx, qy, qz]`` pose (quaternion within 1e-6 of unit norm),
    base frame, m. ``q_seed`` must lie within the joint limits (± 1e-4 rad). The null space pulls
    towards ``q_pref`` (default: the seed, i.e. the least joint motion). The result lies inside
    ``[Q_MIN + limit_margin, Q_MAX − limit_margin]``. If the warm-started solve fails and
    ``restarts`` is set, the solve is repeated from a fixed set of postures (:data:`Q_HOME` first)
    and the converged solution closest to the seed is returned (else the lowest-error one).
    Unreachable targets give ``ok=False`` (never an exception); bad input raises ``ValueError``.
    """
    try:
        tgt = _vec(target)
        seed = _vec(q_seed)
        pref = seed if q_pref is None else _vec(q_pref)
    except (TypeError, ValueError):
        tgt = seed = pref = None
    if (tgt is None or tgt.shape not in ((4, 4), (6,), (7,)) or seed.shape != (7,)
            or pref.shape != (7,)):
        _target_matrix(target)
        _seed(q_seed)
        _joints(q_pref, "q_pref")
    d7, tol_pos, tol_rot, max_iter, null_gain, lo, hi = _ik_settings(d7, tol_pos, tol_rot, max_iter,
                                                                     null_gain, limit_margin)
    q = np.empty(7)
    code, ok, pe, re, it = _ik_entry(tgt.reshape(-1), seed, pref, d7, lo, hi, _SEED_LO, _SEED_HI, tol_pos,
                                     tol_rot, max_iter, null_gain, _RESTART_SEEDS if restarts else _NO_RESTARTS,
                                     q, ik_workspace())
    if code:
        _raise_bad_input(code, target, q_seed, q_pref)
    return IKResult(q=q, ok=bool(ok), pos_err=float(pe), rot_err=float(re), iterations=int(it))


def ik_path(targets, q_seed, d7: float = D7_B, max_step: float | None = None, *, tol_pos: float = 1e-7,
            tol_rot: float = 1e-6, max_iter: int = 100, null_gain: float = 0.1,
            limit_margin: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Joint path ``(N, 7)`` and per-point success ``(N,)`` for a Cartesian path, in one compiled loop.

    ``targets`` is ``(N, 4, 4)`` (or ``(N, 6)`` / ``(N, 7)`` poses as in :func:`ik`). Point n is
    warm-started from, and its null space pulls towards, the last converged solution (``q_seed``
    for the first), so a smooth Cartesian path gives a continuous joint path. There are no
    restarts (they could jump to another IK branch): a point that does not converge, or whose
    solution moves some joint by more than ``max_step`` rad from the previous converged one, is
    marked ``ok=False``; its row holds the best-effort attempt and the next point starts again
    from the last converged solution.
    """
    arr = checks.finite_array(targets, "targets")
    if arr.ndim == 3 and arr.shape[1:] == (4, 4):
        T = _vec(arr)
        code, i = _check_targets(T)
        if code:
            _target_matrix(arr[i], f"targets[{i}]")
            raise ValueError(f"targets[{i}]: not a rigid homogeneous pose")  # pragma: no cover
    elif arr.ndim == 2 and arr.shape[1] == 6:
        T = pose6_to_matrix(arr)
    elif arr.ndim == 2 and arr.shape[1] == 7:
        T = pose7_to_matrix(arr)
    else:
        raise ValueError(f"targets: expected (N, 4, 4) homogeneous poses, (N, 6) or (N, 7) poses, "
                         f"got shape {arr.shape}")
    seed = _vec(_seed(q_seed))
    d7, tol_pos, tol_rot, max_iter, null_gain, lo, hi = _ik_settings(d7, tol_pos, tol_rot, max_iter,
                                                                     null_gain, limit_margin)
    step = 0.0 if max_step is None else checks.positive(max_step, "max_step")
    return _ik_path(T, seed, d7, lo, hi, tol_pos, tol_rot, max_iter, null_gain, step)
