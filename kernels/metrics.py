"""Trajectory shape metrics (Numba): VL-MP c_s / κ_s and the usual LASA error measures.

All trajectories are arrays of shape ``(T, d)`` (``T`` samples of a ``d``-vector, any ``d >= 1``);
distances are Euclidean, ``|v| = sqrt(sum_k v_k^2)``. Sources: VL-MP (arXiv 2503.02748) eqs. (8)
and (9) for c_s and κ_s, and ``shared/reference/kmp.md`` §6 (RMSE/SSE, swept error area, DTW,
discrete Fréchet) and §7 (κ₂, κ_θ).

Every public function validates its input through :mod:`kinebridge.kernels.checks` and raises
``ValueError`` naming the offending argument (non-finite values, wrong ``ndim``, dimension or length
mismatch, too few samples). The ``_``-prefixed kernels expect float64, C-contiguous, validated input.
DTW and Fréchet are O(T_x·T_y) time and O(T_y) memory (two rolling rows).

A plain-NumPy reference of the same API lives in :mod:`kinebridge.kernels.ref.metrics`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kinebridge.kernels import checks

__all__ = [
    "topological_similarity",
    "smoothness",
    "turning_angle",
    "rmse",
    "sse",
    "mean_error",
    "dtw_distance",
    "frechet_distance",
    "swept_error_area",
    "hausdorff_distance",
    "endpoint_errors",
    "shape_report",
]

#: Added to |Δx||Δy| in the cosine of eq. (8) so that zero-length steps give cos = 0, not NaN.
COS_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def _dist(x, i, y, j):
    """|x_i - y_j| (Euclidean distance between row i of x and row j of y)."""
    s = 0.0
    for k in range(x.shape[1]):
        v = x[i, k] - y[j, k]
        s += v * v
    return math.sqrt(s)


@njit(cache=True)
def _topological_similarity(x, y):
    # VL-MP eq. (8): c_s = 1/(T-1) Σ_t <Δx_t, Δy_t> / (|Δx_t||Δy_t| + 1e-12)
    T, d = x.shape
    total = 0.0
    for t in range(T - 1):
        dot = 0.0
        nx = 0.0
        ny = 0.0
        for k in range(d):
            a = x[t + 1, k] - x[t, k]
            b = y[t + 1, k] - y[t, k]
            dot += a * b
            nx += a * a
            ny += b * b
        total += dot / (math.sqrt(nx) * math.sqrt(ny) + COS_EPS)
    return total / (T - 1)


@njit(cache=True)
def _smoothness(x):
    # κ₂ (kmp.md §7, our form of VL-MP eq. 9): mean_t |Δx_t - Δx_{t-1}| / mean_t |Δx_t|
    T, d = x.shape
    acc = 0.0
    for t in range(1, T - 1):
        s = 0.0
        for k in range(d):
            v = (x[t + 1, k] - x[t, k]) - (x[t, k] - x[t - 1, k])
            s += v * v
        acc += math.sqrt(s)
    step = 0.0
    for t in range(T - 1):
        step += _dist(x, t + 1, x, t)
    if step == 0.0:  # every step is zero, hence every second difference too: a resting point
        return 0.0
    return (acc / (T - 2)) / (step / (T - 1))


@njit(cache=True)
def _turning_angle(x):
    # κ_θ (kmp.md §7): mean_t atan2(|Δx_{t-1} ∧ Δx_t|, <Δx_{t-1}, Δx_t>), t = 1..T-2
    T, d = x.shape
    a = np.empty(d)
    b = np.empty(d)
    total = 0.0
    for t in range(1, T - 1):
        dot = 0.0
        for k in range(d):
            a[k] = x[t, k] - x[t - 1, k]
            b[k] = x[t + 1, k] - x[t, k]
            dot += a[k] * b[k]
        cross2 = 0.0  # Lagrange identity: |a|²|b|² - (a·b)² = Σ_{i<j} (a_i b_j - a_j b_i)²
        for i in range(d):
            for j in range(i + 1, d):
                c = a[i] * b[j] - a[j] * b[i]
                cross2 += c * c
        total += math.atan2(math.sqrt(cross2), dot)
    return total / (T - 2)


@njit(cache=True)
def _pointwise_errors(x, y):
    # kmp.md §6: returns (Σ_t |x_t - y_t|², Σ_t |x_t - y_t|) for SSE / RMSE / mean error
    sq = 0.0
    ab = 0.0
    for t in range(x.shape[0]):
        s = 0.0
        for k in range(x.shape[1]):
            v = x[t, k] - y[t, k]
            s += v * v
        sq += s
        ab += math.sqrt(s)
    return sq, ab


@njit(cache=True)
def _dist_row(x, i, y, out):
    """out[j] = |x_i - y_j| for every row j of y."""
    d = x.shape[1]
    for j in range(y.shape[0]):
        s = 0.0
        for k in range(d):
            v = x[i, k] - y[j, k]
            s += v * v
        out[j] = math.sqrt(s)


@njit(cache=True)
def _dtw(x, y):
    # kmp.md §6 DTW: C(i,j) = |x_i - y_j| + min(C(i-1,j), C(i,j-1), C(i-1,j-1)); two rolling rows
    n = x.shape[0]
    m = y.shape[0]
    prev = np.empty(m)
    cur = np.empty(m)
    c = np.empty(m)
    _dist_row(x, 0, y, c)
    acc = 0.0
    for j in range(m):
        acc += c[j]
        prev[j] = acc
    for i in range(1, n):
        _dist_row(x, i, y, c)
        left = prev[0] + c[0]
        cur[0] = left
        for j in range(1, m):
            best = prev[j]
            if left < best:
                best = left
            if prev[j - 1] < best:
                best = prev[j - 1]
            left = c[j] + best
            cur[j] = left
        prev, cur = cur, prev
    return prev[m - 1]


@njit(cache=True)
def _frechet(x, y):
    # kmp.md §6 discrete Fréchet: F(i,j) = max(|x_i - y_j|, min(F(i-1,j), F(i-1,j-1), F(i,j-1)))
    n = x.shape[0]
    m = y.shape[0]
    prev = np.empty(m)
    cur = np.empty(m)
    c = np.empty(m)
    _dist_row(x, 0, y, c)
    acc = 0.0
    for j in range(m):
        acc = max(acc, c[j])
        prev[j] = acc
    for i in range(1, n):
        _dist_row(x, i, y, c)
        left = max(prev[0], c[0])
        cur[0] = left
        for j in range(1, m):
            best = prev[j]
            if prev[j - 1] < best:
                best = prev[j - 1]
            if left < best:
                best = left
            left = max(c[j], best)
            cur[j] = left
        prev, cur = cur, prev
    return prev[m - 1]


@njit(cache=True)
def _swept_error_area(x, y):
    # kmp.md §6 SEA (CLF-DM eq. 14): Σ_t |shoelace(x_t, x_{t+1}, y_{t+1}, y_t)|
    total = 0.0
    for t in range(x.shape[0] - 1):
        # shoelace of a quadrilateral p0 p1 p2 p3 == ½ (p2 - p0) × (p3 - p1) (cross of the diagonals)
        e0 = y[t + 1, 0] - x[t, 0]
        e1 = y[t + 1, 1] - x[t, 1]
        f0 = y[t, 0] - x[t + 1, 0]
        f1 = y[t, 1] - x[t + 1, 1]
        total += 0.5 * abs(e0 * f1 - e1 * f0)
    return total


@njit(cache=True)
def _hausdorff(x, y):
    # Hausdorff: H = max(max_i min_j |x_i - y_j|, max_j min_i |x_i - y_j|)
    m = y.shape[0]
    col_min = np.full(m, np.inf)
    c = np.empty(m)
    h = 0.0
    for i in range(x.shape[0]):
        _dist_row(x, i, y, c)
        row_min = np.inf
        for j in range(m):
            if c[j] < row_min:
                row_min = c[j]
            if c[j] < col_min[j]:
                col_min[j] = c[j]
        if row_min > h:
            h = row_min
    for j in range(m):
        if col_min[j] > h:
            h = col_min[j]
    return h


@njit(cache=True)
def _endpoint_errors(x, start, end):
    # kmp.md §7 step 5: (|x_0 - start|, |x_{T-1} - end|)
    s0 = 0.0
    s1 = 0.0
    last = x.shape[0] - 1
    for k in range(x.shape[1]):
        a = x[0, k] - start[k]
        b = x[last, k] - end[k]
        s0 += a * a
        s1 += b * b
    return math.sqrt(s0), math.sqrt(s1)


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------

def _trajectory(x, name: str, min_points: int = 1, why: str = "") -> np.ndarray:
    arr = checks.finite_array(x, name, ndim=2, what="a (T, d) trajectory (T samples of a d-vector)")
    if arr.shape[1] < 1:
        raise ValueError(f"{name}: expected a (T, d) trajectory with d >= 1, got shape {arr.shape}")
    if arr.shape[0] < min_points:
        reason = f" ({why})" if why else ""
        noun = "point" if min_points == 1 else "points"
        raise ValueError(f"{name}: needs at least {min_points} {noun}{reason}, got T={arr.shape[0]} "
                         f"(shape {arr.shape})")
    return arr


def _pair(x, y, xname: str, yname: str, *, min_points: int = 1, equal_length: bool,
          why: str = "") -> tuple[np.ndarray, np.ndarray]:
    a = _trajectory(x, xname, min_points, why)
    b = _trajectory(y, yname, min_points, why)
    if b.shape[1] != a.shape[1]:
        raise ValueError(f"{yname}: expected points of dimension d={a.shape[1]} to match {xname} "
                         f"(shape {a.shape}), got shape {b.shape}")
    if equal_length and b.shape[0] != a.shape[0]:
        raise ValueError(f"{yname}: expected T={a.shape[0]} samples to match {xname} (the metric "
                         f"compares time-aligned samples), got T={b.shape[0]}; resample one of them")
    return a, b


def _check_planar(x: np.ndarray, name: str) -> None:
    if x.shape[1] != 2:
        raise ValueError(f"{name}: swept error area is defined for 2-D trajectories only, "
                         f"got d={x.shape[1]} (shape {x.shape})")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def topological_similarity(x, y) -> float:
    """Topological similarity c_s of trajectory ``x`` to reference ``y`` (VL-MP eq. 8).

    ``c_s = 1/(T-1) * Σ_{t=0}^{T-2} <Δx_t, Δy_t> / (|Δx_t| |Δy_t| + 1e-12)``, with
    ``Δx_t = x_{t+1} - x_t`` and ``Δy_t = y_{t+1} - y_t``: the mean cosine of the angle between
    corresponding steps. Returned as a fraction in [-1, 1] (the paper prints it ×100 %); 1 means every
    step points the same way as the reference's. The 1e-12 makes a zero-length step count as cos = 0.

    The paper writes ``1/N Σ_{t=1}^{N-1}``, i.e. 1/N in front of a sum of N-1 terms, which caps
    identical curves at (N-1)/N; we use the true mean 1/(N-1), so c_s(x, x) = 1.

    Invariant to translating or positively scaling ``x`` and ``y`` independently, and to one rotation
    applied to both (up to the 1e-12, i.e. for steps much longer than 1e-6). ``x`` and ``y``:
    ``(T, d)`` with equal ``T >= 2``.
    """
    a, b = _pair(x, y, "x", "y", min_points=2, equal_length=True, why="c_s compares steps x_{t+1} - x_t")
    return float(_topological_similarity(a, b))


def smoothness(x) -> float:
    """Smoothness κ_s of trajectory ``x`` in kinebridge's normalised form κ₂ (lower = smoother).

    ``κ₂ = [1/(T-2) Σ_{t=1}^{T-2} |x_{t+1} - 2x_t + x_{t-1}|] / [1/(T-1) Σ_{t=0}^{T-2} |x_{t+1} - x_t|]``

    VL-MP eq. (9) is garbled in the paper (``1/N Σ Δξ_t T_t / Δt²``). Its ``Δξ/Δt²`` shape is a
    finite-difference acceleration, which carries units (m/s²) and grows with the sampling rate, so its
    numbers cannot be compared across units, speeds or sampling rates. Dividing the mean second
    difference by the mean step length cancels both the length unit and Δt: κ₂ is dimensionless and
    invariant to translation, rotation, uniform scaling and the time step (it never uses t). It is the
    mean change of the step vector relative to a typical step; a straight line with uniform steps
    gives 0, and ``n`` samples per revolution of a circle give exactly ``2 sin(π/n)``, so compare
    trajectories at the same number of samples. A trajectory that never moves (all steps zero) gives 0.
    ``x``: ``(T, d)`` with ``T >= 3``.
    """
    a = _trajectory(x, "x", 3, "κ_s needs second differences x_{t+1} - 2x_t + x_{t-1}")
    return float(_smoothness(a))


def turning_angle(x) -> float:
    """Mean turning angle κ_θ of trajectory ``x`` in radians, in [0, π] (lower = smoother).

    ``κ_θ = 1/(T-2) Σ_{t=1}^{T-2} atan2(|a_t ∧ b_t|, <a_t, b_t>)``, ``a_t = x_t - x_{t-1}``,
    ``b_t = x_{t+1} - x_t``, with ``|a ∧ b| = sqrt(Σ_{i<j} (a_i b_j - a_j b_i)²)
    = sqrt(|a|²|b|² - (a·b)²)`` (the cross-product norm in any dimension). This is
    ``arccos(<a,b> / (|a||b|))`` computed without arccos's loss of accuracy near 0 and π. A zero-length
    step gives atan2(0, 0) = 0 for its two angles. Invariant to rigid motions, uniform scaling and the
    time step; ``n`` samples per revolution of a circle give ``2π/n``. ``x``: ``(T, d)``, ``T >= 3``.
    """
    a = _trajectory(x, "x", 3, "κ_θ needs two consecutive steps")
    return float(_turning_angle(a))


def rmse(x, y) -> float:
    """Root-mean-square error ``sqrt(1/T Σ_{t=0}^{T-1} |x_t - y_t|²)`` of time-aligned ``(T, d)`` arrays."""
    a, b = _pair(x, y, "x", "y", equal_length=True)
    sq, _ = _pointwise_errors(a, b)
    return float(math.sqrt(sq / a.shape[0]))


def sse(x, y) -> float:
    """Sum of squared errors ``Σ_{t=0}^{T-1} |x_t - y_t|²`` of time-aligned ``(T, d)`` arrays.

    Equals ``T * rmse(x, y)**2``.
    """
    a, b = _pair(x, y, "x", "y", equal_length=True)
    sq, _ = _pointwise_errors(a, b)
    return float(sq)


def mean_error(x, y) -> float:
    """Mean Euclidean error ``1/T Σ_{t=0}^{T-1} |x_t - y_t|`` of time-aligned ``(T, d)`` arrays."""
    a, b = _pair(x, y, "x", "y", equal_length=True)
    _, ab = _pointwise_errors(a, b)
    return float(ab / a.shape[0])


def dtw_distance(x, y) -> float:
    """Dynamic-time-warping distance between ``x`` (``(T_x, d)``) and ``y`` (``(T_y, d)``).

    ``C(0,0) = |x_0 - y_0|``, ``C(i,j) = |x_i - y_j| + min(C(i-1,j), C(i,j-1), C(i-1,j-1))`` (terms
    with a negative index are left out), result ``C(T_x-1, T_y-1)`` (0-based), the sum of point
    distances along the cheapest monotone alignment. Same value as ``similaritymeasures.dtw(x, y)[0]``.
    Lengths may differ. O(T_x·T_y) time, O(T_y) memory.
    """
    a, b = _pair(x, y, "x", "y", equal_length=False)
    return float(_dtw(a, b))


def frechet_distance(x, y) -> float:
    """Discrete Fréchet distance between ``x`` (``(T_x, d)``) and ``y`` (``(T_y, d)``).

    ``F(0,0) = |x_0 - y_0|``, ``F(i,j) = max(|x_i - y_j|, min(F(i-1,j), F(i-1,j-1), F(i,j-1)))`` (terms
    with a negative index are left out), result ``F(T_x-1, T_y-1)``: the smallest achievable maximum
    point distance over monotone couplings (Eiter & Mannila 1994). Same value as
    ``similaritymeasures.frechet_dist(x, y)``. Lengths may differ. O(T_x·T_y) time, O(T_y) memory.
    """
    a, b = _pair(x, y, "x", "y", equal_length=False)
    return float(_frechet(a, b))


def swept_error_area(x, y) -> float:
    """Swept error area between time-aligned 2-D trajectories ``x`` and ``y`` (``(T, 2)``, ``T >= 2``).

    ``SEA = Σ_{t=0}^{T-2} |A(x_t, x_{t+1}, y_{t+1}, y_t)|`` where ``A(p_0..p_3) = ½ Σ_k (p_k × p_{k+1})``
    (indices mod 4) is the shoelace area of the quadrilateral; computed as the equal
    ``½ (p_2 - p_0) × (p_3 - p_1)``, which avoids cancellation far from the origin
    (Khansari-Zadeh & Billard, CLF-DM eq. 14; not ``similaritymeasures.area_between_two_curves``).
    ``ValueError`` unless ``d == 2``.
    """
    a, b = _pair(x, y, "x", "y", min_points=2, equal_length=True, why="SEA sums areas between steps")
    _check_planar(a, "x")
    return float(_swept_error_area(a, b))


def hausdorff_distance(x, y) -> float:
    """Symmetric Hausdorff distance between the point sets of ``x`` and ``y`` (``(T_x, d)``, ``(T_y, d)``).

    ``H = max(max_i min_j |x_i - y_j|, max_j min_i |x_i - y_j|)``; ignores the order of the samples.
    Lengths may differ. O(T_x·T_y) time.
    """
    a, b = _pair(x, y, "x", "y", equal_length=False)
    return float(_hausdorff(a, b))


def _point(p, name: str, d: int) -> np.ndarray:
    return checks.finite_array(p, name, shape=(d,), what=f"a point of shape ({d},) matching x")


def endpoint_errors(x, start, end) -> tuple[float, float]:
    """Distances ``(|x_0 - start|, |x_{T-1} - end|)`` of a ``(T, d)`` trajectory's ends.

    ``start`` and ``end`` are ``(d,)`` points.
    """
    a = _trajectory(x, "x")
    s = _point(start, "start", a.shape[1])
    e = _point(end, "end", a.shape[1])
    e0, e1 = _endpoint_errors(a, s, e)
    return float(e0), float(e1)


def shape_report(x, ref, start=None, end=None) -> dict:
    """All shape metrics of trajectory ``x`` against reference ``ref`` (both ``(T, d)``, equal ``T >= 3``).

    Returns a dict of plain Python floats (JSON-serialisable):

    - ``c_s``: :func:`topological_similarity` (x, ref), fraction in [-1, 1]
    - ``kappa_s``: :func:`smoothness` (x); ``kappa_theta``: :func:`turning_angle` (x), rad
    - ``rmse``, ``mean_error``: time-aligned errors; ``dtw``, ``frechet``, ``hausdorff``: shape distances
    - ``sea``: :func:`swept_error_area` when ``d == 2``, else ``None``
    - ``start_error`` = ``|x_0 - start|`` only when ``start`` is given, ``end_error`` =
      ``|x_{T-1} - end|`` only when ``end`` is given (``(d,)`` points).
    """
    a, b = _pair(x, ref, "x", "ref", min_points=3, equal_length=True,
                 why="the report includes κ_s, which needs second differences")
    sq, ab = _pointwise_errors(a, b)
    T, d = a.shape
    report = {
        "c_s": float(_topological_similarity(a, b)),
        "kappa_s": float(_smoothness(a)),
        "kappa_theta": float(_turning_angle(a)),
        "rmse": float(math.sqrt(sq / T)),
        "mean_error": float(ab / T),
        "dtw": float(_dtw(a, b)),
        "frechet": float(_frechet(a, b)),
        "hausdorff": float(_hausdorff(a, b)),
        "sea": float(_swept_error_area(a, b)) if d == 2 else None,
    }
    if start is not None:
        s = _point(start, "start", d)
        report["start_error"] = float(_endpoint_errors(a, s, s)[0])
    if end is not None:
        e = _point(end, "end", d)
        report["end_error"] = float(_endpoint_errors(a, e, e)[1])
    return report
