"""Fixtures of the keypoint pipeline tests: a tiny rendered data set, a tiny trained and exported model.

Both are session-scoped and small (a dozen frames, a width-8 network trained for a few steps), so the
whole keypoint suite stays well under two minutes of CPU on the CI box."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    pytest.importorskip("mujoco")
    from kinebridge.export.keypoints import data as D
    out = tmp_path_factory.mktemp("kpdata") / "d"
    D.generate(out, 10, seed=3, views_per_layout=2, layouts_per_scene=2, shard_size=4, progress=False,
               command="test")
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_data, tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from kinebridge.export.keypoints import export, train
    ck = tmp_path_factory.mktemp("kptrain")
    train.train(tiny_data, ck, size="tiny", steps=6, batch=2, crop=(128, 96), val_every=6, val_frames=2,
                workers=0, progress=False, command="test")
    out = ck / "tiny.onnx"
    export.export(ck / "last.pt", out, data=tiny_data, parity_frames=1, command="test")
    return out
