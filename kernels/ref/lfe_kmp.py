"""NumPy reference for :meth:`kinebridge.kernels.lfe_kmp.LFEKMP.generalize` (tests and speed ratios).

Same equations, per time step with ``np.linalg.inv``: the Gaussian linear transform of every frame's
cached local result and the product over frames (VL-MP eq. 6), positions in closed form and
orientations with the reference Riemannian product; then the exact conditioning on every end that
exactly one frame enhances (its pinned point mapped by the frame, the residual faded out with a
raised cosine over the enhancement window), written out per time step from the frames' pins.
"""

from __future__ import annotations

import numpy as np

from kinebridge.kernels.ref import quaternion as rq
from kinebridge.kernels.ref.tpgmm import gauss_product


def _fade(t, t_a, span):
    """Raised cosine ½(1 + cos πu), u = (t − t_a)/span on [0, 1], and its time derivative."""
    w, w_dot = np.zeros(t.size), np.zeros(t.size)
    for k, tk in enumerate(t):
        u = (tk - t_a) / span
        if 0.0 <= u < 1.0:
            w[k] = 0.5 * (1.0 + np.cos(np.pi * u))
        if 0.0 < u < 1.0:
            w_dot[k] = -0.5 * np.pi * np.sin(np.pi * u) / span
    return w, w_dot


def _governed(model, frame_kmps):
    """{end: (frame, t_a, span, pin)} for the ends exactly one frame enhances (none without exact_ends)."""
    if not model.config.exact_ends:
        return {}
    claims = {}
    for p, fk in enumerate(frame_kmps):
        for end, t_a, span, pin in fk.pins:
            claims.setdefault(end, []).append((p, t_a, span, pin))
    return {end: c[0] for end, c in claims.items() if len(c) == 1}


def generalize(model, frames):
    d = model.d
    n = model.t_ref.size
    pos, cov = np.empty((n, 2 * d)), np.empty((n, 2 * d, 2 * d))
    A = [np.kron(np.eye(2), f.rotation) for f in frames]
    b = [np.concatenate([f.origin, np.zeros(d)]) for f in frames]
    for t in range(n):
        pos[t], cov[t] = gauss_product([A[p] @ fk.mean[t] + b[p] for p, fk in enumerate(model._pos)],
                                       [A[p] @ fk.cov[t] @ A[p].T for p, fk in enumerate(model._pos)])
    for end, (p, t_a, span, pin) in _governed(model, model._pos).items():
        i = 0 if end == "start" else n - 1
        r = frames[p].rotation @ pin[:d] + frames[p].origin - pos[i, :d]
        w, w_dot = _fade(model.t_ref, t_a, span)
        for t in range(n):
            pos[t, :d] += w[t] * r
            pos[t, d:] += w_dot[t] * r
    out = {"position": pos[:, :d], "velocity": pos[:, d:], "covariance": cov}
    if model._ori is not None:
        qf = [rq.from_matrix(f.rotation) for f in frames]
        q_means = np.stack([rq.mul(qf[p], model._q_local[p]) for p in range(len(frames))], axis=1)
        q, q_cov = rq.product_batch(q_means, np.stack(model._q_cov_local, axis=1))
        for end, (p, t_a, span, pin) in _governed(model, model._ori).items():
            i = 0 if end == "start" else n - 1
            target = rq.mul(qf[p], rq.unproject(pin[:3], model.aux[p]))
            r = rq.log_at(q[i], target)
            w, _ = _fade(model.t_ref, t_a, span)
            for t in range(n):
                if w[t] > 0.0:
                    q[t] = rq.exp_at(q[t], w[t] * r)
        out["orientation"], out["orientation_cov"] = q, q_cov
    return out
