"""Small dense Gaussian algebra shared by the kernels (Numba).

These are the building blocks the GMM, GMR, TP-GMM and LFE-KMP kernels call in their inner loops:
Cholesky of a small covariance, log-density through the factor, and the product of Gaussians.
Matrices here are a handful of rows (≤ ~14), so hand-written loops beat a LAPACK call's overhead;
the large factorizations (KMP) go through LAPACK in :mod:`kinebridge.kernels.kmp`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kinebridge.kernels import checks

LOG_2PI = math.log(2.0 * math.pi)

# LLVM fast-math flags for the hot loops: reassociation (vectorised reductions), contraction (FMA),
# reciprocal and approximate-function freedom, no signed zeros — but *not* ``ninf``/``nnan``
# (``fastmath=True`` sets them), under which the −inf markers these kernels use (log π_k of an
# empty component, the running maximum of a log-sum-exp) and any inf or NaN reaching them would be
# undefined behaviour the optimiser may fold away.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # a set: numba accepts bool, dict or set


@njit(cache=True)
def chol_lower(a, out):
    """Lower Cholesky factor of the SPD matrix ``a`` into ``out``; returns False if not PD."""
    n = a.shape[0]
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= out[j, k] * out[j, k]
        if not (s > 0.0):
            return False
        d = math.sqrt(s)
        out[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= out[i, k] * out[j, k]
            out[i, j] = s / d
        for i in range(j):
            out[i, j] = 0.0
    return True


@njit(cache=True)
def chol_logdet(L):
    """log|Σ| = 2 Σ_i log L_ii."""
    s = 0.0
    for i in range(L.shape[0]):
        s += math.log(L[i, i])
    return 2.0 * s


@njit(cache=True)
def chol_inverse(L, out):
    """Σ⁻¹ from its Cholesky factor L (Σ = L Lᵀ): Σ⁻¹ = L⁻ᵀ L⁻¹."""
    n = L.shape[0]
    linv = np.zeros((n, n))
    for j in range(n):  # columns of L⁻¹ by forward substitution on e_j
        for i in range(j, n):
            s = 1.0 if i == j else 0.0
            for k in range(j, i):
                s -= L[i, k] * linv[k, j]
            linv[i, j] = s / L[i, i]
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, n):
                s += linv[k, i] * linv[k, j]
            out[i, j] = s
            out[j, i] = s


@njit(cache=True)
def log_gauss(x, mu, L, logdet, work):
    """log 𝒩(x | μ, Σ) with Σ = L Lᵀ: −½(D log 2π + log|Σ| + |L⁻¹(x − μ)|²)."""
    n = x.shape[0]
    for i in range(n):
        work[i] = x[i] - mu[i]
    q = 0.0
    for i in range(n):
        s = work[i]
        for k in range(i):
            s -= L[i, k] * work[k]
        s /= L[i, i]
        work[i] = s
        q += s * s
    return -0.5 * (n * LOG_2PI + logdet + q)


@njit(cache=True)
def logsumexp(v):
    m = -np.inf
    for i in range(v.shape[0]):
        if v[i] > m:
            m = v[i]
    if m == -np.inf:
        return m
    s = 0.0
    for i in range(v.shape[0]):
        s += math.exp(v[i] - m)
    return m + math.log(s)


@njit(cache=True)
def product_into(means, covs, mean_out, cov_out):
    """Product of P Gaussians: Σ = (Σ_p Σ_p⁻¹)⁻¹, μ = Σ Σ_p Σ_p⁻¹ μ_p (VL-MP eq. 6, position).

    Returns False when a covariance (or the summed precision) is not positive definite.
    """
    P, D = means.shape
    lam = np.zeros((D, D))
    eta = np.zeros(D)
    L = np.zeros((D, D))
    inv = np.zeros((D, D))
    for p in range(P):
        if not chol_lower(covs[p], L):
            return False
        chol_inverse(L, inv)
        for i in range(D):
            s = 0.0
            for j in range(D):
                lam[i, j] += inv[i, j]
                s += inv[i, j] * means[p, j]
            eta[i] += s
    if not chol_lower(lam, L):
        return False
    chol_inverse(L, cov_out)
    for i in range(D):
        s = 0.0
        for j in range(D):
            s += cov_out[i, j] * eta[j]
        mean_out[i] = s
    return True


@njit(cache=True)
def _product_batch(means, covs, mean_out, cov_out):
    for t in range(means.shape[0]):
        if not product_into(means[t], covs[t], mean_out[t], cov_out[t]):
            return t
    return -1


def gaussian_product(means, covariances):
    """Product of Gaussians, batched.

    ``means``: ``(P, D)`` or ``(T, P, D)``; ``covariances``: ``(P, D, D)`` or ``(T, P, D, D)``.
    Returns the (unnormalised) product's mean and covariance, ``(D,)/(D, D)`` or ``(T, D)/(T, D, D)``:
    Σ = (Σ_p Σ_p⁻¹)⁻¹ and μ = Σ Σ_p Σ_p⁻¹ μ_p — the argmax in VL-MP eq. (6).
    """
    m = checks.finite_array(means, "means")
    c = checks.finite_array(covariances, "covariances")
    single = m.ndim == 2
    if single:
        m, c = m[None], c[None]
    if m.ndim != 3 or c.shape != m.shape + (m.shape[-1],):
        raise ValueError(f"means/covariances: expected (T, P, D) and (T, P, D, D), got {m.shape} and {c.shape}")
    mean_out = np.empty((m.shape[0], m.shape[2]))
    cov_out = np.empty((m.shape[0], m.shape[2], m.shape[2]))
    bad = _product_batch(m, c, mean_out, cov_out)
    if bad >= 0:
        raise ValueError(f"covariances[{bad}]: a covariance in the product is not positive definite; "
                         "regularise the inputs (e.g. + 1e-8 * I)")
    return (mean_out[0], cov_out[0]) if single else (mean_out, cov_out)
