"""One set of interface tests for every camera: the synthetic camera on the simulated world, and the
RealSense camera on a pyrealsense2 software device (the same sensor/syncer/align code path as on USB)."""

from __future__ import annotations

import platform
import threading
import time

import numpy as np
import pytest

from kinebridge.drivers.camera import CameraClosed, CameraError, CameraTimeout, make_camera

EXTRINSICS = {"look_at": {"eye": [1.0, 0.1, 0.6], "target": [0.4, 0.0, 0.05]}}


def _rs_available():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.importorskip("pyrealsense2", reason="pyrealsense2 has wheels for x86_64 only")
    import pyrealsense2  # noqa: F401  - must import here: x86_64 has the wheel and the test extra installs it


class _Synthetic:
    def __init__(self):
        from kinebridge.drivers.world import SceneSpec, World

        self.world = World(SceneSpec.random(0, n_mugs=2, n_distractors=1, particles=40))
        self.camera = make_camera({"kind": "synthetic", "width": 320, "height": 240, "fps": 30,
                                   "extrinsics": EXTRINSICS}, world=self.world)
        self.shape = (240, 320)

    def start(self):
        """Step the world in real time on another thread, fed 200 Hz joint states, as a world node would."""
        self._halt = threading.Event()

        def run():
            q0, t0 = self.world.arm_q, time.monotonic()
            while not self._halt.wait(0.005):
                t = time.monotonic()
                self.world.follow(q0 + 0.05 * np.sin(t - t0), t)
                self.world.advance_to(t)

        self._stepper = threading.Thread(target=run, daemon=True)
        self._stepper.start()

    def pause(self):
        self.world.lock.acquire()          # neither the stepper nor the capture thread can touch the world

    def resume(self):
        self.world.lock.release()

    def stop(self):
        if getattr(self, "_stepper", None) is not None:
            self._halt.set()
            self._stepper.join()
            self._stepper = None


class _Realsense:
    def __init__(self):
        _rs_available()
        from kinebridge.drivers.camera.rs_software import SoftwareD435

        self.sw = SoftwareD435(modes=[(320, 240, 30), (640, 480, 30)])
        self.camera = make_camera({"kind": "realsense", "width": 320, "height": 240, "fps": 30,
                                   "extrinsics": EXTRINSICS}, device=self.sw.device)
        self.shape = (240, 320)
        self._paused = threading.Event()

    def _source(self, k):
        h, w = self.shape
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 1] = k % 256
        depth = np.full((h, w), 0.5 + 0.001 * (k % 100), np.float32)
        return rgb, depth

    def start(self):
        self.sw.start(self._source)

    def pause(self):
        self.sw.stop()

    def resume(self):
        self.sw.start(self._source)

    def stop(self):
        self.sw.stop()


@pytest.fixture(params=["synthetic", "realsense"])
def rig(request):
    r = _Synthetic() if request.param == "synthetic" else _Realsense()
    yield r
    r.stop()
    r.camera.close()


def _opened(rig):
    rig.camera.open()
    rig.start()
    return rig.camera


def test_frames_are_stamped_aligned_rgbd(rig):
    before = time.monotonic_ns()
    cam = _opened(rig)
    f = cam.read(timeout=5.0)
    after = time.monotonic_ns()
    h, w = rig.shape
    assert f.rgb.shape == (h, w, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (h, w) and f.depth.dtype == np.float32
    assert np.all(f.depth >= 0) and np.any(f.depth > 0)
    assert (f.intrinsics.width, f.intrinsics.height) == (w, h)
    assert f.intrinsics.fx > 0 and 0 < f.intrinsics.cx < w and 0 < f.intrinsics.cy < h
    assert f.extrinsics.shape == (4, 4)
    np.testing.assert_allclose(f.extrinsics[:3, 3], EXTRINSICS["look_at"]["eye"])
    assert before <= f.host_stamp_ns <= after
    assert isinstance(f.device_stamp_ns, int) and isinstance(f.seq, int)


def test_read_returns_each_new_frame_once(rig):
    cam = _opened(rig)
    frames = [cam.read(timeout=5.0) for _ in range(4)]
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))
    stamps = [f.host_stamp_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    dev = [f.device_stamp_ns for f in frames]
    assert all(b > a for a, b in zip(dev, dev[1:]))


def test_read_latest_never_waits(rig):
    cam = _opened(rig)
    first = cam.read(timeout=5.0)
    t0 = time.perf_counter()
    latest = cam.read_latest()
    assert time.perf_counter() - t0 < 0.01
    assert latest is not None and latest.seq >= first.seq
    time.sleep(0.3)
    assert cam.read_latest().seq > first.seq       # it keeps capturing without being read


def test_read_times_out_without_new_frames(rig):
    cam = _opened(rig)
    cam.read(timeout=5.0)
    rig.pause()
    try:
        time.sleep(0.1)
        try:
            cam.read(timeout=0.05)                 # a frame in flight at the pause may still land
        except CameraTimeout:
            pass
        with pytest.raises(CameraTimeout, match="no new frame within"):
            cam.read(timeout=0.2)
    finally:
        rig.resume()
    assert cam.read(timeout=5.0) is not None       # and frames flow again


def test_rate_is_near_the_configured_rate(rig):
    cam = _opened(rig)
    first = cam.read(timeout=5.0)
    time.sleep(1.0)
    last = cam.read_latest()
    rate = (last.seq - first.seq) / ((last.host_stamp_ns - first.host_stamp_ns) * 1e-9)
    assert 10 < rate < 40, f"{rate:.1f} frames/s at a configured 30"


def test_context_manager_closes_and_reopens(rig):
    with rig.camera as cam:
        rig.start()
        assert cam.is_open and cam.read(timeout=5.0) is not None
        with pytest.raises(CameraError, match="already open"):
            cam.open()
    rig.stop()
    assert not rig.camera.is_open
    with pytest.raises(CameraClosed, match="not open"):
        rig.camera.read(timeout=0.1)
    with pytest.raises(CameraClosed):
        rig.camera.read_latest()
    cam = _opened(rig)                              # a closed camera opens again
    assert cam.read(timeout=5.0).seq >= 0
