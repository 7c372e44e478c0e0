"""NumPy reference of :mod:`kinebridge.kernels.rvq_decode` (for tests and timing ratios)."""

from __future__ import annotations

import numpy as np


def silu(x):
    return x / (1.0 + np.exp(-x))


def decode_normalised(w, codes, H: int):
    z = w.codebooks[np.arange(w.codebooks.shape[0]), np.asarray(codes)].sum(axis=0)
    h1 = silu(z @ w.w1 + w.b1)
    h2 = silu(h1 @ w.w2 + w.b2)
    y = h2 @ w.w3 + w.b3
    return y.reshape(H, -1)
