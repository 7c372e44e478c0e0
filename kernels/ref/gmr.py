"""NumPy reference for :mod:`kinebridge.kernels.gmr`: GMR vectorised over queries, looped over components."""

from __future__ import annotations

import numpy as np

from kinebridge.kernels.ref.gmm import log_gauss


def gmr(priors, means, covs, x, in_idx, out_idx, reg=1e-8):
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    i, o = np.asarray(in_idx), np.asarray(out_idx)
    k = len(priors)
    logw = np.stack([np.log(priors[j]) + log_gauss(x, means[j, i], covs[j][np.ix_(i, i)]) for j in range(k)], axis=1)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mu_k, cond = [], []
    for j in range(k):
        gain = np.linalg.solve(covs[j][np.ix_(i, i)], covs[j][np.ix_(i, o)]).T
        mu_k.append(means[j, o] + (x - means[j, i]) @ gain.T)
        cond.append(covs[j][np.ix_(o, o)] - gain @ covs[j][np.ix_(i, o)])
    mu_k = np.stack(mu_k, axis=1)                           # (T, K, O)
    mean = np.einsum("tk,tko->to", w, mu_k)
    dev = mu_k - mean[:, None]
    cov = np.einsum("tk,kab->tab", w, np.array(cond)) + np.einsum("tk,tka,tkb->tab", w, dev, dev)
    return mean, cov + reg * np.eye(len(o))
