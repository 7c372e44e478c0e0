"""Summaries of measured samples (latencies, errors): one set of keys for every benchmark and report.

``summary(samples)`` → ``{"n", "mean", "p50", "p95", "p99", "p99.9", "max"}``; every kinebridge
benchmark, ``kinebridge run``'s summary and the simulator's statistics report distributions with
these keys, in the unit the caller chose (``scale`` multiplies the samples first).
"""

from __future__ import annotations

import numpy as np

__all__ = ["summary", "KEYS"]

KEYS = ("n", "mean", "p50", "p95", "p99", "p99.9", "max")
_QS = (50.0, 95.0, 99.0, 99.9, 100.0)


def summary(samples, scale: float = 1.0, digits: int | None = None) -> dict:
    """Count, mean, median, p95, p99, p99.9 and maximum of ``samples × scale`` (None entries when empty);
    ``digits`` rounds the values."""
    a = np.asarray(samples, dtype=np.float64).reshape(-1) * scale
    if a.size == 0:
        return {"n": 0, **{k: None for k in KEYS[1:]}}
    v = np.percentile(a, _QS)
    out = {"n": int(a.size), "mean": float(a.mean()), "p50": float(v[0]), "p95": float(v[1]), "p99": float(v[2]),
           "p99.9": float(v[3]), "max": float(v[4])}
    if digits is not None:
        out = {k: (round(x, digits) if isinstance(x, float) else x) for k, x in out.items()}
    return out
