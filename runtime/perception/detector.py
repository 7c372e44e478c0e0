"""Detectors: what finds objects in a frame. The shipped keypoint network, or a user's open-vocabulary
detector exported to ONNX, or both.

    det = KeypointDetector(load())                               # the shipped mug keypoint model
    r = det.detect(frame)                                        # DetectionResult: detections, reason, timing
    ov = OpenVocabDetector("owlvit.onnx", queries=["a mug", "a bowl"])   # a user's model (local path)
    both = CombinedDetector(det, ov)                             # open-vocabulary classes + keypoints

Every detector returns :class:`Detection` objects (class, score, box in pixels; keypoints with
depth where the detector has them) and, when nothing is found, the reason (``nothing in view``,
``no object of a known class``); a detection of a class the keypoint model does not know keeps
its box and class but no keypoints, with ``reason`` saying so — it is never given keypoints it
does not have.

Open-vocabulary detectors (GroundingDINO, OWL-ViT/OWLv2, YOLO-World class) exported to ONNX by
the user — nothing is downloaded. The expected signature (:class:`OpenVocabDetector`):

* inputs: ``pixel_values`` float32 (1, 3, H, W) — RGB resized to the model's H × W (read from the
  graph; or the sidecar's ``image_size`` when the graph's are symbolic), scaled to [0, 1] and
  normalised with the sidecar's ``mean``/``std`` (default CLIP's); optionally ``input_ids`` and
  ``attention_mask`` int64 (Q, L) — the text queries, tokenised when the model was exported (the
  runtime ships no tokenizer: the sidecar holds each query's ids). A model with the queries baked
  in (YOLO-World ``set_classes``) has no text inputs;
* outputs: ``logits`` float32 (1, N, Q) — per box and query, a logit (``score: "sigmoid"``, the
  default) or a probability (``score: "prob"``); ``pred_boxes`` float32 (1, N, 4) — boxes as
  normalised (cx, cy, w, h) in [0, 1] of the model's input (DETR / OWL-ViT / GroundingDINO
  convention);
* sidecar ``<model>.json``: ``{"queries": [{"text": "a mug", "class": "mug", "input_ids": [...],
  "attention_mask": [...]}, ...], "score": "sigmoid", "threshold": 0.3, "mean": [...], "std": [...],
  "image_size": [W, H]}``; ``queries=`` given to the constructor override the texts (their ids must
  then be in the sidecar too, looked up by text).

Boxes are mapped back to frame pixels, thresholded, and non-maximum suppressed per class
(IoU 0.5).
"""

from __future__ import annotations

import abc
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Detection", "DetectionResult", "Detector", "KeypointDetector", "OpenVocabDetector", "CombinedDetector",
           "nms", "iou", "NOTHING_IN_VIEW"]

NOTHING_IN_VIEW = "nothing in view: no object of a known class detected"


@dataclass
class Detection:
    cls: str
    score: float
    box: np.ndarray                            # (4,) x0, y0, x1, y1 pixels of the frame
    centre: np.ndarray                         # (2,) pixels
    uv: np.ndarray | None = None               # (K, 2) keypoints, pixels
    z: np.ndarray | None = None                # (K,) depth along the optical axis (m), NaN unknown
    conf: np.ndarray | None = None             # (K,)
    visible: np.ndarray | None = None          # (K,)
    depth_ok: np.ndarray | None = None         # (K,)
    source: str = ""
    reason: str | None = None                  # e.g. "unknown class: no keypoint model for 'bowl'"
    extra: dict = field(default_factory=dict)


@dataclass
class DetectionResult:
    detections: list[Detection]
    reason: str | None = None
    timing_ms: dict = field(default_factory=dict)


class Detector(abc.ABC):
    """Finds objects in a frame (:class:`kinebridge.drivers.camera.base.Frame`)."""

    #: the classes it can report
    classes: tuple[str, ...] = ()

    @abc.abstractmethod
    def detect(self, frame) -> DetectionResult:
        ...

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "classes": list(self.classes)}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def nms(dets: list[Detection], thr: float = 0.5) -> list[Detection]:
    keep: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(k.cls != d.cls or iou(k.box, d.box) < thr for k in keep):
            keep.append(d)
    return keep


class KeypointDetector(Detector):
    """The keypoint network (an exported :class:`~kinebridge.export.keypoints.model.KeypointModel`)."""

    def __init__(self, model):
        self.model = model
        self.classes = tuple(model.classes)
        self.keypoints = tuple(model.keypoints)

    def detect(self, frame) -> DetectionResult:
        t0 = time.perf_counter()
        out = self.model.run(frame.rgb, frame.depth)
        t1 = time.perf_counter()
        from kinebridge.export.keypoints.decode import decode
        dets2 = decode(out, self.model.decode_cfg)
        t2 = time.perf_counter()
        dets = [Detection(cls=self.classes[d.cls], score=d.score, box=d.box, centre=d.centre, uv=d.uv, z=d.z,
                          conf=d.conf, visible=d.visible, depth_ok=d.depth_ok, source="keypoints",
                          extra={"regressed": d.regressed}) for d in dets2]
        return DetectionResult(dets, None if dets else NOTHING_IN_VIEW,
                               {"inference": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3})

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model.describe()}


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class OpenVocabDetector(Detector):
    """A user's open-vocabulary detector in ONNX (signature in the module docstring)."""

    def __init__(self, path, queries: list[str] | None = None, *, threshold: float | None = None, threads: int = 2,
                 providers="auto"):
        from kinebridge.export.session import Session

        self.path = Path(path)
        side = self.path.with_suffix(".json")
        meta = {}
        if side.is_file():
            try:
                meta = json.loads(side.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{side}: not valid JSON ({exc})") from None
        self.session = Session(self.path, providers=providers, threads=threads)
        names = {i.name for i in self.session.inputs}
        if "pixel_values" not in names:
            raise ValueError(f"{self.path.name}: an open-vocabulary detector takes 'pixel_values' (1, 3, H, W); "
                             f"this model takes {sorted(names)}")
        outs = set(self.session.output_names)
        if not {"logits", "pred_boxes"} <= outs:
            raise ValueError(f"{self.path.name}: expected outputs 'logits' (1, N, Q) and 'pred_boxes' (1, N, 4); "
                             f"it has {sorted(outs)}")
        self.text_inputs = {"input_ids", "attention_mask"} <= names
        side_q = meta.get("queries", [])
        by_text = {q["text"]: q for q in side_q if isinstance(q, dict) and "text" in q}
        if queries is None:
            if not side_q:
                raise ValueError(f"{self.path.name}: no text queries — pass queries=[...] or list them in {side.name}")
            chosen = side_q
        else:
            chosen = []
            for text in queries:
                q = by_text.get(text)
                if q is None:
                    if self.text_inputs:
                        raise ValueError(f"query {text!r} has no token ids in {side.name} (the runtime ships no "
                                         "tokenizer: tokenise it when exporting and list it there)")
                    q = {"text": text}
                chosen.append(q)
        self.queries = [q["text"] for q in chosen]
        self.query_classes = [q.get("class") or _class_of(q["text"]) for q in chosen]
        self.classes = tuple(dict.fromkeys(self.query_classes))
        if self.text_inputs:
            L = max(len(q["input_ids"]) for q in chosen)
            ids = np.zeros((len(chosen), L), np.int64)
            mask = np.zeros((len(chosen), L), np.int64)
            for r, q in enumerate(chosen):
                n = len(q["input_ids"])
                ids[r, :n] = q["input_ids"]
                mask[r, :n] = q.get("attention_mask", [1] * n)
            self._text = {"input_ids": ids, "attention_mask": mask}
        else:
            self._text = {}
        spec = next(i for i in self.session.inputs if i.name == "pixel_values")
        H, W = spec.shape[2], spec.shape[3]
        if not (isinstance(H, int) and isinstance(W, int)):
            W, H = meta.get("image_size", (None, None))
            if W is None:
                raise ValueError(f"{self.path.name}: its input size is symbolic; give image_size [W, H] in {side.name}")
        self.size = (int(W), int(H))
        self.mean = np.asarray(meta.get("mean", _CLIP_MEAN), np.float32).reshape(3, 1, 1)
        self.std = np.asarray(meta.get("std", _CLIP_STD), np.float32).reshape(3, 1, 1)
        self.score_kind = meta.get("score", "sigmoid")
        if self.score_kind not in ("sigmoid", "prob"):
            raise ValueError(f"{side.name}: score must be 'sigmoid' or 'prob', got {self.score_kind!r}")
        self.threshold = float(threshold if threshold is not None else meta.get("threshold", 0.3))

    def _pixels(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        W, H = self.size
        img = np.asarray(Image.fromarray(rgb).resize((W, H), Image.BILINEAR), np.float32) / 255.0
        x = (img.transpose(2, 0, 1) - self.mean) / self.std
        return x[None].astype(np.float32)

    def detect(self, frame) -> DetectionResult:
        t0 = time.perf_counter()
        H0, W0 = frame.rgb.shape[:2]
        feed = {"pixel_values": self._pixels(frame.rgb), **self._text}
        out = self.session.run(feed)
        logits, boxes = out["logits"][0], out["pred_boxes"][0]
        if logits.ndim != 2 or logits.shape[1] != len(self.queries) or boxes.shape != (logits.shape[0], 4):
            raise ValueError(f"{self.path.name}: logits {out['logits'].shape} / pred_boxes {out['pred_boxes'].shape} "
                             f"do not fit {len(self.queries)} queries (expected (1, N, Q) and (1, N, 4))")
        scores = 1.0 / (1.0 + np.exp(-logits)) if self.score_kind == "sigmoid" else logits
        best = scores.argmax(1)
        dets = []
        for n in range(scores.shape[0]):
            q = int(best[n])
            s = float(scores[n, q])
            if s < self.threshold:
                continue
            cx, cy, w, h = boxes[n]
            box = np.array([(cx - w / 2) * W0, (cy - h / 2) * H0, (cx + w / 2) * W0, (cy + h / 2) * H0])
            box = np.clip(box, 0, [W0 - 1, H0 - 1, W0 - 1, H0 - 1])
            dets.append(Detection(cls=self.query_classes[q], score=s, box=box,
                                  centre=np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]),
                                  source=f"open-vocabulary:{self.path.name}", extra={"query": self.queries[q]}))
        dets = nms(dets)
        return DetectionResult(dets, None if dets else f"nothing in view for the queries {self.queries}",
                               {"inference": (time.perf_counter() - t0) * 1e3})

    def describe(self) -> dict:
        return {**super().describe(), "path": str(self.path), "queries": self.queries, "input_size": list(self.size),
                "session": self.session.describe()}


def _class_of(text: str) -> str:
    words = [w for w in text.lower().replace(".", " ").split() if w not in ("a", "an", "the", "photo", "of")]
    return words[-1] if words else text


class CombinedDetector(Detector):
    """Open-vocabulary boxes and classes, with the keypoint network's keypoints where it knows the class.

    Each open-vocabulary detection of a class the keypoint model knows takes the keypoint
    detection with the highest box IoU (≥ ``min_iou``); one of a class it does not know stays a
    box with ``reason = "unknown class: ..."``. Keypoint detections no open-vocabulary box covers
    are kept (``source = "keypoints"``), so a query that misses a mug does not hide it.
    """

    def __init__(self, keypoints: KeypointDetector, open_vocab: OpenVocabDetector, min_iou: float = 0.3):
        self.kp, self.ov, self.min_iou = keypoints, open_vocab, min_iou
        self.classes = tuple(dict.fromkeys(list(keypoints.classes) + list(open_vocab.classes)))

    def detect(self, frame) -> DetectionResult:
        a, b = self.kp.detect(frame), self.ov.detect(frame)
        used = set()
        out = []
        for d in b.detections:
            if d.cls in self.kp.classes:
                cands = [(iou(d.box, k.box), i) for i, k in enumerate(a.detections) if k.cls == d.cls and i not in used]
                best = max(cands, default=(0.0, -1))
                if best[0] >= self.min_iou:
                    k = a.detections[best[1]]
                    used.add(best[1])
                    out.append(Detection(cls=d.cls, score=min(1.0, 0.5 * (d.score + k.score)), box=k.box, centre=k.centre,
                                         uv=k.uv, z=k.z, conf=k.conf, visible=k.visible, depth_ok=k.depth_ok,
                                         source=f"{d.source}+keypoints", extra={**k.extra, **d.extra}))
                else:
                    d.reason = f"no keypoint detection inside this {d.cls} box (keypoint model found none there)"
                    out.append(d)
            else:
                d.reason = f"unknown class: the keypoint model knows {list(self.kp.classes)}, not {d.cls!r}"
                out.append(d)
        out += [k for i, k in enumerate(a.detections) if i not in used]
        reason = None if out else NOTHING_IN_VIEW
        return DetectionResult(out, reason, {**{f"keypoints_{k}": v for k, v in a.timing_ms.items()},
                                             **{f"open_vocab_{k}": v for k, v in b.timing_ms.items()}})
