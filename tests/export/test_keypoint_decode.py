"""Decoding the network's maps (numpy only): grouping by centre, sub-cell keypoints, the depth head's
depth, unknown depth reported as unknown, eq. (2) back-projection."""

import numpy as np
import pytest

from kinebridge.drivers.camera.geometry import Intrinsics, backproject as geo_backproject, look_at
from kinebridge.export.keypoints.decode import DecodeConfig, backproject, decode, to_cell


def _maps(h=30, w=40, K=4):
    return {"centre": np.zeros((1, 1, h, w), np.float32), "kp_heat": np.zeros((1, K, h, w), np.float32),
            "kp_offset": np.zeros((1, 2 * K, h, w), np.float32), "kp_disp": np.zeros((1, 2 * K, h, w), np.float32),
            "box": np.zeros((1, 4, h, w), np.float32), "kp_depth": np.full((1, K, h, w), 0.8, np.float32),
            "kp_vis": np.zeros((1, K, h, w), np.float32), "depth_valid": np.ones((1, 1, h, w), np.float32)}


def _object(out, ci, cj, kps, depths):
    out["centre"][0, 0, ci, cj] = 0.9
    out["box"][0, :, ci, cj] = 3.0
    for k, ((i, j), z) in enumerate(zip(kps, depths)):
        ii, jj = int(round(i)), int(round(j))
        out["kp_heat"][0, k, ii, jj] = 0.8
        out["kp_offset"][0, 2 * k, ii, jj] = j - jj
        out["kp_offset"][0, 2 * k + 1, ii, jj] = i - ii
        out["kp_disp"][0, 2 * k:2 * k + 2, ci, cj] = (jj - cj + 0.4, ii - ci - 0.3)    # a rough guess
        out["kp_depth"][0, k, ii, jj] = z


def test_two_objects_are_grouped_by_their_centres():
    out = _maps()
    _object(out, 10, 10, [(8, 8.2), (8, 10), (13, 10), (10, 13.4)], [0.70, 0.72, 0.75, 0.71])
    _object(out, 10, 25, [(8, 23), (8, 25.3), (13, 25), (10, 28)], [0.90, 0.92, 0.95, 0.91])
    dets = sorted(decode(out), key=lambda d: d.centre[0])
    assert len(dets) == 2
    a, b = dets
    assert np.allclose(to_cell(a.uv[:, 0]), [8.2, 10, 10, 13.4], atol=1e-4)
    assert np.allclose(to_cell(b.uv[:, 1]), [8, 8, 13, 10], atol=1e-4)
    assert np.allclose(a.z, [0.70, 0.72, 0.75, 0.71]) and np.allclose(b.z, [0.90, 0.92, 0.95, 0.91])
    assert a.depth_ok.all() and not a.regressed.any()


def test_no_depth_is_unknown_not_a_number_and_nothing_is_nothing():
    out = _maps()
    _object(out, 10, 10, [(8, 8), (8, 10), (13, 10), (10, 13)], [0.7] * 4)
    out["depth_valid"][0, 0, 8, 10] = 0.0                     # a hole under the mouth centre's window
    d = decode(out)[0]
    assert d.depth_ok.tolist() == [True, False, True, True] and np.isnan(d.z[1])
    assert decode(_maps()) == []
    bad = _maps()
    bad["kp_heat"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        decode(bad)


def test_a_keypoint_without_heatmap_support_keeps_the_centre_guess_marked_regressed():
    out = _maps()
    _object(out, 10, 10, [(8, 8), (8, 10), (13, 10), (10, 13)], [0.7] * 4)
    out["kp_heat"][0, 3] = 0.0
    d = decode(out, DecodeConfig(kp_threshold=0.05))[0]
    assert d.regressed.tolist() == [False, False, False, True]
    assert np.allclose(to_cell(d.uv[3]), (13 + 0.4, 10 - 0.3), atol=1e-4)


def test_eq2_back_projection_is_the_camera_geometry():
    intr = Intrinsics.from_fovy(640, 480, 42.5)
    T = look_at((1.0, 0.2, 0.6), (0.4, 0.0, 0.05))
    uv = np.array([[100.0, 50.0], [320.0, 240.0], [600.0, 400.0]])
    z = np.array([0.6, 0.9, 1.2])
    assert np.allclose(backproject(uv, z, intr.K, T), geo_backproject(uv, z, intr, T), atol=1e-12)
    assert np.isnan(backproject(uv, np.array([0.6, np.nan, 1.2]), intr.K, T)[1]).all()


def test_a_handle_whose_displacement_guess_fell_near_the_centre_is_found_on_its_heatmap():
    # the displacement head pulls an off-centre keypoint's guess towards the centre; its heatmap is sharp
    out = _maps(h=40, w=60)
    _object(out, 20, 20, [(16, 17), (16, 20), (25, 20), (20, 28)], [0.7] * 4)
    out["box"][0, :, 20, 20] = (8.0, 6.0, 10.0, 7.0)            # the box spans the handle at j = 28
    out["kp_disp"][0, 6:8, 20, 20] = (1.5, 0.0)                 # K_b guessed 1.5 cells off the centre
    out["kp_heat"][0, 3, 20, 21] = 0.2                          # a weak response near the guess
    d = decode(out)[0]
    assert np.allclose(to_cell(d.uv[3]), [28, 20], atol=1e-4) and not d.regressed[3]
    # a neighbour's handle beyond this object's search radius is not taken
    out["kp_heat"][0, 3, 20, 28] = 0.0
    out["kp_heat"][0, 3, 20, 45] = 0.9
    d = decode(out)[0]
    assert np.allclose(to_cell(d.uv[3]), [21, 20], atol=1e-4)
