"""Exporting an RVQ tokenizer's decoder (codes → chunk) for the runtime, with parity and a manifest.

torch's dynamo exporter cannot trace vector-quantize-pytorch's ``ResidualVQ`` (data-dependent ``if self.initted``),
and the runtime only ever decodes. :class:`DeployDecoder` is therefore a deploy-only module: the trained
codebooks as buffers (L, K, d), a per-level gather summed into z̃, the decoder MLP. Exported:

* ``decoder.onnx`` — inputs ``codes`` int64 (B, L) (the codebook index of each level, goal levels first,
  no delimiters), output ``delta`` float32 (B, H, 7), normalised; dynamic batch;
* ``decoder.npz`` — the same weights for the runtime's compiled decoder (numba, no torch, no ONNX Runtime):
  ``codebooks`` (L, K, d), ``w1 b1 w2 b2 w3 b3`` (``y = x @ w + b``, SiLU between), ``scale`` (7,);
* ``manifest.json`` (:data:`MANIFEST_FORMAT`) — what the runtime validates a code sequence against and
  how it turns one into a chunk: the token layout (codebook size, groups with their delimiter and level
  count, the end token), the chunk (H steps, dt, relative to the observation's joints, per-joint scale),
  each file's SHA-256, and the parity of ONNX Runtime and the compiled decoder against torch.

Token layout: a chunk's sequence is ``[open_coarse, c_1 … c_M, open_fine, f_1 … f_M, end]`` in the tokenizer's
own id space — codes of group g are ``offset_g + k`` (k < K): the goal group at 0…K−1, the kinematics group at
K…2K−1, then the delimiters 2K, 2K+1 and the end 2K+2 (a single-level RVQ: one group, ``[open, c_1 … c_2M, end]``).
A generator maps these ids to the tail of its text vocabulary (KineVLA §3.2).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DeployDecoder", "token_layout", "export_rvq", "MANIFEST_FORMAT", "sha256", "sequences"]

MANIFEST_FORMAT = "kinebridge-tokenizer-1"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def token_layout(levels: list[int], K: int, names=("coarse", "fine")) -> dict:
    groups, off = [], 0
    names = names if len(levels) > 1 else ("rvq",)
    for name, m in zip(names, levels):
        groups.append({"name": name, "levels": int(m), "offset": off})
        off += K
    for i, g in enumerate(groups):
        g["open"] = off + i
    end = off + len(groups)
    return {"codebook_size": int(K), "groups": groups, "end": end, "vocab_size": end + 1,
            "length": sum(levels) + len(groups) + 1}


def sequences(codes: np.ndarray, layout: dict) -> np.ndarray:
    """Codebook indices (n, L) → token sequences (n, length) with delimiters, int32."""
    codes = np.asarray(codes, np.int64)
    parts, col = [], 0
    for g in layout["groups"]:
        m = g["levels"]
        parts.append(np.full((len(codes), 1), g["open"]))
        parts.append(codes[:, col:col + m] + g["offset"])
        col += m
    parts.append(np.full((len(codes), 1), layout["end"]))
    return np.concatenate(parts, axis=1).astype(np.int32)


class DeployDecoder(nn.Module):
    """codes (B, L) int64 → normalised chunk (B, H, D): Σ_l codebooks[l][codes[:, l]] → MLP."""

    def __init__(self, model):
        super().__init__()
        self.register_buffer("codebooks", model.codebooks().detach().clone().float())
        dec = model.decoder
        self.l1, self.l2, self.l3 = (nn.Linear(x.in_features, x.out_features) for x in (dec.l1, dec.l2, dec.l3))
        self.load_state_dict({**{k: v for k, v in dec.state_dict().items()}, "codebooks": self.codebooks}, strict=True)
        self.H, self.D = model.H, model.D

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        z = self.codebooks[0][codes[:, 0]]
        for lvl in range(1, self.codebooks.shape[0]):
            z = z + self.codebooks[lvl][codes[:, lvl]]
        y = self.l3(F.silu(self.l2(F.silu(self.l1(z)))))
        return y.reshape(codes.shape[0], self.H, self.D)


def _onnx(dec: DeployDecoder, L: int, path: Path, exporter: str = "dynamo") -> dict:
    codes = torch.zeros(2, L, dtype=torch.int64)
    try:
        if exporter != "dynamo":
            raise RuntimeError("TorchScript exporter asked for")
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(dec, (codes,), str(path), input_names=["codes"], output_names=["delta"], dynamo=True,
                          dynamic_shapes={"codes": {0: batch}}, optimize=True, verbose=False,
                          external_data=False)
        how = "dynamo"
    except Exception as exc:  # noqa: BLE001 - fall back to the TorchScript exporter, say so
        torch.onnx.export(dec, (codes,), str(path), input_names=["codes"], output_names=["delta"], dynamo=False,
                          dynamic_axes={"codes": {0: "batch"}, "delta": {0: "batch"}}, opset_version=17)
        how = "torchscript" if exporter != "dynamo" else f"torchscript (dynamo failed: {type(exc).__name__})"
    import onnx
    m = onnx.load(str(path))
    return {"exporter": how, "opset": int(max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")))}


def export_rvq(model, out: Path, *, name: str, scale: np.ndarray, dt: float, training: dict, data: dict,
               parity_codes: np.ndarray | None = None, exporter: str = "dynamo") -> dict:
    """Write ``decoder.onnx``, ``decoder.npz`` and ``manifest.json`` for ``model`` (an RVQVAE) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    dec = DeployDecoder(model).eval()
    L = int(dec.codebooks.shape[0])
    K = int(dec.codebooks.shape[1])
    onnx_info = _onnx(dec, L, out / "decoder.onnx", exporter)
    sd = dec.state_dict()
    np.savez(out / "decoder.npz", codebooks=sd["codebooks"].numpy().astype(np.float32),
             w1=sd["l1.weight"].numpy().T.copy(), b1=sd["l1.bias"].numpy(), w2=sd["l2.weight"].numpy().T.copy(),
             b2=sd["l2.bias"].numpy(), w3=sd["l3.weight"].numpy().T.copy(), b3=sd["l3.bias"].numpy(),
             scale=np.asarray(scale, np.float64))
    # parity: torch (the training model's own decode), the deploy module, ONNX Runtime, the compiled decoder
    rng = np.random.default_rng(0)
    codes = parity_codes if parity_codes is not None else rng.integers(0, K, size=(256, L))
    codes = np.asarray(codes, np.int64)
    with torch.no_grad():
        ref = model.decode(torch.as_tensor(codes)).numpy().astype(np.float64)
        dep = dec(torch.as_tensor(codes)).numpy().astype(np.float64)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    onx = sess.run(None, {"codes": codes})[0].astype(np.float64)
    from kinebridge.kernels.rvq_decode import decode_normalised, weights_from_arrays
    with np.load(out / "decoder.npz") as z:
        w = weights_from_arrays(z)
    cmp = np.stack([decode_normalised(w, c, model.H) for c in codes])
    levels = list(model.levels)
    manifest = {
        "format": MANIFEST_FORMAT, "name": name, "kind": "rvq",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "chunk": {"H": model.H, "joints": model.D, "dt": float(dt), "relative_to": "q_obs",
                  "rows": "the observation's joints, then H steps of q_obs + scale · delta",
                  "scale": [float(v) for v in scale]},
        "model": {"latent_dim": model.dim, "hidden": model.hidden, "levels": levels, "codebook_size": K,
                  "activation": "silu"},
        "tokens": token_layout(levels, K),
        "decoder": {"onnx": {"file": "decoder.onnx", "sha256": sha256(out / "decoder.onnx"), "input": "codes int64 (B, L)",
                             "output": "delta float32 (B, H, joints), normalised", **onnx_info},
                    "compiled": {"file": "decoder.npz", "sha256": sha256(out / "decoder.npz")}},
        "parity": {"deploy_vs_torch_max_abs": float(np.abs(dep - ref).max()),
                   "onnx_vs_torch_max_abs": float(np.abs(onx - ref).max()),
                   "compiled_vs_torch_max_abs": float(np.abs(cmp - ref).max()), "codes_tested": int(len(codes))},
        "training": training, "data": data,
    }
    manifest["id"] = f"{name}-{manifest['decoder']['compiled']['sha256'][:12]}"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
