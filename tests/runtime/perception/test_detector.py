"""The Detector interface's open-vocabulary adapter, against a small ONNX model with the documented
signature built here (no weights downloaded), and its combination with the keypoint model."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from kinebridge.drivers.camera.base import Frame  # noqa: E402
from kinebridge.drivers.camera.geometry import Intrinsics  # noqa: E402
from kinebridge.runtime.perception.detector import (CombinedDetector, Detection, DetectionResult,  # noqa: E402
                                                    KeypointDetector, OpenVocabDetector)

BOXES = np.array([[0.25, 0.30, 0.10, 0.20],      # normalised cx, cy, w, h
                  [0.70, 0.60, 0.20, 0.20],
                  [0.50, 0.50, 0.05, 0.05]], np.float32)


def ov_model(path, with_text=True, size=64):
    """logits[n, q] = 2 − |W[n] − s[q]| + 0 · mean(pixels), s[q] = Σ_l ids[q, l] · mask[q, l] / 100:
    each of three fixed boxes prefers the query whose s is nearest its W — enough to exercise the
    adapter's contract (inputs, query ids, scores, boxes)."""
    W = np.array([[5.0], [50.0], [20.0]], np.float32)                     # (N, 1)
    nodes, inits = [], [helper.make_tensor("W", TensorProto.FLOAT, W.shape, W.ravel()),
                        helper.make_tensor("boxes", TensorProto.FLOAT, (1, 3, 4), BOXES.ravel()),
                        helper.make_tensor("two", TensorProto.FLOAT, (), [2.0]),
                        helper.make_tensor("scale", TensorProto.FLOAT, (), [0.01]),
                        helper.make_tensor("zero", TensorProto.FLOAT, (), [0.0]),
                        helper.make_tensor("ax1", TensorProto.INT64, (1,), [1]),
                        helper.make_tensor("ax0", TensorProto.INT64, (1,), [0])]
    inputs = [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, (1, 3, size, size))]
    nodes.append(helper.make_node("ReduceMean", ["pixel_values"], ["pm"], keepdims=0))
    nodes.append(helper.make_node("Mul", ["pm", "zero"], ["pz"]))
    if with_text:
        inputs += [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ("Q", "L")),
                   helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ("Q", "L"))]
        nodes += [helper.make_node("Mul", ["input_ids", "attention_mask"], ["im"]),
                  helper.make_node("Cast", ["im"], ["imf"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceSum", ["imf", "ax1"], ["s"], keepdims=0),        # (Q,)
                  helper.make_node("Mul", ["s", "scale"], ["s2"]),
                  helper.make_node("Unsqueeze", ["s2", "ax0"], ["s3"])]                  # (1, Q)
    else:
        inits.append(helper.make_tensor("s3", TensorProto.FLOAT, (1, 2), [1.0, 5.0]))
    nodes += [helper.make_node("Sub", ["W", "s3"], ["d"]),                                # (N, Q)
              helper.make_node("Abs", ["d"], ["l0"]),
              helper.make_node("Sub", ["two", "l0"], ["l1"]),
              helper.make_node("Add", ["l1", "pz"], ["l2"]),
              helper.make_node("Unsqueeze", ["l2", "ax0"], ["logits"]),
              helper.make_node("Identity", ["boxes"], ["pred_boxes"])]
    g = helper.make_graph(nodes, "ov", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, (1, 3, "Q")),
                                                helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, (1, 3, 4))],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def frame(w=640, h=480):
    return Frame(rgb=np.full((h, w, 3), 120, np.uint8), depth=np.full((h, w), 0.8, np.float32),
                 intrinsics=Intrinsics.from_fovy(w, h, 42.5), extrinsics=np.eye(4), host_stamp_ns=1,
                 device_stamp_ns=None, seq=0)


def test_open_vocabulary_adapter_maps_queries_boxes_and_scores(tmp_path):
    p = ov_model(tmp_path / "ov.onnx")
    (tmp_path / "ov.json").write_text(json.dumps({"queries": [
        {"text": "a photo of a mug", "class": "mug", "input_ids": [400, 100], "attention_mask": [1, 1]},
        {"text": "a bowl", "input_ids": [300, 900], "attention_mask": [1, 0]}], "threshold": 0.5}))
    det = OpenVocabDetector(p)
    assert det.classes == ("mug", "bowl") and det.size == (64, 64) and det.text_inputs
    r = det.detect(frame())
    # box 0 (W = 5): mug s = 500/100 = 5 → logit 2; bowl s = 300/100 = 3 (its 900 is masked) → 0: a mug
    assert [d.cls for d in r.detections] == ["mug"]
    d = r.detections[0]
    assert np.allclose(d.box, [0.2 * 640, 0.2 * 480, 0.3 * 640, 0.4 * 480], atol=1e-3)
    assert d.score == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-5) and d.uv is None
    assert d.extra["query"] == "a photo of a mug" and r.reason is None


def test_queries_without_token_ids_and_wrong_signatures_are_refused(tmp_path):
    p = ov_model(tmp_path / "ov.onnx")
    (tmp_path / "ov.json").write_text(json.dumps({"queries": [{"text": "a mug", "input_ids": [1], "attention_mask": [1]}]}))
    with pytest.raises(ValueError, match="no token ids"):
        OpenVocabDetector(p, queries=["a cup"])
    baked = ov_model(tmp_path / "baked.onnx", with_text=False)
    (tmp_path / "baked.json").write_text(json.dumps({"queries": [{"text": "mug"}, {"text": "bowl"}], "threshold": 0.6}))
    r = OpenVocabDetector(baked).detect(frame())               # queries baked in: no text inputs
    assert [d.cls for d in r.detections] == ["bowl"]
    from kinebridge.export.keypoints.model import MODELS_DIR
    shipped = MODELS_DIR / "mug_kp.onnx"
    if shipped.exists():
        with pytest.raises(ValueError, match="pixel_values"):
            OpenVocabDetector(shipped, queries=["a mug"])


class StubKeypoints(KeypointDetector):
    def __init__(self, dets):
        self.classes, self.keypoints, self._dets = ("mug",), ("K_i", "K_p1", "K_p2", "K_b"), dets

    def detect(self, frame):
        return DetectionResult(list(self._dets), None if self._dets else "nothing in view", {"inference": 1.0})


def test_combined_detector_adds_keypoints_where_it_knows_the_class(tmp_path):
    p = ov_model(tmp_path / "ov.onnx")
    (tmp_path / "ov.json").write_text(json.dumps({"queries": [
        {"text": "a mug", "class": "mug", "input_ids": [400, 100], "attention_mask": [1, 1]},
        {"text": "a bowl", "class": "bowl", "input_ids": [2000, 0], "attention_mask": [1, 1]}], "threshold": 0.5}))
    kp = Detection(cls="mug", score=0.9, box=np.array([130.0, 98.0, 190.0, 190.0]), centre=np.array([160.0, 144.0]),
                   uv=np.full((4, 2), 150.0), z=np.full(4, 0.8), conf=np.full(4, 0.9), visible=np.ones(4),
                   depth_ok=np.ones(4, bool), source="keypoints")
    comb = CombinedDetector(StubKeypoints([kp]), OpenVocabDetector(p))
    r = comb.detect(frame())
    by = {d.cls: d for d in r.detections}
    assert by["mug"].uv is not None and "open-vocabulary" in by["mug"].source
    # box 2 (W = 20): the bowl query (s = 20) → a bowl, which the keypoint model does not know
    assert by["bowl"].uv is None and by["bowl"].reason.startswith("unknown class")
