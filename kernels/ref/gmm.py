"""NumPy reference for :mod:`kinebridge.kernels.gmm`: time-based init and EM, vectorised per component."""

from __future__ import annotations

import numpy as np


def log_gauss(x, mu, cov):
    """log 𝒩(x_n | μ, Σ) for every row of ``x``."""
    L = np.linalg.cholesky(cov)
    z = np.linalg.solve(L, (x - mu).T)
    return -0.5 * (x.shape[1] * np.log(2 * np.pi) + 2 * np.log(np.diag(L)).sum() + (z * z).sum(axis=0))


def init_time_based(data, n_components, time_index=0, reg=1e-8):
    t = data[:, time_index]
    edges = np.linspace(t.min(), t.max(), n_components + 1)
    pri, mu, cov = [], [], []
    for i in range(n_components):
        seg = data[(t >= edges[i]) & (t < edges[i + 1])]
        pri.append(len(seg))
        mu.append(seg.mean(axis=0))
        cov.append(np.cov(seg.T) + reg * np.eye(data.shape[1]))
    pri = np.array(pri, dtype=float)
    return pri / pri.sum(), np.array(mu), np.array(cov)


def em(data, priors, means, covs, reg=1e-4, tol=1e-4, min_iter=5, max_iter=100):
    """EM on a frame tensor ``(P, M, D)``; returns (priors, means, covs, n_iter, ll history)."""
    x = np.asarray(data, dtype=float)
    if x.ndim == 2:
        x, means, covs = x[None], np.asarray(means)[None], np.asarray(covs)[None]
        squeeze = True
    else:
        squeeze = False
    priors, means, covs = np.array(priors, float), np.array(means, float), np.array(covs, float)
    n_frames, m, dim = x.shape
    k = priors.size
    hist = []
    for it in range(max_iter):
        logr = np.log(np.maximum(priors, 1e-300))[None, :] + sum(
            np.stack([log_gauss(x[p], means[p, j], covs[p, j]) for j in range(k)], axis=1) for p in range(n_frames))
        mx = logr.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(logr - mx).sum(axis=1))
        r = np.exp(logr - lse[:, None])
        hist.append(lse.mean())
        nk = r.sum(axis=0)
        priors = nk / m
        for p in range(n_frames):
            means[p] = (r.T @ x[p]) / nk[:, None]
            for j in range(k):
                dx = x[p] - means[p, j]
                covs[p, j] = (r[:, j, None] * dx).T @ dx / nk[j] + reg * np.eye(dim)
        if it + 1 > min_iter and hist[-1] - hist[-2] < tol:
            break
    if squeeze:
        means, covs = means[0], covs[0]
    return priors, means, covs, len(hist), np.array(hist)
