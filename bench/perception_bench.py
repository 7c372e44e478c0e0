"""``kinebridge bench perception``: the keypoint model's latency per execution provider, and camera
frame → published ``perception/keypoints`` in the perception node.

1. **Session latency per provider** — the model's ONNX Runtime session on TensorRT, CUDA and CPU
   (each that this machine has; the others listed with the reason they were skipped), 1 and 2
   intra-op threads on CPU, on real 640 × 480 frames of held-out scenes: median and p95 of
   ``session.run``, and the decoder's time.
2. **Node latency** — a perception node in its own process (as the supervisor runs it) fed those
   frames at ``fps`` with fresh capture stamps (:class:`~kinebridge.runtime.perception.node.FramesSource`;
   rendering them live would put MuJoCo on the same two cores); a subscriber in this process records,
   for every ``perception/keypoints`` it receives, receive time − the frame's capture stamp: the whole
   path (model, decoding, 3D, tracking, candidates, bus hop). Median, p95, max; frames skipped.
3. ``--design`` (needs torch): the full-frame network against the crop path (a detector pass at
   320 × 240 plus one 256 × 192 crop per object), untrained nets of the same family exported with
   the same exporter — the measurement behind the full-frame choice (docs/perception.md).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["run", "print_report", "render_frames", "session_latency", "node_latency", "design_latency"]


def _stats(v) -> dict:
    v = np.asarray(v, float)
    if not v.size:
        return {"n": 0}
    return {"n": int(v.size), "median": round(float(np.median(v)), 2), "p95": round(float(np.percentile(v, 95)), 2),
            "max": round(float(v.max()), 2), "min": round(float(v.min()), 2)}


def render_frames(n: int = 12, seed: int = 11):
    """``n`` frames (with calibration) of held-out scenes, 4 views per scene."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dataclasses import replace

    from kinebridge.drivers.world.render import Renderer
    from kinebridge.drivers.world.world import World
    from kinebridge.export.keypoints import data as D

    sampler = D.SceneSampler("eval")
    frames = []
    s = 0
    while len(frames) < n:
        rng = D.scene_rng(seed, "eval", s)
        s += 1
        scene, amb = sampler.scene(rng)
        scene = D.with_placements(scene, sampler.placements(rng, scene, amb))
        world = World(scene)
        r = Renderer(world, D.WIDTH, D.HEIGHT)
        try:
            for rgb, dq, _lab, _i, _T, f in D.render_views(world, r, rng, scene, 4):
                depth = dq.astype(np.float32) * np.float32(D.DEPTH_UNIT)
                frames.append(replace(f, rgb=rgb, depth=depth, ground_truth=None))
        finally:
            r.close()
    return frames[:n]


def session_latency(model_path, frames, repeats: int = 40) -> list[dict]:
    from kinebridge.export.keypoints.decode import decode
    from kinebridge.export.keypoints.model import load
    from kinebridge.export.session import PROVIDER_ORDER, SessionError

    rows = []
    for prov in PROVIDER_ORDER:
        for threads in ((1, 2) if prov == "CPUExecutionProvider" else (2,)):
            try:
                m = load(model_path, providers=prov, threads=threads)
            except SessionError as exc:
                rows.append({"provider": prov, "threads": threads, "skipped": str(exc)})
                break
            feeds = [(f.rgb, f.depth) for f in frames]
            for rgb, d in feeds[:3]:
                m.run(rgb, d)
            t_run, t_dec = [], []
            for k in range(repeats):
                rgb, d = feeds[k % len(feeds)]
                t0 = time.perf_counter()
                out = m.run(rgb, d)
                t1 = time.perf_counter()
                decode(out, m.decode_cfg)
                t_dec.append((time.perf_counter() - t1) * 1e3)
                t_run.append((t1 - t0) * 1e3)
            rows.append({"provider": m.session.provider, "threads": threads, "reason": m.session.reason,
                         "run_ms": _stats(t_run), "decode_ms": _stats(t_dec),
                         "trt_cache": None if m.session.trt_cache is None else str(m.session.trt_cache)})
    return rows


def _node_main(cfg_json: str, frames_path: str, fps: float):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from kinebridge.drivers.camera.base import Frame
    from kinebridge.drivers.camera.geometry import Intrinsics
    from kinebridge.runtime.config import RuntimeConfig
    from kinebridge.runtime.perception.node import FramesSource, PerceptionNode

    cfg = RuntimeConfig.model_validate_json(cfg_json)
    z = np.load(frames_path)
    intr = Intrinsics.model_validate_json(str(z["intrinsics"]))
    frames = [Frame(rgb=z["rgb"][k], depth=z["depth"][k], intrinsics=intr, extrinsics=z["T"][k], host_stamp_ns=0,
                    device_stamp_ns=None, seq=k) for k in range(z["rgb"].shape[0])]
    node = PerceptionNode("perception", cfg, source=FramesSource(frames, fps=fps, name="bench"))
    node.run()


def node_latency(model_path, frames, seconds: float = 20.0, fps: float = 30.0, threads: int = 2) -> dict:
    """Camera frame → received ``perception/keypoints`` in another process (see the module docstring)."""
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="kb-perc-bench-"))
    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(tmp)
    data["nodes"] = {"perception": {"kind": "perception"}}
    data["perception"] = {"model": str(model_path) if model_path else "", "threads": threads, "providers": "cpu"}
    from kinebridge.runtime.config import RuntimeConfig
    cfg = RuntimeConfig.model_validate(data)
    fp = tmp / "frames.npz"
    T = np.stack([f.extrinsics for f in frames])
    np.savez(fp, rgb=np.stack([f.rgb for f in frames]), depth=np.stack([f.depth for f in frames]), T=T,
             intrinsics=frames[0].intrinsics.model_dump_json())
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_node_main, args=(cfg.model_dump_json(), str(fp), fps), daemon=True)
    p.start()
    sub = Subscriber([cfg.endpoint("perception")], (M.Keypoints.TOPIC, M.Heartbeat.TOPIC), name="bench")
    lat, stages, objects, hb = [], [], [], None
    deadline = time.monotonic() + 120.0            # model load on a loaded box
    started = None
    try:
        while time.monotonic() < deadline:
            msg = sub.recv(timeout_ms=200)
            if msg is None:
                if not p.is_alive():
                    raise RuntimeError(f"the perception node exited with {p.exitcode} before publishing")
                continue
            now = time.monotonic_ns()
            if msg.topic == M.Heartbeat.TOPIC:
                hb = msg.body
                continue
            b = msg.body
            if b.capture_ns is None:
                continue
            if started is None:
                started = time.monotonic()
                deadline = started + 2.0 + seconds
            if time.monotonic() < started + 2.0:          # warm-up
                continue
            lat.append((now - b.capture_ns) * 1e-6)
            stages.append(b.stages_ms)
            objects.append(len(b.objects))
    finally:
        p.terminate()
        p.join(10)
        sub.close()
    st = {k: _stats([s.get(k, np.nan) for s in stages if k in s]) for k in (stages[0] if stages else {})}
    return {"fps": fps, "seconds": seconds, "threads": threads, "messages": len(lat),
            "frame_to_received_ms": _stats(lat), "stages_ms": st, "objects_per_frame": _stats(objects),
            "node_detail": None if hb is None else hb.detail}


def design_latency(repeats: int = 30) -> dict:
    """Full frame vs detector + crops, untrained nets of the same family (needs torch)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from kinebridge.export.keypoints.export import _to_onnx
    from kinebridge.export.keypoints.net import KeypointNet, KeypointNetConfig
    from kinebridge.export.session import Session

    torch.manual_seed(0)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"full_640x480_attn16": (KeypointNetConfig(), 640, 480),
                    "full_640x480_attn8": (KeypointNetConfig(attn_stride=8), 640, 480),
                    "full_640x480_no_attn": (KeypointNetConfig(attn_stride=0), 640, 480),
                    "crop_256x192_attn8": (KeypointNetConfig(attn_stride=8), 256, 192),
                    "detector_320x240_attn16": (KeypointNetConfig(), 320, 240)}
        sessions = {}
        for name, (cfg, w, h) in variants.items():
            m = KeypointNet(cfg).eval()
            path = Path(tmp) / f"{name}.onnx"
            _to_onnx(m, path, w, h)
            sessions[name] = (Session(path, providers="cpu", threads=2), w, h, m.n_params())
        rng = np.random.default_rng(0)
        times = {k: [] for k in sessions}
        for _ in range(repeats):                       # interleaved, so load on the box hits all alike
            for name, (s, w, h, _n) in sessions.items():
                feed = {"rgb": rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8),
                        "depth": rng.uniform(0.5, 1.5, (1, h, w)).astype(np.float32)}
                t0 = time.perf_counter()
                s.run(feed, check=False)
                times[name].append((time.perf_counter() - t0) * 1e3)
        for name, (s, w, h, n) in sessions.items():
            out[name] = {"params": n, "size": [w, h], "run_ms": _stats(times[name])}
    full = out["full_640x480_attn16"]["run_ms"]["median"]
    det, crop = out["detector_320x240_attn16"]["run_ms"]["median"], out["crop_256x192_attn8"]["run_ms"]["median"]
    out["crop_path_ms_by_objects"] = {str(k): round(det + k * crop, 2) for k in (1, 2, 3, 4, 6)}
    out["full_frame_ms"] = full
    return out


def run(model=None, *, frames: int = 12, repeats: int = 40, seconds: float = 20.0, fps: float = 30.0,
        design: bool = False, quick: bool = False, out=None) -> dict:
    if quick:
        frames, repeats, seconds = 4, 8, 4.0
    fr = render_frames(frames)
    res = {"model": str(model) if model else "shipped", "frames": len(fr),
           "sessions": session_latency(model, fr, repeats), "node": node_latency(model, fr, seconds, fps)}
    if design:
        res["design"] = design_latency(10 if quick else 30)
    res["targets"] = {"run_ms_640x480": 25.0, "run_ms_256x192_crop": 10.0, "frame_to_published_p95_ms": 30.0}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=1))
    return res


def print_report(res: dict) -> None:
    print(f"kinebridge bench perception — model {res['model']}, {res['frames']} held-out frames 640×480")
    for r in res["sessions"]:
        if "skipped" in r:
            print(f"  {r['provider']:28s} skipped: {r['skipped']}")
        else:
            s = r["run_ms"]
            print(f"  {r['provider']:28s} {r['threads']} threads: run {s['median']} ms median, {s['p95']} ms p95; "
                  f"decode {r['decode_ms']['median']} ms")
    n = res["node"]
    f = n["frame_to_received_ms"]
    print(f"  node at {n['fps']:.0f} fps: frame → received keypoints {f.get('median')} ms median, {f.get('p95')} ms p95, "
          f"max {f.get('max')} ms over {n['messages']} messages (target p95 ≤ 30 ms)")
    if "design" in res:
        d = res["design"]
        print(f"  design: full frame {d['full_frame_ms']} ms; crop path (detector + crops) by objects "
              f"{d['crop_path_ms_by_objects']}; crop alone {d['crop_256x192_attn8']['run_ms']['median']} ms")
