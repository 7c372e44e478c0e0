"""The camera node end to end: real processes (the node, the recorder, a subscriber), a real ring in
/dev/shm, the synthetic camera rendering a real MuJoCo world."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.frames import ring_path
from kinebridge.runtime.camera.config import ring_name
from kinebridge.runtime.config import parse_config
from kinebridge.runtime.recording.reader import read_recording
from kinebridge.runtime.supervisor.supervisor import Supervisor

pytest.importorskip("mujoco")
cv2 = pytest.importorskip("cv2")

SUBSCRIBER = Path(__file__).with_name("subscriber.py")
W, H = 160, 120


def _config(tmp_path, extra=""):
    return parse_config(f'''
[bus]
ipc_dir = "{tmp_path}/bus"
[recorder]
directory = "{tmp_path}/rec"
flush_every_s = 0.05
[camera]
device = {{ kind = "synthetic", width = {W}, height = {H}, fps = 20.0, ground_truth = false, segmentation = false }}
record_hz = 4.0
record_format = "png"
[world]
mugs = 1
distractors = 1
particles = 0
[supervisor]
start_timeout_s = 120.0
[nodes.cam]
kind = "camera"
[nodes.recorder]
{extra}''')


def _pump(sup, seconds, until=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.poll(20)
        if until is not None and until():
            return True
    return False


def test_frames_reach_a_subscriber_process_and_match_the_recording(tmp_path):
    cfg = _config(tmp_path)
    sup = Supervisor(cfg, tmp_path / "run", log=lambda s: None)
    ring = ring_path(ring_name(cfg.bus.ipc_dir, "cam"), cfg.camera.ring_dir)
    try:
        sup.start()
        sup.wait_ready()
        out = tmp_path / "sub.npz"
        p = subprocess.run([sys.executable, str(SUBSCRIBER), str(sup.config_path), "cam", "20", str(out), "40"],
                           capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stderr[-2000:]
        assert ring.exists()
        _pump(sup, 0.5)
        cam = sup.nodes["cam"].detail["cameras"]["cam"]
        assert cam["published"] >= 20 and cam["recorded"] >= 1 and cam["replaced_stale_ring"] is None
    finally:
        sup.shutdown()
    assert not ring.exists(), "the ring is removed when the camera stops"
    info = json.loads(Path(str(out) + ".json").read_text())
    seqs = info["seqs"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and info["cameras"] == ["cam"]
    lat = np.array(info["latency_ns"]) / 1e6
    assert np.all(lat > 0) and np.median(lat) < 500, lat       # capture → copied in another process (loose: loaded box)
    intr = info["intrinsics"]
    assert (intr["width"], intr["height"]) == (W, H) and intr["fx"] > 0
    assert np.asarray(info["extrinsics"]).shape == (4, 4)
    got = np.load(out)
    # the recording holds the same frames: PNG colour exactly, depth to the millimetre
    rec = sorted(tmp_path.joinpath("rec").glob("*.mcap"))
    msgs = list(read_recording(rec[0], [M.CameraColor.TOPIC, M.CameraDepth.TOPIC]))
    colors = {m.header["frame_seq"]: m.header for m in msgs if m.topic == M.CameraColor.TOPIC}
    depths = {m.header["frame_seq"]: m.header for m in msgs if m.topic == M.CameraDepth.TOPIC}
    assert colors and colors.keys() == depths.keys()
    common = [k for k in colors if f"rgb_{k}" in got.files]
    assert common, (sorted(colors), got.files)
    for k in common:
        c, d = colors[k], depths[k]
        assert c["format"] == "png" and (c["width"], c["height"]) == (W, H)
        rgb = cv2.imdecode(np.frombuffer(base64.b64decode(c["data"]), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(rgb, got[f"rgb_{k}"])
        mm = np.frombuffer(base64.b64decode(d["data"]), "<u2").reshape(H, W)
        assert d["encoding"] == "16UC1" and d["step"] == 2 * W
        np.testing.assert_allclose(mm * 1e-3, got[f"depth_{k}"], atol=0.0006)
        assert c["K"][0] == pytest.approx(intr["fx"]) and c["T_base_cam"] is not None
    rgb = got[f"rgb_{common[0]}"]
    depth = got[f"depth_{common[0]}"]
    assert rgb.std() > 5.0                                     # a rendered scene, not a blank frame
    assert 0.3 < np.median(depth[depth > 0]) < 3.0             # the table, a metre or so away


def test_a_camera_node_needs_a_camera_and_unique_names(tmp_path):
    from kinebridge.runtime.config import ConfigError
    with pytest.raises(ConfigError, match="needs a camera"):
        parse_config(f'[bus]\nipc_dir = "{tmp_path}"\n[nodes.cam]\nkind = "camera"\n')
    with pytest.raises(ConfigError, match="unique"):
        parse_config(f'[bus]\nipc_dir = "{tmp_path}"\n[camera]\ndevice = {{ kind = "realsense" }}\n'
                     f'[nodes.scene]\nkind = "camera"\n[nodes.world]\n')
    with pytest.raises(ConfigError, match="camera.device"):
        parse_config('[camera]\ndevice = { kind = "webcam" }\n')
    with pytest.raises(ConfigError, match="world.cameras.top.kind"):
        parse_config('[world.cameras.top]\nkind = "realsense"\n')


def test_a_replay_camera_node_serves_recorded_frames_like_any_camera(tmp_path):
    """A recording's frames, played by a camera node through its ring: a consumer sees the recorded pixels;
    killed, the node leaves its ring behind, and its restart replaces it."""
    from kinebridge.drivers.camera.base import Frame
    from kinebridge.drivers.camera.geometry import Intrinsics
    from kinebridge.runtime.bus.codec import encode
    from kinebridge.runtime.camera.pump import recorded_bodies
    from kinebridge.runtime.recording.recorder import McapRecorder

    rng = np.random.default_rng(5)
    intr = Intrinsics(fx=100.0, fy=100.0, cx=(W - 1) / 2, cy=(H - 1) / 2, width=W, height=H)
    src = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(4)]
    path = tmp_path / "frames.mcap"
    with McapRecorder(path, flush_every_s=0.0) as rec:
        t0 = time.monotonic_ns()
        for k, rgb in enumerate(src):
            f = Frame(rgb=rgb, depth=np.full((H, W), 0.8 + 0.1 * k, np.float32), intrinsics=intr, extrinsics=None,
                      host_stamp_ns=0, device_stamp_ns=None, seq=k)
            for body in recorded_bodies("cam0", f, k, t0 + k * 50_000_000, "png"):
                hdr = {"v": M.SCHEMA_VERSION, "seq": k, "stamp_ns": t0, "src": "cam0", **body.header()}
                rec.write_frames(encode(body.TOPIC, hdr), time.time_ns())
    cfg = parse_config(f'''
[bus]
ipc_dir = "{tmp_path}/bus"
[camera]
device = {{ kind = "replay", path = "{path}", loop = true, fps = 20.0 }}
record_hz = 0.0
[nodes.cam]
kind = "camera"
''')
    sup = Supervisor(cfg, tmp_path / "run", log=lambda s: None)
    out = tmp_path / "sub.npz"
    try:
        sup.start()
        sup.wait_ready()
        p = subprocess.run([sys.executable, str(SUBSCRIBER), str(sup.config_path), "cam", "8", str(out), "30"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr[-2000:]
        # a crash leaves the ring behind; the restarted node replaces it
        ring = ring_path(ring_name(cfg.bus.ipc_dir, "cam"), cfg.camera.ring_dir)
        old = sup.nodes["cam"].pid
        os.kill(old, signal.SIGKILL)
        assert _pump(sup, 60, until=lambda: sup.nodes["cam"].restarts == 1 and sup.nodes["cam"].status == "ready"
                     and (sup.nodes["cam"].detail.get("cameras", {}).get("cam", {}).get("published") or 0) > 0)
        assert sup.nodes["cam"].detail["cameras"]["cam"]["replaced_stale_ring"] == old and ring.exists()
    finally:
        sup.shutdown()
    assert not ring.exists()
    got = np.load(out)
    info = json.loads(Path(str(out) + ".json").read_text())
    assert info["intrinsics"]["fx"] == 100.0 and info["extrinsics"] is None
    for key in [k for k in got.files if k.startswith("rgb_")]:
        k = int(key[4:])
        i = next(i for i, s in enumerate(src) if np.array_equal(s, got[key]))        # one of the recorded frames
        np.testing.assert_allclose(got[f"depth_{k}"], 0.8 + 0.1 * i, atol=0.0006)    # with its own depth
