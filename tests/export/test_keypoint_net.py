"""The keypoint network (torch): outputs, targets, a loss that goes down, a training run's artefacts."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kinebridge.export.keypoints import train as T  # noqa: E402
from kinebridge.export.keypoints.net import OUTPUTS, KeypointNet, KeypointNetConfig, from_cell, to_cell  # noqa: E402


def test_outputs_at_a_quarter_of_the_image():
    net = KeypointNet(KeypointNetConfig.tiny()).eval()
    rgb = torch.zeros(1, 96, 128, 3, dtype=torch.uint8)
    depth = torch.full((1, 96, 128), 0.8)
    out = dict(zip(OUTPUTS, net(rgb, depth)))
    assert out["centre"].shape == (1, 1, 24, 32) and out["kp_heat"].shape == (1, 4, 24, 32)
    assert out["kp_offset"].shape == out["kp_disp"].shape == (1, 8, 24, 32) and out["box"].shape == (1, 4, 24, 32)
    assert out["kp_depth"].shape == out["kp_vis"].shape == (1, 4, 24, 32)
    # the depth head is a residual on the valid-depth average: a flat 0.8 m scene gives ~0.8 m
    assert torch.allclose(out["kp_depth"], torch.full_like(out["kp_depth"], 0.8), atol=0.3)
    assert float(out["depth_valid"][..., 2:-2, 2:-2].min()) > 0.99       # (the image border counts as no depth)
    holes = torch.zeros(1, 96, 128)
    out = dict(zip(OUTPUTS, net(rgb, holes)))
    assert float(out["depth_valid"].max()) == 0.0       # no depth anywhere: nothing to stand on, and it says so


def test_default_network_is_small():
    net = KeypointNet(KeypointNetConfig())
    assert 0.3e6 < net.n_params() < 1.5e6


def test_cell_convention_round_trips():
    u = np.array([0.0, 1.7, 639.0])
    assert np.allclose(from_cell(to_cell(u)), u)


def _one_mug_labels():
    M, K = 8, 4
    lab = {"n_objects": 1, "cls": np.array([0] + [-1] * 7), "centre": np.zeros((M, 2)), "box": np.zeros((M, 4)),
           "kp_uv": np.zeros((M, K, 2)), "kp_z": np.zeros((M, K)), "kp_vis": np.zeros((M, K), bool)}
    lab["centre"][0] = (60.0, 40.0)
    lab["box"][0] = (40.0, 20.0, 85.0, 64.0)
    lab["kp_uv"][0] = [(45.0, 25.0), (60.0, 25.0), (60.0, 60.0), (82.0, 42.0)]
    lab["kp_z"][0] = [0.70, 0.72, 0.74, 0.71]
    lab["kp_vis"][0] = [True, True, False, True]
    return lab


def test_targets_put_the_peak_at_the_keypoint_and_flip_mirrors_it():
    lab = _one_mug_labels()
    t = T.targets(lab, 0, 0, 128, 96, flip=False)
    for k, (u, v) in enumerate(lab["kp_uv"][0]):
        i, j = np.unravel_index(np.argmax(t["kp_hm"][k]), t["kp_hm"][k].shape)
        assert (j, i) == (round(to_cell(u)), round(to_cell(v)))
        assert t["kp_hm"][k, i, j] == 1.0
        centre = T._NBH.index((0, 0))                      # the middle of the 3 × 3 block
        assert np.allclose(t["offset"][0, k, centre], (to_cell(u) - j, to_cell(v) - i))
    assert np.allclose(t["depth"][0], lab["kp_z"][0]) and t["vis"][0].tolist() == [1, 1, 0, 1]
    tf = T.targets(lab, 0, 0, 128, 96, flip=True)
    assert np.allclose(tf["kp_hm"][:, :, ::-1], t["kp_hm"], atol=1e-6)


def test_a_few_steps_lower_the_loss_on_one_batch():
    torch.manual_seed(0)
    lab = _one_mug_labels()
    t = {k: torch.from_numpy(v)[None] for k, v in T.targets(lab, 0, 0, 128, 96, flip=False).items()}
    rng = np.random.default_rng(0)
    rgb = torch.from_numpy(rng.integers(0, 255, (1, 96, 128, 3), dtype=np.uint8))
    depth = torch.full((1, 96, 128), 0.72)
    net = KeypointNet(KeypointNetConfig.tiny())
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for _ in range(12):
        loss, parts = T.loss_fn(net(rgb, depth), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0]
    assert set(parts) == set(T.WEIGHTS)


def test_a_training_run_writes_checkpoints_metrics_and_a_figure(tiny_model):
    d = tiny_model.parent
    assert (d / "last.pt").is_file() and (d / "val.png").stat().st_size > 1000
    m = json.loads((d / "metrics.json").read_text())
    assert m["history"] and "per_keypoint" in m["history"][-1] and set(m["history"][-1]["per_keypoint"]) == {
        "K_i", "K_p1", "K_p2", "K_b"}
    model, ck = T.load_checkpoint(d / "last.pt")
    assert ck["step"] == 6 and ck["data_manifest"]["generator_version"] == 1
    assert ck["train"]["device"] == "cpu" and ck["train"]["workers"] == 0


def test_training_on_a_device_torch_lacks_is_refused_with_the_reason(tiny_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="--device cuda: .*no CUDA device"):
        T.train(tiny_data, tmp_path, size="tiny", steps=1, batch=1, workers=0, progress=False, device="cuda")


@pytest.mark.gpu
def test_a_few_training_steps_on_cuda_give_a_checkpoint_that_loads_on_the_cpu(tiny_data, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    T.train(tiny_data, tmp_path, size="tiny", steps=3, batch=2, crop=(128, 96), val_every=3, val_frames=1,
            workers=0, progress=False, device="cuda")
    model, ck = T.load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 3 and ck["train"]["device"].startswith("cuda") and next(model.parameters()).device.type == "cpu"
