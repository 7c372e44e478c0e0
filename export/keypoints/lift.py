"""3D keypoints of an upright container from its 2D keypoints, the depth head and the table (numpy only).

VL-MP eq. (2) back-projects each keypoint with its own depth: X = R·z·K⁻¹(u, v, 1)ᵀ + t. The depth head's
error (≈ 5 mm median on held-out mugs) then dominates the 3D error, although the 2D keypoints are good to
1–2 px. A mug, bowl or plate standing on the table has geometry that pins most of that down, and its
keypoint definitions say where each point sits on it (:data:`kinebridge.runtime.skills.pour_mug.KEYPOINT_DEFINITIONS`):

1. **Base centre K_p2 on the support plane**: its ray meets the plane z = ``support_z`` (the table top in
   the arm's base frame, ``[perception] table_z_m``). Used only where the depth head's K_p2 lies within
   ``support_tol`` of that point — an object on a box, a plate or in the hand keeps the depth head's points.
2. **Mouth centre K_p1 on the vertical axis through K_p2**: the axis (x, y) and the mouth height h are
   fitted to both centres' pixels (least squares, each weighted by its 2D accuracy), so the finer K_p1
   pixel also corrects the axis. Kept only within ``axis_tol`` of the depth head's K_p1 (an object lying
   on its side is not upright).
3. **Handle K_b at mid-height**: its ray meets the plane halfway up the axis (the handle keypoint is the
   handle's outermost point at half the height), within ``axis_tol`` of the depth head's K_b.
4. **Rim K_i opposite the handle**: the rim radius r is where the K_i ray meets the mouth plane; K_i is
   then the rim point at r from the axis on the side opposite K_b — its definition. The network's K_i
   heatmap is weak and two-sided (which side of the rim is opposite the handle takes the whole object),
   while its K_b is sharp; its pixel is re-projected from that point.

Each keypoint reports how it was placed (``depth head``, ``support plane``, ``axis``, ``mid-height``,
``opposite handle``). Nothing is placed without the depth head's agreement: a lifted point that
disagrees with it is dropped in favour of the measured one.
"""

from __future__ import annotations

import numpy as np

from kinebridge.export.keypoints.decode import backproject

__all__ = ["lift", "lift_detections", "LiftConfig", "SOURCES"]

SOURCES = ("depth head", "support plane", "axis", "mid-height", "opposite handle")


class LiftConfig:
    def __init__(self, support_z: float | None = 0.0, support_tol: float = 0.03, axis_tol: float = 0.03,
                 px_sigma_p1: float = 1.0, px_sigma_p2: float = 1.7):
        self.support_z = support_z          # None: no support plane, eq. (2) only
        self.support_tol = support_tol      # m
        self.axis_tol = axis_tol            # m
        self.px_sigma = (px_sigma_p1, px_sigma_p2)   # the centres' 2D accuracy (held-out medians), px


def _rays(uv, K, T):
    """Camera centre (3,) and unit ray directions (N, 3) in the base frame."""
    d = np.concatenate([uv, np.ones((len(uv), 1))], 1) @ np.linalg.inv(K).T @ T[:3, :3].T
    return T[:3, 3], d / np.linalg.norm(d, axis=1, keepdims=True)


def _on_plane(o, r, z):
    """The point of the ray o + s·r at height z (None if the ray is level or points away)."""
    if abs(r[2]) < 1e-3:
        return None
    s = (z - o[2]) / r[2]
    return None if s <= 0 else o + s * r


def _project(P, K, Tc):
    pc = np.atleast_2d(P) @ Tc[:3, :3].T + Tc[:3, 3]
    uv = pc @ K.T
    return uv[:, :2] / uv[:, 2:3]


def _fit_axis(p0, uv1, uv2, K, T, sigma, support_z):
    """(x, y, h) of the vertical axis and the mouth height minimising the centres' reprojection error
    (Gauss–Newton from ``p0``): K_p1 = (x, y, h), K_p2 = (x, y, support_z)."""
    Tc = np.linalg.inv(T)
    obs = np.concatenate([uv1, uv2])
    w = np.array([1 / sigma[0]] * 2 + [1 / sigma[1]] * 2)

    def res(p):
        P = np.array([[p[0], p[1], p[2]], [p[0], p[1], support_z]])
        return (_project(P, K, Tc).reshape(-1) - obs) * w

    p = np.asarray(p0, float).copy()
    for _ in range(8):
        r0 = res(p)
        J = np.empty((4, 3))
        for k in range(3):
            e = np.zeros(3)
            e[k] = 1e-6
            J[:, k] = (res(p + e) - r0) / 1e-6
        dp = np.linalg.lstsq(J, -r0, rcond=None)[0]
        p += dp
        if np.linalg.norm(dp) < 1e-8:
            break
    return p


def lift(names, uv, z, K, T, cfg: LiftConfig = LiftConfig()):
    """Base-frame keypoints (N, 3; NaN rows unknown), the pixels (N, 2; K_i's re-projected when placed
    opposite the handle) and each keypoint's source, for one object's keypoints ``names`` at pixels ``uv``
    with depth-head depths ``z`` (NaN unknown)."""
    uv = np.array(uv, float)
    X = backproject(uv, np.asarray(z, float), K, T)
    src = ["depth head" if np.isfinite(X[k]).all() else "none" for k in range(len(names))]
    ix = {n: k for k, n in enumerate(names)}
    if cfg.support_z is None or "K_p1" not in ix or "K_p2" not in ix:
        return X, uv, src
    p1, p2 = ix["K_p1"], ix["K_p2"]
    if not (np.isfinite(X[p1]).all() and np.isfinite(X[p2]).all()):
        return X, uv, src
    o, r = _rays(uv, K, T)
    base = _on_plane(o, r[p2], cfg.support_z)
    if base is None or np.linalg.norm(base - X[p2]) > cfg.support_tol:
        return X, uv, src                     # not standing on the support plane
    # the mouth centre on the vertical through the base: closest point of its ray to that line
    a = np.array([0.0, 0.0, 1.0])
    w0 = o - base
    b, dd, e = r[p1] @ a, r[p1] @ w0, a @ w0
    if 1 - b * b < 1e-6:
        return X, uv, src
    mouth = o + ((b * e - dd) / (1 - b * b)) * r[p1]
    if np.linalg.norm(mouth - X[p1]) > cfg.axis_tol:
        X[p2], src[p2] = base, "support plane"
        return X, uv, src                     # on the table but not upright
    x, y, h = _fit_axis([base[0], base[1], mouth[2]], uv[p1], uv[p2], K, T, cfg.px_sigma, cfg.support_z)
    X[p1], X[p2] = np.array([x, y, h]), np.array([x, y, cfg.support_z])
    src[p1], src[p2] = "axis", "support plane"
    kb = ix.get("K_b")
    if kb is not None:
        P = _on_plane(o, r[kb], 0.5 * (h + cfg.support_z))
        if P is not None and np.isfinite(X[kb]).all() and np.linalg.norm(P - X[kb]) < cfg.axis_tol:
            X[kb], src[kb] = P, "mid-height"
    ki = ix.get("K_i")
    if ki is not None:
        rim = _on_plane(o, r[ki], h)
        if rim is not None and np.isfinite(X[ki]).all() and np.linalg.norm(rim - X[ki]) < 2 * cfg.axis_tol:
            X[ki], src[ki] = rim, "axis"
            radius = float(np.hypot(rim[0] - x, rim[1] - y))
            if kb is not None and np.isfinite(X[kb]).all():
                hb = X[kb][:2] - np.array([x, y])
                n = float(np.linalg.norm(hb))
                if n > 1e-3:
                    X[ki] = np.array([x - radius * hb[0] / n, y - radius * hb[1] / n, h])
                    uv[ki] = _project(X[ki], K, np.linalg.inv(T))[0]
                    src[ki] = "opposite handle"
    return X, uv, src


def lift_detections(dets, names, K, T, cfg: LiftConfig = LiftConfig()):
    """:func:`lift` every decoded detection in place: ``xyz``, ``uv`` and ``extra["lift"]`` (the sources)."""
    for d in dets:
        X, uv, src = lift(names, d.uv, np.where(d.depth_ok, d.z, np.nan), K, T, cfg)
        d.xyz, d.uv = X, uv
        d.extra["lift"] = src
    return dets
