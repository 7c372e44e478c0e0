"""Unit-quaternion kernels: maps, charts, parallel transport and Gaussian products on S^3.

Conventions (shared with :mod:`kinebridge.kernels.ref.quaternion`):

* Quaternions are **w-first** ``(w, x, y, z)`` float64 arrays of shape ``(..., 4)``; tangent vectors
  are 3-vectors. Hamilton product, ``to_matrix(q) v = vec(q (0, v) conj(q))`` (same as scipy).
* **Half-angle** maps as in Huang's KMP code: ``log(q) = atan2(|v|, w) v/|v|`` and
  ``exp(u) = (cos|u|, sin|u| u/|u|)``, so ``|log q| = theta/2`` and a rotation vector is ``2 log q``.
  The plain ``log`` does not fold ``q`` and ``-q``; every chart map below does (shortest path,
  tangent norm <= pi/2): the relative quaternion is replaced by its representative with ``w > 0``
  (at exactly ``w == 0``, the one whose first non-zero vector component is positive), so the
  charts are functions of the rotation alone.
* Huang's auxiliary-quaternion (global/right) chart: ``project(q, q_aux) = log(q conj(q_aux))``,
  ``unproject(zeta, q_aux) = exp(zeta) q_aux``. ``project`` folds each sample on its own (a function
  of the rotation); ``project_continuous`` folds a whole sequence once, so a trajectory passing 180
  degrees from ``q_aux`` keeps a continuous ``zeta`` (up to ``|zeta| < pi``).
* Riemannian body/left chart (riepybdlib): ``log_at(base, x) = log(conj(base) x)``,
  ``exp_at(base, u) = base exp(u)``. Covariances of ``product`` live in this chart at each mean.

Public functions validate their input with :mod:`kinebridge.kernels.checks` (``ValueError`` naming
the argument on bad input), renormalise quaternion inputs (accepted within 1e-6 of unit norm) unless
they only reorder or negate components, and call the ``numba.njit`` kernels, which take float64
C-contiguous arrays flattened to a batch axis.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from kinebridge.kernels import checks

__all__ = [
    "mul", "conj", "log", "exp", "to_matrix", "from_matrix", "from_xyzw", "to_xyzw",
    "project", "project_continuous", "unproject", "log_at", "exp_at", "parallel_transport", "right_jacobian",
    "make_continuous", "angular_velocity", "riemannian_mean", "product", "product_batch",
]

_LOG_EPS = 1e-12  # |v| below which log(q) is 0 (Huang's quat_log threshold)
_BIG = 1e150      # tangent components above which |u|^2 is computed from u scaled (no overflow)
_DBL_MAX = 1.7976931348623157e308

# ----------------------------------------------------------------------------------------------
# Scalar helpers (inlined by LLVM)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _qmul(aw, ax, ay, az, bw, bx, by, bz):
    # Hamilton product a*b = (a_w b_w - a_v.b_v, a_w b_v + b_w a_v + a_v x b_v)
    return (aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw)


@numba.njit(cache=True)
def _qlog(w, x, y, z):
    # log(q) = atan2(|v|, w) v/|v|  (half-angle; 0 when |v| < 1e-12)
    n = math.sqrt(x * x + y * y + z * z)
    if n < _LOG_EPS:
        return 0.0, 0.0, 0.0
    s = math.atan2(n, w) / n
    return s * x, s * y, s * z


@numba.njit(cache=True)
def _flip(w, x, y, z):
    # canonical representative of {q, -q}: w > 0, or w == 0 and first non-zero of (x, y, z) > 0
    if w != 0.0:
        return w < 0.0
    if x != 0.0:
        return x < 0.0
    if y != 0.0:
        return y < 0.0
    return z < 0.0


@numba.njit(cache=True)
def _canon(w, x, y, z):
    # representative of {q, -q} chosen by _flip
    if _flip(w, x, y, z):
        return -w, -x, -y, -z
    return w, x, y, z


@numba.njit(cache=True)
def _qlog_short(w, x, y, z):
    # shortest-path log under q == -q: log(+-q) with w >= 0, so |log| <= pi/2 (and log(-q) == log(q))
    w, x, y, z = _canon(w, x, y, z)
    return _qlog(w, x, y, z)


@numba.njit(cache=True)
def _sinc(n):
    # sin(n)/n, Taylor 1 - n^2/6 below 1e-8
    if n < 1e-8:
        return 1.0 - n * n / 6.0
    return math.sin(n) / n


@numba.njit(cache=True)
def _qexp(ux, uy, uz):
    # exp(u) = (cos|u|, sin|u| u/|u|). Above _BIG the squares would overflow (1e200^2 = inf, then
    # cos(inf) = NaN), so |u| and u/|u| come from u scaled by its largest component; cos and sin
    # reduce the angle exactly (libm); a norm beyond the largest double saturates to it.
    m = max(abs(ux), abs(uy), abs(uz))
    if m < _BIG:
        n = math.sqrt(ux * ux + uy * uy + uz * uz)
        s = _sinc(n)
        return math.cos(n), s * ux, s * uy, s * uz
    ax = ux / m
    ay = uy / m
    az = uz / m
    r = math.sqrt(ax * ax + ay * ay + az * az)     # in [1, sqrt(3)]
    n = min(m * r, _DBL_MAX)
    s = math.sin(n) / r
    return math.cos(n), s * ax, s * ay, s * az


@numba.njit(cache=True)
def _normalise4(w, x, y, z):
    # q / |q|
    n = math.sqrt(w * w + x * x + y * y + z * z)
    return w / n, x / n, y / n, z / n


@numba.njit(cache=True)
def _transport_s(rw, rx, ry, rz):
    # S^3 parallel transport in body charts, kmp.md 1.5: A = E^T Q(h')^T R_par Q(g) E, which reduces
    # to the rotation by -m about l = Log_g(h), m = |l|: A = cos m I + (1-cos m) l^ l^T - sin m [l^]x.
    # With r = (w, v) = conj(g) h' canonical (w = cos m >= 0, v = sin m l^) this is
    # A = w I + v v^T / (1 + w) - [v]x  (no trigonometry, exact identity at r = 1). Row-major 9-tuple.
    k = 1.0 / (1.0 + rw)
    return (rw + k * rx * rx, k * rx * ry + rz, k * rx * rz - ry,
            k * ry * rx - rz, rw + k * ry * ry, k * ry * rz + rx,
            k * rz * rx + ry, k * rz * ry - rx, rw + k * rz * rz)


@numba.njit(cache=True)
def _sandwich_s(a00, a01, a02, a10, a11, a12, a20, a21, a22, p00, p01, p02, p11, p12, p22):
    # A S A^T for symmetric S given by its upper triangle; returns the upper triangle
    b00 = a00 * p00 + a01 * p01 + a02 * p02
    b01 = a00 * p01 + a01 * p11 + a02 * p12
    b02 = a00 * p02 + a01 * p12 + a02 * p22
    b10 = a10 * p00 + a11 * p01 + a12 * p02
    b11 = a10 * p01 + a11 * p11 + a12 * p12
    b12 = a10 * p02 + a11 * p12 + a12 * p22
    b20 = a20 * p00 + a21 * p01 + a22 * p02
    b21 = a20 * p01 + a21 * p11 + a22 * p12
    b22 = a20 * p02 + a21 * p12 + a22 * p22
    return (b00 * a00 + b01 * a01 + b02 * a02, b00 * a10 + b01 * a11 + b02 * a12,
            b00 * a20 + b01 * a21 + b02 * a22, b10 * a10 + b11 * a11 + b12 * a12,
            b10 * a20 + b11 * a21 + b12 * a22, b20 * a20 + b21 * a21 + b22 * a22)


@numba.njit(cache=True)
def _chol_inv3_s(s00, s01, s02, s11, s12, s22):
    # S^-1 = L^-T L^-1 with S = L L^T (3x3 Cholesky on the upper triangle); ok = False if not PD
    if not s00 > 0.0:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    l00 = math.sqrt(s00)
    l10 = s01 / l00
    l20 = s02 / l00
    d1 = s11 - l10 * l10
    if not d1 > 0.0:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    l11 = math.sqrt(d1)
    l21 = (s12 - l20 * l10) / l11
    d2 = s22 - l20 * l20 - l21 * l21
    if not d2 > 0.0:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    l22 = math.sqrt(d2)
    # M = L^-1 (lower triangular), S^-1 = M^T M
    m00 = 1.0 / l00
    m11 = 1.0 / l11
    m22 = 1.0 / l22
    m10 = -l10 * m00 * m11
    m21 = -l21 * m11 * m22
    m20 = -(l20 * m00 + l21 * m10) * m22
    return (True, m00 * m00 + m10 * m10 + m20 * m20, m10 * m11 + m20 * m21, m20 * m22,
            m11 * m11 + m21 * m21, m21 * m22, m22 * m22)


@numba.njit(cache=True)
def _store_sym(out, i00, i01, i02, i11, i12, i22):
    # fill a symmetric 3x3 from its upper triangle
    out[0, 0] = i00
    out[0, 1] = i01
    out[0, 2] = i02
    out[1, 0] = i01
    out[1, 1] = i11
    out[1, 2] = i12
    out[2, 0] = i02
    out[2, 1] = i12
    out[2, 2] = i22


@numba.njit(cache=True)
def _chol_inv3(S, out):
    # S^-1 by 3x3 Cholesky (lower triangle of S is read); returns False if S is not numerically PD
    ok, i00, i01, i02, i11, i12, i22 = _chol_inv3_s(S[0, 0], S[1, 0], S[2, 0], S[1, 1], S[2, 1], S[2, 2])
    if ok:
        _store_sym(out, i00, i01, i02, i11, i12, i22)
    return ok


@numba.njit(cache=True)
def _inv_spd3(S, out, work):
    # Cholesky inverse with escalating jitter eps*tr(S)/3*I (1e-14 .. 1e-6) if S is borderline PD;
    # returns 0 when no jitter was needed, 1 when it was, 2 when even jitter failed.
    if _chol_inv3(S, out):
        return 0
    scale = (abs(S[0, 0]) + abs(S[1, 1]) + abs(S[2, 2])) / 3.0 + 1e-300
    eps = 1e-14
    while eps <= 1e-6:
        for i in range(3):
            for j in range(3):
                work[i, j] = 0.5 * (S[i, j] + S[j, i])
            work[i, i] += eps * scale
        if _chol_inv3(work, out):
            return 1
        eps *= 10.0
    return 2


# ----------------------------------------------------------------------------------------------
# Batched kernels
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _normalise_rows(q):
    # q_i / |q_i| row by row
    out = np.empty_like(q)
    for i in range(q.shape[0]):
        w, x, y, z = _normalise4(q[i, 0], q[i, 1], q[i, 2], q[i, 3])
        out[i, 0] = w
        out[i, 1] = x
        out[i, 2] = y
        out[i, 3] = z
    return out


@numba.njit(cache=True)
def _mul(a, b):
    # c = a (x) b, Hamilton product row by row
    n = a.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        w, x, y, z = _qmul(a[i, 0], a[i, 1], a[i, 2], a[i, 3], b[i, 0], b[i, 1], b[i, 2], b[i, 3])
        out[i, 0] = w
        out[i, 1] = x
        out[i, 2] = y
        out[i, 3] = z
    return out


@numba.njit(cache=True)
def _conj(q):
    # conj(q) = (w, -v)
    n = q.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        out[i, 0] = q[i, 0]
        out[i, 1] = -q[i, 1]
        out[i, 2] = -q[i, 2]
        out[i, 3] = -q[i, 3]
    return out


@numba.njit(cache=True)
def _log(q):
    # log(q) = atan2(|v|, w) v/|v| (no hemisphere folding)
    n = q.shape[0]
    out = np.empty((n, 3))
    for i in range(n):
        x, y, z = _qlog(q[i, 0], q[i, 1], q[i, 2], q[i, 3])
        out[i, 0] = x
        out[i, 1] = y
        out[i, 2] = z
    return out


@numba.njit(cache=True)
def _exp(u):
    # exp(u) = (cos|u|, sin|u| u/|u|)
    n = u.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        w, x, y, z = _qexp(u[i, 0], u[i, 1], u[i, 2])
        out[i, 0] = w
        out[i, 1] = x
        out[i, 2] = y
        out[i, 3] = z
    return out


@numba.njit(cache=True)
def _to_matrix(q):
    # R(q) v = vec(q (0, v) conj(q)): R = I + 2w[v]x + 2[v]x^2 written out componentwise
    n = q.shape[0]
    out = np.empty((n, 3, 3))
    for i in range(n):
        w = q[i, 0]
        x = q[i, 1]
        y = q[i, 2]
        z = q[i, 3]
        xx = x * x
        yy = y * y
        zz = z * z
        out[i, 0, 0] = 1.0 - 2.0 * (yy + zz)
        out[i, 0, 1] = 2.0 * (x * y - w * z)
        out[i, 0, 2] = 2.0 * (x * z + w * y)
        out[i, 1, 0] = 2.0 * (x * y + w * z)
        out[i, 1, 1] = 1.0 - 2.0 * (xx + zz)
        out[i, 1, 2] = 2.0 * (y * z - w * x)
        out[i, 2, 0] = 2.0 * (x * z - w * y)
        out[i, 2, 1] = 2.0 * (y * z + w * x)
        out[i, 2, 2] = 1.0 - 2.0 * (xx + yy)
    return out


@numba.njit(cache=True)
def _from_matrix(R):
    # Shepperd (1978): pick the largest of tr R, R00, R11, R22 as pivot; normalise; w >= 0
    n = R.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        r00 = R[i, 0, 0]
        r11 = R[i, 1, 1]
        r22 = R[i, 2, 2]
        tr = r00 + r11 + r22
        k = 0
        best = tr
        if r00 > best:
            k = 1
            best = r00
        if r11 > best:
            k = 2
            best = r11
        if r22 > best:
            k = 3
        if k == 0:
            s = 2.0 * math.sqrt(1.0 + tr)
            w = 0.25 * s
            x = (R[i, 2, 1] - R[i, 1, 2]) / s
            y = (R[i, 0, 2] - R[i, 2, 0]) / s
            z = (R[i, 1, 0] - R[i, 0, 1]) / s
        elif k == 1:
            s = 2.0 * math.sqrt(1.0 + r00 - r11 - r22)
            w = (R[i, 2, 1] - R[i, 1, 2]) / s
            x = 0.25 * s
            y = (R[i, 0, 1] + R[i, 1, 0]) / s
            z = (R[i, 0, 2] + R[i, 2, 0]) / s
        elif k == 2:
            s = 2.0 * math.sqrt(1.0 + r11 - r00 - r22)
            w = (R[i, 0, 2] - R[i, 2, 0]) / s
            x = (R[i, 0, 1] + R[i, 1, 0]) / s
            y = 0.25 * s
            z = (R[i, 1, 2] + R[i, 2, 1]) / s
        else:
            s = 2.0 * math.sqrt(1.0 + r22 - r00 - r11)
            w = (R[i, 1, 0] - R[i, 0, 1]) / s
            x = (R[i, 0, 2] + R[i, 2, 0]) / s
            y = (R[i, 1, 2] + R[i, 2, 1]) / s
            z = 0.25 * s
        w, x, y, z = _normalise4(w, x, y, z)
        if w < 0.0:
            w, x, y, z = -w, -x, -y, -z
        out[i, 0] = w
        out[i, 1] = x
        out[i, 2] = y
        out[i, 3] = z
    return out


@numba.njit(cache=True)
def _reorder(q, i0, i1, i2, i3):
    # out[:, k] = q[:, i_k]: (w, x, y, z) <-> (x, y, z, w)
    n = q.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        out[i, 0] = q[i, i0]
        out[i, 1] = q[i, i1]
        out[i, 2] = q[i, i2]
        out[i, 3] = q[i, i3]
    return out


@numba.njit(cache=True)
def _project(q, qa):
    # zeta = log(q (x) conj(q_aux)), shortest path (Huang's auxiliary-quaternion chart)
    n = q.shape[0]
    out = np.empty((n, 3))
    for i in range(n):
        w, x, y, z = _qmul(q[i, 0], q[i, 1], q[i, 2], q[i, 3],
                           qa[i, 0], -qa[i, 1], -qa[i, 2], -qa[i, 3])
        a, b, c = _qlog_short(w, x, y, z)
        out[i, 0] = a
        out[i, 1] = b
        out[i, 2] = c
    return out


@numba.njit(cache=True)
def _project_continuous(q, qa):
    # zeta_t = log(r_t), r_t = +-(q_t (x) conj(q_aux_t)): r_0 canonical (w >= 0), then each r_t in
    # the hemisphere of r_{t-1}; the plain log, so zeta passes |zeta| = pi/2 continuously
    n = q.shape[0]
    out = np.empty((n, 3))
    pw = px = py = pz = 0.0
    for i in range(n):
        w, x, y, z = _qmul(q[i, 0], q[i, 1], q[i, 2], q[i, 3],
                           qa[i, 0], -qa[i, 1], -qa[i, 2], -qa[i, 3])
        if i == 0:
            w, x, y, z = _canon(w, x, y, z)
        elif pw * w + px * x + py * y + pz * z < 0.0:
            w, x, y, z = -w, -x, -y, -z
        pw, px, py, pz = w, x, y, z
        a, b, c = _qlog(w, x, y, z)
        out[i, 0] = a
        out[i, 1] = b
        out[i, 2] = c
    return out


@numba.njit(cache=True)
def _unproject(zeta, qa):
    # q = exp(zeta) (x) q_aux
    n = zeta.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        ew, ex, ey, ez = _qexp(zeta[i, 0], zeta[i, 1], zeta[i, 2])
        w, x, y, z = _qmul(ew, ex, ey, ez, qa[i, 0], qa[i, 1], qa[i, 2], qa[i, 3])
        out[i, 0] = w
        out[i, 1] = x
        out[i, 2] = y
        out[i, 3] = z
    return out


@numba.njit(cache=True)
def _log_at(base, x):
    # Log_base(x) = log(conj(base) (x) x), shortest path (riepybdlib body chart)
    n = base.shape[0]
    out = np.empty((n, 3))
    for i in range(n):
        w, a, b, c = _qmul(base[i, 0], -base[i, 1], -base[i, 2], -base[i, 3],
                           x[i, 0], x[i, 1], x[i, 2], x[i, 3])
        ux, uy, uz = _qlog_short(w, a, b, c)
        out[i, 0] = ux
        out[i, 1] = uy
        out[i, 2] = uz
    return out


@numba.njit(cache=True)
def _exp_at(base, u):
    # Exp_base(u) = base (x) exp(u)
    n = base.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        ew, ex, ey, ez = _qexp(u[i, 0], u[i, 1], u[i, 2])
        w, x, y, z = _qmul(base[i, 0], base[i, 1], base[i, 2], base[i, 3], ew, ex, ey, ez)
        out[i, 0] = w
        out[i, 1] = x
        out[i, 2] = y
        out[i, 3] = z
    return out


@numba.njit(cache=True)
def _parallel_transport(g, h):
    # A_{g->h} = E^T Q(h')^T R_par Q(g) E (kmp.md 1.5), h' = h in g's hemisphere (see _transport_s)
    n = g.shape[0]
    out = np.empty((n, 3, 3))
    for i in range(n):
        w, a, b, c = _canon(*_qmul(g[i, 0], -g[i, 1], -g[i, 2], -g[i, 3],
                                   h[i, 0], h[i, 1], h[i, 2], h[i, 3]))
        A = _transport_s(w, a, b, c)
        for j in range(9):
            out[i, j // 3, j % 3] = A[j]
    return out


@numba.njit(cache=True)
def _right_jacobian(zeta):
    # J_r(phi) = I - (1-cos t)/t^2 [phi]x + (t - sin t)/t^3 [phi]x^2, phi = 2 zeta, t = |phi|
    n = zeta.shape[0]
    out = np.empty((n, 3, 3))
    for i in range(n):
        m = max(abs(zeta[i, 0]), abs(zeta[i, 1]), abs(zeta[i, 2]))
        if m >= _BIG:
            # large angles in terms of the unit axis e and t (no overflow):
            # J = I - (1-cos t)/t [e]x + (1 - sin t/t)(e e^T - I)
            ex = zeta[i, 0] / m
            ey = zeta[i, 1] / m
            ez = zeta[i, 2] / m
            r = math.sqrt(ex * ex + ey * ey + ez * ez)
            ex /= r
            ey /= r
            ez /= r
            t = min(2.0 * m * r, _DBL_MAX)
            a = (1.0 - math.cos(t)) / t
            b = 1.0 - math.sin(t) / t
            out[i, 0, 0] = 1.0 + b * (ex * ex - 1.0)
            out[i, 1, 1] = 1.0 + b * (ey * ey - 1.0)
            out[i, 2, 2] = 1.0 + b * (ez * ez - 1.0)
            out[i, 0, 1] = a * ez + b * ex * ey
            out[i, 1, 0] = -a * ez + b * ex * ey
            out[i, 0, 2] = -a * ey + b * ex * ez
            out[i, 2, 0] = a * ey + b * ex * ez
            out[i, 1, 2] = a * ex + b * ey * ez
            out[i, 2, 1] = -a * ex + b * ey * ez
            continue
        px = 2.0 * zeta[i, 0]
        py = 2.0 * zeta[i, 1]
        pz = 2.0 * zeta[i, 2]
        t2 = px * px + py * py + pz * pz
        t = math.sqrt(t2)
        h = _sinc(0.5 * t)
        a = 0.5 * h * h  # (1 - cos t)/t^2
        if t < 1e-3:
            b = 1.0 / 6.0 - t2 / 120.0 + t2 * t2 / 5040.0  # (t - sin t)/t^3 series
        else:
            b = (t - math.sin(t)) / (t2 * t)
        # [phi]x^2 = phi phi^T - t^2 I
        out[i, 0, 0] = 1.0 + b * (px * px - t2)
        out[i, 1, 1] = 1.0 + b * (py * py - t2)
        out[i, 2, 2] = 1.0 + b * (pz * pz - t2)
        out[i, 0, 1] = a * pz + b * px * py
        out[i, 1, 0] = -a * pz + b * px * py
        out[i, 0, 2] = -a * py + b * px * pz
        out[i, 2, 0] = a * py + b * px * pz
        out[i, 1, 2] = a * px + b * py * pz
        out[i, 2, 1] = -a * px + b * py * pz
    return out


@numba.njit(cache=True)
def _make_continuous(q):
    # q_t <- -q_t whenever <q_{t-1}, q_t> < 0 (after the earlier flips), q_0 kept
    n = q.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        s = 1.0
        if i > 0:
            d = (out[i - 1, 0] * q[i, 0] + out[i - 1, 1] * q[i, 1]
                 + out[i - 1, 2] * q[i, 2] + out[i - 1, 3] * q[i, 3])
            if d < 0.0:
                s = -1.0
        for k in range(4):
            out[i, k] = s * q[i, k]
    return out


@numba.njit(cache=True)
def _angular_velocity(q, dt):
    # omega = 2 vec(qdot (x) conj(q)), qdot central inside / one-sided at the ends (np.gradient)
    n = q.shape[0]
    out = np.empty((n, 3))
    for i in range(n):
        if i == 0:
            lo, hi, d = 0, 1, dt
        elif i == n - 1:
            lo, hi, d = n - 2, n - 1, dt
        else:
            lo, hi, d = i - 1, i + 1, 2.0 * dt
        dw = (q[hi, 0] - q[lo, 0]) / d
        dx = (q[hi, 1] - q[lo, 1]) / d
        dy = (q[hi, 2] - q[lo, 2]) / d
        dz = (q[hi, 3] - q[lo, 3]) / d
        _, x, y, z = _qmul(dw, dx, dy, dz, q[i, 0], -q[i, 1], -q[i, 2], -q[i, 3])
        out[i, 0] = 2.0 * x
        out[i, 1] = 2.0 * y
        out[i, 2] = 2.0 * z
    return out


@numba.njit(cache=True)
def _riemannian_mean(q, w, tol, max_iter):
    # Gauss-Newton Karcher mean: mu <- Exp_mu(sum_n w_n Log_mu(q_n)), w normalised to sum 1
    n = q.shape[0]
    k = 0
    for i in range(1, n):
        if w[i] > w[k]:
            k = i
    mw, mx, my, mz = q[k, 0], q[k, 1], q[k, 2], q[k, 3]
    for _ in range(max_iter):
        sx = 0.0
        sy = 0.0
        sz = 0.0
        for i in range(n):
            rw, rx, ry, rz = _qmul(mw, -mx, -my, -mz, q[i, 0], q[i, 1], q[i, 2], q[i, 3])
            ux, uy, uz = _qlog_short(rw, rx, ry, rz)
            sx += w[i] * ux
            sy += w[i] * uy
            sz += w[i] * uz
        ew, ex, ey, ez = _qexp(sx, sy, sz)
        mw, mx, my, mz = _normalise4(*_qmul(mw, mx, my, mz, ew, ex, ey, ez))
        if math.sqrt(sx * sx + sy * sy + sz * sz) < tol:
            break
    out = np.empty(4)
    out[0] = mw
    out[1] = mx
    out[2] = my
    out[3] = mz
    return out


@numba.njit(cache=True)
def _product_into(means, covs, tol, max_iter, mu_out, cov_out, prec, work):
    # Product of Gaussians on S^3 (VL-MP eq. 6, riepybdlib Gaussian.__mul__):
    # Lam_p = A_p Sigma_p^-1 A_p^T, Sigma = (sum Lam_p)^-1, Delta = Sigma sum Lam_p Log_mu(mu_p),
    # mu <- Exp_mu(Delta); Sigma is returned at the returned mu. Returns a jitter/failure flag.
    P = means.shape[0]
    flag = 0
    k = 0
    best = covs[0, 0, 0] + covs[0, 1, 1] + covs[0, 2, 2]
    for p in range(P):
        flag = max(flag, _inv_spd3(covs[p], prec[p], work))
        tr = covs[p, 0, 0] + covs[p, 1, 1] + covs[p, 2, 2]
        if tr < best:
            best = tr
            k = p
    mw, mx, my, mz = means[k, 0], means[k, 1], means[k, 2], means[k, 3]
    for it in range(max_iter + 1):
        l00 = l01 = l02 = l11 = l12 = l22 = 0.0  # sum_p Lam_p (upper triangle)
        g0 = g1 = g2 = 0.0  # sum_p Lam_p u_p
        for p in range(P):
            # A_p = transport(mu_p -> mu) from r = conj(mu_p) mu; u_p = Log_mu(mu_p) = log(conj(r)),
            # except exactly on the cut locus (w = 0), where the canonical branch is recomputed
            qw, qx, qy, qz = means[p, 0], means[p, 1], means[p, 2], means[p, 3]
            rw, rx, ry, rz = _canon(*_qmul(qw, -qx, -qy, -qz, mw, mx, my, mz))
            if rw != 0.0:
                ux, uy, uz = _qlog(rw, -rx, -ry, -rz)
            else:
                ux, uy, uz = _qlog_short(*_qmul(mw, -mx, -my, -mz, qw, qx, qy, qz))
            a00, a01, a02, a10, a11, a12, a20, a21, a22 = _transport_s(rw, rx, ry, rz)
            t00, t01, t02, t11, t12, t22 = _sandwich_s(
                a00, a01, a02, a10, a11, a12, a20, a21, a22,
                prec[p, 0, 0], prec[p, 0, 1], prec[p, 0, 2], prec[p, 1, 1], prec[p, 1, 2], prec[p, 2, 2])
            l00 += t00
            l01 += t01
            l02 += t02
            l11 += t11
            l12 += t12
            l22 += t22
            g0 += t00 * ux + t01 * uy + t02 * uz
            g1 += t01 * ux + t11 * uy + t12 * uz
            g2 += t02 * ux + t12 * uy + t22 * uz
        ok, c00, c01, c02, c11, c12, c22 = _chol_inv3_s(l00, l01, l02, l11, l12, l22)
        if ok:
            _store_sym(cov_out, c00, c01, c02, c11, c12, c22)
        else:  # numerically singular sum of precisions: jittered inverse
            _store_sym(work, l00, l01, l02, l11, l12, l22)
            flag = max(flag, _inv_spd3(work.copy(), cov_out, work))
            c00, c01, c02 = cov_out[0, 0], cov_out[0, 1], cov_out[0, 2]
            c11, c12, c22 = cov_out[1, 1], cov_out[1, 2], cov_out[2, 2]
        dx = c00 * g0 + c01 * g1 + c02 * g2
        dy = c01 * g0 + c11 * g1 + c12 * g2
        dz = c02 * g0 + c12 * g1 + c22 * g2
        if math.sqrt(dx * dx + dy * dy + dz * dz) < tol or it == max_iter:
            break
        ew, ex, ey, ez = _qexp(dx, dy, dz)
        mw, mx, my, mz = _normalise4(*_qmul(mw, mx, my, mz, ew, ex, ey, ez))
    mu_out[0] = mw
    mu_out[1] = mx
    mu_out[2] = my
    mu_out[3] = mz
    return flag


@numba.njit(cache=True)
def _product_batch(means, covs, tol, max_iter):
    # eq. (6) product of Gaussians on S^3 for each of T time steps
    T = means.shape[0]
    P = means.shape[1]
    mu = np.empty((T, 4))
    cov = np.empty((T, 3, 3))
    flags = np.zeros(T, dtype=np.int64)
    prec = np.empty((P, 3, 3))
    work = np.empty((3, 3))
    for t in range(T):
        flags[t] = _product_into(means[t], covs[t], tol, max_iter, mu[t], cov[t], prec, work)
    return mu, cov, flags


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------


def _kernel_arg(x: np.ndarray, k: int) -> np.ndarray:
    """Flatten to ``(-1, k)`` float64, C-contiguous and writeable (one numba specialisation)."""
    out = np.ascontiguousarray(np.reshape(x, (-1, k)), dtype=np.float64)
    if not out.flags.writeable:
        out = out.copy()
    return out


def _quats(q, name: str) -> np.ndarray:
    """Validated unit quaternions ``(..., 4)`` (not renormalised)."""
    return checks.unit_quaternions(q, name)


def _unit(q, name: str) -> np.ndarray:
    """Validated unit quaternions ``(..., 4)``, renormalised to unit norm."""
    arr = checks.unit_quaternions(q, name)
    return _normalise_rows(_kernel_arg(arr, 4)).reshape(arr.shape)


def _vectors(u, name: str) -> np.ndarray:
    arr = checks.finite_array(u, name)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected tangent vectors of shape (..., 3), got shape {arr.shape}")
    return arr


def _batch(a: np.ndarray, ka: int, name_a: str, b: np.ndarray, kb: int, name_b: str):
    """Broadcast the leading (batch) axes of ``a`` and ``b``; return flat kernel args and batch shape."""
    try:
        batch = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except ValueError:
        raise ValueError(f"{name_a}, {name_b}: batch shapes {a.shape[:-1]} and {b.shape[:-1]} "
                         "do not broadcast") from None
    if a.shape[:-1] != batch:
        a = np.broadcast_to(a, batch + (ka,))
    if b.shape[:-1] != batch:
        b = np.broadcast_to(b, batch + (kb,))
    return _kernel_arg(a, ka), _kernel_arg(b, kb), batch


def _covariances(covs, name: str, lead: tuple) -> np.ndarray:
    """Symmetric PD 3x3 stack of leading shape ``lead``; vectorised fast path, checks' messages on failure."""
    what = "(" + ", ".join(str(n) for n in lead) + ", 3, 3) covariances"
    arr = checks.finite_array(covs, name, shape=lead + (3, 3), what=what)
    flat = arr.reshape(-1, 3, 3)
    if flat.shape[0] == 0:
        return arr
    asym = np.abs(flat - flat.transpose(0, 2, 1)).max(axis=(1, 2))
    scale = np.abs(flat).max(axis=(1, 2)) + 1e-300
    ok = not (asym > 1e-8 * scale).any()
    if ok:
        try:
            np.linalg.cholesky(flat)
        except np.linalg.LinAlgError:
            ok = False
    if not ok:  # let checks find the offending matrix and word the error
        if len(lead) == 1:
            checks.covariance_stack(arr, name, 3)
        else:
            for t in range(arr.shape[0]):
                checks.covariance_stack(arr[t], f"{name}[{t}]", 3)
    return arr


def _iter_args(tol, max_iter) -> tuple[float, int]:
    return checks.positive(tol, "tol"), checks.count(max_iter, "max_iter", minimum=1)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def mul(a, b) -> np.ndarray:
    """Hamilton product ``a ⊗ b`` of w-first unit quaternions.

    ``a`` and ``b`` have shape ``(..., 4)`` with broadcastable leading axes; both are validated as
    unit quaternions and renormalised. Returns ``(..., 4)``; ``to_matrix(mul(a, b)) ==
    to_matrix(a) @ to_matrix(b)`` (apply ``b`` first, then ``a``).
    """
    a = _unit(a, "a")
    b = _unit(b, "b")
    fa, fb, batch = _batch(a, 4, "a", b, 4, "b")
    return _mul(fa, fb).reshape(batch + (4,))


def conj(q) -> np.ndarray:
    """Conjugate ``(w, -x, -y, -z)`` of unit quaternions ``q`` of shape ``(..., 4)``.

    For unit quaternions this is the inverse rotation. ``q`` is validated as unit but returned
    with exactly negated vector part (no renormalisation).
    """
    q = _quats(q, "q")
    return _conj(_kernel_arg(q, 4)).reshape(q.shape)


def log(q) -> np.ndarray:
    """Half-angle quaternion logarithm ``atan2(|v|, w) v/|v|`` of ``q`` ``(..., 4)``, giving ``(..., 3)``.

    Huang's convention: ``|log q| = theta/2`` (a rotation vector is ``2 * log(q)``), 0 when
    ``|v| < 1e-12``. This plain log does **not** fold ``q`` and ``-q`` (``|log q|`` can reach pi);
    use :func:`project` or :func:`log_at` for shortest-path charts.
    """
    q = _unit(q, "q")
    return _log(_kernel_arg(q, 4)).reshape(q.shape[:-1] + (3,))


def exp(u) -> np.ndarray:
    """Half-angle quaternion exponential ``(cos|u|, sin|u| u/|u|)`` of tangent vectors ``u`` ``(..., 3)``.

    Inverse of :func:`log` up to sign; returns unit quaternions ``(..., 4)``; ``exp(u)`` rotates by
    ``2|u|`` about ``u/|u|``. Stable at ``u = 0`` (sinc series) and for any finite ``u``: exp is
    periodic in ``|u|`` (period 2π), so huge vectors give the unit quaternion of their axis and angle
    (the norm is computed without overflow, cos/sin reduce the angle exactly; a norm beyond the
    largest double saturates to it), never NaN.
    """
    u = _vectors(u, "u")
    return _exp(_kernel_arg(u, 3)).reshape(u.shape[:-1] + (4,))


def to_matrix(q) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of unit quaternions ``q`` ``(..., 4)``.

    Active convention, ``to_matrix(q) @ v == vec(q ⊗ (0, v) ⊗ conj(q))``, identical to scipy's
    ``Rotation.from_quat(to_xyzw(q)).as_matrix()``; ``q`` and ``-q`` give the same matrix.
    """
    q = _unit(q, "q")
    return _to_matrix(_kernel_arg(q, 4)).reshape(q.shape[:-1] + (3, 3))


def from_matrix(R) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` with ``w >= 0`` from rotation matrices ``R`` ``(..., 3, 3)``.

    Uses Shepperd's method (pivot on the largest of the trace and the diagonal, so it is accurate
    for every angle including 180 degrees). ``R`` must be a proper rotation: ``|R^T R - I| <= 1e-6``
    and ``det R > 0``, else ``ValueError`` naming ``R``.
    """
    arr = checks.finite_array(R, "R")
    if arr.ndim < 2 or arr.shape[-2:] != (3, 3):
        raise ValueError(f"R: expected rotation matrices of shape (..., 3, 3), got shape {arr.shape}")
    flat = _kernel_arg(arr, 9).reshape(-1, 3, 3)
    if flat.shape[0]:
        err = np.abs(np.einsum("nki,nkj->nij", flat, flat) - np.eye(3)).max(axis=(1, 2))
        det = np.linalg.det(flat)
        bad = np.flatnonzero((err > 1e-6) | (det <= 0.0))
        if bad.size:
            idx = [int(i) for i in np.unravel_index(int(bad[0]), arr.shape[:-2])] if arr.ndim > 2 else ""
            raise ValueError(f"R{idx}: not a rotation matrix (max |R^T R - I| = {err[bad[0]]:.3g}, "
                             f"det = {det[bad[0]]:.6g}); expected orthonormal with det +1")
    return _from_matrix(flat).reshape(arr.shape[:-2] + (4,))


def from_xyzw(q) -> np.ndarray:
    """Reorder scipy-style ``(x, y, z, w)`` unit quaternions ``(..., 4)`` to w-first ``(w, x, y, z)``.

    Use with ``scipy.spatial.transform.Rotation.as_quat()``; the input is validated as unit
    quaternions and otherwise copied unchanged.
    """
    q = _quats(q, "q")
    return _reorder(_kernel_arg(q, 4), 3, 0, 1, 2).reshape(q.shape)


def to_xyzw(q) -> np.ndarray:
    """Reorder w-first ``(w, x, y, z)`` unit quaternions ``(..., 4)`` to scipy's ``(x, y, z, w)``.

    Use with ``scipy.spatial.transform.Rotation.from_quat``; values are copied unchanged.
    """
    q = _quats(q, "q")
    return _reorder(_kernel_arg(q, 4), 1, 2, 3, 0).reshape(q.shape)


def project(q, q_aux) -> np.ndarray:
    """Huang's auxiliary-quaternion chart: ``zeta = log(q ⊗ conj(q_aux))`` on the shortest path, ``(..., 3)``.

    ``q`` and ``q_aux`` are ``(..., 4)`` with broadcastable leading axes (typically a ``(T, 4)``
    trajectory and one ``(4,)`` auxiliary quaternion). The relative quaternion is folded to
    ``w >= 0``, so ``project(-q, q_aux) == project(q, q_aux)`` and ``|zeta| <= pi/2``. Being a
    function of each rotation alone, it is discontinuous where a trajectory's rotation relative to
    ``q_aux`` passes 180 degrees (``make_continuous`` cannot help: the fold undoes it); project
    trajectories with :func:`project_continuous`.
    """
    q = _unit(q, "q")
    qa = _unit(q_aux, "q_aux")
    fq, fa, batch = _batch(q, 4, "q", qa, 4, "q_aux")
    return _project(fq, fa).reshape(batch + (3,))


def project_continuous(q, q_aux) -> np.ndarray:
    """Huang's chart along a quaternion *sequence*: ``zeta (T, 3)`` continuous in t.

    :func:`project` folds every relative quaternion ``q_t ⊗ conj(q_aux)`` to ``w >= 0`` on its own, so
    when the rotation relative to ``q_aux`` passes 180 degrees (``|zeta| = pi/2``) ``zeta`` jumps to
    the antipodal chart point (e.g. 1.5 → −1.54). Here the relative quaternions of the ``(T, 4)``
    sequence ``q`` are given one consistent sign instead: the first is folded to ``w >= 0`` and every
    later one is taken in the hemisphere of its predecessor (as :func:`make_continuous`, so ``q`` may
    contain sign flips), and the plain log is used. ``zeta`` is then continuous while the relative
    rotation stays below 360 degrees (``|zeta| < pi``), ``zeta[0] == project(q[0], q_aux)``, and
    ``unproject(zeta, q_aux) == ±q`` sample by sample. ``q_aux`` is ``(4,)`` or ``(T, 4)``. Use this
    to build a KMP/GMR reference from a trajectory (LFE-KMP does).
    """
    q = _unit(q, "q")
    if q.ndim != 2:
        raise ValueError(f"q: expected a (T, 4) quaternion sequence, got shape {q.shape}")
    qa = _unit(q_aux, "q_aux")
    if qa.shape not in ((4,), q.shape):
        raise ValueError(f"q_aux: expected one (4,) auxiliary quaternion or one per sample {q.shape}, "
                         f"got shape {qa.shape}")
    fq, fa, batch = _batch(q, 4, "q", qa, 4, "q_aux")
    return _project_continuous(fq, fa).reshape(batch + (3,))


def unproject(zeta, q_aux) -> np.ndarray:
    """Inverse of :func:`project`: ``q = exp(zeta) ⊗ q_aux``, unit quaternions ``(..., 4)``.

    ``zeta`` is ``(..., 3)`` in Huang's half-angle chart, ``q_aux`` ``(..., 4)``; leading axes
    broadcast. ``unproject(project(q, qa), qa) == ±q``.
    """
    zeta = _vectors(zeta, "zeta")
    qa = _unit(q_aux, "q_aux")
    fz, fa, batch = _batch(zeta, 3, "zeta", qa, 4, "q_aux")
    return _unproject(fz, fa).reshape(batch + (4,))


def log_at(base, x) -> np.ndarray:
    """Riemannian log in the body chart: ``Log_base(x) = log(conj(base) ⊗ x)``, shortest path, ``(..., 3)``.

    ``base`` and ``x`` are ``(..., 4)`` with broadcastable leading axes. The relative quaternion is
    folded to ``w >= 0``, so the result is the same for ``±x`` and ``±base`` and ``|Log| <= pi/2``.
    """
    b = _unit(base, "base")
    x = _unit(x, "x")
    fb, fx, batch = _batch(b, 4, "base", x, 4, "x")
    return _log_at(fb, fx).reshape(batch + (3,))


def exp_at(base, u) -> np.ndarray:
    """Riemannian exp in the body chart: ``Exp_base(u) = base ⊗ exp(u)``, unit quaternions ``(..., 4)``.

    ``base`` is ``(..., 4)``, ``u`` is ``(..., 3)``; leading axes broadcast. The result lies in the
    hemisphere of ``base`` whenever ``|u| < pi/2``; ``exp_at(b, log_at(b, x)) == ±x``.
    """
    b = _unit(base, "base")
    u = _vectors(u, "u")
    fb, fu, batch = _batch(b, 4, "base", u, 3, "u")
    return _exp_at(fb, fu).reshape(batch + (4,))


def parallel_transport(g, h) -> np.ndarray:
    """Parallel-transport matrices ``A (..., 3, 3)`` along the S^3 geodesic from ``g`` to ``h``.

    Maps body-chart tangent vectors at ``g`` to body-chart tangent vectors at ``h``: ``u_h = A u_g``
    (pbdlib ``demo_Riemannian_S3`` formula, reduced to the rotation by ``-|l|`` about
    ``l = log_at(g, h)``). Transports towards the representative of ``h`` in ``g``'s hemisphere, so
    it is the same for ``±h``; ``A`` is orthogonal, ``A(g, g) = I``,
    ``A(g, h) @ log_at(g, h) == -log_at(h, g)`` and ``A(h, g) @ A(g, h) == I`` except exactly on the
    cut locus ``g . h == 0``, where the two geodesics are equally short and the canonical branch
    choice keeps sign invariance instead. Covariances transport as ``A S A^T``.
    """
    g = _unit(g, "g")
    h = _unit(h, "h")
    fg, fh, batch = _batch(g, 4, "g", h, 4, "h")
    return _parallel_transport(fg, fh).reshape(batch + (3, 3))


def right_jacobian(zeta) -> np.ndarray:
    """Right Jacobian ``J (..., 3, 3)`` of the half-angle exp: ``exp(zeta + d) ≈ exp(zeta) ⊗ exp(J d)``.

    Equals the SO(3) right Jacobian at the rotation vector ``2 * zeta``. Use it to move a
    covariance from Huang's chart to the body chart at the mean ``q = exp(zeta) ⊗ q_aux``:
    ``S_body = M J S J^T M^T`` with ``M = to_matrix(q_aux).T``.
    """
    z = _vectors(zeta, "zeta")
    return _right_jacobian(_kernel_arg(z, 3)).reshape(z.shape[:-1] + (3, 3))


def make_continuous(q) -> np.ndarray:
    """Flip signs in a ``(T, 4)`` quaternion sequence so consecutive dot products are ``>= 0``.

    The first sample is kept; every later sample is replaced by ``±q_t`` (same rotation), chosen
    against the already-corrected previous sample (kept as given when that dot product is exactly
    0). Values are otherwise unchanged. Run this on raw
    sensor or dataset quaternions before :func:`angular_velocity` or :func:`project`.
    """
    arr = _quats(q, "q")
    if arr.ndim != 2:
        raise ValueError(f"q: expected a (T, 4) quaternion sequence, got shape {arr.shape}")
    return _make_continuous(_kernel_arg(arr, 4))


def angular_velocity(q, dt) -> np.ndarray:
    """World-frame angular velocity ``(T, 3)`` of a sampled sign-continuous quaternion sequence ``q (T, 4)``.

    ``omega = 2 vec(q̇ ⊗ conj(q))`` with ``q̇`` from ``np.gradient``-style differences (central
    inside, one-sided at both ends) at the fixed sample period ``dt`` (s). Needs ``T >= 2`` and
    no sign flips between samples (see :func:`make_continuous`).
    """
    arr = checks.continuous_quaternions(q, "q")
    dt = checks.positive(dt, "dt")
    if arr.shape[0] < 2:
        raise ValueError(f"q: need at least 2 samples to differentiate, got shape {arr.shape}")
    qn = _normalise_rows(_kernel_arg(arr, 4))
    return _angular_velocity(qn, dt)


def riemannian_mean(q, weights=None, tol: float = 1e-12, max_iter: int = 50) -> np.ndarray:
    """Weighted Karcher mean ``(4,)`` of unit quaternions ``q (N, 4)`` on S^3 (sign-invariant).

    Gauss–Newton ``mu <- exp_at(mu, sum_n w_n log_at(mu, q_n))`` starting at the max-weight sample,
    until the step is shorter than ``tol`` or after ``max_iter`` steps. ``weights`` ``(N,)`` must be
    non-negative with a positive sum (normalised internally); ``None`` means uniform. The result
    lies in the hemisphere of the starting sample.
    """
    arr = _unit(q, "q")
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"q: expected an (N, 4) array of N >= 1 quaternions, got shape {arr.shape}")
    n = arr.shape[0]
    if weights is None:
        w = np.full(n, 1.0 / n)
    else:
        w = checks.finite_array(weights, "weights", shape=(n,), what=f"({n},) weights, one per quaternion")
        if (w < 0.0).any():
            i_bad = int(np.flatnonzero(w < 0.0)[0])
            raise ValueError(f"weights[{i_bad}]: weights must be >= 0, got {float(w[i_bad])!r}")
        total = w.sum()
        if not total > 0.0:
            raise ValueError("weights: expected a positive sum, got all zeros")
        w = np.ascontiguousarray(w / total)
    tol, max_iter = _iter_args(tol, max_iter)
    return _riemannian_mean(_kernel_arg(arr, 4), w, tol, max_iter)


def _check_product_result(mu: np.ndarray, cov: np.ndarray, flags: np.ndarray) -> None:
    if (flags >= 2).any() or not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError("covs: product of Gaussians is numerically degenerate (a precision matrix "
                         "could not be inverted even with jitter); check the covariance scales")


def product(means, covs, tol: float = 1e-12, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Product of ``P`` Gaussians on S^3: returns ``(mean (4,), cov (3, 3))`` (VL-MP eq. 6).

    ``means (P, 4)`` are unit quaternions and ``covs (P, 3, 3)`` SPD covariances in the body chart
    at each mean. Iterates at the current estimate ``mu`` (starting at the mean with the smallest
    covariance trace): precisions ``A_p S_p^-1 A_p^T`` with ``A_p = parallel_transport(means[p],
    mu)``, ``S = (sum Lam_p)^-1``, ``mu <- exp_at(mu, S sum Lam_p log_at(mu, means[p]))``, until
    the step is shorter than ``tol``; ``cov`` is the body-chart covariance at the returned mean.
    """
    m = _unit(means, "means")
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"means: expected a (P, 4) array with P >= 1, got shape {m.shape}")
    c = _covariances(covs, "covs", (m.shape[0],))
    tol, max_iter = _iter_args(tol, max_iter)
    mu, cov, flags = _product_batch(_kernel_arg(m, 4).reshape(1, -1, 4),
                                    np.ascontiguousarray(c.reshape(1, -1, 3, 3)), tol, max_iter)
    _check_product_result(mu, cov, flags)
    return mu[0], cov[0]


def product_batch(means, covs, tol: float = 1e-12, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Batched :func:`product`: ``means (T, P, 4)``, ``covs (T, P, 3, 3)`` -> ``(T, 4)``, ``(T, 3, 3)``.

    One compiled loop over the ``T`` time steps (e.g. fusing ``P`` task-frame predictions of an
    orientation trajectory); row ``t`` equals ``product(means[t], covs[t])``.
    """
    m = _unit(means, "means")
    if m.ndim != 3 or m.shape[1] == 0:
        raise ValueError(f"means: expected a (T, P, 4) array with P >= 1, got shape {m.shape}")
    c = _covariances(covs, "covs", m.shape[:2])
    tol, max_iter = _iter_args(tol, max_iter)
    mu, cov, flags = _product_batch(np.ascontiguousarray(m), np.ascontiguousarray(c), tol, max_iter)
    _check_product_result(mu, cov, flags)
    return mu, cov
