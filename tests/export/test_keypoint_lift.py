"""3D keypoints from 2D keypoints, the depth head and the table (kinebridge.export.keypoints.lift): a mug
on the table, seen by a calibrated camera, with the 2D and depth errors the shipped model has."""

import math

import numpy as np
import pytest

from kinebridge.drivers.camera.geometry import Intrinsics, invert, look_at
from kinebridge.export.keypoints.decode import backproject
from kinebridge.export.keypoints.lift import LiftConfig, lift

NAMES = ("K_i", "K_p1", "K_p2", "K_b")
INTR = Intrinsics.from_fovy(640, 480, 42.5)
T = look_at([0.75, 0.35, 0.45], [0.30, 0.0, 0.05])


def mug(x=0.3, y=0.02, yaw=0.7, R=0.04, h=0.1, reach=0.03, z0=0.0):
    """Ground-truth keypoints (the world's definitions): rim opposite the handle, mouth, base, handle."""
    c, s = math.cos(yaw), math.sin(yaw)
    ax = np.array([x, y, z0])
    out = np.array([[-R * c, -R * s, h], [0, 0, h], [0, 0, 0], [(R + reach) * c, (R + reach) * s, h / 2]]) + ax
    return out


def observe(P, rng, px=1.5, depth_mm=5.0):
    """Pixels with ``px`` noise and depth-head depths with ``depth_mm`` noise."""
    Tc = invert(T)
    pc = P @ Tc[:3, :3].T + Tc[:3, 3]
    uv = (pc @ INTR.K.T)[:, :2] / pc[:, 2:3]
    return uv + rng.normal(0, px, uv.shape), pc[:, 2] + rng.normal(0, depth_mm * 1e-3, len(P))


def test_a_mug_on_the_table_is_placed_more_exactly_than_by_its_depths():
    rng = np.random.default_rng(0)
    e_lift, e_eq2, e_ki = [], [], []
    for k in range(200):
        P = mug(x=rng.uniform(0.25, 0.4), y=rng.uniform(-0.1, 0.1), yaw=rng.uniform(-math.pi, math.pi))
        uv, z = observe(P, rng)
        X, uv2, src = lift(NAMES, uv, z, INTR.K, T)
        assert src == ["opposite handle", "axis", "support plane", "mid-height"]
        assert abs(X[2, 2]) < 1e-9 and np.allclose(X[1, :2], X[2, :2])        # base on the table, mouth above it
        e_lift.append(np.linalg.norm(X - P, axis=1))
        e_eq2.append(np.linalg.norm(backproject(uv, z, INTR.K, T) - P, axis=1))
        # K_i's pixel is re-projected from its 3D point
        Tc = invert(T)
        pc = Tc[:3, :3] @ X[0] + Tc[:3, 3]
        assert np.allclose(uv2[0], (INTR.K @ (pc / pc[2]))[:2])
        e_ki.append(np.linalg.norm(X[0] - P[0]))
    e_lift, e_eq2 = np.array(e_lift) * 1e3, np.array(e_eq2) * 1e3
    med_l, med_e = np.median(e_lift, axis=0), np.median(e_eq2, axis=0)
    assert np.all(med_l[1:] < med_e[1:]), (med_l, med_e)     # mouth, base and handle each better than eq. 2
    assert med_l[2] < 3.0 and med_l[1] < 4.0, med_l
    assert np.median(e_ki) * 1e3 < 8.0


def test_the_rim_point_goes_opposite_the_handle_even_if_its_pixel_is_on_the_wrong_side():
    rng = np.random.default_rng(1)
    P = mug(yaw=0.0)
    uv, z = observe(P, rng, px=0.3, depth_mm=1.0)
    wrong = mug(yaw=math.pi)           # a rim pixel on the handle's side (the weak two-sided K_i heatmap)
    uv_w, z_w = observe(wrong, rng, px=0.3, depth_mm=1.0)
    uv[0], z[0] = uv_w[0], z_w[0]
    X, _, src = lift(NAMES, uv, z, INTR.K, T)
    assert src[0] == "opposite handle" and np.linalg.norm(X[0] - P[0]) < 0.004


@pytest.mark.parametrize("z0", [0.06, -0.05])
def test_an_object_off_the_table_keeps_its_depth_head_points(z0):
    rng = np.random.default_rng(2)
    P = mug(z0=z0)                      # on a box, or below the configured table height
    uv, z = observe(P, rng, px=0.5, depth_mm=2.0)
    X, _, src = lift(NAMES, uv, z, INTR.K, T)
    assert src == ["depth head"] * 4
    assert np.allclose(X, backproject(uv, z, INTR.K, T))


def test_without_a_support_plane_or_without_depth_nothing_is_invented():
    rng = np.random.default_rng(3)
    P = mug()
    uv, z = observe(P, rng)
    X, _, src = lift(NAMES, uv, z, INTR.K, T, LiftConfig(support_z=None))
    assert src == ["depth head"] * 4 and np.allclose(X, backproject(uv, z, INTR.K, T))
    z[2] = np.nan                       # no depth at the base: no support-plane placement either
    X, _, src = lift(NAMES, uv, z, INTR.K, T)
    assert src[2] == "none" and np.isnan(X[2]).all() and src[1] == "depth head"


def test_a_mug_lying_on_its_side_is_not_forced_upright():
    rng = np.random.default_rng(4)
    P = mug()
    P[1] = P[2] + np.array([0.1, 0.0, 0.04])     # the mouth off the vertical through the base
    uv, z = observe(P, rng, px=0.3, depth_mm=1.0)
    X, _, src = lift(NAMES, uv, z, INTR.K, T)
    assert src[1] == "depth head" and src[2] == "support plane"
    assert np.linalg.norm(X[1] - P[1]) < 0.005
