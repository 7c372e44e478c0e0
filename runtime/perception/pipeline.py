"""One frame → candidates: detect, back-project (VL-MP eq. 2), track, describe. No bus, no threads.

    p = Perception(KeypointDetector(load()))
    r = p.process(frame)           # PerceptionResult: body (a Keypoints message body), candidates, timing
    r.body.objects, r.body.reason

The node (:mod:`kinebridge.runtime.perception.node`) publishes ``r.body``; a planner in the same
process may call :meth:`Perception.process` itself (perception on demand).

What is never passed on as real: a keypoint without depth (a depth hole under its reference
window) has no 3D position in this frame — a tracked object keeps its last estimate with the
keypoint's status ``no_depth`` and a decaying confidence, a new one has the keypoint absent;
an object with no depth at any keypoint is reported without keypoints (``status
"low_confidence"``, the reason); a frame without extrinsics gives no base-frame keypoints at all
(the reason says the camera is not calibrated); nothing detected gives an empty list and the
reason (``nothing in view``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from kinebridge.export.keypoints.lift import LiftConfig, lift
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.perception.candidates import build_candidates
from kinebridge.runtime.perception.tracking import Observation, Tracker, TrackerConfig

__all__ = ["Perception", "PerceptionResult"]

REGRESSED_CONF = 0.5            # a keypoint without heatmap support keeps half its confidence


@dataclass
class PerceptionResult:
    body: M.Keypoints
    candidates: list[dict]
    timing_ms: dict = field(default_factory=dict)
    detections: list = field(default_factory=list)


class Perception:
    def __init__(self, detector, keypoints=None, *, camera: str = "", model_name: str = "", provider: str = "",
                 tracker: TrackerConfig = TrackerConfig(), support_z: float | None = None):
        """``support_z``: the table top's height in the base frame; objects standing on it get their 3D
        keypoints from the table and their axis (:mod:`kinebridge.export.keypoints.lift`), others (and all
        with ``None``) from the depth head alone (eq. 2)."""
        self.detector = detector
        self.lift = LiftConfig(support_z=support_z)
        self.keypoints = tuple(keypoints or getattr(detector, "keypoints", ()) or ("K_i", "K_p1", "K_p2", "K_b"))
        self.camera = camera
        self.model_name = model_name
        self.provider = provider
        self.tracker = Tracker(self.keypoints, tracker)

    def reset(self) -> None:
        self.tracker.reset()

    def warmup(self, width: int = 640, height: int = 480) -> None:
        """One blank frame through every stage (imports, first-run allocations), then a clean tracker."""
        from kinebridge.drivers.camera.base import Frame
        from kinebridge.drivers.camera.geometry import Intrinsics

        f = Frame(rgb=np.zeros((height, width, 3), np.uint8), depth=np.ones((height, width), np.float32),
                  intrinsics=Intrinsics.from_fovy(width, height, 42.5), extrinsics=np.eye(4), host_stamp_ns=0,
                  device_stamp_ns=None, seq=0)
        self.process(f)
        self.reset()

    def process(self, frame) -> PerceptionResult:
        t0 = time.perf_counter()
        res = self.detector.detect(frame)
        t1 = time.perf_counter()
        K = frame.intrinsics.K
        T = frame.extrinsics
        obs, loose = [], []
        for d in res.detections:
            if d.uv is None:                                   # a class without keypoints (open vocabulary)
                loose.append(_no_keypoints(d, f"{d.cls}-?{len(loose) + 1}", d.reason or "no keypoint model for it"))
                continue
            z = np.where(d.depth_ok, d.z, np.nan)
            if T is None:
                loose.append(_no_keypoints(d, f"{d.cls}-?{len(loose) + 1}",
                                           "camera not calibrated (the frame has no extrinsics): no base-frame keypoints"))
                continue
            xyz, uv, src = lift(self.keypoints, d.uv, z, K, T, self.lift)
            conf = np.where(d.depth_ok, d.conf, 0.0) * np.where(d.extra.get("regressed", False), REGRESSED_CONF, 1.0)
            o = Observation(cls=d.cls, score=float(d.score), xyz=xyz, conf=np.clip(conf, 0, 1),
                            extra={"uv": uv, "z": z, "lift": src, "visible": d.visible, "box": d.box, "centre_uv": d.centre,
                                   "source": d.source})
            if o.centre() is None:
                loose.append(_no_keypoints(d, f"{d.cls}-?{len(loose) + 1}",
                                           "no depth at any keypoint (depth holes under the object): no 3D keypoints"))
                continue
            obs.append(o)
        tracks = self.tracker.update(obs)
        t2 = time.perf_counter()
        cands = build_candidates(tracks, self.keypoints, frame.rgb, frame.depth, K, T) + loose
        t3 = time.perf_counter()
        reason = None
        if not cands:
            reason = res.reason or "nothing in view: no object of a known class detected"
        elif all(c["status"] != "ok" for c in cands):
            reason = "low confidence: " + "; ".join(f"{c['id']}: {c['reason']}" for c in cands[:4])
        if reason is not None and len(reason) > 1000:
            reason = reason[:997] + "..."
        timing = {**{k: round(v, 3) for k, v in res.timing_ms.items()}, "detect": round((t1 - t0) * 1e3, 3),
                  "track": round((t2 - t1) * 1e3, 3), "candidates": round((t3 - t2) * 1e3, 3)}
        H, W = frame.depth.shape
        body = M.Keypoints(camera=self.camera, objects=cands[:64], reason=reason, frame_seq=int(frame.seq),
                           capture_ns=int(frame.host_stamp_ns), width=int(W), height=int(H), model=self.model_name,
                           provider=self.provider, stages_ms=timing)
        return PerceptionResult(body=body, candidates=cands, timing_ms=timing, detections=res.detections)


def _no_keypoints(d, oid: str, reason: str) -> dict:
    return {"id": oid, "class": d.cls, "score": round(float(np.clip(d.score, 0, 1)), 3), "keypoints": {},
            "status": "no_keypoints" if d.uv is None else "low_confidence", "reason": reason,
            "source": d.source or None, "box": [round(float(v), 1) for v in d.box],
            "pixel": [round(float(c), 1) for c in d.centre]}
