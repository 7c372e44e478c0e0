"""NumPy reference of :mod:`kinebridge.kernels.chunk_blend` (vectorised over joints; for tests and ratios)."""

from __future__ import annotations

import numpy as np


def braking_speed(d, a, h):
    d = np.maximum(d, 0.0)
    return np.where(d > 0.0, -a * h + np.sqrt(a * a * h * h + 2.0 * a * d), 0.0)


def sample_chunk(t, t0, dt, Q):
    """(q, qd) of the cubic Hermite interpolant with central-difference tangents, held outside."""
    H = Q.shape[0]
    s = (t - t0) / dt
    if H == 1 or s <= 0:
        return Q[0].copy(), np.zeros(Q.shape[1])
    if s >= H - 1:
        return Q[-1].copy(), np.zeros(Q.shape[1])
    M = np.gradient(Q, axis=0)  # central differences inside, one-sided at the ends (per sample)
    k = int(np.floor(s))
    u = s - k
    basis = np.array([2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2])
    dbasis = np.array([6 * u**2 - 6 * u, 3 * u**2 - 4 * u + 1, -6 * u**2 + 6 * u, 3 * u**2 - 2 * u])
    P = np.stack([Q[k], M[k], Q[k + 1], M[k + 1]])
    return basis @ P, dbasis @ P / dt


def blend_weight(tau):
    tau = min(max(tau, 0.0), 1.0)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5, 30 * tau**2 * (1 - tau) ** 2


def reference_at(t, new, old=None, t_s=0.0, blend_s=0.1):
    q, v = sample_chunk(t, *new)
    if old is None or t >= t_s + blend_s:
        return q, v
    qo, vo = sample_chunk(t, *old)
    w, dw = blend_weight((t - t_s) / blend_s)
    return (1 - w) * qo + w * q, (1 - w) * vo + w * v + dw / blend_s * (q - qo)


def limit_step(q, v, q_ref, v_ref, track, h, q_min, q_max, v_max, a_max):
    """Returns the new (q, v)."""
    if track:
        e = q_ref - v_ref * h - q
        u = np.minimum(np.abs(e) / h, braking_speed(np.abs(e), a_max, h))
        v_star = v_ref + np.where(e >= 0, u, -u)
    else:
        v_star = np.zeros_like(q)
    lo = np.maximum.reduce([v - a_max * h, -v_max, -braking_speed(q - q_min, a_max, h)])
    hi = np.minimum.reduce([v + a_max * h, v_max, braking_speed(q_max - q, a_max, h)])
    bad = lo > hi
    mid = 0.5 * (lo + hi)
    lo, hi = np.where(bad, mid, lo), np.where(bad, mid, hi)
    v_new = np.clip(v_star, lo, hi)
    return q + v_new * h, v_new
