"""Gaussian mixture models: time-based initialisation and EM (Numba).

One EM kernel serves both the plain GMM (one frame) and TP-GMM (a frame tensor): the E-step sums
log-densities over frames, the M-step runs per frame (Calinon's ``EM_tensorGMM``; with P = 1 it is
exactly robInfLib's ``EM_GMM``). Everything is in log space, so responsibilities never underflow.
Data are row-major samples: ``(M, D)`` for a GMM, ``(P, M, D)`` for a frame tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from kinebridge.kernels import checks
from kinebridge.kernels.gaussian import FASTMATH, LOG_2PI, chol_logdet, chol_lower, log_gauss, logsumexp


@dataclass(frozen=True)
class GMM:
    """A Gaussian mixture: ``priors (K,)``, ``means (K, D)``, ``covariances (K, D, D)``."""

    priors: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self):
        pri = checks.finite_array(self.priors, "priors", ndim=1, what="(K,) mixture weights")
        k = pri.shape[0]
        if k == 0:
            raise ValueError("priors: a mixture needs at least one component")
        mu = checks.finite_array(self.means, "means", shape=(k, None), what=f"({k}, D) component means")
        cov = checks.covariance_stack(self.covariances, "covariances", mu.shape[1], k)
        if (pri < 0).any() or abs(pri.sum() - 1.0) > 1e-6:
            raise ValueError(f"priors: expected non-negative weights summing to 1, got sum {pri.sum():.6g}")
        object.__setattr__(self, "priors", pri)
        object.__setattr__(self, "means", mu)
        object.__setattr__(self, "covariances", cov)

    @property
    def n_components(self) -> int:
        return self.priors.shape[0]

    @property
    def n_dims(self) -> int:
        return self.means.shape[1]

    def marginal(self, dims) -> "GMM":
        """The mixture of the marginals over ``dims`` (a list of indices)."""
        d = np.asarray(dims, dtype=np.int64)
        return GMM(self.priors, self.means[:, d], self.covariances[:, d][:, :, d])

    def log_likelihood(self, data) -> float:
        """Average log-likelihood (1/M) Σ_n log Σ_k π_k 𝒩(ξ_n | μ_k, Σ_k)."""
        x = checks.finite_array(data, "data", shape=(None, self.n_dims), what=f"(M, {self.n_dims}) samples")
        return float(_avg_loglik(x[None], self.priors, self.means[None], self.covariances[None]))


@dataclass(frozen=True)
class EMReport:
    """What EM did: iterations run, average log-likelihood per iteration, whether it converged."""

    n_iter: int
    log_likelihood: np.ndarray
    converged: bool


def init_time_based(data, n_components: int, *, time_index: int = 0, reg: float = 1e-8) -> GMM:
    """Time-based initialisation (robInfLib ``init_GMM_timeBased``).

    Splits [t_min, t_max] into K equal bins; each component takes its bin's share of the samples as
    prior, the bin mean and the bin covariance (N − 1 normalised) + ``reg``·I. As in the original,
    a bin is half-open [t_i, t_{i+1}), so the sample at t_max belongs to no bin.
    """
    x = checks.finite_array(data, "data", ndim=2, what="(M, D) samples, one row per sample")
    tensor = init_time_based_tensor(x[None], n_components, time_index=time_index, reg=reg)
    return GMM(tensor[0], tensor[1][0], tensor[2][0])


def init_time_based_tensor(data, n_components: int, *, time_index: int = 0, reg: float = 1e-8):
    """Time-based initialisation of a frame tensor ``(P, M, D)``: bins on frame 0's time column.

    Returns ``(priors (K,), means (P, K, D), covariances (P, K, D, D))``.
    """
    x = checks.finite_array(data, "data", ndim=3, what="(P, M, D) frame tensor")
    k = checks.count(n_components, "n_components")
    reg = checks.non_negative(reg, "reg", what="a covariance regulariser")
    n_frames, m, dim = x.shape
    if not 0 <= time_index < dim:
        raise ValueError(f"time_index: expected a column in [0, {dim}), got {time_index}")
    t = x[0, :, time_index]
    edges = np.linspace(t.min(), t.max(), k + 1)
    priors = np.empty(k)
    means = np.empty((n_frames, k, dim))
    covs = np.empty((n_frames, k, dim, dim))
    for i in range(k):
        idx = np.flatnonzero((t >= edges[i]) & (t < edges[i + 1]))
        if idx.size < 2:
            raise ValueError(f"data: too few samples for {k} components — time bin {i} "
                             f"[{edges[i]:.4g}, {edges[i + 1]:.4g}) holds {idx.size} sample(s), "
                             "at least 2 are needed; use fewer components or more samples")
        priors[i] = idx.size
        for p in range(n_frames):
            seg = x[p, idx]
            means[p, i] = seg.mean(axis=0)
            covs[p, i] = np.cov(seg, rowvar=False).reshape(dim, dim) + reg * np.eye(dim)
    return priors / priors.sum(), means, covs


@njit(cache=True)
def _avg_loglik(x, priors, means, covs):
    n_frames, m, dim = x.shape
    k = priors.shape[0]
    chol = np.zeros((n_frames, k, dim, dim))
    logdet = np.zeros((n_frames, k))
    for p in range(n_frames):
        for j in range(k):
            chol_lower(covs[p, j], chol[p, j])
            logdet[p, j] = chol_logdet(chol[p, j])
    work = np.empty(dim)
    row = np.empty(k)
    total = 0.0
    for n in range(m):
        for j in range(k):
            s = math.log(priors[j]) if priors[j] > 0.0 else -np.inf
            for p in range(n_frames):
                s += log_gauss(x[p, n], means[p, j], chol[p, j], logdet[p, j], work)
            row[j] = s
        total += logsumexp(row)
    return total / m


@njit(cache=True)
def _precompute(priors, means, covs, chol, linv, const):
    """Per component: L⁻¹ of every frame's Σ and log π_k − Σ_p ½(D log 2π + log|Σ_k⁽ᵖ⁾|).

    Returns the first component whose covariance is not positive definite, or −1.
    """
    n_frames, k, dim = means.shape
    for j in range(k):
        c = math.log(priors[j]) if priors[j] > 0.0 else -np.inf
        for p in range(n_frames):
            if not chol_lower(covs[p, j], chol):
                return j
            c -= 0.5 * (dim * LOG_2PI + chol_logdet(chol))
            for col in range(dim):  # columns of L⁻¹ by forward substitution on e_col
                for i in range(dim):
                    if i < col:
                        linv[p, j, i, col] = 0.0
                        continue
                    v = 1.0 if i == col else 0.0
                    for m in range(col, i):
                        v -= chol[i, m] * linv[p, j, m, col]
                    linv[p, j, i, col] = v / chol[i, i]
        const[j] = c
    return -1


@njit(cache=True, fastmath=FASTMATH)
def _e_step(xt, means, linv, const, logp, work):
    """logp[k, n] = log π_k + Σ_p log 𝒩(X_n⁽ᵖ⁾ | μ_k⁽ᵖ⁾, Σ_k⁽ᵖ⁾) = const_k − ½ Σ_p |L⁻¹(X_n⁽ᵖ⁾ − μ)|².

    ``xt`` is the frame tensor transposed to (P, D, M) so every inner loop runs over samples.
    """
    n_frames, dim, m = xt.shape
    k = means.shape[1]
    for j in range(k):
        for n in range(m):
            logp[j, n] = const[j]
        for p in range(n_frames):
            for i in range(dim):
                for n in range(m):
                    work[n] = 0.0
                for c in range(i + 1):
                    w = linv[p, j, i, c]
                    mu = means[p, j, c]
                    for n in range(m):
                        work[n] += w * (xt[p, c, n] - mu)
                for n in range(m):
                    logp[j, n] -= 0.5 * work[n] * work[n]


@njit(cache=True)
def _normalise(logp, mx):
    """Responsibilities in place (r = exp(logp − LSE)) and Σ_n LSE_n."""
    k, m = logp.shape
    for n in range(m):
        mx[n] = -np.inf
    for j in range(k):
        for n in range(m):
            if logp[j, n] > mx[n]:
                mx[n] = logp[j, n]
    total = 0.0
    for n in range(m):
        s = 0.0
        for j in range(k):
            s += math.exp(logp[j, n] - mx[n])
        lse = mx[n] + math.log(s)
        total += lse
        for j in range(k):
            logp[j, n] = math.exp(logp[j, n] - lse)
    return total


@njit(cache=True, fastmath=FASTMATH)
def _m_step(xt, resp, reg, priors, means, covs):
    """π_k = N_k/M, μ = Σ r X / N_k, Σ = Σ r X Xᵀ / N_k − μμᵀ + εI (X centred), per frame."""
    n_frames, dim, m = xt.shape
    k = resp.shape[0]
    for j in range(k):
        nk = 0.0
        for n in range(m):
            nk += resp[j, n]
        priors[j] = nk / m
        if nk < 1e-300:  # a dead component keeps its parameters and weight 0
            continue
        for p in range(n_frames):
            for a in range(dim):
                s = 0.0
                for n in range(m):
                    s += resp[j, n] * xt[p, a, n]
                means[p, j, a] = s / nk
            for a in range(dim):
                for b in range(a + 1):
                    s = 0.0
                    for n in range(m):
                        s += resp[j, n] * xt[p, a, n] * xt[p, b, n]
                    v = s / nk - means[p, j, a] * means[p, j, b]
                    if a == b:
                        v += reg
                    covs[p, j, a, b] = v
                    covs[p, j, b, a] = v


@njit(cache=True)
def _em_tensor(x, priors, means, covs, reg, tol, min_iter, max_iter, ll_hist):
    """EM on a frame tensor, in place on (priors, means, covs).

    E-step: log r_nk = log π_k + Σ_p log 𝒩(X_n⁽ᵖ⁾ | μ_k⁽ᵖ⁾, Σ_k⁽ᵖ⁾) − LSE_j(·)   (kmp.md §1.1, §1.3)
    M-step: π_k = N_k/M, μ_k⁽ᵖ⁾ = Σ_n r_nk X_n⁽ᵖ⁾/N_k, Σ_k⁽ᵖ⁾ = Σ_n r_nk (X−μ)(X−μ)ᵀ/N_k + εI,
    the covariance from sufficient statistics of centred data. Stops once more than ``min_iter``
    iterations have run and the average log-likelihood gained less than ``tol`` (robInfLib
    ``EM_GMM``). Returns (iterations, converged, bad component or −1).
    """
    n_frames, m, dim = x.shape
    k = priors.shape[0]
    # centre every frame's data (covariances and likelihood do not change, cancellation does) and
    # lay it out as (P, D, M) so the per-sample loops vectorise
    shift = np.zeros((n_frames, dim))
    xt = np.empty((n_frames, dim, m))
    for p in range(n_frames):
        for a in range(dim):
            s = 0.0
            for n in range(m):
                s += x[p, n, a]
            shift[p, a] = s / m
            for n in range(m):
                xt[p, a, n] = x[p, n, a] - shift[p, a]
            for j in range(k):
                means[p, j, a] -= shift[p, a]
    chol = np.zeros((dim, dim))
    linv = np.zeros((n_frames, k, dim, dim))
    const = np.empty(k)
    logp = np.empty((k, m))
    work = np.empty(m)
    n_iter, converged, bad = max_iter, False, -1
    for it in range(max_iter):
        bad = _precompute(priors, means, covs, chol, linv, const)
        if bad >= 0:
            n_iter = it
            break
        _e_step(xt, means, linv, const, logp, work)
        ll = _normalise(logp, work) / m
        ll_hist[it] = ll
        _m_step(xt, logp, reg, priors, means, covs)
        if it + 1 > min_iter and ll - ll_hist[it - 1] < tol:
            n_iter, converged = it + 1, True
            break
    for p in range(n_frames):
        for j in range(k):
            for a in range(dim):
                means[p, j, a] += shift[p, a]
    return n_iter, converged, bad


def em_tensor(data, priors, means, covariances, *, reg: float = 1e-4, tol: float = 1e-4,
              min_iter: int = 5, max_iter: int = 100):
    """EM on a validated frame tensor; returns new ``(priors, means, covs, EMReport)``.

    Raises ``ValueError`` if a covariance stops being positive definite (raise ``reg``).
    """
    x = np.ascontiguousarray(data, dtype=np.float64)
    pri = np.array(priors, dtype=np.float64)
    mu = np.array(means, dtype=np.float64)
    cov = np.array(covariances, dtype=np.float64)
    checks.count(max_iter, "max_iter")
    checks.count(min_iter, "min_iter", minimum=0)
    reg = checks.non_negative(reg, "reg", what="a non-negative regulariser")
    tol = checks.em_tolerance(tol, "tol")
    if x.shape[1] < pri.shape[0]:
        raise ValueError(f"data: {x.shape[1]} samples cannot support {pri.shape[0]} components; "
                         "use fewer components or more samples")
    hist = np.full(max_iter, np.nan)
    n_iter, converged, bad = _em_tensor(x, pri, mu, cov, float(reg), float(tol), int(min_iter),
                                        int(max_iter), hist)
    if bad >= 0:
        raise ValueError(f"covariances[{bad}]: became singular during EM at iteration {n_iter + 1}; "
                         f"increase reg (now {reg:g}) or use fewer components")
    return pri, mu, cov, EMReport(int(n_iter), hist[:n_iter].copy(), bool(converged))


def fit_em(data, init: GMM, *, reg: float = 1e-4, tol: float = 1e-4, min_iter: int = 5,
           max_iter: int = 100) -> tuple[GMM, EMReport]:
    """Fit a GMM by EM from ``init`` (robInfLib defaults: ε = 1e-4 on the diagonal, tol = 1e-4).

    ``reg`` must be finite and >= 0, ``tol`` finite and >= 0 or −inf (never stop early);
    ``ValueError`` naming them otherwise (a NaN ``tol`` would silently never stop EM early, a
    negative one would stop it only on a likelihood drop).
    """
    x = checks.finite_array(data, "data", shape=(None, init.n_dims),
                            what=f"(M, {init.n_dims}) samples, one row per sample")
    pri, mu, cov, report = em_tensor(x[None], init.priors, init.means[None], init.covariances[None],
                                     reg=reg, tol=tol, min_iter=min_iter, max_iter=max_iter)
    return GMM(pri, mu[0], cov[0]), report


def fit_gmm(data, n_components: int, *, time_index: int = 0, reg: float = 1e-4, tol: float = 1e-4,
            min_iter: int = 5, max_iter: int = 100) -> tuple[GMM, EMReport]:
    """Time-based initialisation followed by EM (``reg`` finite >= 0, ``tol`` finite >= 0 or −inf)."""
    reg = checks.non_negative(reg, "reg", what="a non-negative regulariser")
    tol = checks.em_tolerance(tol, "tol")
    return fit_em(data, init_time_based(data, n_components, time_index=time_index), reg=reg, tol=tol,
                  min_iter=min_iter, max_iter=max_iter)
