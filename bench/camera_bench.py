"""Camera and world benchmark: render rates, the shared-memory frame hop, camera → subscriber latency,
the world's physics rate, and the control loop's period error with and without the world node.

    kinebridge bench camera [--seconds 5] [--parts render,world,hop,latency,control] [--out out/bench/camera.json]
    python -m kinebridge.bench.camera_bench [--seconds 5] [--parts ...] [--out ...]

Render: for each back end (EGL; OSMesa where ``libosmesa6`` is installed) in its own process (a
process has one OpenGL platform), a seeded table scene with 3 mugs, 2 distractors, the arm and
its held mug with 120 water spheres, rendered at 320×240, 640×480 and 1280×720 — one colour +
depth pass (what a frame costs), and with the segmentation pass (what a frame with ground truth
costs): median and p99 ms per frame, frames/s.

World: the real-time factor of the world fed 200 Hz joint states while the held mug (120
spheres) moves, and offline scripted-pour episodes (scene build + 4.5 s of physics, optionally
a 320×240 RGB-D camera at 10 Hz) per minute in one process — the rate the VLA data generation
will see per core.

Hop: a 640×480 RGB-D frame through the shared-memory ring (:mod:`kinebridge.runtime.bus.frames`)
at 30 Hz into a reader in another process, woken by a pipe right after the write (as a camera
node's loop is): write time, written → the reader has a verified copy, write start → copy.

Latency: a camera node (640×480 synthetic RGB-D at 30 Hz, recording at the default 2 Hz) under a
supervisor and a subscriber process: capture stamp → ``camera/frame`` received and the frame copied
out of the ring, split into capture → written (render + ring write), written → copied (bus + copy).

Control: the control node at 200 Hz on the simulated arm, period error (µs, from its
``control/timing``) alone and with a world node following it (120 spheres, a 640×480 camera at
15 Hz); the world node's real-time factor (simulated s per s spent stepping), how far it lags, how
many joint states arrived after it had passed them.
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

from kinebridge.kernels.stats import summary

RESOLUTIONS = ((320, 240), (640, 480), (1280, 720))
BACKENDS = ("egl", "osmesa")
PARTS = ("render", "world", "hop", "latency", "control")


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


# --------------------------------------------------------------------------- shared-memory hop
def _hop_reader(ring: str, directory: str, fd: int, frames: int, fifo: bool = False) -> dict:
    """A reader in its own process: woken by a byte on ``fd`` after each write, copies the newest frame
    (``fifo``: under SCHED_FIFO 10, so its wake-up does not wait for other work on the box)."""
    from kinebridge.runtime.bus.frames import FrameRingReader

    if fifo:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except (PermissionError, OSError, AttributeError):
            return {"available": False, "error": "SCHED_FIFO not permitted"}
    r = FrameRingReader(ring, directory, wait_s=5.0)
    out = (np.empty((r.height, r.width, 3), np.uint8), np.empty((r.height, r.width), np.float32))
    hop, copy, total, seqs = [], [], [], []
    f0 = os.fdopen(fd, "rb", buffering=0)
    while len(seqs) < frames:
        b = f0.read(9)
        if not b or len(b) < 9:
            break
        t_wake = time.monotonic_ns()
        start_ns = int.from_bytes(b[1:], "little")
        f = r.latest(out=out)
        if f is None:
            continue
        hop.append(f.copied_ns - f.commit_ns)
        copy.append(f.copied_ns - t_wake)
        total.append(f.copied_ns - start_ns)
        seqs.append(f.frame_seq)
    return {"hop_us": summary(hop, 1e-3, 1), "copy_us": summary(copy, 1e-3, 1), "write_to_copy_us": summary(total, 1e-3, 1),
            "frames": len(seqs), "lost": r.lost, "retries": r.retries}


def _hop_worker(seconds: float, width: int = 640, height: int = 480, hz: float = 30.0) -> dict:
    """The hop with the reader at normal priority (what any consumer gets) and under SCHED_FIFO (the copy
    without the wait for a CPU on a busy box)."""
    out = {"normal": _hop_once(seconds, width, height, hz, False)}
    fifo = _hop_once(seconds, width, height, hz, True)
    if fifo.get("available", True):
        out["reader_fifo"] = fifo
    try:
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return out


def _hop_once(seconds: float, width: int, height: int, hz: float, fifo: bool) -> dict:
    """Writer here, reader in a subprocess (``--worker hop-reader``); a pipe wakes the reader after each write."""
    import uuid

    from kinebridge.runtime.bus.frames import DEFAULT_RING_DIR, FrameRingWriter

    d = DEFAULT_RING_DIR if os.path.isdir(DEFAULT_RING_DIR) else "/tmp"
    name = f"bench-{uuid.uuid4().hex[:8]}"
    n = max(30, int(seconds * hz))
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    depth = np.random.default_rng(1).random((height, width)).astype(np.float32)
    with FrameRingWriter.create(name, slots=8, width=width, height=height, directory=d, camera="bench") as w:
        r_fd, w_fd = os.pipe()
        p = subprocess.Popen([sys.executable, "-m", "kinebridge.bench.camera_bench", "--worker", "hop-reader", "--ring",
                              name, "--ring-dir", d, "--fd", str(r_fd), "--frames", str(n)] + (["--fifo"] if fifo else []),
                             pass_fds=(r_fd,), stdout=subprocess.PIPE, text=True)
        os.close(r_fd)
        time.sleep(1.0)                                   # the reader attached (it waits for the ring anyway)
        writes = []
        nxt = time.monotonic()
        for _ in range(n):
            nxt += 1.0 / hz
            time.sleep(max(0.0, nxt - time.monotonic()))
            t0 = time.monotonic_ns()
            w.write(rgb, depth, capture_ns=t0)
            writes.append(time.monotonic_ns() - t0)
            os.write(w_fd, b"\x01" + t0.to_bytes(8, "little"))
        os.close(w_fd)
        out, _ = p.communicate(timeout=60)
    res = json.loads(out.strip().splitlines()[-1])
    if not res.get("available", True):
        return res
    res.update(write_us=summary(writes, 1e-3, 1), size=f"{width}x{height}", rate_hz=hz,
               frame_mb=round((width * height * 7) / 1e6, 2))
    return res


# ------------------------------------------------------------------------------ runtime helpers
def _runtime_config(workdir: Path, nodes: dict, extra: dict | None = None):
    """The embedded default with ``nodes`` only, bus and recordings under ``workdir``, ``extra`` tables merged."""
    from kinebridge.runtime.config import RuntimeConfig, load_config

    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(workdir / "bus")
    data["recorder"]["directory"] = str(workdir / "rec")
    data["supervisor"]["start_timeout_s"] = 180.0
    data["nodes"] = nodes
    for table, kv in (extra or {}).items():
        data[table].update(kv)
    return RuntimeConfig.model_validate(data)


def _subscriber(config_path: str, node: str, seconds: float) -> dict:
    """``--worker subscribe``: camera/frame from ``node`` for ``seconds``; each frame copied out of its ring."""
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.bus.frames import FrameRingReader
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.config import RuntimeConfig

    cfg = RuntimeConfig.model_validate_json(Path(config_path).read_text())
    sub = Subscriber([cfg.endpoint(node)], (M.FrameRef.TOPIC,), name="bench-subscriber")
    readers: dict = {}
    bufs = None
    cap_w, w_pub, pub_recv, recv_copy, total, w_copy = [], [], [], [], [], []
    end = time.monotonic() + seconds
    missing = 0
    while time.monotonic() < end:
        m = sub.recv(timeout_ms=200)
        if m is None:
            continue
        t_recv = time.monotonic_ns()
        ref = m.body
        r = readers.get(ref.ring)
        if r is None:
            r = readers[ref.ring] = FrameRingReader(ref.ring, cfg.camera.ring_dir, wait_s=2.0)
            bufs = (np.empty((r.height, r.width, 3), np.uint8), np.empty((r.height, r.width), np.float32))
        f = r.read_ref(ref, out=bufs)
        if f is None:
            missing += 1
            continue
        cap_w.append(f.commit_ns - f.capture_ns)
        w_pub.append(m.stamp.stamp_ns - f.commit_ns)
        pub_recv.append(t_recv - m.stamp.stamp_ns)
        recv_copy.append(f.copied_ns - t_recv)
        w_copy.append(f.copied_ns - f.commit_ns)
        total.append(f.copied_ns - f.capture_ns)
    sub.close()
    ms = lambda x: summary(x, 1e-6, 3)  # noqa: E731
    return {"frames": len(total), "missing": missing, "capture_to_copied_ms": ms(total),
            "capture_to_written_ms": ms(cap_w), "written_to_copied_ms": ms(w_copy), "written_to_published_ms": ms(w_pub),
            "published_to_received_ms": ms(pub_recv), "received_to_copied_ms": ms(recv_copy),
            "lost": sum(r.lost for r in readers.values())}


def _latency_worker(seconds: float, workdir: Path) -> dict:
    """A camera node (synthetic 640×480 at 30 Hz) under a supervisor; a subscriber process measures."""
    from kinebridge.runtime.supervisor.supervisor import Supervisor

    cam = {"kind": "synthetic", "width": 640, "height": 480, "fps": 30.0, "ground_truth": False, "segmentation": False}
    cfg = _runtime_config(workdir, {"cam": {"kind": "camera"}}, {"camera": {"device": cam}})
    sup = Supervisor(cfg, workdir / "run-latency", log=lambda s: None)
    try:
        sup.start()
        sup.wait_ready()
        p = subprocess.run([sys.executable, "-m", "kinebridge.bench.camera_bench", "--worker", "subscribe", "--config",
                            str(sup.config_path), "--node", "cam", "--seconds", str(seconds)],
                           capture_output=True, text=True, timeout=120 + 2 * seconds)
        if p.returncode != 0:
            return {"available": False, "error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
        res = json.loads(p.stdout.strip().splitlines()[-1])
        sup.poll(50)
        d = sup.nodes["cam"].detail.get("cameras", {}).get("cam", {})
        res["node"] = {k: d.get(k) for k in ("frames", "published", "skipped", "recorded", "fps", "write_us_max",
                                             "record_ms_max")}
        res["camera"] = "synthetic 640x480 RGB-D at 30 Hz, recording at 2 Hz (JPEG + 16UC1)"
        return res
    finally:
        sup.shutdown()


def _control_worker(seconds: float, workdir: Path) -> dict:
    """The control node's period error at 200 Hz alone, then with a world node following it."""
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.supervisor.launch import launch

    out = {}
    world_cam = {"scene": {"kind": "synthetic", "width": 640, "height": 480, "fps": 15.0, "ground_truth": False,
                           "segmentation": False}}
    for cond, nodes in (("control_alone", {"control": {"critical": True}}),
                        ("with_world_node", {"control": {"critical": True}, "world": {}})):
        cfg = _runtime_config(workdir / cond, nodes, {"world": {"cameras": world_cam}, "camera": {"record_hz": 0.0}})
        rt = launch(cfg, workdir / f"run-{cond}", log=lambda s: None,
                    listen=(M.Heartbeat.TOPIC, M.ControlTiming.TOPIC, M.ControlState.TOPIC, M.FrameRef.TOPIC))
        sup = rt.supervisor
        late, frames, world = [], 0, {}
        try:
            sup.poll(20)
            sup.messages.clear()                  # measure from here: every node ready
            q0 = None
            t_start = time.monotonic()
            t_end = t_start + seconds
            next_chunk = t_start
            amp = np.radians([10, -6, 6, 8, -6, 8, 12])
            while time.monotonic() < t_end:
                sup.poll(20)
                for m in sup.messages:
                    if m.topic == M.ControlTiming.TOPIC:
                        late.append(m.arrays["lateness_ns"] / 1e3)
                    elif m.topic == M.ControlState.TOPIC and q0 is None:
                        q0 = m.arrays["q"].copy()
                    elif m.topic == M.FrameRef.TOPIC:
                        frames += 1
                sup.messages.clear()
                now = time.monotonic()
                if q0 is not None and now >= next_chunk:   # the arm sweeps all the time (chunks overlap)
                    t0 = now + 0.05
                    t = t0 - t_start + np.arange(100) * 0.01
                    sup.pub.publish(M.Chunk.TOPIC, {"t0": t0, "dt": 0.01},
                                    {"q": q0 + amp * np.sin(np.pi * t / 4.0)[:, None] ** 2})
                    next_chunk = now + 0.5
                if "world" in sup.nodes and "world" in sup.nodes["world"].detail:
                    world = sup.nodes["world"].detail["world"]
            sup.poll(50)
            res = {"period_error_us": summary(np.concatenate(late) if late else [], 1.0, 1), "seconds": seconds,
                   "realtime": sup.nodes["control"].detail.get("realtime")}
            if "world" in sup.nodes:
                res["world"] = {k: world.get(k) for k in ("rtf", "rtf_run", "lag_ms_p99", "states", "late", "late_ms_max",
                                                          "stale", "skipped_s", "following")}
                res["world"]["camera_frames_per_s"] = round(frames / seconds, 1)
                res["world"]["restarts"] = sup.nodes["world"].restarts
            try:
                res["load_average"] = [round(x, 2) for x in os.getloadavg()]
            except OSError:
                pass
            out[cond] = res
        finally:
            rt.shutdown()
    return out


# ------------------------------------------------------------------------------------- the run
def _worker_process(kind: str, seconds: float, env_backend: str = "egl") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env.setdefault("MUJOCO_GL", env_backend)
    p = subprocess.run([sys.executable, "-m", "kinebridge.bench.camera_bench", "--worker", kind, "--seconds",
                        str(seconds)], env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()
        return {"available": False, "error": tail[-1] if tail else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(seconds: float = 3.0, out: str | Path | None = "out/bench/camera.json", backends=BACKENDS,
        parts=PARTS) -> dict:
    """Run the measurements in ``parts`` (each heavy one in its own process); write JSON to ``out``; return it."""
    result: dict = {"host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "seconds": seconds}
    if "render" in parts:
        result["render"] = [_subprocess("render", b, seconds) for b in backends]
    if "world" in parts:
        result["world"] = _subprocess("world", "egl", seconds)
    if "hop" in parts:
        result["hop"] = _worker_process("hop", seconds)
    if "latency" in parts:
        result["latency"] = _worker_process("latency", seconds)
    if "control" in parts:
        result["control"] = _worker_process("control", seconds)
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


def print_report(res: dict) -> None:
    rows: list[tuple[str, str]] = []
    for r in res.get("render", []):
        if not r["available"]:
            rows.append((f"render {r['backend']}", f"not available ({r['error']})"))
            continue
        for size, v in r["resolutions"].items():
            rows.append((f"render {r['backend']} {size}", f"RGB-D {v['rgbd']['fps']} frames/s (median {v['rgbd']['median_ms']} "
                         f"ms, p99 {v['rgbd']['p99_ms']} ms); + segmentation {v['rgbd+segmentation']['fps']} frames/s"))
        g = r["ground_truth"]
        rows.append((f"ground truth {r['backend']}", f"keypoint projection median {g['projection_px']['median']} px (max "
                     f"{g['projection_px']['max']}); depth back-projection median {g['backprojection_mm']['median']} mm"))
    w = res.get("world")
    if w is not None:
        if w.get("available", True):
            rt = w["realtime_200hz_120_particles"]
            rows.append(("world 200 Hz, 120 spheres", f"real-time factor {rt['rtf_median']} (min {rt['rtf_min']})"))
            for k in ("pour_episodes_physics_only", "pour_episodes_with_camera"):
                rows.append((k.replace("_", " "), f"{w[k]['per_minute']} /min ({w[k]['successes']}/{w[k]['episodes']} ok)"))
        else:
            rows.append(("world", f"failed ({w['error']})"))
    hop = res.get("hop")
    if hop is not None:
        if hop.get("available", True):
            for cond in ("normal", "reader_fifo"):
                h = hop.get(cond)
                if h is None:
                    continue
                rows.append((f"shm hop {h['size']} RGB-D, reader {'SCHED_FIFO' if cond != 'normal' else 'normal'}",
                             f"written → copied p50 {h['hop_us']['p50']} µs, p99 {h['hop_us']['p99']} µs (write p50 "
                             f"{h['write_us']['p50']} µs; copy p50 {h['copy_us']['p50']} / p99 {h['copy_us']['p99']} µs; "
                             f"{h['frames']} frames, lost {h['lost']}; load {hop.get('load_average')})"))
        else:
            rows.append(("shm hop", f"failed ({hop['error']})"))
    lt = res.get("latency")
    if lt is not None:
        if lt.get("available", True):
            t, a, b = lt["capture_to_copied_ms"], lt["capture_to_written_ms"], lt["written_to_copied_ms"]
            rows.append(("camera node → subscriber", f"capture → copied p50 {t['p50']:.2f} ms, p99 {t['p99']:.2f} ms "
                         f"(capture → written {a['p50']:.2f}/{a['p99']:.2f}; written → copied {b['p50']:.3f}/{b['p99']:.3f} "
                         f"ms p50/p99; {lt['frames']} frames, {lt['node']['fps']} frames/s)"))
        else:
            rows.append(("camera node → subscriber", f"failed ({lt['error']})"))
    c = res.get("control")
    if c is not None:
        if c.get("available", True):
            for cond, v in c.items():
                pe = v["period_error_us"]
                text = f"period error p50 {pe['p50']} µs, p99 {pe['p99']} µs, max {pe['max']} µs ({pe['n']} ticks)"
                if "world" in v:
                    wd = v["world"]
                    text += (f"; world real-time factor {wd['rtf_run']} (last s {wd['rtf']}), lag p99 {wd['lag_ms_p99']} ms, late states {wd['late']}/"
                             f"{wd['states']} (max {wd['late_ms_max']} ms), camera {wd['camera_frames_per_s']} frames/s")
                rows.append((f"control 200 Hz, {cond.replace('_', ' ')}", text))
        else:
            rows.append(("control", f"failed ({c['error']})"))
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="kinebridge bench camera")
        t.add_column("measurement")
        t.add_column("result")
        for a, b in rows:
            t.add_row(a, b)
        Console().print(t)
    except ImportError:
        for a, b in rows:
            print(f"{a:<34} {b}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kinebridge.bench.camera_bench", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    p.add_argument("--out", default="out/bench/camera.json")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--worker", choices=("render", "world", "hop", "hop-reader", "latency", "control", "subscribe"),
                   help=argparse.SUPPRESS)
    p.add_argument("--backend", default="egl", help=argparse.SUPPRESS)
    p.add_argument("--ring", help=argparse.SUPPRESS)
    p.add_argument("--ring-dir", help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--fifo", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--node", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        import tempfile
        if a.worker == "render":
            r = _render_worker(a.backend, a.seconds)
        elif a.worker == "world":
            r = _world_worker(a.seconds)
        elif a.worker == "hop":
            r = _hop_worker(a.seconds)
        elif a.worker == "hop-reader":
            r = _hop_reader(a.ring, a.ring_dir, a.fd, a.frames, a.fifo)
        elif a.worker == "subscribe":
            r = _subscriber(a.config, a.node, a.seconds)
        else:
            with tempfile.TemporaryDirectory(prefix="kinebridge-camera-bench-") as d:
                r = (_latency_worker if a.worker == "latency" else _control_worker)(a.seconds, Path(d))
        print(json.dumps(r))
        return 0
    res = run(a.seconds, a.out, tuple(b for b in a.backends.split(",") if b),
              tuple(x for x in a.parts.split(",") if x))
    print_report(res)
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
