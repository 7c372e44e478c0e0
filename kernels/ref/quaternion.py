"""Plain-NumPy reference for :mod:`kinebridge.kernels.quaternion` (tests and speed ratios only).

Written from the equations (kmp.md §1.5, VL-MP eq. 6) with vectorised NumPy, deliberately using
different algebraic routes from the compiled kernels where one exists: matrix forms of the
quaternion product, the literal 4x4 pbdlib parallel-transport formula, ``np.linalg.inv`` of the
transported covariances. Same conventions: w-first, half-angle ``log``/``exp``, shortest-path charts.
No input validation beyond what NumPy does; quaternion inputs are renormalised like the fast
wrappers do (except in ``conj``, ``make_continuous`` and the xyzw reorderings).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "mul", "conj", "log", "exp", "to_matrix", "from_matrix", "from_xyzw", "to_xyzw",
    "project", "project_continuous", "unproject", "log_at", "exp_at", "parallel_transport", "right_jacobian",
    "make_continuous", "angular_velocity", "riemannian_mean", "product", "product_batch",
]


def _unit(q):
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _skew(v):
    """[v]x with [v]x w = v x w, shape (..., 3, 3)."""
    v = np.asarray(v, dtype=np.float64)
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def _left(q):
    """4x4 left-multiplication matrix Q(q): Q(q) p = q ⊗ p."""
    q = np.asarray(q, dtype=np.float64)
    w = q[..., 0]
    v = q[..., 1:]
    top = np.concatenate([w[..., None], -v], -1)[..., None, :]
    bottom = np.concatenate([v[..., :, None], w[..., None, None] * np.eye(3) + _skew(v)], -1)
    return np.concatenate([top, bottom], -2)


def _mul(a, b):
    return np.einsum("...ij,...j->...i", _left(a), b)


def _conj(q):
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _log(q):
    w = q[..., 0]
    v = q[..., 1:]
    n = np.linalg.norm(v, axis=-1)
    safe = np.where(n < 1e-12, 1.0, n)
    scale = np.where(n < 1e-12, 0.0, np.arctan2(n, w) / safe)
    return scale[..., None] * v


def _fold_sign(q):
    """-1 where -q is the representative of {q, -q} (w > 0; w == 0: first non-zero of x, y, z > 0)."""
    w, x, y, z = (q[..., i] for i in range(4))
    neg = (w < 0) | ((w == 0) & ((x < 0) | ((x == 0) & ((y < 0) | ((y == 0) & (z < 0))))))
    return np.where(neg, -1.0, 1.0)[..., None]


def _fold(q):
    return _fold_sign(q) * q


def _exp(u):
    u = np.asarray(u, dtype=np.float64)
    m = np.abs(u).max(axis=-1, keepdims=True) if u.size else np.zeros(u.shape[:-1] + (1,))
    big = m[..., 0] >= 1e150
    if not big.any():
        n = np.linalg.norm(u, axis=-1)
        return np.concatenate([np.cos(n)[..., None], np.sinc(n / np.pi)[..., None] * u], -1)
    # huge vectors: |u| from the hypot of u scaled by its largest entry (no overflow), saturated to
    # the largest double, and the unit axis; cos/sin reduce the angle
    e = u / np.where(m > 0, m, 1.0)
    r = np.linalg.norm(e, axis=-1)
    with np.errstate(over="ignore"):
        n = np.minimum(m[..., 0] * r, np.finfo(np.float64).max)
    n_small = np.where(big, 0.0, np.linalg.norm(np.where(big[..., None], 0.0, u), axis=-1))
    vec = np.where(big[..., None], np.sin(n)[..., None] * e / np.where(r > 0, r, 1.0)[..., None],
                   np.sinc(n_small / np.pi)[..., None] * u)
    return np.concatenate([np.where(big, np.cos(n), np.cos(n_small))[..., None], vec], -1)


def mul(a, b):
    """Hamilton product a ⊗ b = Q(a) b, broadcasting leading axes."""
    a, b = np.broadcast_arrays(_unit(a), _unit(b))
    return _mul(a, b)


def conj(q):
    """(w, -v)."""
    return _conj(np.asarray(q, dtype=np.float64))


def log(q):
    """atan2(|v|, w) v/|v|, 0 for |v| < 1e-12 (no hemisphere folding)."""
    return _log(_unit(q))


def exp(u):
    """(cos|u|, sin|u| u/|u|)."""
    return _exp(np.asarray(u, dtype=np.float64))


def to_matrix(q):
    """R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]x."""
    q = _unit(q)
    w = q[..., 0, None, None]
    v = q[..., 1:]
    return ((w * w - np.sum(v * v, -1)[..., None, None]) * np.eye(3)
            + 2.0 * v[..., :, None] * v[..., None, :] + 2.0 * w * _skew(v))


def from_matrix(R):
    """Shepperd's method, vectorised with a pivot index; w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    d0, d1, d2 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    tr = d0 + d1 + d2
    pivot = np.argmax(np.stack([tr, d0, d1, d2], -1), axis=-1)
    a = R[..., 2, 1] - R[..., 1, 2]
    b = R[..., 0, 2] - R[..., 2, 0]
    c = R[..., 1, 0] - R[..., 0, 1]
    xy = R[..., 0, 1] + R[..., 1, 0]
    xz = R[..., 0, 2] + R[..., 2, 0]
    yz = R[..., 1, 2] + R[..., 2, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        cands = []
        for k, diag in enumerate([tr, 1.0 + d0 - d1 - d2, 1.0 + d1 - d0 - d2, 1.0 + d2 - d0 - d1]):
            s = 2.0 * np.sqrt(1.0 + diag) if k == 0 else 2.0 * np.sqrt(diag)
            comps = {0: [s / 4, a / s, b / s, c / s],
                     1: [a / s, s / 4, xy / s, xz / s],
                     2: [b / s, xy / s, s / 4, yz / s],
                     3: [c / s, xz / s, yz / s, s / 4]}[k]
            cands.append(np.stack(comps, -1))
    q = np.take_along_axis(np.stack(cands, -2), pivot[..., None, None], axis=-2)[..., 0, :]
    q = _unit(q)
    return np.where(q[..., :1] < 0.0, -q, q)


def from_xyzw(q):
    """(x, y, z, w) -> (w, x, y, z)."""
    return np.roll(np.asarray(q, dtype=np.float64), 1, axis=-1)


def to_xyzw(q):
    """(w, x, y, z) -> (x, y, z, w)."""
    return np.roll(np.asarray(q, dtype=np.float64), -1, axis=-1)


def project(q, q_aux):
    """log of q ⊗ conj(q_aux) folded to w >= 0."""
    q, qa = np.broadcast_arrays(_unit(q), _unit(q_aux))
    return _log(_fold(_mul(q, _conj(qa))))


def project_continuous(q, q_aux):
    """log of the relative quaternions q_t ⊗ conj(q_aux) made sign-continuous, r_0 folded to w >= 0."""
    q, qa = np.broadcast_arrays(_unit(q), _unit(q_aux))
    r = make_continuous(_mul(q, _conj(qa)))
    return _log(_fold_sign(r[0]) * r)


def unproject(zeta, q_aux):
    """exp(zeta) ⊗ q_aux."""
    e = _exp(np.asarray(zeta, dtype=np.float64))
    e, qa = np.broadcast_arrays(e, _unit(q_aux))
    return _mul(e, qa)


def log_at(base, x):
    """log of conj(base) ⊗ x folded to w >= 0."""
    b, x = np.broadcast_arrays(_unit(base), _unit(x))
    return _log(_fold(_mul(_conj(b), x)))


def exp_at(base, u):
    """base ⊗ exp(u)."""
    b, e = np.broadcast_arrays(_unit(base), _exp(np.asarray(u, dtype=np.float64)))
    return _mul(b, e)


def parallel_transport(g, h):
    """pbdlib demo_Riemannian_S3 transport, literally: A = E^T Q(h')^T R_par Q(g) E.

    v = Q(g)[0; Log_g(h)], m = |v|, u = v/m, R_par = I - sin(m) g u^T - (1 - cos m) u u^T, with h'
    the representative of h in g's hemisphere; R_par = I when m = 0.
    """
    g, h = np.broadcast_arrays(_unit(g), _unit(h))
    h = _fold_sign(_mul(_conj(g), h)) * h  # representative of h in g's hemisphere
    ell = log_at(g, h)
    Qg = _left(g)
    Qh = _left(h)
    v = np.einsum("...ij,...j->...i", Qg, np.concatenate([np.zeros(ell.shape[:-1] + (1,)), ell], -1))
    m = np.linalg.norm(v, axis=-1)
    u = v / np.where(m > 0.0, m, 1.0)[..., None]
    Rpar = (np.eye(4) - np.sin(m)[..., None, None] * g[..., :, None] * u[..., None, :]
            - (1.0 - np.cos(m))[..., None, None] * u[..., :, None] * u[..., None, :])
    E = np.vstack([np.zeros((1, 3)), np.eye(3)])
    return E.T @ np.swapaxes(Qh, -1, -2) @ Rpar @ Qg @ E


def right_jacobian(zeta):
    """SO(3) right Jacobian at phi = 2 zeta: I - sin^2(t/2)/(t^2/2) [phi]x + (t - sin t)/t^3 [phi]x^2."""
    zeta = np.asarray(zeta, dtype=np.float64)
    m = np.abs(zeta).max(axis=-1) if zeta.size else np.zeros(zeta.shape[:-1])
    if (m >= 1e150).any():  # huge angles row by row in terms of the unit axis (no overflow)
        flat = zeta.reshape(-1, 3)
        out = np.empty((flat.shape[0], 3, 3))
        for i, z in enumerate(flat):
            if np.abs(z).max() < 1e150:
                out[i] = right_jacobian(z)
                continue
            e = z / np.abs(z).max()
            e = e / np.linalg.norm(e)
            with np.errstate(over="ignore"):
                t = min(2.0 * np.abs(z).max() * np.linalg.norm(z / np.abs(z).max()), np.finfo(np.float64).max)
            out[i] = (np.eye(3) - (1.0 - np.cos(t)) / t * _skew(e)
                      + (1.0 - np.sin(t) / t) * (np.outer(e, e) - np.eye(3)))
        return out.reshape(zeta.shape + (3,))
    phi = 2.0 * zeta
    t = np.linalg.norm(phi, axis=-1)
    K = _skew(phi)
    a = 0.5 * np.sinc(t / (2.0 * np.pi)) ** 2
    tt = np.where(t < 1e-2, 1.0, t)
    b = np.where(t < 1e-2, 1.0 / 6.0 - t**2 / 120.0 + t**4 / 5040.0 - t**6 / 362880.0,
                 (tt - np.sin(tt)) / tt**3)
    return np.eye(3) - a[..., None, None] * K + b[..., None, None] * (K @ K)


def make_continuous(q):
    """Cumulative sign flips s_t = s_{t-1} sign(<q_{t-1}, q_t>), restarting at s_t = +1 where the dot is 0.

    The parity of the number of negative dots since the last zero dot gives the sign of each sample.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape[0] < 2:
        return q.copy()
    d = np.sum(q[1:] * q[:-1], -1)
    neg = np.concatenate([[0], np.cumsum(d < 0.0)])
    reset = np.concatenate([[True], d == 0.0])
    base = np.maximum.accumulate(np.where(reset, neg, 0))
    s = np.where((neg - base) % 2 == 1, -1.0, 1.0)
    return s[:, None] * q


def angular_velocity(q, dt):
    """omega = 2 vec(gradient(q)/dt ⊗ conj(q))."""
    q = _unit(q)
    qdot = np.gradient(q, float(dt), axis=0)
    return 2.0 * _mul(qdot, _conj(q))[:, 1:]


def riemannian_mean(q, weights=None, tol=1e-12, max_iter=50):
    """Karcher mean by mu <- Exp_mu(sum w_n Log_mu(q_n)) from the max-weight sample."""
    q = _unit(q)
    w = np.full(q.shape[0], 1.0 / q.shape[0]) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    mu = q[int(np.argmax(w))]
    for _ in range(max_iter):
        delta = w @ log_at(mu, q)
        mu = _unit(exp_at(mu, delta))
        if np.linalg.norm(delta) < tol:
            break
    return mu


def product(means, covs, tol=1e-12, max_iter=50):
    """Riemannian product of Gaussians on S^3 (VL-MP eq. 6), literally as specified.

    Lambda_p = (A_p S_p A_p^T)^-1 with A_p = parallel_transport(mu_p, mu), u_p = Log_mu(mu_p),
    S = (sum Lambda_p)^-1, Delta = S sum Lambda_p u_p, mu <- Exp_mu(Delta) until |Delta| < tol;
    the covariance is the one computed at the returned mean.
    """
    means = _unit(means)
    covs = np.asarray(covs, dtype=np.float64)
    mu = means[int(np.argmin(np.trace(covs, axis1=-2, axis2=-1)))]
    for it in range(max_iter + 1):
        A = parallel_transport(means, mu)
        Lam = np.linalg.inv(A @ covs @ np.swapaxes(A, -1, -2))
        u = log_at(mu, means)
        S = np.linalg.inv(Lam.sum(0))
        S = 0.5 * (S + S.T)
        delta = S @ np.einsum("pij,pj->i", Lam, u)
        if np.linalg.norm(delta) < tol or it == max_iter:
            break
        mu = _unit(exp_at(mu, delta))
    return mu, S


def product_batch(means, covs, tol=1e-12, max_iter=50):
    """Loop of :func:`product` over the leading axis."""
    out = [product(m, c, tol, max_iter) for m, c in zip(np.asarray(means), np.asarray(covs))]
    return np.array([o[0] for o in out]).reshape(-1, 4), np.array([o[1] for o in out]).reshape(-1, 3, 3)
