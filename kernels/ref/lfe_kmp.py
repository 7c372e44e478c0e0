"""NumPy reference for :meth:`kinebridge.kernels.lfe_kmp.LFEKMP.generalize` (tests and speed ratios).

Same equations, per time step with ``np.linalg.inv``: the Gaussian linear transform of every frame's
cached local result and the product over frames (VL-MP eq. 6), positions in closed form and
orientations with the reference Riemannian product.
"""

from __future__ import annotations

import numpy as np

from kinebridge.kernels.ref import quaternion as rq
from kinebridge.kernels.ref.tpgmm import gauss_product


def generalize(model, frames):
    d = model.d
    n = model.t_ref.size
    pos, cov = np.empty((n, 2 * d)), np.empty((n, 2 * d, 2 * d))
    A = [np.kron(np.eye(2), f.rotation) for f in frames]
    b = [np.concatenate([f.origin, np.zeros(d)]) for f in frames]
    for t in range(n):
        pos[t], cov[t] = gauss_product([A[p] @ fk.mean[t] + b[p] for p, fk in enumerate(model._pos)],
                                       [A[p] @ fk.cov[t] @ A[p].T for p, fk in enumerate(model._pos)])
    out = {"position": pos[:, :d], "velocity": pos[:, d:], "covariance": cov}
    if model._ori is not None:
        qf = [rq.from_matrix(f.rotation) for f in frames]
        q_means = np.stack([rq.mul(qf[p], model._q_local[p]) for p in range(len(frames))], axis=1)
        out["orientation"], out["orientation_cov"] = rq.product_batch(q_means, np.stack(model._q_cov_local, axis=1))
    return out
