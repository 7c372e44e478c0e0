"""Hand-eye calibration on the simulated world, run as on the real arm: plan poses, move, capture,
detect the flange's checkerboard, solve; it recovers the synthetic camera's true extrinsics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinebridge.drivers.camera import ExtrinsicsConfig, make_camera
from kinebridge.drivers.camera.calibration import Board, HandEyeCalibration, plan_poses, run_hand_eye
from kinebridge.drivers.world import SceneSpec, ToolSpec, World

EYE = [1.05, 0.15, 0.62]


@pytest.fixture(scope="module")
def rig():
    world = World(SceneSpec(tool=ToolSpec(kind="none", marker=True)))
    cam = make_camera({"kind": "synthetic", "width": 640, "height": 480, "fps": 30, "ground_truth": False,
                       "extrinsics": {"look_at": {"eye": EYE, "target": [0.42, 0.0, 0.3]}}}, world=world)
    return world, cam


def test_recovers_the_true_camera_pose(rig, tmp_path):
    world, cam = rig
    d7 = world.scene.arm.d7
    poses = plan_poses(12, center=(0.45, 0.0, 0.35), camera_position=EYE, d7=d7, seed=1)
    with cam:
        res = run_hand_eye(cam, world.set_arm, poses, d7, Board.from_tool(world.built.tool), settle_s=0.02)
    T = cam.extrinsics
    dp = np.linalg.norm(res.T_base_cam[:3, 3] - T[:3, 3])
    da = np.degrees(np.arccos(np.clip((np.trace(res.T_base_cam[:3, :3].T @ T[:3, :3]) - 1) / 2, -1, 1)))
    assert dp < 0.003 and da < 0.3, f"{dp * 1e3:.2f} mm, {da:.3f}°"
    # the board mount is recovered too, and the residuals say the fit is clean
    np.testing.assert_allclose(res.T_flange_board[:3, 3], world.built.tool.T_flange_board[:3, 3], atol=0.002)
    assert res.views == 12 and res.reprojection_rms_px < 0.6 and res.rotation_residual_deg < 1.0
    # the result is what ExtrinsicsConfig(file=...) reads back
    path = res.save(tmp_path / "cal.json")
    np.testing.assert_allclose(ExtrinsicsConfig(file=path).pose(), res.T_base_cam)
    assert json.loads(path.read_text())["views"] == 12


def test_too_few_views_says_what_to_do(rig):
    world, cam = rig
    cal = HandEyeCalibration(cam.intrinsics, Board.from_tool(world.built.tool), world.scene.arm.d7)
    cal.add(world.arm_q, np.zeros((480, 640, 3), np.uint8))          # nothing to see
    with pytest.raises(ValueError, match=r"at least 3 views .*board not found"):
        cal.solve()


def test_unreachable_pose_plan_is_explained():
    with pytest.raises(ValueError, match="reachable"):
        plan_poses(5, center=(1.5, 0.0, 0.3), camera_position=EYE, d7=0.144)
