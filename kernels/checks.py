"""Input validation shared by the kernels.

Every public kernel entry point validates its arguments here and raises ``ValueError`` with a
message that names the argument, says what was expected and what was received, so bad input never
turns into a NaN trajectory further down.
"""

from __future__ import annotations

import numpy as np


def finite_array(x, name: str, *, ndim: int | None = None, shape: tuple | None = None,
                 what: str = "") -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 array, or raise ``ValueError``.

    ``shape`` may contain ``None`` for free axes, e.g. ``(None, 3)`` for "any number of 3-vectors".
    ``what`` describes the expected layout in the error message, e.g. ``"(T, 3) positions in m"``.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric array {what}, got {type(x).__name__} ({exc})") from None
    expected = what or (f"shape {shape}" if shape is not None else f"a {ndim}-D array")
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected {expected}, got an array of shape {arr.shape}")
    if shape is not None:
        for axis, (want, got) in enumerate(zip(shape, arr.shape)):
            if want is not None and want != got:
                raise ValueError(f"{name}: expected {expected}, got shape {arr.shape} "
                                 f"(axis {axis} has {got}, expected {want})")
    if arr.size and not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name}: contains non-finite values (first at index {bad}); "
                         "remove or interpolate NaN/inf samples before passing them in")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (keeps 0-d arrays 0-d)


def positive(value, name: str) -> float:
    """A strictly positive finite scalar."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name}: expected a positive finite number (in (0, inf)), got {value!r}")
    return v


def non_negative(value, name: str, *, what: str = "a number") -> float:
    """A finite scalar >= 0 (tolerances and regularisers, where 0 is meaningful)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {what} >= 0, got {value!r}") from None
    if not np.isfinite(v) or v < 0.0:
        raise ValueError(f"{name}: expected {what} in [0, inf) (finite, >= 0), got {value!r}")
    return v


def em_tolerance(value, name: str = "tol") -> float:
    """An EM stopping tolerance on the average log-likelihood gain: finite >= 0, or −inf to never
    stop early (run ``max_iter`` iterations). NaN or a negative tolerance would silently never stop
    (or stop only on a likelihood drop), so both are refused."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a log-likelihood tolerance in [0, inf), or -inf to run every "
                         f"iteration, got {value!r}") from None
    if v == -np.inf or (np.isfinite(v) and v >= 0.0):
        return v
    raise ValueError(f"{name}: expected a log-likelihood tolerance in [0, inf), or -inf to run every "
                     f"iteration, got {value!r}")


def optional_positive(value, name: str) -> float | None:
    """``None`` (meaning "choose automatically") or a strictly positive finite scalar."""
    return None if value is None else positive(value, name)


def count(value, name: str, *, minimum: int = 1) -> int:
    """An integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def covariance_stack(x, name: str, dim: int, n: int | None = None) -> np.ndarray:
    """A stack of symmetric positive-definite ``dim x dim`` matrices, shape ``(n, dim, dim)``."""
    arr = finite_array(x, name, shape=(n, dim, dim), what=f"({'N' if n is None else n}, {dim}, {dim}) covariances")
    if arr.shape[0] == 0:
        return arr
    asym = np.abs(arr - arr.transpose(0, 2, 1)).max(axis=(1, 2))
    scale = np.abs(arr).max(axis=(1, 2)) + 1e-300
    i_bad = np.flatnonzero(asym > 1e-8 * scale)
    if i_bad.size:
        raise ValueError(f"{name}[{i_bad[0]}]: covariance is not symmetric "
                         f"(max |S - S^T| = {asym[i_bad[0]]:.3g}); symmetrise it with (S + S.T) / 2")
    try:
        np.linalg.cholesky(arr)  # batched; fails if any matrix is not positive definite
    except np.linalg.LinAlgError:
        w = np.linalg.eigvalsh(arr).min(axis=1)
        i = int(np.argmin(w))
        raise ValueError(f"{name}[{i}]: covariance is not positive definite (smallest eigenvalue "
                         f"{w[i]:.3g}); add a regulariser such as 1e-8 * I") from None
    return arr


def unit_quaternions(q, name: str, *, atol: float = 1e-6) -> np.ndarray:
    """Unit quaternions, w-first ``(..., 4)``; raise if any norm differs from 1 by more than ``atol``."""
    arr = finite_array(q, name)
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"{name}: expected quaternions of shape (..., 4) in (w, x, y, z) order, "
                         f"got shape {arr.shape}")
    norms = np.linalg.norm(arr, axis=-1)
    off = np.abs(norms - 1.0)
    if off.size and off.max() > atol:
        idx = np.unravel_index(int(np.argmax(off)), off.shape)
        raise ValueError(f"{name}{[int(i) for i in idx]}: quaternion norm is {norms[idx]:.9g}, expected 1 "
                         f"(tolerance {atol:g}); normalise with q / np.linalg.norm(q, axis=-1, keepdims=True)")
    return arr


def continuous_quaternions(q, name: str) -> np.ndarray:
    """A ``(T, 4)`` sequence of unit quaternions without sign flips between consecutive samples."""
    arr = unit_quaternions(q, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a (T, 4) quaternion sequence, got shape {arr.shape}")
    dots = np.einsum("ij,ij->i", arr[1:], arr[:-1])
    flips = np.flatnonzero(dots < 0.0)
    if flips.size:
        i = int(flips[0]) + 1
        raise ValueError(f"{name}[{i}]: quaternion sign flips between samples {i - 1} and {i} "
                         f"(dot {dots[i - 1]:.3f} < 0); q and -q are the same rotation, so make the "
                         "sequence continuous first with kinebridge.kernels.quaternion.make_continuous(q)")
    return arr
