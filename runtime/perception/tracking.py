"""Objects tracked across frames: stable ids, outlier rejection, smoothing, a confidence per keypoint.

Each frame's detections (3D keypoints in the arm's base frame) are associated with the live tracks
of their class by the distance between object centres (the mean of the keypoints with depth),
optimally (Hungarian assignment, :func:`scipy.optimize.linear_sum_assignment`) within
``gate_m``; an unmatched detection starts a track with the next id of its class (``mug-1``,
``mug-2``, … — the ids the planner sees and names), a track unmatched for ``max_missed`` frames
ends. Ids are never reused within a tracker's life.

Per keypoint of a matched track (a constant-position filter, one per keypoint):

* a measurement further than ``outlier_m`` from the track's estimate is **rejected** for this frame
  (a keypoint jumping to the neighbour's handle, a wrong depth) and counted; after
  ``reinit_after`` rejections in a row the track re-initialises that keypoint from the measurement
  (the object really moved, e.g. was picked up);
* otherwise the estimate moves towards the measurement with gain ``alpha`` scaled by the
  measurement's confidence (a confident keypoint moves the estimate more); a track's first
  measurement sets it;
* ``confidence`` = the smoothed detector confidence × a consistency term (recent rejections lower
  it) × a freshness term (frames since the keypoint was last measured); a keypoint never measured
  with depth has no estimate (``xyz`` None) and confidence 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrackerConfig", "Track", "Tracker", "Observation"]


@dataclass(frozen=True)
class TrackerConfig:
    gate_m: float = 0.06
    outlier_m: float = 0.03
    reinit_after: int = 3
    alpha: float = 0.6
    max_missed: int = 15
    conf_alpha: float = 0.4


@dataclass
class Observation:
    """One detected object in one frame: class, score, per-keypoint xyz (NaN: no depth), confidences."""

    cls: str
    score: float
    xyz: np.ndarray              # (K, 3)
    conf: np.ndarray             # (K,)
    extra: dict = field(default_factory=dict)

    def centre(self) -> np.ndarray | None:
        ok = np.all(np.isfinite(self.xyz), axis=1)
        return self.xyz[ok].mean(0) if ok.any() else None


@dataclass
class Track:
    id: str
    cls: str
    xyz: np.ndarray              # (K, 3), NaN where never measured
    conf: np.ndarray             # (K,) smoothed detector confidence
    rejects: np.ndarray          # (K,) rejections in a row
    rejected_total: np.ndarray   # (K,)
    since: np.ndarray            # (K,) frames since the keypoint was last accepted
    score: float
    hits: int = 1
    missed: int = 0
    age: int = 1
    last: Observation | None = None
    status: list = field(default_factory=list)     # per keypoint this frame: ok / rejected / predicted / no_depth

    def centre(self) -> np.ndarray | None:
        ok = np.all(np.isfinite(self.xyz), axis=1)
        return self.xyz[ok].mean(0) if ok.any() else None

    def confidence(self) -> np.ndarray:
        fresh = 1.0 / (1.0 + 0.25 * self.since)
        consistent = 1.0 / (1.0 + self.rejects)
        c = self.conf * fresh * consistent
        c[~np.all(np.isfinite(self.xyz), axis=1)] = 0.0
        return np.clip(c, 0.0, 1.0)


class Tracker:
    def __init__(self, keypoints, cfg: TrackerConfig = TrackerConfig()):
        self.keypoints = tuple(keypoints)
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._next: dict[str, int] = {}
        self.frames = 0

    def reset(self) -> None:
        self.tracks.clear()

    def _new_id(self, cls: str) -> str:
        n = self._next.get(cls, 0) + 1
        self._next[cls] = n
        return f"{cls}-{n}"

    def update(self, obs: list[Observation]) -> list[Track]:
        """Fold one frame's observations in; returns the live tracks seen this frame (matched or new),
        then those coasting (not seen, not yet ended)."""
        from scipy.optimize import linear_sum_assignment

        self.frames += 1
        c = self.cfg
        seen: list[Track] = []
        free = set(range(len(obs)))
        for cls in sorted({t.cls for t in self.tracks} | {o.cls for o in obs}):
            ti = [k for k, t in enumerate(self.tracks) if t.cls == cls]
            oi = [k for k in free if obs[k].cls == cls]
            if ti and oi:
                cost = np.full((len(ti), len(oi)), 1e6)
                for a, k in enumerate(ti):
                    tc = self.tracks[k].centre()
                    for b, j in enumerate(oi):
                        oc = obs[j].centre()
                        if tc is not None and oc is not None:
                            d = float(np.linalg.norm(tc - oc))
                            if d <= c.gate_m:
                                cost[a, b] = d
                rows, cols = linear_sum_assignment(cost)
                for r, q in zip(rows, cols):
                    if cost[r, q] < 1e6:
                        t = self.tracks[ti[r]]
                        self._fold(t, obs[oi[q]])
                        seen.append(t)
                        free.discard(oi[q])
        for j in sorted(free):
            o = obs[j]
            if o.centre() is None:          # nothing with depth: cannot be placed in 3D, not tracked
                continue
            K = len(self.keypoints)
            t = Track(id=self._new_id(o.cls), cls=o.cls, xyz=np.where(np.isfinite(o.xyz), o.xyz, np.nan).copy(),
                      conf=np.where(np.all(np.isfinite(o.xyz), 1), o.conf, 0.0).astype(float), rejects=np.zeros(K, int),
                      rejected_total=np.zeros(K, int), since=np.where(np.all(np.isfinite(o.xyz), 1), 0, 1),
                      score=o.score, last=o,
                      status=["ok" if np.all(np.isfinite(o.xyz[k])) else "no_depth" for k in range(K)])
            self.tracks.append(t)
            seen.append(t)
        seen_ids = {id(t) for t in seen}
        coasting = []
        for t in self.tracks:
            if id(t) not in seen_ids:
                t.missed += 1
                t.age += 1
                t.since += 1
                t.status = ["predicted"] * len(self.keypoints)
                if t.missed <= c.max_missed:
                    coasting.append(t)
        self.tracks = [t for t in self.tracks if t.missed <= c.max_missed]
        return seen + coasting

    def _fold(self, t: Track, o: Observation) -> None:
        c = self.cfg
        t.hits += 1
        t.age += 1
        t.missed = 0
        t.score = 0.5 * t.score + 0.5 * o.score
        t.last = o
        status = []
        for k in range(len(self.keypoints)):
            z = o.xyz[k]
            if not np.all(np.isfinite(z)):
                t.since[k] += 1
                status.append("no_depth")
                continue
            if not np.all(np.isfinite(t.xyz[k])):
                t.xyz[k] = z
                t.conf[k] = o.conf[k]
                t.since[k] = 0
                t.rejects[k] = 0
                status.append("ok")
                continue
            if np.linalg.norm(z - t.xyz[k]) > c.outlier_m:
                t.rejects[k] += 1
                t.rejected_total[k] += 1
                if t.rejects[k] >= c.reinit_after:
                    t.xyz[k] = z
                    t.conf[k] = o.conf[k]
                    t.rejects[k] = 0
                    t.since[k] = 0
                    status.append("ok")
                else:
                    t.since[k] += 1
                    status.append("rejected")
                continue
            g = c.alpha * float(np.clip(o.conf[k], 0.05, 1.0)) ** 0.5
            t.xyz[k] = t.xyz[k] + g * (z - t.xyz[k])
            t.conf[k] = (1 - c.conf_alpha) * t.conf[k] + c.conf_alpha * o.conf[k]
            t.rejects[k] = 0
            t.since[k] = 0
            status.append("ok")
        t.status = status
