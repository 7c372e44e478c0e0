"""Export and sessions: ONNX vs torch parity, the manifest, a model refused when its file or manifest is
wrong, the session's execution-provider choice (TensorRT > CUDA > CPU) and its reasons."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from kinebridge.export.keypoints.model import ModelError, load  # noqa: E402
from kinebridge.export.session import Session, SessionError, cuda_devices, sha256_of  # noqa: E402


def test_export_matches_torch_and_writes_a_manifest(tiny_model):
    m = json.loads(tiny_model.with_suffix(".json").read_text())
    assert m["sha256"] == sha256_of(tiny_model) and m["bytes"] == tiny_model.stat().st_size
    assert m["parity"]["max_abs_diff"] <= 1e-4 and m["parity"]["tolerance"] == 1e-4
    assert [i["name"] for i in m["inputs"]] == ["rgb", "depth"]
    assert m["inputs"][0] == {"name": "rgb", "shape": [1, 480, 640, 3], "dtype": "uint8"}
    assert {o["name"] for o in m["outputs"]} >= {"centre", "kp_heat", "kp_depth", "depth_valid"}
    assert m["exporter"]["how"] == "torch.onnx.export(dynamo=True)" and m["command"] == "test"
    assert m["training"]["data_manifest"]["seed"] == 3 and m["keypoints"] == ["K_i", "K_p1", "K_p2", "K_b"]


def test_the_exported_model_runs_without_torch_in_onnxruntime(tiny_model):
    model = load(tiny_model, threads=1)
    out = model.run(np.zeros((480, 640, 3), np.uint8), np.full((480, 640), 0.8, np.float32))
    assert out["kp_heat"].shape == (1, 4, 120, 160)
    assert model.session.provider == "CPUExecutionProvider" and model.session.threads == 1


@pytest.fixture
def copy_of(tiny_model, tmp_path):
    def make():
        d = tmp_path / "m"
        d.mkdir(exist_ok=True)
        shutil.copy(tiny_model, d / "m.onnx")
        shutil.copy(tiny_model.with_suffix(".json"), d / "m.json")
        return d / "m.onnx"
    return make


def test_a_missing_or_mismatched_model_is_refused_with_the_reason(copy_of, tmp_path):
    with pytest.raises(ModelError, match="no keypoint model at"):
        load(tmp_path / "nope.onnx")
    p = copy_of()
    p.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="has no manifest"):
        load(p)
    p = copy_of()
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))
    with pytest.raises(ModelError, match="sha256 .* differs from its manifest"):
        load(p)
    # a truncated file whose manifest was "fixed" to match: not an ONNX model
    p = copy_of()
    p.write_bytes(p.read_bytes()[:5000])
    m = json.loads(p.with_suffix(".json").read_text())
    m["sha256"] = sha256_of(p)
    p.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load(p)
    # a manifest that describes another input size than the graph has
    p = copy_of()
    m = json.loads(p.with_suffix(".json").read_text())
    m["inputs"][0]["shape"] = [1, 240, 320, 3]
    p.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="do not belong together"):
        load(p)
    p.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load(p)


def test_a_frame_of_another_size_is_refused(tiny_model):
    model = load(tiny_model)
    with pytest.raises(ModelError, match="takes 640×480 frames, the camera gives 320×240"):
        model.run(np.zeros((240, 320, 3), np.uint8), np.ones((240, 320), np.float32))
    with pytest.raises(ValueError, match="not aligned"):
        model.run(np.zeros((480, 640, 3), np.uint8), np.ones((240, 320), np.float32))


def test_session_picks_a_provider_says_why_and_checks_feeds(tiny_model):
    s = Session(tiny_model, threads=2)
    if cuda_devices()[0] == 0:
        assert s.provider == "CPUExecutionProvider"
        assert "Tensorrt" in s.reason and "CUDA" in s.reason and "skipped" in s.reason
        assert [p for p, _ in s.skipped] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    d = s.describe()
    assert d["threads"] == 2 and d["spin"] is False and d["provider"] == s.provider
    with pytest.raises(ValueError, match="inputs"):
        s.run({"rgb": np.zeros((1, 480, 640, 3), np.uint8)})
    with pytest.raises(ValueError, match="is float32, the model takes uint8"):
        s.run({"rgb": np.zeros((1, 480, 640, 3), np.float32), "depth": np.zeros((1, 480, 640), np.float32)})
    with pytest.raises(ValueError, match="has shape"):
        s.run({"rgb": np.zeros((1, 240, 640, 3), np.uint8), "depth": np.zeros((1, 480, 640), np.float32)})
    with pytest.raises(ValueError, match="unknown execution provider"):
        Session(tiny_model, providers="npu")
    with pytest.raises(ValueError, match="threads"):
        Session(tiny_model, threads=0)


def test_gpu_providers_are_skipped_with_the_reason_where_there_is_none(tiny_model):
    if cuda_devices()[0]:
        pytest.skip("a GPU is present: see the gpu-marked test")
    with pytest.raises(SessionError, match="CUDAExecutionProvider: (not in this onnxruntime build|no NVIDIA)"):
        Session(tiny_model, providers="cuda")


@pytest.mark.gpu
def test_tensorrt_then_cuda_on_a_gpu_with_a_cached_engine(tiny_model, tmp_path):
    n, why = cuda_devices()
    if n == 0:
        pytest.skip(f"no GPU: {why}")
    s = Session(tiny_model, trt_cache=tmp_path / "trt")
    assert s.provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"), s.reason
    feed = {"rgb": np.zeros((1, 480, 640, 3), np.uint8), "depth": np.full((1, 480, 640), 0.8, np.float32)}
    out = s.run(feed)
    ref = Session(tiny_model, providers="cpu").run(feed)
    assert np.max(np.abs(out["kp_heat"] - ref["kp_heat"])) < 1e-2
    if s.provider == "TensorrtExecutionProvider":
        assert any((tmp_path / "trt").iterdir())                        # the engine is cached
        again = Session(tiny_model, trt_cache=tmp_path / "trt")
        assert again.provider == "TensorrtExecutionProvider"
