"""``kinebridge export keypoints``: a trained checkpoint → ONNX file + manifest, checked against torch.

Exporter: ``torch.onnx.export(..., dynamo=True)`` — torch's default (dynamo/torch.export based,
ONNX ops from onnxscript) — at opset 18, with static input shapes (1, 480, 640, 3) uint8 and
(1, 480, 640) float32: ONNX Runtime and TensorRT plan static graphs best, and the model is
trained for that frame size. The network is plain ``torch.nn`` (no custom ops), so no fallback
to the TorchScript exporter is needed.

Parity: the exported graph runs in ONNX Runtime (CPU) on validation frames of the training data
(or synthetic frames if none are given) and every output is compared with torch's; the largest
absolute difference must be ≤ ``tolerance`` (1e-4) or the export fails and nothing is written.

The manifest (``<out>.json``) records the inputs and outputs, the file's sha256, the classes and
keypoints, the decoding defaults, the training data (generator version, seeds, counts), the
training run (steps, time, final validation metrics), the parity result, the exporter and the
command that made the file.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from kinebridge.export.keypoints.model import MANIFEST_KIND, manifest_path
from kinebridge.export.keypoints.net import OUTPUTS, STRIDE, KeypointNet
from kinebridge.export.keypoints.train import load_checkpoint
from kinebridge.export.session import Session, sha256_of

__all__ = ["export", "EXPORTER", "OPSET"]

EXPORTER = "torch.onnx.export(dynamo=True)"
OPSET = 18


def _to_onnx(model: KeypointNet, path: Path, width: int, height: int) -> None:
    rgb = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    depth = torch.full((1, height, width), 0.8)
    import logging
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            prog = torch.onnx.export(model, (rgb, depth), None, input_names=["rgb", "depth"],
                                     output_names=list(OUTPUTS), dynamo=True, opset_version=OPSET, verbose=False)
        finally:
            logging.getLogger("torch.onnx").setLevel(level)
    prog.save(str(path))


def _parity_frames(data, n: int, width: int, height: int):
    frames = []
    if data is not None and n > 0:
        from kinebridge.export.keypoints.data import Shards
        try:
            sh = Shards(data, "val")
        except ValueError:
            sh = None
        if sh is not None and len(sh):
            for i in np.linspace(0, len(sh) - 1, min(n, len(sh))).astype(int):
                frames.append(sh.frame(int(i)))
    rng = np.random.default_rng(0)
    while len(frames) < max(1, n):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        depth = rng.uniform(0.4, 1.6, (height, width)).astype(np.float32)
        depth[rng.uniform(size=depth.shape) < 0.05] = 0.0
        frames.append((rgb, depth))
    return frames


def export(checkpoint, out, *, data=None, parity_frames: int = 4, tolerance: float = 1e-4, width: int = 640,
           height: int = 480, command: str = "") -> dict:
    """Export ``checkpoint`` to ``out`` (.onnx) and its manifest; returns the manifest."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out: expected a .onnx path, got {out}")
    if width % 32 or height % 32:
        raise ValueError(f"the frame size {width}×{height} must be a multiple of 32 (the network's coarsest branch)")
    model, ck = load_checkpoint(checkpoint)
    data = data if data is not None else ck.get("data")       # the parity frames' data set
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_path = Path(tmp) / out.name
        _to_onnx(model, tmp_path, width, height)
        sess = Session(tmp_path, providers="cpu", threads=2)
        worst, per = 0.0, {}
        for rgb, depth in _parity_frames(data, parity_frames, width, height):
            with torch.no_grad():
                ref = model(torch.from_numpy(rgb)[None], torch.from_numpy(depth)[None])
            got = sess.run({"rgb": rgb[None], "depth": depth[None]})
            for name, r in zip(OUTPUTS, ref):
                d = float(np.max(np.abs(got[name] - r.numpy())))
                per[name] = max(per.get(name, 0.0), d)
                worst = max(worst, d)
        if not worst <= tolerance:
            raise RuntimeError(f"ONNX Runtime differs from torch by {worst:.3g} (> {tolerance:g}) — per output "
                               f"{ {k: f'{v:.2g}' for k, v in per.items()} }; nothing written")
        inputs = [i.describe() for i in sess.inputs]
        outputs = [o.describe() for o in sess.outputs]
        del sess
        tmp_path.replace(out)
    history = ck.get("history") or []
    last = history[-1] if history else {}
    best = min((h for h in history if h.get("median_3d_mm") is not None), key=lambda h: h["median_3d_mm"], default=last)
    cfg = model.cfg
    manifest = {
        "kind": MANIFEST_KIND, "format": "onnx", "name": out.stem, "file": out.name,
        "sha256": sha256_of(out), "bytes": out.stat().st_size,
        "inputs": inputs, "outputs": outputs,
        "input": {"width": width, "height": height, "rgb": "uint8 (1, H, W, 3), RGB order",
                  "depth": "float32 (1, H, W) metres along the optical axis, aligned to rgb, 0 = no depth"},
        "output_stride": STRIDE, "classes": list(cfg.classes), "keypoints": list(cfg.keypoints),
        "network": {"config": cfg.to_dict(), "params": model.n_params(),
                    "design": "HRNet-style: 4 parallel branches at 1/4..1/32, exchange units, 1x1 fusion, "
                              f"self-attention at 1/{cfg.attn_stride}, centre/keypoint/offset/displacement/box/"
                              "depth/visibility heads at 1/4 (kinebridge.export.keypoints.net)"},
        "decode": {"centre_threshold": 0.3, "kp_threshold": 0.05, "min_depth_valid": 0.15},
        "training": {"checkpoint": str(checkpoint), "step": ck.get("step"), "data": ck.get("data"),
                     "data_manifest": ck.get("data_manifest"), "settings": ck.get("train"),
                     "command": ck.get("command"), "commands": ck.get("commands") or [ck.get("command")],
                     "seed": ck.get("seed")},
        "metrics": {"validation_at_checkpoint": {k: best.get(k) for k in ("step", "median_2d_px", "median_3d_mm",
                                                                           "detection", "per_keypoint", "minutes")}},
        "parity": {"max_abs_diff": worst, "per_output": per, "tolerance": tolerance,
                   "frames": max(1, parity_frames), "data": str(data) if data else None,
                   "against": f"torch {torch.__version__} eval mode"},
        "exporter": {"how": EXPORTER, "opset": OPSET, "torch": torch.__version__},
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.machine(),
    }
    mp = manifest_path(out)
    mp.write_text(json.dumps(manifest, indent=1) + "\n")
    manifest["manifest_path"] = str(mp)
    return manifest
