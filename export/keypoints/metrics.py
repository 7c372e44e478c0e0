"""Scoring decoded keypoints against the world's ground truth (numpy only; training and eval share it).

Matching: a detection matches the ground-truth mug whose centre is nearest, if within
``max(8 px, 0.5 · the smaller side of its box)``; each ground-truth mug and each detection is
used once (greedy, by detection score). Then, per keypoint of every matched mug whose keypoint
lies in the image (visible or occluded — the planner needs the handle behind the mug too):

* 2D error: |uv − uv_gt| in pixels;
* 3D error: |xyz − xyz_gt| in mm, xyz back-projected from (u, v, z) with the frame's calibration;
  a keypoint reported without depth counts as missing (``no_depth``), not as an error value.

Detection: recall over *unoccluded* mugs (at least :data:`UNOCCLUDED` of the body's camera-facing
surface visible and in the image), and over all mugs in view; precision over every detection
(a detection of a held or occluded mug is a true positive, of anything else a false one).
"""

from __future__ import annotations

import numpy as np

__all__ = ["UNOCCLUDED", "match", "Accumulator"]

UNOCCLUDED = 0.9


def match(dets, lab: dict) -> list[tuple[int, int]]:
    """(detection index, ground-truth slot) pairs (see the module docstring)."""
    n = int(lab["n_objects"])
    if not dets or n == 0:
        return []
    pairs = []
    for di, d in enumerate(dets):
        for m in range(n):
            x0, y0, x1, y1 = lab["box"][m]
            gate = max(8.0, 0.5 * min(x1 - x0, y1 - y0))
            dist = float(np.hypot(*(d.centre - lab["centre"][m])))
            if dist <= gate:
                pairs.append((-d.score, dist, di, m))
    pairs.sort()
    used_d, used_m, out = set(), set(), []
    for _s, _dist, di, m in pairs:
        if di in used_d or m in used_m:
            continue
        used_d.add(di)
        used_m.add(m)
        out.append((di, m))
    return out


class Accumulator:
    """Errors and detection counts over many frames; :meth:`summary` gives the figures."""

    def __init__(self, keypoints):
        self.keypoints = tuple(keypoints)
        self.e2d = {k: [] for k in self.keypoints}
        self.e3d = {k: [] for k in self.keypoints}
        self.e2d_vis = {k: [] for k in self.keypoints}
        self.no_depth = {k: 0 for k in self.keypoints}
        self.depth_err = {k: [] for k in self.keypoints}
        self.gt_unocc = self.hit_unocc = self.gt_all = self.hit_all = 0
        self.dets = self.true_dets = 0
        self.frames = 0
        self.by_handle: dict[int, list] = {}

    def add(self, dets, lab: dict, K: np.ndarray, T: np.ndarray, *, count_held: bool = True) -> None:
        from kinebridge.export.keypoints.decode import backproject

        self.frames += 1
        n = int(lab["n_objects"])
        pairs = match(dets, lab)
        matched = {m: di for di, m in pairs}
        H, W = 480, 640
        for m in range(n):
            if lab["held"][m] and not count_held:
                continue
            unocc = lab["vis_frac"][m] >= UNOCCLUDED
            self.gt_all += 1
            self.gt_unocc += int(unocc)
            if m not in matched:
                continue
            self.hit_all += 1
            self.hit_unocc += int(unocc)
            d = dets[matched[m]]
            xyz = d.xyz if d.xyz is not None else backproject(d.uv, np.where(d.depth_ok, d.z, np.nan), K, T)
            for k, name in enumerate(self.keypoints):
                u, v = lab["kp_uv"][m, k]
                if not (0 <= u < W and 0 <= v < H):
                    continue
                e2 = float(np.hypot(*(d.uv[k] - lab["kp_uv"][m, k])))
                self.e2d[name].append(e2)
                if lab["kp_vis"][m, k]:
                    self.e2d_vis[name].append(e2)
                if d.depth_ok[k]:
                    e3 = float(np.linalg.norm(xyz[k] - lab["kp_xyz"][m, k]) * 1e3)
                    self.e3d[name].append(e3)
                    self.depth_err[name].append(float((d.z[k] - lab["kp_z"][m, k]) * 1e3))
                    self.by_handle.setdefault(int(lab["shape"][m, 3]), []).append(e3)
                else:
                    self.no_depth[name] += 1
        self.dets += len(dets)
        self.true_dets += len(pairs)

    @staticmethod
    def _stats(v) -> dict:
        v = np.asarray(v, float)
        if not v.size:
            return {"n": 0, "median": None, "mean": None, "p90": None}
        return {"n": int(v.size), "median": round(float(np.median(v)), 3), "mean": round(float(v.mean()), 3),
                "p90": round(float(np.percentile(v, 90)), 3)}

    def summary(self) -> dict:
        all2 = [e for k in self.keypoints for e in self.e2d[k]]
        all3 = [e for k in self.keypoints for e in self.e3d[k]]
        return {
            "frames": self.frames,
            "median_2d_px": self._stats(all2)["median"],
            "median_3d_mm": self._stats(all3)["median"],
            "overall": {"2d_px": self._stats(all2), "3d_mm": self._stats(all3),
                        "2d_px_visible": self._stats([e for k in self.keypoints for e in self.e2d_vis[k]])},
            "per_keypoint": {k: {"2d_px": self._stats(self.e2d[k]), "3d_mm": self._stats(self.e3d[k]),
                                 "2d_px_visible": self._stats(self.e2d_vis[k]),
                                 "depth_error_mm": self._stats(np.abs(self.depth_err[k])),
                                 "depth_bias_mm": (round(float(np.median(self.depth_err[k])), 3)
                                                   if self.depth_err[k] else None),
                                 "no_depth": self.no_depth[k]} for k in self.keypoints},
            "3d_mm_by_handle": {str(h): self._stats(v) for h, v in sorted(self.by_handle.items())},
            "detection": {
                "recall_unoccluded": round(self.hit_unocc / self.gt_unocc, 4) if self.gt_unocc else None,
                "unoccluded_mugs": self.gt_unocc,
                "recall_all": round(self.hit_all / self.gt_all, 4) if self.gt_all else None,
                "mugs_in_view": self.gt_all,
                "precision": round(self.true_dets / self.dets, 4) if self.dets else None,
                "detections": self.dets,
                "unoccluded_means": f"≥ {UNOCCLUDED:.0%} of the body's camera-facing surface visible and in the image",
            },
        }
