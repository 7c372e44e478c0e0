"""The compiled RVQ decoder: residual-VQ codes → an action chunk, without torch or ONNX Runtime.

KineVLA's decoder g_φ (§3.1) sums one codebook row per level, z̃ = Σ_l E_l[k_l], and maps z̃ through an MLP
(Linear → SiLU → Linear → SiLU → Linear) to the normalised chunk Δ̂ (H × joints); the chunk is then
q_obs + scale ⊙ Δ̂ for each of the H steps. :func:`decode_into` does that in one compiled call into
preallocated buffers (zero allocation per chunk); :func:`decode_normalised` and :func:`decode_chunk` are
the convenient forms. The weights are those :mod:`kinebridge.export.tokenizer.export` writes to
``decoder.npz`` (``y = x @ w + b``); the NumPy reference is :mod:`kinebridge.kernels.ref.rvq_decode`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["RVQWeights", "weights_from_arrays", "decode_into", "decode_normalised", "decode_chunk", "Buffers"]


class RVQWeights(NamedTuple):
    codebooks: np.ndarray     # (L, K, d) float64
    w1: np.ndarray            # (d, h)
    b1: np.ndarray
    w2: np.ndarray            # (h, h)
    b2: np.ndarray
    w3: np.ndarray            # (h, H·J)
    b3: np.ndarray


def weights_from_arrays(a) -> RVQWeights:
    """From a mapping with ``codebooks, w1, b1, w2, b2, w3, b3`` (an opened ``decoder.npz``); ValueError
    naming the first array whose shape does not chain."""
    try:
        w = RVQWeights(*(np.ascontiguousarray(a[k], dtype=np.float64) for k in RVQWeights._fields))
    except KeyError as exc:
        raise ValueError(f"decoder weights: missing array {exc.args[0]!r}") from None
    L, K, d = w.codebooks.shape if w.codebooks.ndim == 3 else (0, 0, 0)
    checks = (("codebooks", w.codebooks.ndim == 3 and L > 0 and K > 0), ("w1", w.w1.shape[:1] == (d,)),
              ("b1", w.b1.shape == (w.w1.shape[1],)), ("w2", w.w2.shape[0] == w.w1.shape[1]),
              ("b2", w.b2.shape == (w.w2.shape[1],)), ("w3", w.w3.shape[0] == w.w2.shape[1]),
              ("b3", w.b3.shape == (w.w3.shape[1],)))
    for name, ok in checks:
        if not ok:
            raise ValueError(f"decoder weights: {name} has shape {getattr(w, name).shape}, which does not chain "
                             f"with codebooks {w.codebooks.shape}")
    for name in RVQWeights._fields:
        if not np.all(np.isfinite(getattr(w, name))):
            raise ValueError(f"decoder weights: {name} has non-finite values")
    return w


class Buffers:
    """Scratch for :func:`decode_into` (one per decoder, reused for every chunk)."""

    def __init__(self, w: RVQWeights):
        self.z = np.empty(w.codebooks.shape[2])
        self.h1 = np.empty(w.w1.shape[1])
        self.h2 = np.empty(w.w2.shape[1])
        self.y = np.empty(w.w3.shape[1])


@njit(cache=True, inline="always")
def _silu(x):
    return x / (1.0 + math.exp(-x))


@njit(cache=True)
def _dense(x, w, b, out, act):
    """out = act(x @ w + b); w (n_in, n_out) row-major: accumulate rows so the inner loop is contiguous."""
    n_in, n_out = w.shape
    for j in range(n_out):
        out[j] = b[j]
    for i in range(n_in):
        xi = x[i]
        if xi != 0.0:
            for j in range(n_out):
                out[j] += xi * w[i, j]
    if act:
        for j in range(n_out):
            out[j] = _silu(out[j])


@njit(cache=True)
def decode_into(codes, codebooks, w1, b1, w2, b2, w3, b3, z, h1, h2, y):
    """Codes (L,) int → normalised chunk into ``y`` (H·J,). Codes must be valid (checked by the caller)."""
    L, K, d = codebooks.shape
    for j in range(d):
        z[j] = 0.0
    for lvl in range(L):
        k = codes[lvl]
        for j in range(d):
            z[j] += codebooks[lvl, k, j]
    _dense(z, w1, b1, h1, True)
    _dense(h1, w2, b2, h2, True)
    _dense(h2, w3, b3, y, False)


def decode_normalised(w: RVQWeights, codes, H: int | None = None, buffers: Buffers | None = None) -> np.ndarray:
    """(H, J) normalised chunk of ``codes`` (L,) — range-checked here."""
    c = np.ascontiguousarray(codes, dtype=np.int64)
    L, K, _ = w.codebooks.shape
    if c.shape != (L,) or c.min() < 0 or c.max() >= K:
        raise ValueError(f"codes: expected {L} indices in [0, {K}), got {c.tolist()}")
    b = buffers or Buffers(w)
    decode_into(c, w.codebooks, w.w1, w.b1, w.w2, w.b2, w.w3, w.b3, b.z, b.h1, b.h2, b.y)
    n = b.y.shape[0]
    H = H or n // 7
    return b.y.reshape(H, n // H).copy()


def decode_chunk(w: RVQWeights, codes, q_obs, scale, buffers: Buffers | None = None) -> np.ndarray:
    """(H + 1, J) absolute joint rows: the observation's joints, then q_obs + scale ⊙ Δ̂ for each step."""
    q = np.asarray(q_obs, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    d = decode_normalised(w, codes, w.w3.shape[1] // q.shape[0], buffers)
    return np.vstack([q[None], q[None] + s[None] * d])
