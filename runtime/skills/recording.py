"""Recording skills: from a keypoint-tracked video (VL-MP Fig. 3) and from the arm's state stream.

**From a video.** Each frame's keypoints — 2D pixels with a depth per keypoint, what VL-MP's HRNet
heads predict (centre, (u, v), z) — are lifted to the base frame by eq. (2),
K = R·(z·K_cam⁻¹·[u, v, 1]ᵀ) + t, with the camera's intrinsics and its pose T_base_cam. The
manipulated object's keypoints give its *local frame* in every frame (a rigid fit of its keypoint
model — K_i, K_p1, K_p2, K_b in its own keypoint frame — to what was seen, so the camera's pose
and any keypoint missing from one frame do not matter); the frames are smoothed over time
(Savitzky–Golay on positions and on rotation vectors about the middle frame) and turned into the
flange's trajectory through the grasp (the object's keypoint frame in the flange frame, from the
held object's keypoints ``slave_flange``). The last frames give the interaction state: the
target's keypoints (averaged over the last ``final_frames`` frames) and the object's final
keypoints. The keypoint source is a *detector* — any ``detector(frame) -> {label: {name: (u, v, z,
visible)}}`` (perception's network plugs in here); :class:`GroundTruthKeypoints` is the simulated
world's ground truth with pixel and depth noise. :func:`render_demo_video` renders a demonstration
in the world with its synthetic camera (the world's scripted demonstrator pouring) and returns the
detections per frame.

**From the arm's state stream (kinesthetic teaching).** A person guides the RM75 (or, in the
simulator, a scripted drag moves it) while ``kinebridge run`` records: ``control/state`` in the
MCAP recording gives the joints over time; forward kinematics gives the flange trajectory; the
still parts at either end are trimmed (joint speed below ``rest_speed``); the target's keypoints
come from the recording's ``world/truth`` (the simulated world) or are given; the held object's
keypoints are the skill's grasp. :func:`states_from_mcap` reads the stream, :func:`demo_from_states`
makes the demonstration record that :func:`~kinebridge.runtime.skills.pour_mug.skill_from_records`
turns into a skill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinebridge.kernels import bridge
from kinebridge.kernels import quaternion as quat
from kinebridge.kernels import rm75

__all__ = ["GroundTruthKeypoints", "lift_keypoints", "fit_object_frame", "smooth_frames", "demo_from_video",
           "render_demo_video", "demo_from_states", "states_from_mcap", "VideoFrameKeypoints"]


@dataclass
class VideoFrameKeypoints:
    """One frame of a keypoint-tracked video: its time (s), detections {label: {name: (u, v, z, visible)}},
    the camera (intrinsics as fx, fy, cx, cy; T_base_cam 4 × 4)."""

    t: float
    detections: dict
    fx: float
    fy: float
    cx: float
    cy: float
    T_base_cam: np.ndarray


class GroundTruthKeypoints:
    """A detector for the simulated world: its ground-truth keypoints (pixels and depth along the optical
    axis) with Gaussian noise — ``pixel_noise`` px and ``depth_noise`` m (1σ); keypoints outside the
    image are dropped, occluded ones kept (a depth head predicts them) with twice the noise."""

    def __init__(self, pixel_noise: float = 0.5, depth_noise: float = 0.001, seed: int = 0):
        self.pixel_noise, self.depth_noise = float(pixel_noise), float(depth_noise)
        self.rng = np.random.default_rng(seed)

    def __call__(self, frame) -> dict:
        gt = frame.ground_truth
        if gt is None:
            raise ValueError("GroundTruthKeypoints: the frame has no ground truth (a synthetic camera with "
                             "ground_truth = true)")
        W, H = frame.intrinsics.width, frame.intrinsics.height
        out = {}
        for label, kps in gt.keypoints_2d.items():
            res = {}
            for name, (u, v, z, vis) in kps.items():
                if not (np.isfinite(u) and np.isfinite(v) and z > 0 and 0 <= u < W and 0 <= v < H):
                    continue
                k = 1.0 if vis else 2.0
                n = self.rng.normal(0.0, 1.0, 3)
                res[name] = (u + k * self.pixel_noise * n[0], v + k * self.pixel_noise * n[1],
                             z + k * self.depth_noise * n[2], bool(vis))
            out[label] = res
        return out


def lift_keypoints(f: VideoFrameKeypoints) -> dict:
    """eq. (2): {label: {name: xyz (base frame, m)}} from one frame's detections."""
    out = {}
    R, t = f.T_base_cam[:3, :3], f.T_base_cam[:3, 3]
    for label, kps in f.detections.items():
        res = {}
        for name, (u, v, z, _vis) in kps.items():
            Xc = np.array([z * (u - f.cx) / f.fx, z * (v - f.cy) / f.fy, z])
            res[name] = R @ Xc + t
        out[label] = res
    return out


def _kabsch(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(4, 4) T minimising Σ|T·a − b|² (rows of A, B)."""
    ca, cb = A.mean(axis=0), B.mean(axis=0)
    U, _, Vt = np.linalg.svd((A - ca).T @ (B - cb))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, cb - R @ ca
    return T


def fit_object_frame(observed: dict, model: dict) -> np.ndarray | None:
    """The object's frame (4, 4, base) whose model keypoints (``model``: {name: xyz in its frame}) best
    match ``observed`` ({name: xyz}); None with fewer than 3 common keypoints."""
    names = [n for n in model if n in observed]
    if len(names) < 3:
        return None
    return _kabsch(np.array([model[n] for n in names], float), np.array([observed[n] for n in names], float))


def smooth_frames(T: np.ndarray, window: int = 9, order: int = 2) -> np.ndarray:
    """Savitzky–Golay smoothing of a pose sequence (N, 4, 4): positions, and rotation vectors relative to
    the middle pose (a demonstration turns the object by well under π from its middle)."""
    from scipy.signal import savgol_filter
    from scipy.spatial.transform import Rotation

    n = len(T)
    w = min(window, n if n % 2 else n - 1)
    if w <= order + 1:
        return T.copy()
    out = T.copy()
    out[:, :3, 3] = savgol_filter(T[:, :3, 3], w, order, axis=0, mode="interp")
    Rm = T[n // 2, :3, :3]
    rv = Rotation.from_matrix(np.einsum("ji,njk->nik", Rm, T[:, :3, :3])).as_rotvec()
    rv = savgol_filter(rv, w, order, axis=0, mode="interp")
    out[:, :3, :3] = Rm @ Rotation.from_rotvec(rv).as_matrix()
    return out


def _model_in_own_frame(slave_kp_flange: dict) -> tuple[dict, np.ndarray]:
    """(the held object's keypoints in its keypoint frame, that frame in the flange frame)."""
    S_f = bridge.keypoint_frame(slave_kp_flange)
    inv = np.linalg.inv(S_f)
    return {k: (inv[:3, :3] @ np.asarray(v, float) + inv[:3, 3]) for k, v in slave_kp_flange.items()}, S_f


def demo_from_video(frames: list[VideoFrameKeypoints], slave_kp_flange: dict, *, manipulated: str = "tool",
                    target: str, final_frames: int = 5, window: int = 9, sample_hz: float | None = 50.0) -> dict:
    """A demonstration record (t, flange poses, object frames, final keypoints) from a keypoint-tracked
    video: ``manipulated`` is the label of the moved object, ``target`` the master's (module docstring).
    ValueError if the object is seen in fewer than 3 frames or the target never."""
    model, S_f = _model_in_own_frame(slave_kp_flange)
    ts, Ts, targets = [], [], []
    for f in frames:
        kp = lift_keypoints(f)
        T = fit_object_frame(kp.get(manipulated, {}), model)
        if T is not None:
            ts.append(f.t)
            Ts.append(T)
        tk = kp.get(target, {})
        if all(k in tk for k in bridge.REQUIRED):
            targets.append(tk)
    if len(Ts) < 3:
        raise ValueError(f"demo_from_video: the manipulated object {manipulated!r} is seen (≥ 3 keypoints) in only "
                         f"{len(Ts)} frames")
    if not targets:
        raise ValueError(f"demo_from_video: the target {target!r} never shows {list(bridge.REQUIRED)}")
    t = np.asarray(ts, float)
    T = smooth_frames(np.array(Ts), window)
    if sample_hz:
        T, t = _resample(T, t, sample_hz)
    flange = T @ np.linalg.inv(S_f)
    last = targets[-final_frames:]
    master = {k: np.mean([tk[k] for tk in last if k in tk], axis=0) for k in set().union(*last)}
    T_end = T[-1]
    slave_final = {k: (T_end[:3, :3] @ v + T_end[:3, 3]) for k, v in model.items()}
    objects = np.array([rm75.matrix_to_pose7(x) for x in T])
    return {"t": t - t[0] + (t[1] - t[0]), "poses": flange, "objects": objects,
            "final": {"master": {k: v.tolist() for k, v in master.items()},
                      "slave": {k: v.tolist() for k, v in slave_final.items()}},
            "source": "video", "frames": len(frames), "seen": len(Ts)}


def _resample(T: np.ndarray, t: np.ndarray, hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Poses at ``hz`` on [t0, t_end] (positions linear, rotations by geodesic interpolation)."""
    n = max(3, int(round((t[-1] - t[0]) * hz)) + 1)
    tn = np.linspace(t[0], t[-1], n)
    out = np.repeat(np.eye(4)[None], n, axis=0)
    for a in range(3):
        out[:, a, 3] = np.interp(tn, t, T[:, a, 3])
    q = quat.make_continuous(np.array([quat.from_matrix(x[:3, :3]) for x in T]))
    k = np.clip(np.searchsorted(t, tn, side="right") - 1, 0, len(t) - 2)
    s = ((tn - t[k]) / np.maximum(t[k + 1] - t[k], 1e-12))[:, None]
    rel = quat.log_at(q[k], q[k + 1])
    qn = quat.exp_at(q[k], s * rel)
    out[:, :3, :3] = quat.to_matrix(qn)
    return out, tn


def render_demo_video(seed: int, *, fps: float = 10.0, width: int = 640, height: int = 480, design=None,
                      detector=None, camera=None) -> tuple[list[VideoFrameKeypoints], dict]:
    """A demonstration in the simulated world filmed by its synthetic camera: the scene
    :func:`~kinebridge.runtime.skills.pour_mug.reachable_scene` (``seed``), the world's scripted
    demonstrator pouring into its target, one frame every 1/``fps`` s through ``detector`` (default
    :class:`GroundTruthKeypoints`). Returns (frames, the ground truth: flange poses at the frame
    times, the final keypoints, the score, the target's label)."""
    from kinebridge.drivers.camera.configs import SyntheticCameraConfig
    from kinebridge.drivers.camera.synthetic import SyntheticCamera
    from kinebridge.drivers.world.render import Renderer
    from kinebridge.drivers.world.scoring import PourMonitor
    from kinebridge.drivers.world.world import World
    from kinebridge.runtime.skills import pour_mug as pm

    design = design or pm.DESIGN
    scene = pm.reachable_scene(seed)
    scene = scene.model_copy(update={"render_size": (max(width, 320), max(height, 240))})
    world = World(scene)
    rng = np.random.default_rng([int(seed), 11])
    r = rm75.ik(pm._start_pose(rng), world.arm_q, float(scene.arm.d7))
    if r.ok:
        world.set_arm(r.q)
    q, poses, _phi, _ = pm.demonstrate(world, scene.target, design.jittered(rng))
    cfg = camera or SyntheticCameraConfig(width=width, height=height, segmentation=False, realtime=False)
    cam = SyntheticCamera(cfg, world=world)
    detector = detector or GroundTruthKeypoints(seed=seed)
    rend = Renderer(world, cfg.width, cfg.height, backend=cfg.backend, near=cfg.near, far=cfg.far)
    intr = cam.intrinsics
    frames, gt_flange, gt_t = [], [], []
    every = max(1, int(round(200.0 / fps)))
    mon = PourMonitor(world, scene.target)
    try:
        for i in range(len(q)):
            if i:
                world.step(2, q[i])
            if i % every == 0 or i == len(q) - 1:
                fr = cam.capture_with(rend)
                frames.append(VideoFrameKeypoints(i / 200.0, detector(fr), intr.fx, intr.fy, intr.cx, intr.cy,
                                                  fr.extrinsics))
                gt_flange.append(world.flange_pose())
                gt_t.append(i / 200.0)
        score = mon.score()
    finally:
        mon.close()
        rend.close()
    kp = world.keypoints()
    truth = {"t": np.array(gt_t), "flange": np.array(gt_flange), "target": scene.target, "score": score.to_dict(),
             "final": {"master": {k: v.tolist() for k, v in kp[scene.target].items()},
                       "slave": {k: v.tolist() for k, v in kp["tool"].items()}}, "seed": int(seed),
             "target_spec": scene.object(scene.target).model_dump()}
    return frames, truth


# ------------------------------------------------------------------------------------ kinesthetic
def states_from_mcap(path) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """(t (N,) s, measured joints q (N, 7) rad, the last ``world/truth`` header or None) from a kinebridge
    MCAP recording's ``control/state`` (times from each message's stamp, CLOCK_MONOTONIC)."""
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.recording.reader import read_recording

    ts, qs, truth = [], [], None
    for rec in read_recording(path, topics=(M.ControlState.TOPIC, M.WorldTruth.TOPIC)):
        if rec.topic == M.ControlState.TOPIC:
            ts.append(rec.header["stamp_ns"] * 1e-9)
            qs.append(np.asarray(rec.arrays["q"], float))
        else:
            truth = rec.header
    if len(ts) < 3:
        raise ValueError(f"{path}: {len(ts)} {M.ControlState.TOPIC} messages; record the teaching with "
                         f"kinebridge run (the recorder writes control/state)")
    return np.asarray(ts), np.array(qs), truth


def demo_from_states(t, q, *, d7: float = rm75.D7_B, target_kp: dict, slave_kp_flange: dict,
                     rest_speed: float = 0.02, keep_hold_s: float = 2.0, sample_hz: float = 50.0) -> dict:
    """A demonstration record from the arm's joints over time (kinesthetic teaching): FK → flange
    poses; the still part before the motion (every joint slower than ``rest_speed`` rad/s) trimmed, the
    still part after it kept up to ``keep_hold_s`` (a pour ends holding the tilt while the water runs);
    the final keypoints of the target (``target_kp``) and of the held object (its flange-frame keypoints
    at the last pose)."""
    t, q = np.asarray(t, float), np.asarray(q, float)
    if t.ndim != 1 or q.shape != (t.size, 7) or t.size < 3 or np.any(np.diff(t) <= 0):
        raise ValueError("demo_from_states: expected increasing times (N,) and joints (N, 7), N ≥ 3")
    speed = np.abs(np.diff(q, axis=0)).max(axis=1) / np.diff(t)
    moving = np.flatnonzero(speed > rest_speed)
    if moving.size < 2:
        raise ValueError(f"demo_from_states: the arm never moved faster than rest_speed = {rest_speed} rad/s")
    a, b = int(moving[0]), int(moving[-1]) + 1
    b = int(min(t.size - 1, np.searchsorted(t, t[b] + keep_hold_s, side="right") - 1))
    T = rm75.fk_batch(q[a:b + 1], d7)
    T, tt = _resample(T, t[a:b + 1], sample_hz)
    model, S_f = _model_in_own_frame(slave_kp_flange)
    objects = np.array([rm75.matrix_to_pose7(x @ S_f) for x in T])
    T_end = T[-1]
    slave_final = {k: (T_end[:3, :3] @ np.asarray(v, float) + T_end[:3, 3]).tolist() for k, v in slave_kp_flange.items()}
    return {"t": tt - tt[0] + (tt[1] - tt[0]), "poses": T, "objects": objects, "source": "kinesthetic",
            "final": {"master": {k: np.asarray(v, float).tolist() for k, v in target_kp.items()},
                      "slave": slave_final}, "trimmed": [a, int(t.size - 1 - b)]}
