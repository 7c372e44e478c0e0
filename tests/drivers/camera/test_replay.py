"""The replay camera: frames recorded the way a camera node records them (MCAP, foxglove.CompressedImage +
foxglove.RawImage 16UC1 with the frame's metadata), played back with their recorded timing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kinebridge.drivers.camera import make_camera
from kinebridge.drivers.camera.base import CameraError, Frame
from kinebridge.drivers.camera.geometry import Intrinsics, look_at
from kinebridge.drivers.camera.replay import COLOR_SCHEMA, DEPTH_SCHEMA, ReplayEnded
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.codec import encode
from kinebridge.runtime.recording.recorder import McapRecorder

pytest.importorskip("cv2")

W, H = 64, 48
PERIOD_NS = 100_000_000          # recorded at 10 Hz
INTR = Intrinsics(fx=80.0, fy=80.0, cx=31.5, cy=23.5, width=W, height=H)
T = look_at((1.0, 0.0, 0.6), (0.4, 0.0, 0.0))


def _frames(n):
    rng = np.random.default_rng(3)
    out = []
    for k in range(n):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = (0.5 + rng.random((H, W))).astype(np.float32)
        depth[0, :5] = 0.0                                            # no depth
        out.append(Frame(rgb=rgb, depth=depth, intrinsics=INTR, extrinsics=T, host_stamp_ns=0,
                         device_stamp_ns=1000 + k, seq=k))
    return out


def _record(path, frames, fmt="png", other=True):
    from kinebridge.runtime.camera.pump import recorded_bodies

    t0 = time.monotonic_ns()
    with McapRecorder(path, flush_every_s=0.0) as rec:
        seq = 0
        for k, f in enumerate(frames):
            cap = t0 + k * PERIOD_NS
            for body in recorded_bodies("cam0", f, k, cap, fmt):
                hdr = {"v": M.SCHEMA_VERSION, "seq": seq, "stamp_ns": cap + 5_000_000, "src": "cam0", **body.header()}
                rec.write_frames(encode(body.TOPIC, hdr), time.time_ns())
                seq += 1
            if other:
                hb = M.Heartbeat(node="cam0", kind="camera", pid=1, status="ready", received=0, malformed=0, gaps=0)
                rec.write_frames(encode(hb.TOPIC, {"v": M.SCHEMA_VERSION, "seq": k, "stamp_ns": cap, "src": "cam0",
                                                   **hb.header()}), time.time_ns())
    return path


def test_recorded_frames_play_back_exactly_with_their_timing(tmp_path):
    assert (M.CameraColor.SCHEMA_NAME, M.CameraDepth.SCHEMA_NAME) == (COLOR_SCHEMA, DEPTH_SCHEMA)
    frames = _frames(5)
    path = _record(tmp_path / "rec.mcap", frames)
    cam = make_camera({"kind": "replay", "path": str(path)})
    with cam:
        got = [cam.read(timeout=2.0) for _ in range(5)]
        with pytest.raises(CameraError) as exc:
            cam.read(timeout=2.0)
        assert isinstance(exc.value.__cause__, ReplayEnded) and "after 5 frames" in str(exc.value)
    for f, g in zip(frames, got):
        np.testing.assert_array_equal(g.rgb, f.rgb)                  # PNG: exact
        np.testing.assert_allclose(g.depth, f.depth, atol=0.0005)     # 16UC1: to the millimetre
        assert g.depth.dtype == np.float32 and np.all(g.depth[0, :5] == 0.0)
        assert g.intrinsics == INTR and np.allclose(g.extrinsics, T) and g.device_stamp_ns == f.device_stamp_ns
    assert [g.meta["recorded_frame_seq"] for g in got] == [0, 1, 2, 3, 4] and [g.seq for g in got] == [0, 1, 2, 3, 4]
    gaps = np.diff([g.host_stamp_ns for g in got]) / 1e6
    assert np.all(gaps > 80) and np.median(gaps) < 160, gaps        # the recorded 100 ms, loosely (loaded box)


def test_speed_loop_size_check_and_jpeg(tmp_path):
    frames = _frames(3)
    yy, xx = np.mgrid[0:H, 0:W]
    for f in frames:                                                  # a smooth image: what JPEG is for
        f.rgb[:] = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)
    path = _record(tmp_path / "rec.mcap", frames, fmt="jpeg")
    with make_camera({"kind": "replay", "path": str(tmp_path), "speed": 4.0, "loop": True}) as cam:   # a directory
        got = [cam.read(timeout=2.0) for _ in range(7)]               # loops past the end
    seqs = [g.meta["recorded_frame_seq"] for g in got]
    assert seqs[:3] == [0, 1, 2] and 0 in seqs[3:]                   # (a read may skip a frame on a loaded box:
    assert all(b == a + 1 or b == 0 for a, b in zip(seqs, seqs[1:]))  # read() returns the newest)
    gaps = np.diff([g.host_stamp_ns for g in got]) / 1e6
    assert np.median(gaps) < 60 and gaps[2] > 15                     # 4x: 25 ms apart, also across the loop
    err = np.abs(got[0].rgb.astype(int) - frames[0].rgb).mean()
    assert err < 3                                                    # JPEG (quality 90): lossy, close
    with pytest.raises(CameraError, match="holds 64×48 frames"):
        make_camera({"kind": "replay", "path": str(path), "width": 640, "height": 480}).open()


def test_a_recording_without_frames_is_refused_naming_what_it_holds(tmp_path):
    path = _record(tmp_path / "rec.mcap", [], other=False)
    with McapRecorder(tmp_path / "states.mcap") as rec:
        hb = M.Heartbeat(node="x", kind="camera", pid=1, status="ready", received=0, malformed=0, gaps=0)
        rec.write_frames(encode(hb.TOPIC, {"v": 1, "seq": 0, "stamp_ns": 1, "src": "x", **hb.header()}), 1)
    for p in (path, tmp_path / "states.mcap"):
        with pytest.raises(CameraError, match="no recorded camera frames") as exc:
            make_camera({"kind": "replay", "path": str(p)}).open()
    assert M.Heartbeat.TOPIC in str(exc.value)
    with pytest.raises(CameraError, match="no recording at"):
        make_camera({"kind": "replay", "path": str(tmp_path / "nope.mcap")}).open()
    with pytest.raises(CameraError, match="camera 'cam9'"):
        make_camera({"kind": "replay", "path": str(_record(tmp_path / "b.mcap", _frames(1))), "camera": "cam9"}).open()


def test_a_recording_cut_by_a_crash_plays_up_to_the_cut(tmp_path):
    path = _record(tmp_path / "rec.mcap", _frames(4))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])                   # no summary, a torn last record
    with make_camera({"kind": "replay", "path": str(path), "speed": 10.0}) as cam:
        n = 0
        try:
            while True:
                cam.read(timeout=2.0)
                n += 1
        except CameraError:
            pass
    assert 1 <= n <= 4
