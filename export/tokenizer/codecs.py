"""One interface over the four tokenizers a ``kinebridge train tokenizer`` run leaves: encode normalised
chunks to tokens, decode tokens back, say how many tokens a chunk costs.

``load_codec(dir)`` reads a tokenizer folder's ``manifest.json``: ``bi-level-rvq`` and ``rvq`` (encoder from
the torch checkpoint, decoder the compiled one of :mod:`kinebridge.kernels.rvq_decode` — what the runtime
runs), ``bins-256`` / ``bins-256-full`` and ``fast``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kinebridge.export.tokenizer.baselines import BinsTokenizer, FASTTokenizer

__all__ = ["Codec", "load_codec", "load_codecs"]


class Codec:
    name: str
    kind: str
    scale: np.ndarray
    H: int = 5

    def encode(self, x: np.ndarray):
        raise NotImplementedError

    def decode(self, tokens) -> tuple[np.ndarray, int]:
        """(n, H, 7) normalised chunks and the number of sequences that failed to decode."""
        raise NotImplementedError

    def tokens_per_chunk(self, tokens) -> np.ndarray:
        return np.array([len(t) for t in tokens])


class RVQCodec(Codec):
    kind = "rvq"

    def __init__(self, d: Path, manifest: dict):
        import torch

        from kinebridge.export.tokenizer.train import load_rvq
        from kinebridge.kernels.rvq_decode import Buffers, weights_from_arrays
        self.name, self.manifest, self.dir = manifest["name"], manifest, d
        self.scale = np.asarray(manifest["chunk"]["scale"])
        self.H = int(manifest["chunk"]["H"])
        ck = d / ("stage2.pt" if (d / "stage2.pt").exists() else "model.pt")
        self.model = load_rvq(ck)
        self._torch = torch
        with np.load(d / "decoder.npz") as z:
            self.w = weights_from_arrays(z)
        self._buf = Buffers(self.w)
        self.levels = manifest["model"]["levels"]
        self.K = manifest["model"]["codebook_size"]

    def encode(self, x):
        t = self._torch.as_tensor(np.asarray(x), dtype=self._torch.float32)
        return self.model.encode(t).numpy()

    def decode(self, tokens):
        from kinebridge.kernels.rvq_decode import decode_normalised
        out = np.stack([decode_normalised(self.w, c, self.H, self._buf) for c in np.asarray(tokens)])
        return out, 0

    def tokens_per_chunk(self, tokens):
        return np.full(len(tokens), sum(self.levels))

    def usage(self, tokens) -> list[float]:
        c = np.asarray(tokens)
        return [round(float(np.unique(c[:, lvl]).size) / self.K, 4) for lvl in range(c.shape[1])]


class BinsCodec(Codec):
    kind = "bins"

    def __init__(self, d: Path, manifest: dict):
        self.name, self.manifest = manifest["name"], manifest
        self.scale = np.asarray(manifest["chunk"]["scale"])
        self.H = int(manifest["chunk"]["H"])
        self.t = BinsTokenizer(manifest["tokens_per_chunk"], self.H, 7, manifest["bins"])

    def encode(self, x):
        return self.t.encode(x)

    def decode(self, tokens):
        return self.t.decode(tokens), 0

    def tokens_per_chunk(self, tokens):
        return np.full(len(tokens), self.t.tokens_per_chunk)


class FastCodec(Codec):
    kind = "fast"

    def __init__(self, d: Path, manifest: dict):
        self.name, self.manifest = manifest["name"], manifest
        self.scale = np.asarray(manifest["chunk"]["scale"])
        self.H = int(manifest["chunk"]["H"])
        self.t = FASTTokenizer.from_manifest(manifest, self.H, 7)

    def encode(self, x):
        return self.t.encode(x)

    def decode(self, tokens):
        return self.t.decode(tokens)


def load_codec(d) -> Codec:
    d = Path(d)
    mf = d / "manifest.json"
    if not mf.is_file():
        raise ValueError(f"{d}: no manifest.json — train it with `kinebridge train tokenizer`")
    m = json.loads(mf.read_text())
    kind = m.get("kind")
    if kind == "rvq":
        return RVQCodec(d, m)
    if kind == "bins":
        return BinsCodec(d, m)
    if kind == "fast":
        return FastCodec(d, m)
    raise ValueError(f"{mf}: unknown tokenizer kind {kind!r}")


def load_codecs(root, names) -> dict[str, Codec]:
    out = {}
    for n in names:
        if (Path(root) / n / "manifest.json").is_file():
            out[n] = load_codec(Path(root) / n)
    return out
