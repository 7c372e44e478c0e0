"""Synthetic camera and world benchmark: render rate per resolution and back end, physics rate.

    python -m kinebridge.bench.camera_bench [--seconds 3] [--out out/bench/camera.json]

Render: for each back end (EGL; OSMesa where ``libosmesa6`` is installed) in its own process (a
process has one OpenGL platform), a seeded table scene with 3 mugs, 2 distractors, the arm and
its held mug with 120 water spheres, rendered at 320×240, 640×480 and 1280×720 — one colour +
depth pass (what a frame costs), and with the segmentation pass (what a frame with ground truth
costs): median and p99 ms per frame, frames/s.

World: the real-time factor of the world fed 200 Hz joint states while the held mug (120
spheres) moves, and offline scripted-pour episodes (scene build + 4.5 s of physics, optionally
a 320×240 RGB-D camera at 10 Hz) per minute in one process — the rate the VLA data generation
will see per core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESOLUTIONS = ((320, 240), (640, 480), (1280, 720))
BACKENDS = ("egl", "osmesa")


def _stats(dt: list[float]) -> dict:
    a = np.asarray(dt) * 1e3
    return {"frames": int(a.size), "median_ms": round(float(np.median(a)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "fps": round(float(1e3 / np.mean(a)), 1)}


def _render_worker(backend: str, seconds: float) -> dict:
    from kinebridge.drivers.camera.configs import SyntheticCameraConfig
    from kinebridge.drivers.world import SceneSpec, World
    from kinebridge.drivers.world.render import Renderer

    world = World(SceneSpec.random(2, n_mugs=3, n_distractors=2))
    world.step(40)
    out = {"backend": backend, "available": True, "resolutions": {}}
    per = seconds / (2 * len(RESOLUTIONS))
    for w, h in RESOLUTIONS:
        cfg = SyntheticCameraConfig(width=w, height=h)
        intr, T = cfg.intrinsics(), cfg.extrinsics.pose()
        res = {}
        with Renderer(world, w, h, backend=backend) as r:
            for seg in (False, True):
                for _ in range(3):
                    r.render(intr, T, segmentation=seg)
                dt, t_end = [], time.perf_counter() + per
                while time.perf_counter() < t_end or len(dt) < 5:
                    t0 = time.perf_counter()
                    r.render(intr, T, segmentation=seg)
                    dt.append(time.perf_counter() - t0)
                res["rgbd+segmentation" if seg else "rgbd"] = _stats(dt)
        out["resolutions"][f"{w}x{h}"] = res
    out["ground_truth"] = _ground_truth_errors()
    return out


def _ground_truth_errors() -> dict:
    """Projection error (px) of floating keypoints (mug mouth centres) against the centroid of a
    rendered 3.5 mm marker at them, and back-projection error (mm) of surface keypoints (rim tops,
    box tops) from the rendered depth, over 8 seeded scenes seen from above."""
    from scipy import ndimage

    from kinebridge.drivers.camera import backproject, make_camera
    from kinebridge.drivers.camera.configs import SyntheticCameraConfig
    from kinebridge.drivers.world import SceneSpec, ToolSpec, World
    from kinebridge.drivers.world.render import Renderer

    proj, back = [], []
    for seed in range(8):
        base = SceneSpec.random(seed, n_mugs=3, n_distractors=2)
        for markers in (True, False):
            scene = base.model_copy(update={"keypoint_markers": markers, "tool": ToolSpec(kind="none")})
            world = World(scene)
            cfg = SyntheticCameraConfig(width=640, height=480, extrinsics={"look_at": {"eye": [0.55, 0.0, 0.85],
                                                                                       "target": [0.42, 0.0, 0.0]}})
            cam = make_camera(cfg, world=world)
            with Renderer(world, 640, 480) as r:
                f = cam.capture_with(r)
            gt = f.ground_truth
            if markers:
                blobs, _ = ndimage.label(gt.segmentation == gt.labels.index("marker"))
                for o in scene.objects:
                    if o.kind != "mug":
                        continue
                    u, v, z, vis = gt.keypoints_2d[o.name]["K_p1"]
                    blob = blobs[int(round(v)), int(round(u))] if vis else 0
                    if blob:
                        rows, cols = np.nonzero(blobs == blob)
                        proj.append(float(np.hypot(cols.mean() - u, rows.mean() - v)))
            else:
                for o in scene.objects:
                    name = "K_i" if o.kind == "mug" else ("K_p1" if o.kind == "distractor" and o.shape == "box" else None)
                    if name is None:
                        continue
                    u, v, z, vis = gt.keypoints_2d[o.name][name]
                    if not vis:
                        continue
                    u0, v0 = int(np.floor(u)), int(np.floor(v))
                    a, b = u - u0, v - v0
                    d = f.depth
                    zz = ((1 - a) * (1 - b) * d[v0, u0] + a * (1 - b) * d[v0, u0 + 1] + (1 - a) * b * d[v0 + 1, u0]
                          + a * b * d[v0 + 1, u0 + 1])
                    p = backproject([[u, v]], [zz], f.intrinsics, f.extrinsics)[0]
                    back.append(float(np.linalg.norm(p - gt.keypoints_3d[o.name][name]) * 1e3))
    return {"projection_px": {"n": len(proj), "median": round(float(np.median(proj)), 3), "max": round(max(proj), 3)},
            "backprojection_mm": {"n": len(back), "median": round(float(np.median(back)), 3),
                                  "max": round(max(back), 3)}}


def _pour_scene(seed: int):
    from kinebridge.drivers.world import MugSpec, Placement, SceneSpec

    rng = np.random.default_rng(seed)
    base = SceneSpec.random(seed, n_mugs=0, n_distractors=3)
    target = MugSpec(name="target", pose=Placement(x=0.33 + rng.uniform(-0.02, 0.02), y=-0.02 + rng.uniform(-0.03, 0.03),
                                                   yaw_deg=90.0), radius=0.045, height=0.09)
    keep = tuple(o for o in base.objects if np.hypot(o.pose.x - target.pose.x, o.pose.y - target.pose.y) > 0.15)
    return base.model_copy(update={"objects": (target,) + keep, "target": "target"})


def _world_worker(seconds: float) -> dict:
    from kinebridge.drivers.world import SceneSpec, World
    from kinebridge.drivers.world.scoring import PourMonitor
    from kinebridge.drivers.world.scripted import pour_path

    out: dict = {}
    # real-time factor at 200 Hz states, held mug with 120 spheres moving
    w = World(SceneSpec.random(1, n_mugs=3, n_distractors=2, particles=120))
    q0 = w.built.q0
    w.step(100)
    rtf = []
    t = 0.0
    chunk = int(1.0 * 200)
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(rtf) < 2:
        start = time.perf_counter()
        for _ in range(chunk):
            t += 1 / 200
            w.follow(q0 + 0.12 * np.sin(np.pi * t) * np.array([1, 0.3, 0, 0.3, 0, 0.3, 0]), t)
            w.advance_to(t)
        rtf.append(1.0 / (time.perf_counter() - start))
    out["realtime_200hz_120_particles"] = {"rtf_median": round(float(np.median(rtf)), 2),
                                           "rtf_min": round(float(np.min(rtf)), 2),
                                           "water_kept": bool(w.water_in_tool().all()),
                                           "timestep_s": w.timestep, "solver": w.scene.physics.solver}
    # offline scripted pours (fresh seeded scene each), physics only and with a 10 Hz camera
    for camera in (False, True):
        n, ok, t0 = 0, 0, time.perf_counter()
        renderer = None
        while n < 2 or time.perf_counter() - t0 < seconds:
            world = World(_pour_scene(n))
            path = pour_path(world)
            if camera:
                from kinebridge.drivers.camera.configs import SyntheticCameraConfig
                from kinebridge.drivers.world.render import Renderer
                cfg = SyntheticCameraConfig(width=320, height=240)
                renderer = Renderer(world, 320, 240)
            with PourMonitor(world) as mon:
                for k, q in enumerate(path):
                    world.step(2, q)
                    if camera and k % 20 == 0:
                        renderer.render(cfg.intrinsics(), cfg.extrinsics.pose())
                ok += mon.score().success
            if renderer is not None:
                renderer.close()
                renderer = None
            n += 1
        per_min = 60.0 * n / (time.perf_counter() - t0)
        key = "pour_episodes_with_camera" if camera else "pour_episodes_physics_only"
        out[key] = {"episodes": n, "per_minute": round(per_min, 1), "successes": ok,
                    "episode_sim_s": round(len(path) / 200, 2)}
    return out


def _subprocess(kind: str, backend: str, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env["MUJOCO_GL"] = backend
    cmd = [sys.executable, "-m", "kinebridge.bench.camera_bench", "--worker", kind, "--backend", backend,
           "--seconds", str(seconds)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60 + 20 * seconds)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()
        ours = [t for t in tail if "RenderError:" in t]
        msg = ours[-1].split("RenderError:", 1)[1].strip() if ours else (tail[-1] if tail else f"exit {p.returncode}")
        return {"backend": backend, "available": False, "error": msg}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(seconds: float = 3.0, out: str | Path | None = "out/bench/camera.json", backends=BACKENDS) -> dict:
    """Run every measurement (each back end in its own process); write JSON to ``out``; return it."""
    result = {"host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "render": [_subprocess("render", b, seconds) for b in backends],
              "world": _subprocess("world", "egl", seconds)}
    try:
        import mujoco
        result["host"]["mujoco"] = mujoco.__version__
    except ImportError:
        pass
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kinebridge.bench.camera_bench", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    p.add_argument("--out", default="out/bench/camera.json")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--worker", choices=("render", "world"), help=argparse.SUPPRESS)
    p.add_argument("--backend", default="egl", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker == "render":
        print(json.dumps(_render_worker(a.backend, a.seconds)))
        return 0
    if a.worker == "world":
        print(json.dumps(_world_worker(a.seconds)))
        return 0
    res = run(a.seconds, a.out, tuple(b for b in a.backends.split(",") if b))
    for r in res["render"]:
        if not r["available"]:
            print(f"{r['backend']}: not available ({r['error']})")
            continue
        for size, v in r["resolutions"].items():
            print(f"{r['backend']} {size:>9}: RGB-D {v['rgbd']['fps']:6.1f} frames/s (median {v['rgbd']['median_ms']} ms, "
                  f"p99 {v['rgbd']['p99_ms']} ms); with segmentation {v['rgbd+segmentation']['fps']:6.1f} frames/s")
    for r in res["render"]:
        if r["available"]:
            g = r["ground_truth"]
            print(f"{r['backend']} ground truth: keypoint projection vs rendered marker median {g['projection_px']['median']} px "
                  f"(max {g['projection_px']['max']}, n={g['projection_px']['n']}); depth back-projection median "
                  f"{g['backprojection_mm']['median']} mm (max {g['backprojection_mm']['max']}, n={g['backprojection_mm']['n']})")
    wres = res["world"]
    if wres.get("available", True):
        rt = wres["realtime_200hz_120_particles"]
        print(f"world at 200 Hz with 120 spheres: real-time factor {rt['rtf_median']} (min {rt['rtf_min']})")
        for k in ("pour_episodes_physics_only", "pour_episodes_with_camera"):
            print(f"{k}: {wres[k]['per_minute']} episodes/min ({wres[k]['successes']}/{wres[k]['episodes']} successful)")
    else:
        print(f"world: failed ({wres['error']})")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
