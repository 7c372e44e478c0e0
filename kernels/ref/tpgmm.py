"""NumPy reference for :mod:`kinebridge.kernels.tpgmm`: projection, per-component product, TP-GMR."""

from __future__ import annotations

import numpy as np

from kinebridge.kernels.ref.gmr import gmr


def project(data, A, b):
    return np.stack([np.linalg.solve(A[p], (data - b[p]).T).T for p in range(len(A))])


def gauss_product(means, covs):
    lam = [np.linalg.inv(c) for c in covs]
    cov = np.linalg.inv(sum(lam))
    return cov @ sum(l @ m for l, m in zip(lam, means)), cov


def product(priors, means, covs, A, b):
    k = len(priors)
    mu, cov = [], []
    for j in range(k):
        m, c = gauss_product([A[p] @ means[p, j] + b[p] for p in range(len(A))],
                             [A[p] @ covs[p, j] @ A[p].T for p in range(len(A))])
        mu.append(m)
        cov.append(c)
    return np.array(mu), np.array(cov)


def tpgmr(priors, means, covs, A, b, x, in_idx, out_idx, reg=1e-8):
    o = np.asarray(out_idx)
    res = []
    for p in range(len(A)):
        mu, cov = gmr(priors, means[p], covs[p], x, in_idx, out_idx, reg)
        Ao = A[p][np.ix_(o, o)]
        res.append((mu @ Ao.T + b[p, o], Ao @ cov @ Ao.T))
    out = [gauss_product([r[0][t] for r in res], [r[1][t] for r in res]) for t in range(len(x))]
    return np.array([m for m, _ in out]), np.array([c for _, c in out])
