"""Camera configs and the factory: kinds from a registry, errors that name the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinebridge.drivers.camera import (ExtrinsicsConfig, SyntheticCameraConfig, camera_kinds, make_camera,
                                       parse_camera_config, register_camera)
from kinebridge.drivers.camera.configs import CameraConfig


def test_kinds_and_dict_configs():
    assert {"synthetic", "realsense"} <= set(camera_kinds())
    cfg = parse_camera_config({"kind": "realsense", "width": 848, "height": 480, "fps": 15, "serial": "123"})
    assert cfg.kind == "realsense" and cfg.width == 848


@pytest.mark.parametrize("bad, match", [
    ({"kind": "webcam"}, "camera kind: 'webcam' is not one of"),
    ({"kind": "synthetic", "widht": 640}, r"camera \(synthetic\) widht: Extra inputs are not permitted"),
    ({"kind": "realsense", "fps": 0}, r"camera \(realsense\) fps: Input should be greater than 0"),
    ({"kind": "synthetic", "extrinsics": {}}, "exactly one way"),
])
def test_bad_configs_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_camera_config(bad)


def test_synthetic_camera_needs_its_world():
    with pytest.raises(ValueError, match="needs the world"):
        make_camera({"kind": "synthetic"})


def test_extrinsics_every_way_agree(tmp_path):
    T = ExtrinsicsConfig(look_at={"eye": (1.0, 0.2, 0.6), "target": (0.4, 0.0, 0.0)}).pose()
    assert np.allclose(T[:3, :3].T @ T[:3, :3], np.eye(3)) and np.isclose(np.linalg.det(T[:3, :3]), 1.0)
    # the optical axis points at the target
    assert np.allclose(T[:3, 2], (np.array([0.4, 0, 0]) - [1.0, 0.2, 0.6]) / np.linalg.norm([0.6, 0.2, 0.6]))
    m = ExtrinsicsConfig(matrix=tuple(map(tuple, T))).pose()
    np.testing.assert_allclose(m, T)
    from scipy.spatial.transform import Rotation
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    np.testing.assert_allclose(ExtrinsicsConfig(position=tuple(T[:3, 3]), quaternion=(w, x, y, z)).pose(), T, atol=1e-12)
    p = tmp_path / "cal.json"
    p.write_text(json.dumps({"T_base_cam": T.tolist()}))
    np.testing.assert_allclose(ExtrinsicsConfig(file=p).pose(), T)
    with pytest.raises(ValueError, match="does not exist; run the hand-eye calibration"):
        ExtrinsicsConfig(file=tmp_path / "missing.json").pose()
    with pytest.raises(ValueError, match="not a rotation"):
        ExtrinsicsConfig(matrix=((2, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)))


def test_intrinsics_from_the_field_of_view():
    i = SyntheticCameraConfig(width=640, height=480, fovy_deg=60).intrinsics()
    assert i.fy == pytest.approx(240 / np.tan(np.radians(30))) and i.fx == i.fy
    assert (i.cx, i.cy) == (319.5, 239.5) and i.fovy_deg == pytest.approx(60)
    j = SyntheticCameraConfig(fx=500.0, cx=300.0).intrinsics()
    assert (j.fx, j.fy, j.cx) == (500.0, 500.0, 300.0)


def test_a_new_kind_registers_without_touching_the_factory():
    class ReplayConfig(CameraConfig):
        kind: str = "replay-test"
        path: str

    register_camera("replay-test", ReplayConfig, "tests.drivers.camera.test_configs:_Replay")
    cam = make_camera({"kind": "replay-test", "path": "x.mcap"})
    assert type(cam).__name__ == "_Replay" and cam.config.path == "x.mcap"


class _Replay:
    def __init__(self, config):
        self.config = config
