"""The synthetic camera: the simulated world rendered from a configured viewpoint, with ground truth.

Each frame is one colour + depth pass (and, with ``segmentation``, one label pass) of
:class:`kinebridge.drivers.world.render.Renderer` in the capture thread, paced at ``fps`` on
CLOCK_MONOTONIC (an absolute schedule: a slow frame delays the next, it does not shift the
rate; missed slots are skipped, not caught up). The world is read under its lock, so another
thread may step it meanwhile. ``host_stamp_ns`` is taken when the world's state is copied for
rendering (the capture instant), ``device_stamp_ns`` is the world's simulated time then.

Ground truth alongside every frame (:class:`~kinebridge.drivers.camera.base.GroundTruth`):
segmentation label ids, keypoints in 3-D (base frame) and projected to pixels with their
depth and visibility, object poses, flange and held mug poses. A keypoint is *visible* when it
projects inside the image, lies in front of the camera and the rendered depth at its pixel is
not nearer than its own depth by more than ``VISIBILITY_TOL`` (so points on a visible surface
count, points behind or inside something do not).
"""

from __future__ import annotations

import time

import numpy as np

from kinebridge.drivers.camera import geometry
from kinebridge.drivers.camera.base import Camera, CameraError, Frame, GroundTruth
from kinebridge.drivers.camera.configs import SyntheticCameraConfig

__all__ = ["SyntheticCamera", "VISIBILITY_TOL", "keypoints_2d"]

VISIBILITY_TOL = 0.004      # m


def keypoints_2d(kp3: dict, depth: np.ndarray, intr: geometry.Intrinsics, T_base_cam: np.ndarray,
                 tol: float = VISIBILITY_TOL) -> dict:
    """``{label: {name: (u, v, z, visible)}}`` for ``{label: {name: xyz}}`` (see the module docstring)."""
    out: dict = {}
    H, W = depth.shape
    for label, kps in kp3.items():
        names = list(kps)
        if not names:
            continue
        uv, z = geometry.project(np.array([kps[n] for n in names]), intr, T_base_cam)
        res = {}
        for n, (u, v), zz in zip(names, uv, z):
            iu, iv = int(round(u)) if np.isfinite(u) else -1, int(round(v)) if np.isfinite(v) else -1
            inside = zz > 0 and 0 <= iu < W and 0 <= iv < H
            vis = bool(inside and (depth[iv, iu] == 0.0 or depth[iv, iu] >= zz - tol))
            res[n] = (float(u), float(v), float(zz), vis)
        out[label] = res
    return out


def _pixel_counts(seg: np.ndarray | None, labels: tuple[str, ...]) -> dict:
    if seg is None:
        return {}
    counts = np.bincount(seg.ravel(), minlength=len(labels))
    return {labels[k]: int(c) for k, c in enumerate(counts[:len(labels)]) if c}


class SyntheticCamera(Camera):
    """Renders ``world`` (a :class:`~kinebridge.drivers.world.world.World`) per ``config``."""

    kind = "synthetic"

    def __init__(self, config: SyntheticCameraConfig | None = None, *, world=None):
        config = SyntheticCameraConfig() if config is None else config
        if world is None:
            raise ValueError("SyntheticCamera needs the world to render: make_camera(config, world=world)")
        super().__init__(config)
        self.world = world
        self.intrinsics = config.intrinsics()
        self.extrinsics = config.extrinsics.pose()
        self._renderer = None
        self._next = 0.0

    def _start(self) -> None:
        w, h = self.world.model.vis.global_.offwidth, self.world.model.vis.global_.offheight
        if self.config.width > w or self.config.height > h:
            raise CameraError(f"synthetic camera {self.config.width}×{self.config.height} exceeds the world's "
                              f"render_size {w}×{h}; build the scene with a larger SceneSpec.render_size")

    def _thread_init(self) -> None:
        from kinebridge.drivers.world.render import Renderer

        c = self.config
        self._renderer = Renderer(self.world, c.width, c.height, backend=c.backend, near=c.near, far=c.far)
        self._next = time.monotonic()

    def _grab(self) -> Frame | None:
        c = self.config
        if c.realtime:
            period = 1.0 / c.fps
            now = time.monotonic()
            if now < self._next:
                if self._stop.wait(self._next - now):
                    return None
            else:
                self._next += period * np.floor((now - self._next) / period)    # skip missed slots
            self._next += period
        return self.capture_with(self._renderer)

    def capture_with(self, renderer) -> Frame:
        """Render one frame now with ``renderer`` (in its thread) — the capture path of every frame."""
        c = self.config
        r = renderer
        with self.world.lock:
            stamp = time.monotonic_ns()
            t = r.update(self.intrinsics, self.extrinsics)
            gt_state = self.world.ground_truth() if c.ground_truth else None
        rgb, depth, labels = r.render(self.intrinsics, self.extrinsics, segmentation=c.ground_truth and c.segmentation,
                                      update=False)
        gt = None
        if gt_state is not None:
            gt = GroundTruth(labels=self.world.labels, segmentation=labels, keypoints_3d=gt_state["keypoints"],
                             keypoints_2d=keypoints_2d(gt_state["keypoints"], depth, self.intrinsics, self.extrinsics),
                             object_poses=gt_state["objects"], flange=gt_state["flange"], held=gt_state["held"],
                             world_time=t, visible_pixels=_pixel_counts(labels, self.world.labels))
        return Frame(rgb=rgb, depth=depth, intrinsics=self.intrinsics, extrinsics=self.extrinsics.copy(),
                     host_stamp_ns=stamp, device_stamp_ns=int(round(t * 1e9)), seq=0, ground_truth=gt)

    def _thread_exit(self) -> None:
        from kinebridge.drivers.world.gl import release_gl_context

        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        release_gl_context()

    def _stop_device(self) -> None:
        pass
