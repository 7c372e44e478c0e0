"""The rendered keypoint data: held-out shapes never in training, reproducible seeds, ground truth
that matches the camera (2D = projection of 3D, depth = camera z), a manifest, streaming reads."""

import json

import numpy as np
import pytest

from kinebridge.export.keypoints import data as D


def _overlaps(a, b):
    return any(lo < hi2 and lo2 < hi for lo, hi in a for lo2, hi2 in b)


def test_held_out_ranges_are_disjoint_from_training():
    for field in ("radius", "height", "reach"):
        assert not _overlaps(getattr(D.TRAIN_SHAPES, field), getattr(D.HELDOUT_SHAPES, field)), field
    assert set(D.HELDOUT_SHAPES.handles) - set(D.TRAIN_SHAPES.handles) == {"ear"}


def test_samplers_draw_only_their_shapes():
    pytest.importorskip("mujoco")
    for split in ("train", "val", "eval"):
        s = D.SceneSampler(split)
        for i in range(12):
            scene, _amb = s.scene(D.scene_rng(5, split, i))
            mugs = [o for o in scene.objects if o.kind == "mug"]
            assert mugs
            for m in mugs:
                args = (m.radius, m.height, m.handle.reach)
                if split == "train":
                    assert D.HELDOUT_SHAPES.disjoint(*args) and m.handle.shape in D.TRAIN_SHAPES.handles, args
                else:
                    assert D.TRAIN_SHAPES.disjoint(*args), (split, args)
            if split != "train":
                assert scene.tool.kind != "mug"          # the held mug's one shape is seen in training


def test_generated_set_has_a_manifest_splits_and_consistent_ground_truth(tiny_data):
    from kinebridge.drivers.camera.geometry import Intrinsics, project
    m = json.loads((tiny_data / "manifest.json").read_text())
    assert m["generator_version"] == D.GENERATOR_VERSION and m["seed"] == 3 and m["frames"] == 10
    assert {k: v["frames"] for k, v in m["splits"].items()} == {"train": 8, "val": 1, "test": 1}
    assert m["splits"]["val"]["shapes"]["handles"] == ["round", "square", "ear"]
    assert m["camera"]["width"] == 640 and "SeedSequence" in m["seeding"] and m["command"] == "test"
    sh = D.Shards(tiny_data, "train")
    assert len(sh) == 8
    n_checked = 0
    for i in range(len(sh)):
        rgb, depth = sh.frame(i)
        assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
        lab = sh.labels(i)
        fx, fy, cx, cy = lab["intrinsics"]
        intr = Intrinsics(fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy), width=640, height=480)
        for o in range(int(lab["n_objects"])):
            uv, z = project(lab["kp_xyz"][o], intr, lab["T_base_cam"])
            assert np.allclose(uv, lab["kp_uv"][o], atol=0.05) and np.allclose(z, lab["kp_z"][o], atol=1e-5)
            x0, y0, x1, y1 = lab["box"][o]
            assert x0 <= lab["centre"][o, 0] <= x1 and y0 <= lab["centre"][o, 1] <= y1
            assert 0.0 <= lab["vis_frac"][o] <= 1.0
            n_checked += 1
    assert n_checked > 0
    # the depth the sensor reports is noisy and has holes, but close to the true surface
    assert (depth == 0).mean() < 0.2


def test_same_seed_same_frames(tmp_path):
    pytest.importorskip("mujoco")
    a = D.render_split(tmp_path / "a", "test", 1, seed=9, views_per_layout=1, layouts_per_scene=1)
    b = D.render_split(tmp_path / "b", "test", 1, seed=9, views_per_layout=1, layouts_per_scene=1)
    assert a == b == 1
    ra = np.load(tmp_path / "a/test/shard-00000/rgb.npy")
    rb = np.load(tmp_path / "b/test/shard-00000/rgb.npy")
    assert np.array_equal(ra, rb)


def test_refuses_an_existing_set_and_bad_arguments(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="already holds"):
        D.generate(tiny_data, 3, progress=False)
    with pytest.raises(ValueError, match="--n"):
        D.generate(tmp_path / "x", 0, progress=False)
    with pytest.raises(ValueError, match="not a keypoint data set"):
        D.Shards(tmp_path, "train")


def test_parallel_rendering_writes_the_serial_frames_in_the_serial_order(tiny_data, tmp_path):
    """--workers: chunks of whole scenes on several processes, the same frames as one process (tiny_data
    was rendered with the same arguments serially); the manifest says how it was made."""
    pytest.importorskip("mujoco")
    out = tmp_path / "par"
    m = D.generate(out, 10, seed=3, views_per_layout=2, layouts_per_scene=2, shard_size=4, progress=False,
                   command="test", workers=2)
    assert m["frames"] == 10 and m["workers"] == 2 and m["requested_frames"] == 10
    assert {k: v["frames"] for k, v in m["splits"].items()} == {"train": 8, "val": 1, "test": 1}
    assert not list(out.glob("*/.chunk-*"))
    for split in D.SPLITS:
        a, b = D.Shards(tiny_data, split), D.Shards(out, split)
        assert len(a) == len(b)
        for i in range(len(a)):
            assert a.labels(i)["scene_seed"] == b.labels(i)["scene_seed"]
            assert np.allclose(a.labels(i)["kp_uv"], b.labels(i)["kp_uv"])
            assert np.array_equal(a.frame(i)[0], b.frame(i)[0])


def test_chunk_plan_covers_every_frame_once_held_out_splits_first():
    plan = D._chunk_plan({"train": 100, "val": 13, "test": 12}, frames_per_scene=12, shard_size=64)
    assert [p[0] for p in plan][:2] == ["val", "test"]
    for split, want in (("train", 100), ("val", 13), ("test", 12)):
        rows = [p for p in plan if p[0] == split]
        assert sum(p[4] for p in rows) == want
        assert [p[1] for p in rows] == list(range(len(rows)))
        assert all(p[2] == p[1] * p[3] and p[4] <= p[3] * 12 for p in rows)     # scene i holds frames [12i, 12i+12)


def test_parallel_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="--workers"):
        D.generate(tmp_path / "x", 10, progress=False, workers=0)
    with pytest.raises(ValueError, match="--time-limit-s"):
        D.generate(tmp_path / "y", 10, progress=False, time_limit_s=5.0)
