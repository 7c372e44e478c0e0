"""A small RVQ tokenizer folder made with numpy alone (random weights, the export's manifest format), so the
runtime's decoder tests need neither torch nor a training run."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tokenizer(d, levels=(2, 2), K=16, dim=8, hidden=16, H=5, J=7, seed=0, scale=0.05):
    """``d``: a tokenizer folder with manifest.json and decoder.npz (compiled backend only)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    L = sum(levels)
    np.savez(d / "decoder.npz", codebooks=rng.normal(size=(L, K, dim)).astype(np.float32),
             w1=(rng.normal(size=(dim, hidden)) * 0.3).astype(np.float32), b1=np.zeros(hidden, np.float32),
             w2=(rng.normal(size=(hidden, hidden)) * 0.3).astype(np.float32), b2=np.zeros(hidden, np.float32),
             w3=(rng.normal(size=(hidden, H * J)) * 0.1).astype(np.float32), b3=np.zeros(H * J, np.float32),
             scale=np.full(J, scale))
    groups, off = [], 0
    for name, m in zip(("coarse", "fine") if len(levels) > 1 else ("rvq",), levels):
        groups.append({"name": name, "levels": m, "offset": off})
        off += K
    for i, g in enumerate(groups):
        g["open"] = off + i
    tokens = {"codebook_size": K, "groups": groups, "end": off + len(groups), "vocab_size": off + len(groups) + 1,
              "length": L + len(groups) + 1}
    m = {"format": "kinebridge-tokenizer-1", "name": "test-rvq", "kind": "rvq",
         "chunk": {"H": H, "joints": J, "dt": 0.1, "relative_to": "q_obs", "scale": [scale] * J},
         "model": {"latent_dim": dim, "hidden": hidden, "levels": list(levels), "codebook_size": K, "activation": "silu"},
         "tokens": tokens,
         "decoder": {"compiled": {"file": "decoder.npz", "sha256": _sha(d / "decoder.npz")},
                     "onnx": {"file": "decoder.onnx", "sha256": "0" * 64}}}
    m["id"] = f"test-rvq-{m['decoder']['compiled']['sha256'][:12]}"
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def sequence(m: dict, codes) -> np.ndarray:
    """A valid token sequence for codebook indices ``codes`` (goal levels first)."""
    out, col = [], 0
    for g in m["tokens"]["groups"]:
        out.append(g["open"])
        out += [g["offset"] + int(c) for c in codes[col:col + g["levels"]]]
        col += g["levels"]
    out.append(m["tokens"]["end"])
    return np.asarray(out, np.int32)


@pytest.fixture
def tokenizer(tmp_path):
    d = make_tokenizer(tmp_path / "tok")
    return d, json.loads((d / "manifest.json").read_text())
