"""From the keypoint network's maps to objects with 2D keypoints, depths and 3D points (numpy only).

The network (:mod:`kinebridge.export.keypoints.net`) predicts, at 1/4 of the image, a centre
heatmap per class, a heatmap, a sub-cell offset and a depth per keypoint, and at each centre the
displacement to each keypoint, the box and the keypoints' visibility. Decoding (CenterNet's
multi-pose grouping):

1. centres: 3 × 3 local maxima of the centre heatmap above ``centre_threshold`` (at most
   ``max_objects``), one object each — the centre head is what groups keypoints per object;
2. each keypoint of an object: the displacement from its centre gives a first guess; the
   keypoint heatmap is searched around it (radius ``search_frac`` of the box, at least
   ``min_radius`` cells, weakly weighted by the distance to the guess) and its peak plus the sub-cell
   offset is the keypoint; if no heatmap cell there reaches ``kp_threshold`` the regressed guess
   is kept, marked ``regressed`` (low confidence);
3. depth: the depth head at the keypoint's cell (metres along the optical axis) — not the depth
   image, which for the mouth centre sees the inside of the mug; where the reference depth window
   had less than ``min_depth_valid`` valid pixels the depth is unknown (``no_depth``);
4. 3D (VL-MP eq. 2): X_cam = z · K⁻¹ (u, v, 1)ᵀ, X_base = R X_cam + t with the frame's
   intrinsics K and extrinsics T_base_cam = (R, t) — :func:`backproject`; for objects standing on
   the table :mod:`kinebridge.export.keypoints.lift` refines these with the table and the axis.

Nothing is invented: a keypoint without depth has ``xyz = None`` and its reason; no detection at
all gives an empty list, and the caller reports why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DecodeConfig", "Detection2D", "decode", "backproject", "STRIDE", "to_cell", "from_cell"]

STRIDE = 4


@dataclass(frozen=True)
class DecodeConfig:
    centre_threshold: float = 0.3
    max_objects: int = 16
    kp_threshold: float = 0.05
    # The centre's displacement guess for an off-centre keypoint (the handle) is pulled towards the
    # centre, while its heatmap peak is sharp and right: search most of the box around the guess with a
    # weak distance prior (held-out handle error 42 → 3.4 px against 0.3 / 0.5; the centres unchanged).
    search_frac: float = 0.8
    min_radius: float = 2.0
    prior_frac: float = 2.0            # width of the distance weighting, as a fraction of the search radius
    min_depth_valid: float = 0.15


@dataclass
class Detection2D:
    """One decoded object: class index, centre score, pixels, depths (m) and per-keypoint flags."""

    cls: int
    score: float
    centre: np.ndarray                     # (2,) pixels
    box: np.ndarray                        # (4,) x0, y0, x1, y1 pixels
    uv: np.ndarray                         # (K, 2) pixels
    z: np.ndarray                          # (K,) m along the optical axis (NaN: unknown)
    conf: np.ndarray                       # (K,) heatmap peak value in [0, 1]
    visible: np.ndarray                    # (K,) visibility probability
    depth_ok: np.ndarray                   # (K,) bool
    regressed: np.ndarray                  # (K,) bool: no heatmap support, the centre's guess
    xyz: np.ndarray | None = None          # (K, 3) base frame (NaN rows: unknown), after backproject
    extra: dict = field(default_factory=dict)


def _cell_to_px(c):
    return (np.asarray(c, float) + 0.5) * STRIDE - 0.5


def to_cell(u):
    """Pixel coordinate → continuous cell coordinate of the stride-4 maps (cell centres at integers)."""
    return (np.asarray(u, float) + 0.5) / STRIDE - 0.5


from_cell = _cell_to_px


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _peaks(hm: np.ndarray, thr: float, k: int):
    """(score, i, j) of the 3 × 3 local maxima of ``hm`` (h, w) above ``thr``, best first, at most ``k``."""
    from scipy.ndimage import maximum_filter

    mx = maximum_filter(hm, size=3, mode="constant", cval=0.0)
    ii, jj = np.nonzero((hm == mx) & (hm >= thr))
    s = hm[ii, jj]
    order = np.argsort(-s)[:k]
    return s[order], ii[order], jj[order]


def decode(out: dict, cfg: DecodeConfig = DecodeConfig(), b: int = 0) -> list[Detection2D]:
    """Objects of batch item ``b`` of the network outputs ``out`` (name → array, as the session returns)."""
    cen, heat, off, disp = out["centre"][b], out["kp_heat"][b], out["kp_offset"][b], out["kp_disp"][b]
    box, kz, kvis, frac = out["box"][b], out["kp_depth"][b], out["kp_vis"][b], out["depth_valid"][b, 0]
    for name, a in (("centre", cen), ("kp_heat", heat), ("kp_depth", kz)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"the keypoint model returned non-finite values in {name!r}: the model file is "
                             "corrupt or was exported wrongly; re-export it")
    K = heat.shape[0]
    h, w = heat.shape[1:]
    dets: list[Detection2D] = []
    cands = []
    for c in range(cen.shape[0]):
        s, ii, jj = _peaks(cen[c], cfg.centre_threshold, cfg.max_objects)
        cands += [(float(sc), c, int(i), int(j)) for sc, i, j in zip(s, ii, jj)]
    cands.sort(key=lambda t: -t[0])
    ys, xs = np.mgrid[0:h, 0:w]
    for sc, c, i, j in cands[:cfg.max_objects]:
        l, t, r, btm = np.maximum(box[:, i, j], 0.0)
        bw, bh = l + r, t + btm
        radius = max(cfg.min_radius, cfg.search_frac * min(bw, bh))
        uv = np.zeros((K, 2))
        z = np.full(K, np.nan)
        conf = np.zeros(K)
        ok = np.zeros(K, bool)
        regressed = np.zeros(K, bool)
        for k in range(K):
            gx, gy = j + disp[2 * k, i, j], i + disp[2 * k + 1, i, j]
            x0, x1 = int(max(0, np.floor(gx - radius))), int(min(w - 1, np.ceil(gx + radius)))
            y0, y1 = int(max(0, np.floor(gy - radius))), int(min(h - 1, np.ceil(gy + radius)))
            if x0 > x1 or y0 > y1:          # the guess lies outside the image
                ci, cj = int(np.clip(round(gy), 0, h - 1)), int(np.clip(round(gx), 0, w - 1))
                uv[k] = _cell_to_px([gx, gy])
                regressed[k] = True
            else:
                win = heat[k, y0:y1 + 1, x0:x1 + 1]
                d2 = (xs[y0:y1 + 1, x0:x1 + 1] - gx) ** 2 + (ys[y0:y1 + 1, x0:x1 + 1] - gy) ** 2
                score = win * np.exp(-d2 / (2 * (cfg.prior_frac * radius) ** 2))
                a = int(np.argmax(score))
                ci, cj = y0 + a // win.shape[1], x0 + a % win.shape[1]
                conf[k] = float(heat[k, ci, cj])
                if conf[k] >= cfg.kp_threshold:
                    uv[k] = _cell_to_px([cj + off[2 * k, ci, cj], ci + off[2 * k + 1, ci, cj]])
                else:
                    uv[k] = _cell_to_px([gx, gy])
                    ci, cj = int(np.clip(round(gy), 0, h - 1)), int(np.clip(round(gx), 0, w - 1))
                    regressed[k] = True
            if frac[ci, cj] >= cfg.min_depth_valid:
                z[k] = float(kz[k, ci, cj])
                ok[k] = np.isfinite(z[k]) and z[k] > 0.0
                if not ok[k]:
                    z[k] = np.nan
        dets.append(Detection2D(
            cls=c, score=sc, centre=_cell_to_px([j, i]),
            box=np.array([_cell_to_px(j - l), _cell_to_px(i - t), _cell_to_px(j + r), _cell_to_px(i + btm)]),
            uv=uv, z=z, conf=conf, visible=_sigmoid(kvis[:, i, j]), depth_ok=ok, regressed=regressed))
    return dets


def backproject(uv: np.ndarray, z: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray | None) -> np.ndarray:
    """VL-MP eq. (2): base-frame points (N, 3) of pixels ``uv`` (N, 2) at depths ``z`` (N,) (camera
    frame when ``T_base_cam`` is None); rows with unknown depth are NaN."""
    uv = np.atleast_2d(np.asarray(uv, float))
    z = np.asarray(z, float).reshape(-1)
    Kinv = np.linalg.inv(np.asarray(K, float))
    rays = np.concatenate([uv, np.ones((uv.shape[0], 1))], 1) @ Kinv.T
    Xc = rays * z[:, None]
    if T_base_cam is None:
        return Xc
    T = np.asarray(T_base_cam, float)
    return Xc @ T[:3, :3].T + T[:3, 3]
