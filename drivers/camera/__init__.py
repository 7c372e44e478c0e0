"""kinebridge.drivers.camera: cameras behind one interface — synthetic (the simulated world) and
RealSense (pyrealsense2), replay (a kinebridge recording) — plus pinhole geometry and hand-eye calibration.

    from kinebridge.drivers.camera import make_camera
    with make_camera({"kind": "synthetic", "width": 640, "height": 480}, world=world) as cam:
        frame = cam.read(timeout=1.0)        # next new frame; cam.read_latest() never waits

Names import lazily (MuJoCo, pyrealsense2 and OpenCV load only with the camera that needs them).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Camera": "base", "Frame": "base", "GroundTruth": "base", "CameraError": "base", "CameraNotFound": "base",
    "CameraBusy": "base", "UnsupportedMode": "base", "CameraTimeout": "base", "CameraClosed": "base",
    "Intrinsics": "geometry", "look_at": "geometry", "project": "geometry", "backproject": "geometry",
    "CameraConfig": "configs", "SyntheticCameraConfig": "configs", "RealsenseCameraConfig": "configs",
    "ExtrinsicsConfig": "configs", "make_camera": "configs", "register_camera": "configs",
    "parse_camera_config": "configs", "camera_kinds": "configs",
    "SyntheticCamera": "synthetic", "RealsenseCamera": "realsense", "SoftwareD435": "rs_software",
    "ReplayCamera": "replay", "ReplayCameraConfig": "configs", "ReplayEnded": "replay",
    "HandEyeCalibration": "calibration", "HandEyeResult": "calibration",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
