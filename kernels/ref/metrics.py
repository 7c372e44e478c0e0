"""Plain-NumPy reference for :mod:`kinebridge.kernels.metrics` (tests and speed ratios).

Same public functions and formulas, written directly from the definitions (kmp.md §6–§7, VL-MP
eq. 8): vectorised NumPy where the metric is a sum over samples, plain full-matrix loops for the
DTW and Fréchet recurrences. Input checking is minimal (shape and finiteness asserts raise
``ValueError``); the Numba module is the one that gives users careful messages.
"""

from __future__ import annotations

import numpy as np

COS_EPS = 1e-12


def _arr(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 1 or not np.isfinite(a).all():
        raise ValueError(f"{name}: expected a finite (T, d) array, got shape {a.shape}")
    return a


def _same(x, y, name_y: str = "y") -> tuple[np.ndarray, np.ndarray]:
    a, b = _arr(x, "x"), _arr(y, name_y)
    if a.shape != b.shape:
        raise ValueError(f"{name_y}: shape {b.shape} does not match x {a.shape}")
    return a, b


def _cdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix of Euclidean distances |a_i - b_j|."""
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))


def topological_similarity(x, y) -> float:
    """c_s = 1/(T-1) Σ_t <Δx_t, Δy_t> / (|Δx_t||Δy_t| + 1e-12)."""
    a, b = _same(x, y)
    da, db = np.diff(a, axis=0), np.diff(b, axis=0)
    cos = (da * db).sum(axis=1) / (np.linalg.norm(da, axis=1) * np.linalg.norm(db, axis=1) + COS_EPS)
    return float(cos.mean())


def smoothness(x) -> float:
    """κ₂ = mean_t |x_{t+1} - 2x_t + x_{t-1}| / mean_t |x_{t+1} - x_t| (0 for a resting trajectory)."""
    a = _arr(x, "x")
    step = np.linalg.norm(np.diff(a, axis=0), axis=1).mean()
    acc = np.linalg.norm(np.diff(a, n=2, axis=0), axis=1).mean()
    return 0.0 if step == 0.0 else float(acc / step)


def turning_angle(x) -> float:
    """κ_θ = mean_t atan2(|a_t ∧ b_t|, a_t·b_t), a_t = x_t - x_{t-1}, b_t = x_{t+1} - x_t."""
    a = _arr(x, "x")
    dx = np.diff(a, axis=0)
    u, v = dx[:-1], dx[1:]
    outer = u[:, :, None] * v[:, None, :]
    wedge = outer - outer.transpose(0, 2, 1)          # a_i b_j - a_j b_i; each pair appears twice
    cross = np.sqrt(0.5 * (wedge ** 2).sum(axis=(1, 2)))
    return float(np.arctan2(cross, (u * v).sum(axis=1)).mean())


def rmse(x, y) -> float:
    """sqrt(1/T Σ_t |x_t - y_t|²)."""
    a, b = _same(x, y)
    return float(np.sqrt(((a - b) ** 2).sum(axis=1).mean()))


def sse(x, y) -> float:
    """Σ_t |x_t - y_t|²."""
    a, b = _same(x, y)
    return float(((a - b) ** 2).sum())


def mean_error(x, y) -> float:
    """1/T Σ_t |x_t - y_t|."""
    a, b = _same(x, y)
    return float(np.linalg.norm(a - b, axis=1).mean())


def dtw_distance(x, y) -> float:
    """C(i,j) = |x_i - y_j| + min(C(i-1,j), C(i,j-1), C(i-1,j-1)), returns C(T_x-1, T_y-1)."""
    a, b = _arr(x, "x"), _arr(y, "y")
    c = _cdist(a, b)
    n, m = c.shape
    C = np.full((n + 1, m + 1), np.inf)          # padded: C[i+1, j+1] holds C(i, j)
    C[0, 0] = 0.0
    for i in range(n):
        for j in range(m):
            C[i + 1, j + 1] = c[i, j] + min(C[i, j + 1], C[i + 1, j], C[i, j])
    return float(C[n, m])


def frechet_distance(x, y) -> float:
    """F(i,j) = max(|x_i - y_j|, min(F(i-1,j), F(i-1,j-1), F(i,j-1))), returns F(T_x-1, T_y-1)."""
    a, b = _arr(x, "x"), _arr(y, "y")
    c = _cdist(a, b)
    n, m = c.shape
    F = np.full((n + 1, m + 1), np.inf)
    F[0, 0] = 0.0
    for i in range(n):
        for j in range(m):
            F[i + 1, j + 1] = max(c[i, j], min(F[i, j + 1], F[i, j], F[i + 1, j]))
    return float(F[n, m])


def swept_error_area(x, y) -> float:
    """Σ_t |shoelace area of (x_t, x_{t+1}, y_{t+1}, y_t)|, 2-D only."""
    a, b = _same(x, y)
    if a.shape[1] != 2:
        raise ValueError(f"x: swept error area needs 2-D points, got shape {a.shape}")
    quad = np.stack([a[:-1], a[1:], b[1:], b[:-1]], axis=1)        # (T-1, 4, 2)
    nxt = np.roll(quad, -1, axis=1)
    signed = 0.5 * (quad[..., 0] * nxt[..., 1] - nxt[..., 0] * quad[..., 1]).sum(axis=1)
    return float(np.abs(signed).sum())


def hausdorff_distance(x, y) -> float:
    """max(max_i min_j |x_i - y_j|, max_j min_i |x_i - y_j|)."""
    c = _cdist(_arr(x, "x"), _arr(y, "y"))
    return float(max(c.min(axis=1).max(), c.min(axis=0).max()))


def endpoint_errors(x, start, end) -> tuple[float, float]:
    """(|x_0 - start|, |x_{T-1} - end|)."""
    a = _arr(x, "x")
    return (float(np.linalg.norm(a[0] - np.asarray(start, dtype=np.float64))),
            float(np.linalg.norm(a[-1] - np.asarray(end, dtype=np.float64))))


def shape_report(x, ref, start=None, end=None) -> dict:
    """Same keys as :func:`kinebridge.kernels.metrics.shape_report`."""
    a, b = _same(x, ref, "ref")
    out = {
        "c_s": topological_similarity(a, b),
        "kappa_s": smoothness(a),
        "kappa_theta": turning_angle(a),
        "rmse": rmse(a, b),
        "mean_error": mean_error(a, b),
        "dtw": dtw_distance(a, b),
        "frechet": frechet_distance(a, b),
        "hausdorff": hausdorff_distance(a, b),
        "sea": swept_error_area(a, b) if a.shape[1] == 2 else None,
    }
    if start is not None:
        out["start_error"] = float(np.linalg.norm(a[0] - np.asarray(start, dtype=np.float64)))
    if end is not None:
        out["end_error"] = float(np.linalg.norm(a[-1] - np.asarray(end, dtype=np.float64)))
    return out
