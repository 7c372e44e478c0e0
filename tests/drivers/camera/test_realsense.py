"""RealSense specifics on a pyrealsense2 software device: modes, alignment, intrinsics, clear errors."""

from __future__ import annotations

import platform

import numpy as np
import pytest

if platform.machine() not in ("x86_64", "AMD64"):
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 has wheels for x86_64 only")

import pyrealsense2 as rs  # noqa: E402

from kinebridge.drivers.camera import (CameraBusy, CameraNotFound, RealsenseCameraConfig, UnsupportedMode,  # noqa: E402
                                       make_camera)
from kinebridge.drivers.camera.rs_software import SoftwareD435  # noqa: E402


def _ramp(h, w):
    def source(k):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 0] = np.arange(w, dtype=np.uint16)[None, :] % 256
        depth = np.tile(np.linspace(0.4, 1.6, w, dtype=np.float32), (h, 1))
        depth[:, :10] = 0.0                     # no depth on the left edge
        return rgb, depth
    return source


@pytest.mark.parametrize("size", [(640, 480), (320, 240)])
def test_depth_is_aligned_metres_and_intrinsics_come_from_the_device(size):
    w, h = size
    sw = SoftwareD435(modes=[(640, 480, 30), (320, 240, 30)], fx=600.0, depth_units=0.0005)
    cam = make_camera(RealsenseCameraConfig(width=w, height=h, fps=30), device=sw.device)
    with cam:
        sw.start(_ramp(h, w))
        f = cam.read(timeout=5.0)
        sw.stop()
    expect = np.tile(np.linspace(0.4, 1.6, w, dtype=np.float32), (h, 1))
    inner = (slice(None), slice(12, w - 2))
    got, want = f.depth[inner], expect[inner]
    valid = got > 0
    # librealsense's align splats depth pixels into the colour image: a few holes, and a value may
    # come from the neighbouring pixel (one pixel of the ramp); z16 in units of 0.5 mm
    assert valid.mean() > 0.9
    step = 1.2 / (w - 1)
    np.testing.assert_allclose(got[valid], want[valid], atol=step + 0.0003)
    assert np.median(np.abs(got[valid] - want[valid])) < 0.0003
    assert np.all(f.depth[:, :8] == 0.0)
    np.testing.assert_array_equal(f.rgb[0, :, 0], np.arange(w) % 256)
    assert f.intrinsics.fx == pytest.approx(600.0 * w / 640) and f.intrinsics.cx == pytest.approx((w - 1) / 2)
    assert (f.intrinsics.width, f.intrinsics.height) == (w, h)
    assert f.meta["timestamp_domain"].endswith("hardware_clock") and f.meta["serial"] == "000000000001"
    assert f.extrinsics is None                   # not calibrated in this config


def test_a_mode_the_device_does_not_offer_lists_the_ones_it_does():
    sw = SoftwareD435(modes=[(640, 480, 30), (640, 480, 15)])
    with pytest.raises(UnsupportedMode, match=r"1280x720 at 30 frames/s .* it offers: 640x480@15, 640x480@30"):
        make_camera(RealsenseCameraConfig(width=1280, height=720), device=sw.device).open()
    with pytest.raises(UnsupportedMode, match="at 60 frames/s"):
        make_camera(RealsenseCameraConfig(fps=60), device=sw.device).open()


def test_a_busy_camera_says_who_to_close():
    sw = SoftwareD435()
    first = make_camera(RealsenseCameraConfig(), device=sw.device).open()
    try:
        with pytest.raises(CameraBusy, match="in use by another program"):
            make_camera(RealsenseCameraConfig(), device=sw.device).open()
    finally:
        first.close()
    make_camera(RealsenseCameraConfig(), device=sw.device).open().close()     # free again


def test_an_unplugged_camera_says_what_to_check():
    empty = rs.context()
    if len(empty.query_devices()):
        pytest.skip("a RealSense camera is plugged in here")
    with pytest.raises(CameraNotFound, match="no RealSense camera is connected.*USB 3"):
        make_camera(RealsenseCameraConfig(), context=empty).open()
    with pytest.raises(CameraNotFound, match="serial 123456 is not connected"):
        make_camera(RealsenseCameraConfig(serial="123456"), context=empty).open()
