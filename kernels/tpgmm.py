"""Task-parameterised GMM: frames, EM on the frame tensor, product of Gaussians, TP-GMR.

Frames p = 1..P are affine task parameters {A_p, b_p}. Demonstrations are seen from every frame,
X⁽ᵖ⁾ = A_p⁻¹(ξ − b_p) (pbdlib-matlab ``demo_TPGMM01``; A⁻¹, not Aᵀ, so scaled frames work), one EM
fits all frames with shared responsibilities (``EM_tensorGMM``), and retrieval under new frames
multiplies the frames' Gaussians mapped back to the global frame (kmp.md §1.3):
    Σ̂_k = (Σ_p (Â_p Σ_k⁽ᵖ⁾ Â_pᵀ)⁻¹)⁻¹,   μ̂_k = Σ̂_k Σ_p (Â_p Σ_k⁽ᵖ⁾ Â_pᵀ)⁻¹ (Â_p μ_k⁽ᵖ⁾ + b̂_p)
Two retrievals are offered: ``product`` (per component, then GMR — ``productTPGMM0``) and ``tpgmr``
(GMR in each frame, then the product at every query — ``demo_TPGMR01``). They are not identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinebridge.kernels import checks
from kinebridge.kernels.gaussian import gaussian_product
from kinebridge.kernels.gmm import GMM, EMReport, em_tensor, init_time_based_tensor
from kinebridge.kernels.gmr import gmr


@dataclass(frozen=True)
class TPGMM:
    """``priors (K,)``, per-frame ``means (P, K, D)`` and ``covariances (P, K, D, D)``."""

    priors: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.means.shape[0]

    @property
    def n_components(self) -> int:
        return self.priors.shape[0]

    @property
    def n_dims(self) -> int:
        return self.means.shape[2]

    def frame_model(self, p: int) -> GMM:
        """The GMM that frame ``p`` sees (local coordinates)."""
        return GMM(self.priors, self.means[p], self.covariances[p])

    def product(self, A, b) -> GMM:
        """The global GMM under new frames ``A (P, D, D)``, ``b (P, D)`` (``productTPGMM0``)."""
        A, b = _frames(A, b, self.n_frames, self.n_dims)
        mg = np.einsum("pij,pkj->kpi", A, self.means) + b[None]           # Â_p μ_k⁽ᵖ⁾ + b̂_p
        sg = np.einsum("pij,pkjl,pml->kpim", A, self.covariances, A)      # Â_p Σ_k⁽ᵖ⁾ Â_pᵀ
        mu, cov = gaussian_product(mg, sg)
        return GMM(self.priors, mu, 0.5 * (cov + cov.transpose(0, 2, 1)))


def _frames(A, b, n_frames: int, dim: int):
    A = checks.finite_array(A, "A", shape=(n_frames, dim, dim), what=f"({n_frames}, {dim}, {dim}) frame matrices")
    b = checks.finite_array(b, "b", shape=(n_frames, dim), what=f"({n_frames}, {dim}) frame offsets")
    for p in range(n_frames):
        c = np.linalg.cond(A[p])
        if not np.isfinite(c) or c > 1e12:
            raise ValueError(f"A[{p}]: frame matrix is singular (condition number {c:.3g}); "
                             "a frame needs an invertible A (e.g. a rotation)")
    return A, b


def time_frame(rotation, origin, *, velocity: bool = True):
    """A time-driven frame for ξ = [t, x, (ẋ)]: A = blkdiag(1, R, (R)), b = [0, o, (0)]."""
    R = checks.finite_array(rotation, "rotation", ndim=2, what="(d, d) frame rotation")
    d = R.shape[0]
    if R.shape != (d, d):
        raise ValueError(f"rotation: expected a square (d, d) matrix, got {R.shape}")
    o = checks.finite_array(origin, "origin", shape=(d,), what=f"({d},) frame origin")
    n = 1 + d * (2 if velocity else 1)
    A = np.eye(n)
    A[1:1 + d, 1:1 + d] = R
    if velocity:
        A[1 + d:, 1 + d:] = R
    b = np.zeros(n)
    b[1:1 + d] = o
    return A, b


def project(data, A, b):
    """Observe samples from every frame: X⁽ᵖ⁾ = A_p⁻¹ (ξ − b_p).

    ``data (M, D)``; ``A (P, D, D)`` and ``b (P, D)`` shared by all samples, or ``(M, P, D, D)`` and
    ``(M, P, D)`` per sample. Returns the frame tensor ``(P, M, D)``.
    """
    x = checks.finite_array(data, "data", ndim=2, what="(M, D) samples")
    m, dim = x.shape
    A = checks.finite_array(A, "A")
    b = checks.finite_array(b, "b")
    if A.ndim == 3:
        A = np.broadcast_to(A, (m,) + A.shape)
        b = np.broadcast_to(b, (m,) + b.shape)
    if A.ndim != 4 or A.shape[0] != m or A.shape[2:] != (dim, dim) or b.shape != A.shape[:3]:
        raise ValueError(f"A/b: expected (P, {dim}, {dim}) and (P, {dim}) frames, or per-sample "
                         f"({m}, P, {dim}, {dim}) and ({m}, P, {dim}); got {A.shape} and {b.shape}")
    cond = np.linalg.cond(A.reshape(-1, dim, dim)).reshape(A.shape[:2])
    bad = np.argwhere(~np.isfinite(cond) | (cond > 1e12))
    if bad.size:
        i, p = bad[0]
        raise ValueError(f"A[{i}, {p}]: frame {p} of sample {i} is singular (condition number "
                         f"{cond[i, p]:.3g}); every frame needs an invertible A")
    local = np.linalg.solve(A, (x[:, None, :] - b)[..., None])[..., 0]   # (M, P, D)
    return np.ascontiguousarray(local.transpose(1, 0, 2))


def fit_tpgmm(local, n_components: int, *, time_index: int = 0, reg: float = 1e-4, tol: float = 1e-4,
              min_iter: int = 5, max_iter: int = 100) -> tuple[TPGMM, EMReport]:
    """Time-based initialisation and EM on the frame tensor ``local (P, M, D)``."""
    x = checks.finite_array(local, "local", ndim=3, what="(P, M, D) frame tensor from project()")
    reg = checks.non_negative(reg, "reg", what="a non-negative regulariser")
    tol = checks.em_tolerance(tol, "tol")
    pri, mu, cov = init_time_based_tensor(x, n_components, time_index=time_index)
    pri, mu, cov, report = em_tensor(x, pri, mu, cov, reg=reg, tol=tol, min_iter=min_iter, max_iter=max_iter)
    return TPGMM(pri, mu, cov), report


def tpgmr(model: TPGMM, A, b, inputs, in_idx=(0,), out_idx=None, *, reg: float = 1e-8):
    """TP-GMR: GMR in every frame, each result mapped to the global frame, product at every query.

    ``A``/``b`` are the new frames over the full ξ; the output block of each is used to map the
    frame's conditional Gaussian 𝒩(μ_p, Σ_p) to 𝒩(A_pᴼ μ_p + b_pᴼ, A_pᴼ Σ_p A_pᴼᵀ). The frames must
    not mix inputs into outputs (true for time-driven frames). Returns ``means (T, O)``, ``covs (T, O, O)``.
    """
    A, b = _frames(A, b, model.n_frames, model.n_dims)
    i_idx = np.atleast_1d(np.asarray(in_idx, dtype=np.int64))
    o_idx = (np.array([d for d in range(model.n_dims) if d not in set(i_idx.tolist())], dtype=np.int64)
             if out_idx is None else np.atleast_1d(np.asarray(out_idx, dtype=np.int64)))
    if np.abs(A[:, o_idx][:, :, i_idx]).max() > 0 or np.abs(A[:, i_idx][:, :, o_idx]).max() > 0:
        raise ValueError("A: tpgmr needs frames that keep inputs and outputs separate "
                         "(A[:, out, in] = 0 and A[:, in, out] = 0), as time-driven frames do")
    x = checks.finite_array(inputs, "inputs")
    x2 = x[:, None] if x.ndim == 1 else x
    means, covs = [], []
    for p in range(model.n_frames):
        # the frame's input: A_pᴵ⁻¹(x − b_pᴵ) (identity for time)
        xin = np.linalg.solve(A[p][np.ix_(i_idx, i_idx)], (x2 - b[p, i_idx]).T).T
        mu, cov = gmr(model.frame_model(p), xin, i_idx, o_idx, reg=reg)
        Ao = A[p][np.ix_(o_idx, o_idx)]
        means.append(mu @ Ao.T + b[p, o_idx])
        covs.append(np.einsum("ij,tjk,lk->til", Ao, cov, Ao))
    mu, cov = gaussian_product(np.stack(means, axis=1), np.stack(covs, axis=1))
    return mu, 0.5 * (cov + cov.transpose(0, 2, 1))
