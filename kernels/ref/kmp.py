"""NumPy reference for :mod:`kinebridge.kernels.kmp`, a transcription of the original algorithm.

It follows robInfLib (``kernel_extend``, ``kmp_estimateMatrix_mean(_var)``, ``kmp_pred_mean(_var)``,
``kmp_insertPoint``) vectorised with NumPy: the kernel matrix by ``np.kron`` of the scalar blocks,
the explicit inverse ``inv(K + λΣ)`` the original computes, predictions k*·K⁻¹·μ, and a full refit
for every via-point change. ``solver="cholesky"`` swaps the inverse for a Cholesky solve, so speed
ratios can be read against both.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla


def scalar_blocks(ta, tb, h, kernel="fd", delta=1e-3):
    """The four scalar matrices (k, ∂_{tb}k, ∂_{ta}k, ∂_{ta}∂_{tb}k), each (Na, Nb)."""
    ta = np.asarray(ta, float)[:, None]
    tb = np.asarray(tb, float)[None, :]
    if kernel == "analytic":
        d = ta - tb
        k = np.exp(-h * d * d)
        return k, 2 * h * d * k, -2 * h * d * k, (2 * h - 4 * h * h * d * d) * k
    k = np.exp(-h * (ta - tb) * (ta - tb))
    k_b = np.exp(-h * (ta - (tb + delta)) * (ta - (tb + delta)))
    k_a = np.exp(-h * ((ta + delta) - tb) * ((ta + delta) - tb))
    k_ab = np.exp(-h * ((ta + delta) - (tb + delta)) * ((ta + delta) - (tb + delta)))
    return k, (k_b - k) / delta, (k_a - k) / delta, (k_ab - k_b - k_a + k) / delta / delta


def kernel_matrix(ta, tb, h, d, derivatives=True, kernel="fd", delta=1e-3):
    """Block kernel matrix (Na·O, Nb·O) with per-point order [x_1..x_d, ẋ_1..ẋ_d]."""
    k, kb, ka, kab = scalar_blocks(ta, tb, h, kernel, delta)
    if not derivatives:
        return np.kron(k, np.eye(d))
    na, nb = k.shape
    blocks = np.stack([np.stack([k, kb], -1), np.stack([ka, kab], -1)], -2)   # (Na, Nb, 2, 2)
    out = np.einsum("ijab,cd->iacjbd", blocks, np.eye(d))                      # (Na, 2, d, Nb, 2, d)
    return out.reshape(na * 2 * d, nb * 2 * d)


def insert_point(t, mu, sigma, via_t, via_mu, via_sigma, tol=5e-4):
    """kmp_insertPoint: replace the first entry within ``tol`` of ``via_t``, else append."""
    near = np.flatnonzero(np.abs(t - via_t) < tol)
    t, mu, sigma = t.copy(), mu.copy(), sigma.copy()
    if near.size:
        i = near[0]
        t[i], mu[i], sigma[i] = via_t, via_mu, via_sigma
        return t, mu, sigma
    return np.append(t, via_t), np.vstack([mu, via_mu]), np.concatenate([sigma, via_sigma[None]])


class KMPReference:
    def __init__(self, h=6.0, lam=1.0, lam_c=60.0, kernel="fd", delta=1e-3, derivatives=True, solver="inv"):
        self.h, self.lam, self.lam_c, self.kernel, self.delta = h, lam, lam_c, kernel, delta
        self.derivatives, self.solver = derivatives, solver

    def fit(self, t, mu, sigma, with_cov=False):
        self.t, self.mu, self.sigma = np.asarray(t, float), np.asarray(mu, float), np.asarray(sigma, float)
        o = self.mu.shape[1]
        self.d = o // 2 if self.derivatives else o
        k = kernel_matrix(self.t, self.t, self.h, self.d, self.derivatives, self.kernel, self.delta)
        sig = sla.block_diag(*self.sigma)
        if self.solver == "inv":
            self.w = np.linalg.inv(k + self.lam * sig) @ self.mu.reshape(-1)
            self.kinv_c = np.linalg.inv(k + self.lam_c * sig) if with_cov else None
        else:
            self.w = sla.cho_solve(sla.cho_factor(k + self.lam * sig, lower=True), self.mu.reshape(-1))
            self.kinv_c = (sla.cho_factor(k + self.lam_c * sig, lower=True) if with_cov else None)
        return self

    def predict(self, tq):
        kq = kernel_matrix(np.atleast_1d(tq), self.t, self.h, self.d, self.derivatives, self.kernel, self.delta)
        return (kq @ self.w).reshape(len(np.atleast_1d(tq)), -1)

    def predict_cov(self, tq):
        tq = np.atleast_1d(tq)
        o = self.mu.shape[1]
        kq = kernel_matrix(tq, self.t, self.h, self.d, self.derivatives, self.kernel, self.delta)
        sol = self.kinv_c @ kq.T if self.solver == "inv" else sla.cho_solve(self.kinv_c, kq.T)
        out = []
        for q in range(len(tq)):
            kss = kernel_matrix(tq[q:q + 1], tq[q:q + 1], self.h, self.d, self.derivatives, self.kernel, self.delta)
            blk = slice(q * o, (q + 1) * o)
            out.append(len(self.t) / self.lam_c * (kss - kq[blk] @ sol[:, blk]))
        return self.predict(tq), np.array(out)
