"""Gaussian mixture regression: conditional means and covariances, batched (Numba).

For ξ = [ξᴵ; ξᴼ] and each query x (kmp.md §1.2):
    h_k(x)  = π_k 𝒩(x | μ_kᴵ, Σ_kᴵᴵ) / Σ_j π_j 𝒩(x | μ_jᴵ, Σ_jᴵᴵ)         (in log space)
    μ̂_k(x) = μ_kᴼ + Σ_kᴼᴵ (Σ_kᴵᴵ)⁻¹ (x − μ_kᴵ)
    Σ̂_k    = Σ_kᴼᴼ − Σ_kᴼᴵ (Σ_kᴵᴵ)⁻¹ Σ_kᴵᴼ
    μ̂(x)   = Σ_k h_k μ̂_k,   Σ̂(x) = Σ_k h_k (Σ̂_k + (μ̂_k − μ̂)(μ̂_k − μ̂)ᵀ) + reg·I
The covariance uses the centred form of the law of total covariance (same value as robInfLib's
Σ h_k(Σ̂_k + μ̂_k μ̂_kᵀ) − μ̂μ̂ᵀ, without its cancellation). Far from every component the log-space
weights fall back to the nearest component instead of robInfLib's 0/0 → 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kinebridge.kernels import checks
from kinebridge.kernels.gaussian import FASTMATH, LOG_2PI, chol_inverse, chol_logdet, chol_lower
from kinebridge.kernels.gmm import GMM


@njit(cache=True)
def _conditionals(priors, means, covs, in_idx, out_idx, linv, const, gain, cond):
    """Per component: L⁻¹ of Σᴵᴵ, log π_k − ½(I log 2π + log|Σᴵᴵ|), Σᴼᴵ(Σᴵᴵ)⁻¹ and Σᴼᴼ − Σᴼᴵ(Σᴵᴵ)⁻¹Σᴵᴼ.

    Returns the first component whose Σᴵᴵ is not positive definite, or −1.
    """
    k = priors.shape[0]
    n_in = in_idx.shape[0]
    n_out = out_idx.shape[0]
    sii = np.empty((n_in, n_in))
    chol = np.zeros((n_in, n_in))
    sii_inv = np.empty((n_in, n_in))
    for j in range(k):
        for a in range(n_in):
            for b in range(n_in):
                sii[a, b] = covs[j, in_idx[a], in_idx[b]]
        if not chol_lower(sii, chol):
            return j
        const[j] = (math.log(priors[j]) if priors[j] > 0.0 else -np.inf) - 0.5 * (n_in * LOG_2PI + chol_logdet(chol))
        for c in range(n_in):  # L⁻¹ column by column
            for i in range(n_in):
                if i < c:
                    linv[j, i, c] = 0.0
                    continue
                v = 1.0 if i == c else 0.0
                for m in range(c, i):
                    v -= chol[i, m] * linv[j, m, c]
                linv[j, i, c] = v / chol[i, i]
        chol_inverse(chol, sii_inv)
        for a in range(n_out):
            for b in range(n_in):
                s = 0.0
                for c in range(n_in):
                    s += covs[j, out_idx[a], in_idx[c]] * sii_inv[c, b]
                gain[j, a, b] = s
        for a in range(n_out):
            for b in range(n_out):
                s = covs[j, out_idx[a], out_idx[b]]
                for c in range(n_in):
                    s -= gain[j, a, c] * covs[j, in_idx[c], out_idx[b]]
                cond[j, a, b] = s
    return -1


@njit(cache=True, fastmath=FASTMATH)
def _gmr_batch(means, in_idx, out_idx, xq, linv, const, gain, cond, reg, with_cov, mean_out, cov_out):
    """GMR over all queries; every inner loop runs over the queries (``xq`` is (I, T))."""
    k = const.shape[0]
    n_in, n_t = xq.shape
    n_out = out_idx.shape[0]
    logw = np.empty((k, n_t))
    mk = np.empty((k, n_out, n_t))
    z = np.empty(n_t)
    mx = np.empty(n_t)
    for j in range(k):  # log h_k up to the normaliser: const_k − ½|L⁻¹(x − μᴵ)|²
        for t in range(n_t):
            logw[j, t] = const[j]
        for i in range(n_in):
            for t in range(n_t):
                z[t] = 0.0
            for c in range(i + 1):
                w = linv[j, i, c]
                mu = means[j, in_idx[c]]
                for t in range(n_t):
                    z[t] += w * (xq[c, t] - mu)
            for t in range(n_t):
                logw[j, t] -= 0.5 * z[t] * z[t]
    for t in range(n_t):
        mx[t] = -np.inf
    for j in range(k):
        for t in range(n_t):
            mx[t] = max(mx[t], logw[j, t])
    for t in range(n_t):
        z[t] = 0.0
    for j in range(k):
        for t in range(n_t):
            logw[j, t] = math.exp(logw[j, t] - mx[t])
            z[t] += logw[j, t]
    for j in range(k):
        for t in range(n_t):
            logw[j, t] /= z[t]                                  # h_k(x_t)
    for a in range(n_out):
        for t in range(n_t):
            mean_out[a, t] = 0.0
    for j in range(k):  # μ̂_k(x) = μᴼ + gain (x − μᴵ), and the mixture mean
        for a in range(n_out):
            base = means[j, out_idx[a]]
            for t in range(n_t):
                mk[j, a, t] = base
            for c in range(n_in):
                g = gain[j, a, c]
                mu = means[j, in_idx[c]]
                for t in range(n_t):
                    mk[j, a, t] += g * (xq[c, t] - mu)
            for t in range(n_t):
                mean_out[a, t] += logw[j, t] * mk[j, a, t]
    if with_cov:
        for a in range(n_out):
            for b in range(a + 1):
                for t in range(n_t):
                    cov_out[a, b, t] = reg if a == b else 0.0
                for j in range(k):
                    cj = cond[j, a, b]
                    for t in range(n_t):
                        cov_out[a, b, t] += logw[j, t] * (cj + (mk[j, a, t] - mean_out[a, t]) * (mk[j, b, t] - mean_out[b, t]))
                if a != b:
                    for t in range(n_t):
                        cov_out[b, a, t] = cov_out[a, b, t]


def gmr(model: GMM, inputs, in_idx=(0,), out_idx=None, *, reg: float = 1e-8, return_cov: bool = True):
    """Conditional mean (and covariance) of ``model`` at every row of ``inputs``.

    ``inputs``: ``(T,)`` (one input dimension) or ``(T, I)``; ``in_idx``/``out_idx``: the input and
    output dimensions of the model (``out_idx`` defaults to every other dimension). Returns
    ``means (T, O)`` and, if ``return_cov``, ``covariances (T, O, O)``. ``reg`` is added to each output
    covariance's diagonal (robInfLib ``GMR.m`` adds 1e-8).
    """
    reg = checks.non_negative(reg, "reg", what="a covariance regulariser")
    i_idx = np.atleast_1d(np.asarray(in_idx, dtype=np.int64))
    if out_idx is None:
        o_idx = np.array([d for d in range(model.n_dims) if d not in set(i_idx.tolist())], dtype=np.int64)
    else:
        o_idx = np.atleast_1d(np.asarray(out_idx, dtype=np.int64))
    for name, idx in (("in_idx", i_idx), ("out_idx", o_idx)):
        if idx.size == 0 or idx.min() < 0 or idx.max() >= model.n_dims or len(set(idx.tolist())) != idx.size:
            raise ValueError(f"{name}: expected distinct dimensions in [0, {model.n_dims}), got {idx.tolist()}")
    if set(i_idx.tolist()) & set(o_idx.tolist()):
        raise ValueError(f"in_idx/out_idx: input and output dimensions overlap ({i_idx.tolist()} vs {o_idx.tolist()})")
    x = checks.finite_array(inputs, "inputs")
    if x.ndim == 1 and i_idx.size == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != i_idx.size:
        raise ValueError(f"inputs: expected (T, {i_idx.size}) query inputs, got shape {x.shape}")
    k, n_in, n_out = model.n_components, i_idx.size, o_idx.size
    linv = np.zeros((k, n_in, n_in))
    const = np.empty(k)
    gain = np.empty((k, n_out, n_in))
    cond = np.empty((k, n_out, n_out))
    bad = _conditionals(model.priors, model.means, model.covariances, i_idx, o_idx, linv, const, gain, cond)
    if bad >= 0:
        raise ValueError(f"model.covariances[{bad}]: the input block Σᴵᴵ is not positive definite")
    means = np.empty((n_out, x.shape[0]))
    covs = np.empty((n_out, n_out, x.shape[0]) if return_cov else (0, 0, 0))
    _gmr_batch(model.means, i_idx, o_idx, np.ascontiguousarray(x.T), linv, const, gain, cond, float(reg),
               bool(return_cov), means, covs)
    means = np.ascontiguousarray(means.T)
    if return_cov:
        covs = np.ascontiguousarray(covs.transpose(2, 0, 1))
    return (means, covs) if return_cov else means


def gmr_mean_derivative(model: GMM, t, in_idx: int = 0, out_idx=None):
    """d/dt of the GMR mean for a scalar input t, in closed form, shape ``(T, O)``.

        μ̂(t) = Σ_k h_k(t) m_k(t),  m_k(t) = μ_kᴼ + a_k (t − μ_kᴵ),  a_k = Σ_kᴼᴵ / Σ_kᴵᴵ
        dμ̂/dt = Σ_k [ḣ_k m_k + h_k a_k],  ḣ_k = h_k (β_k − Σ_j h_j β_j),  β_k = −(t − μ_kᴵ) / Σ_kᴵᴵ

    GMR of [t, x, ẋ] gives E[ẋ | t], which is not d/dt E[x | t] (a mixture of linear regressions has
    weight-derivative terms); a position + velocity KMP treats the two as one function and its
    derivative, so kinebridge can give it this derivative instead (``reference(consistent=True)``).
    """
    if out_idx is None:
        out_idx = [d for d in range(model.n_dims) if d != in_idx]
    o = np.atleast_1d(np.asarray(out_idx, dtype=np.int64))
    tq = checks.finite_array(t, "t", ndim=1, what="(T,) query times")
    var = model.covariances[:, in_idx, in_idx]                               # (K,)
    slope = model.covariances[:, o, in_idx] / var[:, None]                   # (K, O)
    dt = tq[:, None] - model.means[None, :, in_idx]                          # (T, K)
    logw = np.log(np.maximum(model.priors, 1e-300)) - 0.5 * (np.log(2 * np.pi * var) + dt * dt / var)
    h = np.exp(logw - logw.max(axis=1, keepdims=True))
    h /= h.sum(axis=1, keepdims=True)
    beta = -dt / var
    hdot = h * (beta - (h * beta).sum(axis=1, keepdims=True))
    m = model.means[None, :, o] + slope[None] * dt[:, :, None]               # (T, K, O)
    return np.einsum("tk,tko->to", hdot, m) + h @ slope


def reference(model: GMM, t, *, consistent: bool = True, reg: float = 1e-8):
    """A KMP reference database from a GMM over [t, x, ẋ]: GMR means and covariances at ``t``.

    With ``consistent`` the velocity means are replaced by d/dt of the position means
    (:func:`gmr_mean_derivative`), so positions and velocities describe one function; the
    covariances stay GMR's. Returns ``mu (T, 2d)``, ``sigma (T, 2d, 2d)``.
    """
    mu, sigma = gmr(model, t, reg=reg)
    if consistent:
        if mu.shape[1] % 2:
            raise ValueError(f"model: expected a GMM over [t, x, ẋ] (odd dimension), got {model.n_dims} dimensions")
        d = mu.shape[1] // 2
        mu[:, d:] = gmr_mean_derivative(model, t, 0, list(range(1, 1 + d)))
    return mu, sigma
