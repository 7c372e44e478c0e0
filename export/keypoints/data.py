"""Training data for the keypoint network, rendered from the simulated world with ground truth.

``kinebridge data keypoints --n N --seed S --out DIR`` renders N RGB-D frames of seeded random
scenes — mugs (varied shape, colour, pose), distractors (boxes, cylinders, spheres, bowls,
plates), the arm with or without a held mug, table colour/texture, lights — from camera viewpoints
around the table, adds sensor noise, and writes the ground truth a training loop needs: per
object its class, centre, amodal box, the four VL-MP mug keypoints in 2D (pixels), their depth
along the optical axis (camera z), their 3D position in the arm's base frame and their visibility,
and how much of the object is visible.

Splits and held-out shapes. Frames are split into ``train`` / ``val`` / ``test``; val and test
scenes contain only mugs whose shape lies in ranges **no training mug has** (:data:`TRAIN_SHAPES`,
:data:`HELDOUT_SHAPES`): radius 38–42 mm, height 94–106 mm, handle reach 26.5–30.5 mm, and the
``ear`` handle style, which training never shows. Every mug on a training table lies outside every
one of those ranges (radius, height and reach each; :meth:`ShapeRanges.disjoint`), and every
held-out mug's radius, height and reach lie outside every training range (the ±2 % jitter of
ambiguous scenes stays in the gaps). One exception, by construction of the world: the mug the
arm's gripper holds (half the training scenes) has the world's one fixed shape — radius 36 mm (a
training radius), height 95 mm and reach 30 mm (inside the held-out bands); no held-out mug has
its radius, so no training mug has a held-out shape. Held-out scenes have no held mug.

Layout on disk (streams from disk: uncompressed ``.npy`` files, opened as memory maps)::

    DIR/manifest.json               generator version, seeds, counts, splits, intrinsics, shape ranges
    DIR/<split>/shard-00000/rgb.npy     (N, H, W, 3) uint8, with sensor noise
    DIR/<split>/shard-00000/depth.npy   (N, H, W) uint16, 0.1 mm per unit, 0 = no depth
    DIR/<split>/shard-00000/labels.npz  per-frame and per-object arrays (see :data:`LABEL_FIELDS`)

Reproducibility: frame content depends only on (seed, split, scene index) through
:class:`numpy.random.SeedSequence`; the same command writes the same data on every machine
(rendering is deterministic on one Mesa/GPU stack; pixels may differ by a level across them).

Sensor noise (RealSense D435i-like): RGB channel gains, brightness, Gaussian noise, occasional
blur; depth noise growing with z², a low-frequency wobble, dropped pixels at depth edges,
random holes; quantised to 0.1 mm.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["GENERATOR_VERSION", "KEYPOINTS", "CLASSES", "MAX_OBJECTS", "ShapeRanges", "TRAIN_SHAPES",
           "HELDOUT_SHAPES", "SPLITS", "SceneSampler", "generate", "Shards", "LABEL_FIELDS", "sensor_noise",
           "sample_camera", "render_views", "DEPTH_UNIT"]

GENERATOR_VERSION = 1
KEYPOINTS = ("K_i", "K_p1", "K_p2", "K_b")
CLASSES = ("mug",)
MAX_OBJECTS = 8
DEPTH_UNIT = 1e-4                      # m per depth.npy unit (0.1 mm); 0 = no depth
WIDTH, HEIGHT = 640, 480
HANDLES = ("round", "square", "ear")
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3, "eval": 4}

LABEL_FIELDS = {
    # per frame
    "intrinsics": "(N, 4) fx, fy, cx, cy (pixels)",
    "T_base_cam": "(N, 4, 4) camera pose in the arm's base frame",
    "scene_seed": "(N,) uint64 seed of the scene",
    "n_objects": "(N,) objects of a known class in the frame's label arrays",
    # per object (M = MAX_OBJECTS slots, -1 / 0 where empty)
    "cls": "(N, M) class index into CLASSES, -1 = empty slot",
    "centre": "(N, M, 2) projection of the mug's axis midpoint (pixels)",
    "box": "(N, M, 4) amodal box x0, y0, x1, y1 (pixels, clipped to the image)",
    "kp_uv": "(N, M, K, 2) keypoints (pixels)",
    "kp_z": "(N, M, K) keypoint depth along the optical axis (m)",
    "kp_xyz": "(N, M, K, 3) keypoints in the arm's base frame (m)",
    "kp_vis": "(N, M, K) keypoint in the image and not covered by anything nearer",
    "vis_frac": "(N, M) fraction of the mug body's camera-facing surface samples in the image and not covered "
                "(occlusion by other things, truncation; the handle behind its own mug does not count)",
    "pixels": "(N, M) visible pixels of the object (segmentation)",
    "shape": "(N, M, 4) radius, height, handle reach (m), handle style index into HANDLES",
    "colour": "(N, M, 3) the object's RGB colour in [0, 1]",
    "held": "(N, M) the mug held by the arm's gripper",
    "ambiguous": "(N,) the scene has several mugs of one shape and colour, close together (VL-MP's ambiguous case)",
}


# ------------------------------------------------------------------------------- shape splits
@dataclass(frozen=True)
class ShapeRanges:
    """Ranges (unions of intervals, m) mug shapes are drawn from, and the handle styles."""

    name: str
    radius: tuple[tuple[float, float], ...]
    height: tuple[tuple[float, float], ...]
    reach: tuple[tuple[float, float], ...]
    handles: tuple[str, ...]

    def sample(self, rng) -> dict:
        def pick(intervals):
            widths = np.array([b - a for a, b in intervals])
            k = rng.choice(len(intervals), p=widths / widths.sum())
            return float(rng.uniform(*intervals[k]))

        from kinebridge.drivers.world.spec import HandleSpec

        radius = pick(self.radius)
        return dict(radius=radius, height=pick(self.height), wall=float(rng.uniform(0.003, min(0.0065, 0.25 * radius))),
                    bottom=float(rng.uniform(0.005, 0.01)), segments=int(rng.integers(16, 29)),
                    handle=HandleSpec(shape=str(rng.choice(self.handles)), reach=pick(self.reach),
                                      span=float(rng.uniform(0.5, 0.75)), thickness=float(rng.uniform(0.004, 0.007))))

    def disjoint(self, radius: float, height: float, reach: float) -> bool:
        """None of the radius, height and reach lies in one of these ranges: a shape these ranges never
        produce. Every training mug is disjoint from :data:`HELDOUT_SHAPES`, every held-out mug from
        :data:`TRAIN_SHAPES` (the jitter of ambiguous scenes keeps within the gaps between them)."""
        inside = lambda v, iv: any(a <= v <= b for a, b in iv)  # noqa: E731
        return not (inside(radius, self.radius) or inside(height, self.height) or inside(reach, self.reach))

    def contains(self, radius: float, height: float, reach: float, handle: str) -> bool:
        inside = lambda v, iv: any(a <= v <= b for a, b in iv)  # noqa: E731
        return (inside(radius, self.radius) and inside(height, self.height) and inside(reach, self.reach)
                and handle in self.handles)


#: Mug shapes of the training split: outside every held-out range.
TRAIN_SHAPES = ShapeRanges("train", radius=((0.029, 0.0365), (0.0435, 0.052)), height=((0.072, 0.092), (0.108, 0.128)),
                           reach=((0.018, 0.025), (0.032, 0.038)), handles=("round", "square"))
#: Mug shapes of the validation and test splits (and ``kinebridge eval keypoints``): never in training.
HELDOUT_SHAPES = ShapeRanges("heldout", radius=((0.038, 0.042),), height=((0.094, 0.106),), reach=((0.0265, 0.0305),),
                             handles=("round", "square", "ear"))


def shapes_for(split: str) -> ShapeRanges:
    return TRAIN_SHAPES if split == "train" else HELDOUT_SHAPES


# ------------------------------------------------------------------------------------ scenes
def _hsv_colour(rng) -> tuple:
    import colorsys
    r = rng.uniform()
    if r < 0.12:                                     # white / light grey
        h, s, v = rng.uniform(), rng.uniform(0, 0.08), rng.uniform(0.8, 0.98)
    elif r < 0.2:                                    # dark
        h, s, v = rng.uniform(), rng.uniform(0, 0.3), rng.uniform(0.12, 0.3)
    else:
        h, s, v = rng.uniform(), rng.uniform(0.35, 0.95), rng.uniform(0.4, 0.95)
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h, s, v)) + (1.0,)


def _footprint(o) -> float:
    if o.kind == "mug":
        return o.radius + o.handle.reach
    if o.kind in ("bowl", "plate"):
        return o.radius
    if o.kind == "distractor":
        return 0.5 * math.hypot(o.size[0], o.size[1])
    return 0.5 * math.hypot(*o.size[:2])


class SceneSampler:
    """Draws scenes for one split: a :class:`SceneSpec` of table, lights, arm, distractors and mugs."""

    R_MIN, R_MAX = 0.26, 0.70           # m from the arm's base
    PHI = 1.3                           # rad either side of the arm's x axis

    def __init__(self, split: str):
        if split not in _SPLIT_CODE:
            raise ValueError(f"split: expected one of {sorted(_SPLIT_CODE)}, got {split!r}")
        self.split = split
        self.shapes = shapes_for(split)

    def scene(self, rng):
        from kinebridge.drivers.world.spec import MugSpec, Placement, SceneSpec

        seed = int(rng.integers(0, 2**62))
        held_out = self.split != "train"
        tool = str(rng.choice(["gripper", "none"] if held_out else ["mug", "mug", "gripper", "none"]))
        n_dis = int(rng.integers(0, 4))
        bowls = int(rng.uniform() < 0.25)
        plates = int(rng.uniform() < 0.2)
        base = SceneSpec.random(seed, n_mugs=0, n_distractors=n_dis, bowls=bowls, plates=plates, tool=tool,
                                particles=0)
        ambiguous = rng.uniform() < 0.25
        n_mugs = int(rng.integers(3, 5)) if ambiguous else int(rng.choice([1, 2, 2, 3, 3, 4]))
        shape0, colour0 = self.shapes.sample(rng), _hsv_colour(rng)
        mugs = []
        for i in range(n_mugs):
            if ambiguous:
                jit = lambda v: float(v * (1 + rng.uniform(-0.02, 0.02)))  # noqa: E731
                shape = dict(shape0, radius=jit(shape0["radius"]), height=jit(shape0["height"]))
                c = np.clip(np.array(colour0[:3]) * (1 + rng.uniform(-0.04, 0.04, 3)), 0, 1)
                colour = tuple(map(float, c)) + (1.0,)
            else:
                shape, colour = self.shapes.sample(rng), _hsv_colour(rng)
            if not held_out:        # clamp jitter back out of the held-out ranges
                shape = _outside_heldout(shape)
            mugs.append(MugSpec(name=f"mug{i}", pose=Placement(x=0.4, y=0.0), color=colour, **shape))
        objects = list(base.objects) + mugs
        spec = SceneSpec(**{**base.model_dump(exclude={"objects", "target", "render_size"}),
                            "objects": [o.model_dump() for o in objects], "render_size": (WIDTH, HEIGHT)})
        return spec, ambiguous

    def placements(self, rng, scene, ambiguous: bool) -> dict[str, tuple[float, float, float]]:
        """Non-overlapping (x, y, yaw°) for every movable object, mugs clustered when ``ambiguous``."""
        objs = [o for o in scene.objects if not o.fixed]
        for _attempt in range(100):
            taken = [(0.30, -0.23, 0.06)] if scene.tool.kind != "none" else []
            out = {}
            ok = True
            anchor = None
            for o in sorted(objs, key=lambda o: -_footprint(o)):
                r = _footprint(o)
                for _ in range(300):
                    if ambiguous and o.kind == "mug" and anchor is not None:
                        a = rng.uniform(0, 2 * math.pi)
                        d = rng.uniform(2 * r + 0.005, 2 * r + 0.06)
                        x, y = anchor[0] + d * math.cos(a), anchor[1] + d * math.sin(a)
                        rho = math.hypot(x, y)
                        if not self.R_MIN <= rho <= self.R_MAX + 0.05:
                            continue
                    else:
                        rho = rng.uniform(self.R_MIN + r, self.R_MAX - r)
                        phi = rng.uniform(-self.PHI, self.PHI)
                        x, y = rho * math.cos(phi), rho * math.sin(phi)
                    margin = 0.003 if (ambiguous and o.kind == "mug") else 0.015
                    if all(math.hypot(x - a, y - b) > r + rb + margin for a, b, rb in taken):
                        taken.append((x, y, r))
                        out[o.name] = (float(x), float(y), float(rng.uniform(-180, 180)))
                        if o.kind == "mug" and anchor is None:
                            anchor = (x, y)
                        break
                else:
                    ok = False
                    break
            if ok:
                return out
        raise RuntimeError("could not place the scene's objects without overlap; fewer objects needed")


def _outside_heldout(shape: dict) -> dict:
    from kinebridge.drivers.world.spec import HandleSpec

    def away(v, iv):
        for a, b in iv:
            if a <= v <= b:
                return a - 1e-4 if v - a < b - v else b + 1e-4
        return v
    h = shape["handle"]
    return dict(shape, radius=away(shape["radius"], HELDOUT_SHAPES.radius),
                height=away(shape["height"], HELDOUT_SHAPES.height),
                handle=HandleSpec(shape=h.shape, reach=away(h.reach, HELDOUT_SHAPES.reach), span=h.span,
                                  thickness=h.thickness))


def apply_placements(world, placements: dict) -> None:
    """Move the world's free objects to ``placements`` (x, y, yaw°), at rest on the table."""
    mj = world._mj
    m, d = world.model, world.data
    with world.lock:
        for name, (x, y, yaw) in placements.items():
            body = world.built.object_bodies[name]
            j = m.body_jntadr[body]
            adr = m.jnt_qposadr[j]
            dof = m.jnt_dofadr[j]
            t = math.radians(yaw) / 2
            d.qpos[adr:adr + 7] = [x, y, 0.0, math.cos(t), 0.0, 0.0, math.sin(t)]
            d.qvel[dof:dof + 6] = 0.0
        mj.mj_forward(m, d)


def sample_camera(rng, target, *, fovy=(40.0, 46.0)):
    """A camera pose around the table looking near ``target`` (base frame) and its intrinsics."""
    from kinebridge.drivers.camera.geometry import Intrinsics, look_at

    target = np.asarray(target, float) + np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06),
                                                   rng.uniform(0.0, 0.05)])
    for _ in range(100):
        az = math.radians(rng.uniform(-115, 115))      # 0: beyond the table's far edge, facing the arm
        el = math.radians(rng.uniform(24, 66))
        dist = rng.uniform(0.55, 1.1)
        eye = target + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        if math.hypot(eye[0], eye[1]) > 0.45:          # clear of the arm
            break
    T = look_at(eye, target)
    roll = math.radians(rng.uniform(-6, 6))
    c, s = math.cos(roll), math.sin(roll)
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    T[:3, :3] = T[:3, :3] @ Rz
    intr = Intrinsics.from_fovy(WIDTH, HEIGHT, float(rng.uniform(*fovy)))
    return T, intr


# ------------------------------------------------------------------------------- sensor noise
def sensor_noise(rng, rgb: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB-D as a RealSense-like sensor would report it (see the module docstring)."""
    import cv2

    H, W = depth.shape
    img = rgb.astype(np.float32)
    img *= np.float32(rng.uniform(0.8, 1.2)) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 5.0))
    if rng.uniform() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.0)))
    out_rgb = np.clip(img, 0, 255).astype(np.uint8)

    z = depth.astype(np.float32)
    valid = z > 0
    sigma = np.float32(0.0008) + np.float32(0.0015) * z * z
    noisy = z + rng.standard_normal(z.shape, dtype=np.float32) * sigma
    lf = (rng.standard_normal((6, 8), dtype=np.float32) * np.float32(rng.uniform(0.0005, 0.002)))
    noisy += cv2.resize(lf, (W, H), interpolation=cv2.INTER_CUBIC)
    # dropped pixels at depth discontinuities and random holes
    gx = np.abs(np.diff(z, axis=1, prepend=z[:, :1]))
    gy = np.abs(np.diff(z, axis=0, prepend=z[:1]))
    edge = cv2.dilate((np.maximum(gx, gy) > 0.02).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    u = rng.random(z.shape, dtype=np.float32)
    drop = (edge & (u < rng.uniform(0.2, 0.7))) | (u > 0.997)
    holes = np.zeros((H, W), np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        ax = (int(rng.integers(3, 25)), int(rng.integers(3, 25)))
        cv2.ellipse(holes, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    drop |= holes.astype(bool)
    noisy[~valid | drop] = 0.0
    q = np.clip(np.round(noisy / DEPTH_UNIT), 0, 65535).astype(np.uint16)
    return out_rgb, q


# ------------------------------------------------------------------------------ ground truth
def _mug_samples(o):
    """Body surface samples of a mug in its frame (outer wall, rim top): points (P, 3), outward normals
    (P, 3); and the points its amodal box spans (wall circles at base and rim, handle)."""
    R, h, w = o.radius, o.height, o.wall
    th = np.linspace(0, 2 * math.pi, 32, endpoint=False)
    c, s = np.cos(th), np.sin(th)
    pts, nrm = [], []
    for z in (0.08 * h, 0.5 * h, 0.92 * h):
        pts.append(np.stack([R * c, R * s, np.full_like(c, z)], 1))
        nrm.append(np.stack([c, s, np.zeros_like(c)], 1))
    pts.append(np.stack([(R - w / 2) * c, (R - w / 2) * s, np.full_like(c, h)], 1))
    nrm.append(np.tile([0.0, 0.0, 1.0], (32, 1)))
    H = o.handle
    zc, a = 0.5 * h, 0.5 * H.span * h
    hp = np.array([[R + H.reach * math.sin(p), 0.0, zc - a * math.cos(p)] for p in np.linspace(0.3, math.pi - 0.3, 6)])
    box_pts = np.concatenate([np.stack([R * c, R * s, np.zeros_like(c)], 1), np.stack([R * c, R * s, np.full_like(c, h)], 1), hp])
    return np.concatenate(pts), np.concatenate(nrm), box_pts


def _object_labels(frame, world, mugs: list, held_mug, intr, T) -> dict:
    """Per-object label arrays of one rendered frame (mugs of the scene, then the held mug)."""
    from kinebridge.drivers.camera.geometry import project

    gt = frame.ground_truth
    depth = frame.depth
    H, W = depth.shape
    M, K = MAX_OBJECTS, len(KEYPOINTS)
    out = {"cls": np.full(M, -1, np.int8), "centre": np.zeros((M, 2), np.float32), "box": np.zeros((M, 4), np.float32),
           "kp_uv": np.zeros((M, K, 2), np.float32), "kp_z": np.zeros((M, K), np.float32),
           "kp_xyz": np.zeros((M, K, 3), np.float32), "kp_vis": np.zeros((M, K), bool),
           "vis_frac": np.zeros(M, np.float32), "pixels": np.zeros(M, np.int32), "shape": np.zeros((M, 4), np.float32),
           "colour": np.zeros((M, 3), np.float32), "held": np.zeros(M, bool)}
    items = [(o.name, o, gt.object_poses[o.name], False) for o in mugs]
    if held_mug is not None and gt.held is not None:
        items.append(("tool", held_mug, gt.held, True))
    cam = T[:3, 3]
    n = 0
    for label, o, Tobj, held in items:
        if n >= M:
            break
        centre_b = Tobj[:3, :3] @ np.array([0.0, 0.0, 0.5 * o.height]) + Tobj[:3, 3]
        cuv, cz = project(centre_b, intr, T)
        if not (cz[0] > 0.05 and 0 <= cuv[0, 0] < W and 0 <= cuv[0, 1] < H):
            continue              # the object's centre is not in view: not a detectable object
        pts, nrm, box_pts = _mug_samples(o)
        Pb = pts @ Tobj[:3, :3].T + Tobj[:3, 3]
        Nb = nrm @ Tobj[:3, :3].T
        uv, z = project(Pb, intr, T)
        facing = np.einsum("ij,ij->i", Nb, cam - Pb) > 0
        iu, iv = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (z > 0) & (iu >= 0) & (iu < W) & (iv >= 0) & (iv < H)
        dz = np.zeros_like(z)
        dz[inside] = depth[iv[inside], iu[inside]]
        seen = inside & ((dz == 0) | (dz >= z - 0.006))
        buv, _ = project(box_pts @ Tobj[:3, :3].T + Tobj[:3, 3], intr, T)
        kp2 = gt.keypoints_2d[label]
        kp3 = gt.keypoints_3d[label]
        out["cls"][n] = 0
        out["centre"][n] = cuv[0]
        out["box"][n] = [max(0, buv[:, 0].min()), max(0, buv[:, 1].min()), min(W - 1, buv[:, 0].max()),
                         min(H - 1, buv[:, 1].max())]
        for k, name in enumerate(KEYPOINTS):
            u, v, zz, vis = kp2[name]
            out["kp_uv"][n, k] = (u, v)
            out["kp_z"][n, k] = zz
            out["kp_xyz"][n, k] = kp3[name]
            out["kp_vis"][n, k] = vis
        out["vis_frac"][n] = float(seen[facing].sum()) / max(1, int(facing.sum()))
        out["pixels"][n] = int(gt.visible_pixels.get(label, 0))
        out["shape"][n] = (o.radius, o.height, o.handle.reach, HANDLES.index(o.handle.shape))
        out["colour"][n] = o.color[:3]
        out["held"][n] = held
        n += 1
    out["n_objects"] = n
    return out


def render_views(world, renderer, rng, scene, views: int, *, noise: bool = True):
    """``views`` frames of ``world`` from random cameras: (rgb, depth_units, labels, intr, T) each."""
    from kinebridge.drivers.camera.configs import ExtrinsicsConfig, SyntheticCameraConfig
    from kinebridge.drivers.camera.synthetic import SyntheticCamera

    mugs = [o for o in scene.objects if o.kind == "mug"]
    held = scene.tool.mug if scene.tool.kind == "mug" else None
    poses = world.object_poses()
    centres = [poses[o.name][:3, 3] for o in mugs] or [np.array([0.45, 0.0, 0.0])]
    for _ in range(views):
        target = centres[int(rng.integers(len(centres)))] if rng.uniform() < 0.85 else np.mean(centres, 0)
        T, intr = sample_camera(rng, target)
        cfg = SyntheticCameraConfig(width=WIDTH, height=HEIGHT, fx=intr.fx,
                                    extrinsics=ExtrinsicsConfig(matrix=tuple(map(tuple, T.tolist()))))
        cam = SyntheticCamera(cfg, world=world)
        frame = cam.capture_with(renderer)
        labels = _object_labels(frame, world, mugs, held, cam.intrinsics, cam.extrinsics)
        if noise:
            rgb, dq = sensor_noise(rng, frame.rgb, frame.depth)
        else:
            rgb = frame.rgb
            dq = np.clip(np.round(frame.depth / DEPTH_UNIT), 0, 65535).astype(np.uint16)
        yield rgb, dq, labels, cam.intrinsics, cam.extrinsics, frame


# ----------------------------------------------------------------------------------- writing
class _ShardWriter:
    def __init__(self, root: Path, size: int):
        self.root, self.size = root, size
        self.index = 0
        self._reset()
        self.count = 0

    def _reset(self):
        self.rgb, self.depth, self.labels = [], [], []

    def add(self, rgb, depth, labels: dict):
        self.rgb.append(rgb)
        self.depth.append(depth)
        self.labels.append(labels)
        self.count += 1
        if len(self.rgb) >= self.size:
            self.flush()

    def flush(self):
        if not self.rgb:
            return
        d = self.root / f"shard-{self.index:05d}"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "rgb.npy", np.stack(self.rgb))
        np.save(d / "depth.npy", np.stack(self.depth))
        keys = self.labels[0].keys()
        np.savez(d / "labels.npz", **{k: np.stack([lb[k] for lb in self.labels]) for k in keys})
        self.index += 1
        self._reset()


def split_counts(n: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, int]:
    if n < 1:
        raise ValueError(f"--n: expected at least 1 frame, got {n}")
    val = int(round(n * fractions[1]))
    test = int(round(n * fractions[2]))
    if n >= 3:
        val, test = max(val, 1), max(test, 1)
    return {"train": n - val - test, "val": val, "test": test}


def with_placements(scene, placements: dict):
    """``scene`` with its movable objects at ``placements`` (x, y, yaw°) — the world is built that way,
    so no two objects overlap even in the first physics call."""
    from kinebridge.drivers.world.spec import Placement, SceneSpec

    objs = [o.model_copy(update={"pose": Placement(x=placements[o.name][0], y=placements[o.name][1],
                                                   yaw_deg=placements[o.name][2])}) if o.name in placements else o
            for o in scene.objects]
    return SceneSpec(**{**scene.model_dump(exclude={"objects"}), "objects": [o.model_dump() for o in objs]})


def scene_rng(seed: int, split: str, index: int):
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODE[split], index]))


def _render_scenes(writer: "_ShardWriter", split: str, seed: int, scenes, want: int, *, views_per_layout: int,
                   layouts_per_scene: int, bar=None) -> int:
    """Render the scenes of ``split`` with the indices ``scenes`` (in order) into ``writer`` until it holds
    ``want`` frames; returns the number of scenes built."""
    from kinebridge.drivers.world.render import Renderer
    from kinebridge.drivers.world.world import World

    sampler = SceneSampler(split)
    built = 0
    for scene_i in scenes:
        if writer.count >= want:
            break
        rng = scene_rng(seed, split, scene_i)
        built += 1
        scene, ambiguous = sampler.scene(rng)
        first = sampler.placements(rng, scene, ambiguous)
        scene = with_placements(scene, first)
        world = World(scene)
        renderer = Renderer(world, WIDTH, HEIGHT)
        try:
            for layout in range(layouts_per_scene):
                apply_placements(world, first if layout == 0 else sampler.placements(rng, scene, ambiguous))
                for rgb, dq, lab, intr, T, _f in render_views(world, renderer, rng, scene, views_per_layout):
                    lab = dict(lab, intrinsics=np.array([intr.fx, intr.fy, intr.cx, intr.cy], np.float32),
                               T_base_cam=T.astype(np.float64), scene_seed=np.uint64(scene.seed),
                               ambiguous=np.bool_(ambiguous))
                    writer.add(rgb, dq, lab)
                    if bar is not None:
                        bar.update(1)
                    if writer.count >= want:
                        break
                if writer.count >= want:
                    break
        finally:
            renderer.close()
    return built


def render_split(out: Path, split: str, want: int, seed: int, *, views_per_layout: int = 3, layouts_per_scene: int = 4,
                 shard_size: int = 64, bar=None) -> int:
    """Render ``want`` frames of ``split`` into ``out/split``; returns the number of scenes built."""
    import itertools

    writer = _ShardWriter(Path(out) / split, shard_size)
    built = _render_scenes(writer, split, seed, itertools.count(), want, views_per_layout=views_per_layout,
                           layouts_per_scene=layouts_per_scene, bar=bar)
    writer.flush()
    return built


# ------------------------------------------------------------------------- parallel rendering
def _chunk_plan(counts: dict[str, int], frames_per_scene: int, shard_size: int) -> list[tuple]:
    """Chunks of whole scenes, one shard each: (split, chunk, first scene, scenes, frames). Held-out
    splits first, so that a time limit cuts the training split only. Scene i of a split always holds
    frames [i·F, (i + 1)·F) of the split (F = views × layouts), as in the serial order."""
    per = max(1, int(round(shard_size / frames_per_scene)))
    plan = []
    for split in ("val", "test", "train"):
        want = counts.get(split, 0)
        c = 0
        while c * per * frames_per_scene < want:
            frames = min(per * frames_per_scene, want - c * per * frames_per_scene)
            plan.append((split, c, c * per, per, frames))
            c += 1
    return plan


def _render_chunk(task: tuple) -> tuple:
    """Worker: render one chunk into ``out/split/.chunk-C`` and move its shard to ``shard-C``."""
    import shutil

    out, split, chunk, first, scenes, frames, seed, views, layouts = task
    tmp = Path(out) / split / f".chunk-{chunk:05d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    writer = _ShardWriter(tmp, max(1, frames))
    _render_scenes(writer, split, seed, range(first, first + scenes), frames, views_per_layout=views,
                   layouts_per_scene=layouts)
    writer.flush()
    (tmp / "shard-00000").rename(Path(out) / split / f"shard-{chunk:05d}")
    tmp.rmdir()
    return split, chunk, writer.count


def _generate_parallel(out: Path, counts: dict, seed: int, *, views_per_layout: int, layouts_per_scene: int,
                       shard_size: int, workers: int, time_limit_s: float | None, bar) -> dict:
    """Render the chunks of :func:`_chunk_plan` on ``workers`` processes (spawned: each has its own GL
    context). At ``time_limit_s`` the workers are stopped and every split keeps its chunks up to the
    first one not finished (the data stay the serial order's first frames). Returns counts per split."""
    import multiprocessing as mp
    import shutil

    plan = _chunk_plan(counts, views_per_layout * layouts_per_scene, shard_size)
    for split in counts:
        (out / split).mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), split, c, first, n, frames, seed, views_per_layout, layouts_per_scene)
             for split, c, first, n, frames in plan]
    deadline = None if time_limit_s is None else time.time() + time_limit_s
    done: dict[str, dict[int, int]] = {s: {} for s in counts}
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(max(1, min(workers, len(tasks))))
    try:
        it = pool.imap_unordered(_render_chunk, tasks)
        for _ in range(len(tasks)):
            wait = None if deadline is None else deadline - time.time()
            if wait is not None and wait <= 0:
                break
            try:
                split, c, n = it.next(timeout=wait)
            except mp.TimeoutError:
                break
            done[split][c] = n
            if bar is not None:
                bar.update(n)
    finally:
        pool.terminate()
        pool.join()
    rendered = {}
    for split in counts:
        keep = 0
        while keep in done[split]:
            keep += 1
        rendered[split] = sum(done[split][c] for c in range(keep))
        for d in (out / split).glob("*"):           # chunks after the first unfinished one, and partial ones
            if d.name.startswith(".chunk-") or (d.name.startswith("shard-") and int(d.name[6:]) >= keep):
                shutil.rmtree(d, ignore_errors=True)
        if not any((out / split).iterdir()):
            (out / split).rmdir()
    return rendered


def split_stats(out: Path, split: str) -> dict:
    """Counts of a rendered split, from its labels."""
    seeds, objects, unocc, empty, frames, shards = set(), 0, 0, 0, 0, 0
    for d in sorted((Path(out) / split).glob("shard-*")):
        with np.load(d / "labels.npz") as z:
            n = z["n_objects"]
            frames += int(n.size)
            shards += 1
            objects += int(n.sum())
            empty += int((n == 0).sum())
            seeds.update(int(x) for x in z["scene_seed"])
            for f in range(n.size):
                unocc += int((z["vis_frac"][f, :n[f]] >= 0.9).sum())
    return {"frames": frames, "shards": shards, "scenes": len(seeds), "mugs": objects, "unoccluded_mugs": unocc,
            "frames_without_mugs": empty}


def write_manifest(out: Path, n: int, seed: int, *, views_per_layout: int, layouts_per_scene: int, shard_size: int,
                   seconds: float, command: str, extra: dict | None = None) -> dict:
    splits = {}
    for split in SPLITS:
        if (Path(out) / split).is_dir():
            splits[split] = {**split_stats(out, split), "scene_seeds": f"SeedSequence([{seed}, {_SPLIT_CODE[split]}, i])",
                             "shapes": asdict(shapes_for(split))}
    manifest = {
        "kind": "kinebridge-keypoint-data", "generator_version": GENERATOR_VERSION, "seed": seed, "frames": n,
        "splits": splits, "keypoints": list(KEYPOINTS), "classes": list(CLASSES), "max_objects": MAX_OBJECTS,
        "image": {"width": WIDTH, "height": HEIGHT, "depth_unit_m": DEPTH_UNIT},
        "camera": {"width": WIDTH, "height": HEIGHT, "fovy_deg": [40.0, 46.0], "principal_point": "image centre",
                   "square_pixels": True, "distance_m": [0.55, 1.1], "elevation_deg": [24, 66],
                   "azimuth_deg": [-115, 115], "roll_deg": [-6, 6]},
        "views_per_layout": views_per_layout, "layouts_per_scene": layouts_per_scene, "shard_size": shard_size,
        "label_fields": LABEL_FIELDS, "seconds": round(seconds, 1), "command": command,
        "seeding": "scene i of a split: numpy SeedSequence([seed, split code (train 1, val 2, test 3), i])",
        **(extra or {}),
    }
    (Path(out) / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def generate(out: str | Path, n: int, seed: int = 0, *, fractions=(0.8, 0.1, 0.1), views_per_layout: int = 3,
             layouts_per_scene: int = 4, shard_size: int = 64, progress: bool = True, command: str = "",
             workers: int = 1, time_limit_s: float | None = None) -> dict:
    """Render ``n`` frames into ``out`` (see the module docstring); returns the manifest.

    ``workers`` > 1 renders chunks of whole scenes (one shard each, about ``shard_size`` frames) on that
    many processes: the same frames in the same order as one process, in other shard boundaries.
    ``time_limit_s`` (with workers) stops rendering then: the held-out splits are rendered first, and
    the training split keeps its first frames up to the first chunk not finished; the manifest's
    ``frames`` is what was written and ``requested_frames`` what was asked for."""
    from tqdm import tqdm

    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(out)
    if (out / "manifest.json").exists():
        raise ValueError(f"--out {out} already holds a data set (manifest.json); choose a new directory")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {seed!r}")
    if workers < 1:
        raise ValueError(f"--workers: expected at least 1, got {workers}")
    if time_limit_s is not None and (workers < 2 or time_limit_s <= 0):
        raise ValueError("--time-limit-s: needs --workers ≥ 2 and a positive number of seconds")
    counts = split_counts(n, fractions)
    t0 = time.time()
    extra = {}
    with tqdm(total=n, desc="render", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        if workers > 1:
            counts = {k: v for k, v in counts.items() if v}
            rendered = _generate_parallel(out, counts, seed, views_per_layout=views_per_layout,
                                          layouts_per_scene=layouts_per_scene, shard_size=shard_size,
                                          workers=workers, time_limit_s=time_limit_s, bar=bar)
            per = max(1, int(round(shard_size / (views_per_layout * layouts_per_scene))))
            extra = {"workers": workers, "time_limit_s": time_limit_s, "requested_frames": n,
                     "shard_frames": per * views_per_layout * layouts_per_scene}
            n = sum(rendered.values())
            if rendered.get("train", 0) == 0:
                raise RuntimeError(f"no training frames were rendered within --time-limit-s {time_limit_s}; "
                                   f"allow more time or render fewer frames ({out})")
        else:
            for split in SPLITS:
                if counts[split]:
                    render_split(out, split, counts[split], seed, views_per_layout=views_per_layout,
                                 layouts_per_scene=layouts_per_scene, shard_size=shard_size, bar=bar)
    return write_manifest(out, n, seed, views_per_layout=views_per_layout, layouts_per_scene=layouts_per_scene,
                          shard_size=shard_size, seconds=time.time() - t0, command=command, extra=extra)


# ----------------------------------------------------------------------------------- reading
class Shards:
    """Random access to one split of a data set, streamed from disk (memory-mapped .npy files)."""

    def __init__(self, root: str | Path, split: str):
        root = Path(root)
        mf = root / "manifest.json"
        if not mf.exists():
            raise ValueError(f"{root} is not a keypoint data set (no manifest.json); make one with "
                             "`kinebridge data keypoints --n N --out DIR`")
        self.manifest = json.loads(mf.read_text())
        if self.manifest.get("generator_version") != GENERATOR_VERSION:
            raise ValueError(f"{root}: generator version {self.manifest.get('generator_version')}, this kinebridge "
                             f"reads version {GENERATOR_VERSION}; re-render the data")
        self.split = split
        dirs = sorted((root / split).glob("shard-*"))
        self._rgb, self._depth, self._labels, self._offsets = [], [], [], [0]
        for d in dirs:
            rgb = np.load(d / "rgb.npy", mmap_mode="r")
            self._rgb.append(rgb)
            self._depth.append(np.load(d / "depth.npy", mmap_mode="r"))
            with np.load(d / "labels.npz") as z:
                self._labels.append({k: z[k] for k in z.files})
            self._offsets.append(self._offsets[-1] + rgb.shape[0])
        self.n = self._offsets[-1]

    def __len__(self) -> int:
        return self.n

    def _loc(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        s = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return s, i - self._offsets[s]

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (H, W, 3), depth float32 metres (H, W)) of frame ``i``."""
        s, j = self._loc(i)
        return np.array(self._rgb[s][j]), self._depth[s][j].astype(np.float32) * np.float32(DEPTH_UNIT)

    def labels(self, i: int) -> dict:
        s, j = self._loc(i)
        return {k: v[j] for k, v in self._labels[s].items()}
