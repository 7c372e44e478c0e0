"""The synthetic camera's ground truth is exact: projections land on the rendered marker, depth
back-projects to the surface, segmentation labels the right pixels; clear back-end errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import ndimage

from kinebridge.drivers.camera import SyntheticCameraConfig, backproject, make_camera, project
from kinebridge.drivers.world import BoxSpec, MugSpec, Placement, SceneSpec, ToolSpec, World
from kinebridge.drivers.world.render import Renderer

MUGS = (MugSpec(name="cup", pose=Placement(x=0.42, y=0.08, yaw_deg=40), radius=0.04, height=0.1, wall=0.005,
                color=(0.2, 0.5, 0.8, 1)),
        MugSpec(name="cup2", pose=Placement(x=0.36, y=-0.1, yaw_deg=-70), radius=0.035, height=0.09, wall=0.004,
                color=(0.8, 0.5, 0.2, 1)),
        BoxSpec(name="crate", pose=Placement(x=0.5, y=-0.02, yaw_deg=20), size=(0.08, 0.06, 0.05),
                color=(0.3, 0.7, 0.3, 1)))
TOP = {"look_at": {"eye": [0.5, 0.02, 0.7], "target": [0.42, 0.0, 0.0]}}
SIDE = {"look_at": {"eye": [1.0, 0.35, 0.45], "target": [0.42, 0.0, 0.05]}}


def _capture(world, extr, **kw):
    cfg = SyntheticCameraConfig(width=640, height=480, extrinsics=extr, **kw)
    cam = make_camera(cfg, world=world)
    with Renderer(world, cfg.width, cfg.height) as r:
        return cam.capture_with(r)


@pytest.fixture(scope="module")
def marked():
    return World(SceneSpec(objects=MUGS, tool=ToolSpec(kind="none"), keypoint_markers=True))


@pytest.fixture(scope="module")
def plain():
    return World(SceneSpec(objects=MUGS, tool=ToolSpec(kind="none")))


@pytest.mark.parametrize("view", [TOP, SIDE], ids=["top", "side"])
def test_projected_keypoints_land_on_their_rendered_markers(marked, view):
    f = _capture(marked, view)
    gt = f.ground_truth
    marker = gt.labels.index("marker")
    blobs, n = ndimage.label(gt.segmentation == marker)
    checked = centred = 0
    for label, kps in gt.keypoints_2d.items():
        for name, (u, v, z, visible) in kps.items():
            if not visible:
                continue
            blob = blobs[int(round(v)), int(round(u))]
            assert blob > 0, f"{label}/{name}: no marker pixel at its projection ({u:.1f}, {v:.1f})"
            checked += 1
            if not (label in ("cup", "cup2") and name == "K_p1"):
                continue       # a marker on a surface is half buried in it: its visible centroid is biased
            rows, cols = np.nonzero(blobs == blob)
            err = np.hypot(cols.mean() - u, rows.mean() - v)
            assert err < 0.5, f"{label}/{name}: marker centroid {err:.2f} px from the projection"
            centred += 1
    assert checked >= 6 and centred == 2


def test_depth_back_projects_to_surface_keypoints(plain):
    f = _capture(plain, TOP)
    gt = f.ground_truth
    pts = [("cup", "K_i"), ("cup2", "K_i"), ("crate", "K_p1")]      # on flat faces (rim tops, box top)
    worst = 0.0
    for label, name in pts:
        u, v, z, visible = gt.keypoints_2d[label][name]
        assert visible, f"{label}/{name} should be visible from above"
        # bilinear depth at the sub-pixel projection; the keypoint is on a flat face wider than 2 px
        u0, v0 = int(np.floor(u)), int(np.floor(v))
        a, b = u - u0, v - v0
        d = f.depth
        zz = ((1 - a) * (1 - b) * d[v0, u0] + a * (1 - b) * d[v0, u0 + 1] + (1 - a) * b * d[v0 + 1, u0]
              + a * b * d[v0 + 1, u0 + 1])
        p = backproject([[u, v]], [zz], f.intrinsics, f.extrinsics)[0]
        err = np.linalg.norm(p - gt.keypoints_3d[label][name])
        worst = max(worst, err)
        assert err <= 1e-3, f"{label}/{name}: {err * 1e3:.2f} mm"
    assert worst < 1e-3


def test_non_surface_keypoints_are_not_visible_through_surfaces(plain):
    f = _capture(plain, SIDE)
    kp = f.ground_truth.keypoints_2d
    # the base centre of a mug is hidden by its own bottom and wall from a side view
    assert not kp["cup"]["K_p2"][3] and not kp["cup2"]["K_p2"][3]


def test_segmentation_labels_the_objects(plain):
    f = _capture(plain, TOP)
    seg, labels = f.ground_truth.segmentation, f.ground_truth.labels
    for name in ("cup", "cup2", "crate", "table"):
        assert (seg == labels.index(name)).sum() > 200, name
        assert f.ground_truth.visible_pixels[name] == (seg == labels.index(name)).sum()
    # pixels labelled "crate" back-project into the crate's box (1 mm slack)
    rows, cols = np.nonzero(seg == labels.index("crate"))
    P = backproject(np.stack([cols, rows], 1), f.depth[rows, cols], f.intrinsics, f.extrinsics)
    T = f.ground_truth.object_poses["crate"]
    loc = (P - T[:3, 3]) @ T[:3, :3]
    assert np.all(np.abs(loc[:, 0]) < 0.041) and np.all(np.abs(loc[:, 1]) < 0.031)
    assert np.all((loc[:, 2] > -0.001) & (loc[:, 2] < 0.051))
    # a pixel's label agrees with the nearest keypoint's object where the two overlap
    u, v, _, _ = f.ground_truth.keypoints_2d["crate"]["K_p1"]
    assert seg[int(round(v)), int(round(u))] == labels.index("crate")


def test_projection_round_trip():
    from kinebridge.drivers.camera import Intrinsics, look_at

    i = Intrinsics.from_fovy(640, 480, 50, cx=300.0, cy=250.0)
    T = look_at([1.0, 0.3, 0.5], [0.4, 0.0, 0.0])
    P = np.random.default_rng(0).uniform([0.2, -0.3, 0.0], [0.6, 0.3, 0.2], size=(50, 3))
    uv, z = project(P, i, T)
    np.testing.assert_allclose(backproject(uv, z, i, T), P, atol=1e-12)


def test_render_rate_one_pass():
    w = World(SceneSpec.random(2, n_mugs=3, n_distractors=2))
    cfg = SyntheticCameraConfig(width=640, height=480)
    with Renderer(w, 640, 480) as r:
        r.render(cfg.intrinsics(), cfg.extrinsics.pose())
        t0 = time.perf_counter()
        n = 20
        for _ in range(n):
            r.render(cfg.intrinsics(), cfg.extrinsics.pose())
        fps = n / (time.perf_counter() - t0)
    assert fps > 8, f"{fps:.1f} RGB-D frames/s at 640×480 (bench/camera_bench.py measures the real figure)"


def test_a_larger_image_than_the_world_buffer_says_how_to_fix_it(plain):
    from kinebridge.drivers.world.render import RenderError

    with pytest.raises(RenderError, match="render_size"):
        Renderer(plain, 1920, 1080)


_PROBE = ("from kinebridge.drivers.world.render import gl_context\n"
          "try:\n    gl_context(64, 64); print('OK')\n"
          "except Exception as e:\n    print(type(e).__name__ + ': ' + str(e))\n")


_WORLD_PROBE = ("from kinebridge.drivers.world import SceneSpec, World\n"
                "try:\n    World(SceneSpec()); print('OK')\n"
                "except Exception as e:\n    print(type(e).__name__ + ': ' + str(e))\n")


def _probe(code=_PROBE, **env):
    e = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}      # set by this process's EGL
    e.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def test_missing_egl_names_osmesa_and_the_package():
    line = _probe(MUJOCO_GL="egl", LIBGL_DRIVERS_PATH="/nonexistent")   # Mesa's drivers gone: no EGL device
    if line == "OK":
        pytest.skip("EGL started without Mesa's drivers (a vendor EGL is installed)")
    assert line.startswith("RenderError") and "MUJOCO_GL=osmesa" in line and "libosmesa6" in line


@pytest.mark.parametrize("code", [_PROBE, _WORLD_PROBE], ids=["context", "world"])
def test_osmesa_either_renders_or_names_its_package(code):
    # without libOSMesa even `import mujoco` fails (in PyOpenGL): the world reports the fix too
    line = _probe(code, MUJOCO_GL="osmesa")
    assert line == "OK" or (line.startswith("RenderError") and "apt-get install -y libosmesa6" in line)
