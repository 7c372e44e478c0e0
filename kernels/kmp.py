"""Kernelized movement primitives (Huang et al., IJRR 2019), time-driven, with via-points.

A reference database 𝒟 = {t_n, μ̂_n, Σ̂_n} (usually GMR of the demonstrations) is re-fitted with a
kernel k(t, t') and predicted at new times (kmp.md §1.4):

    mean        E[ξ(t*)] = k* (K + λΣ)⁻¹ μ                                   (KMP eq. 21)
    covariance  D[ξ(t*)] = (N/λ_c) (k(t*, t*) − k* (K + λ_c Σ)⁻¹ k*ᵀ)         (KMP eq. 26)

with K made of O×O blocks over the database, Σ = blkdiag(Σ̂_n) and N the database size including
via-points. With ``derivatives=True`` each point carries [x; ẋ] (O = 2d) and the kernel block is

    [[k I_d,      ∂_{t'}k I_d       ],
     [∂_t k I_d,  ∂_t ∂_{t'}k I_d   ]],     k(t, t') = exp(−h (t − t')²).

Two kernels are offered and they are **different models**, not two precisions of one model:
``"fd"`` builds the derivative blocks by forward differences with δ = 1e-3 exactly as the original
code (robInfLib ``kernel_extend.m``) and reproduces its outputs; ``"analytic"`` uses the exact
derivatives (2hΔk, −2hΔk, (2h − 4h²Δ²)k), which is the kernel the equations describe.

Factorizations are Cholesky through LAPACK (scipy), never an explicit inverse. Via-points follow
``kmp_insertPoint.m``: a via-point within ``replace_tol`` of an existing time replaces that entry,
otherwise it is appended. Via-points may lie outside the reference's time range (Huang's orientation
demo inserts one at t = 0), up to one kernel length ℓ = 1/√(2h) beyond it (k ≥ e^{−1/2} with the
nearest reference time, so the prediction between them does not sag to the zero-mean prior).
They are applied as a bordered (Schur-complement) update of the reference's factorization, so
adding or moving via-points never refactorizes the reference: moving a via-point in space costs
O(n·m) (m = via rows), adding one or moving it in time costs two triangular solves with m
right-hand sides, O(n²·m). Every update is atomic: a call that raises leaves the model as it was.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
from numba import njit

from kinebridge.kernels import checks

KERNELS = ("fd", "analytic")


@njit(cache=True)
def _kernel_terms(ta, tb, h, analytic, delta):
    """(k, ∂_{tb}k, ∂_{ta}k, ∂_{ta}∂_{tb}k) for k(ta, tb) = exp(−h (ta − tb)²)."""
    if analytic:
        d = ta - tb
        k = math.exp(-h * d * d)
        return k, 2.0 * h * d * k, -2.0 * h * d * k, (2.0 * h - 4.0 * h * h * d * d) * k
    # forward differences with step δ, term by term as in robInfLib kernel_extend.m
    tadt = ta + delta
    tbdt = tb + delta
    kt_t = math.exp(-h * (ta - tb) * (ta - tb))
    kt_dt_temp = math.exp(-h * (ta - tbdt) * (ta - tbdt))
    kt_dt = (kt_dt_temp - kt_t) / delta
    kdt_t_temp = math.exp(-h * (tadt - tb) * (tadt - tb))
    kdt_t = (kdt_t_temp - kt_t) / delta
    kdt_dt_temp = math.exp(-h * (tadt - tbdt) * (tadt - tbdt))
    kdt_dt = (kdt_dt_temp - kt_dt_temp - kdt_t_temp + kt_t) / delta / delta
    return kt_t, kt_dt, kdt_t, kdt_dt


@njit(cache=True)
def _assemble(ta, tb, h, d, deriv, analytic, delta, lower_only, out):
    """Kernel matrix [k(ta_i, tb_j)] of O×O blocks into ``out`` (Na·O × Nb·O).

    With ``lower_only`` (ta is tb) only the blocks j ≤ i are written — the lower triangle that the
    Cholesky factorization reads; the blocks above the diagonal are left untouched.
    """
    o = 2 * d if deriv else d
    for i in range(ta.shape[0]):
        r = i * o
        for j in range(i + 1 if lower_only else tb.shape[0]):
            k, kb, ka, kab = _kernel_terms(ta[i], tb[j], h, analytic, delta)
            c = j * o
            for a in range(o):
                for b in range(o):
                    out[r + a, c + b] = 0.0
            for a in range(d):
                out[r + a, c + a] = k
                if deriv:
                    out[r + a, c + d + a] = kb
                    out[r + d + a, c + a] = ka
                    out[r + d + a, c + d + a] = kab


@njit(cache=True)
def _add_blocks(mat, blocks, scale):
    """mat += scale · blkdiag(blocks)."""
    o = blocks.shape[1]
    for n in range(blocks.shape[0]):
        for a in range(o):
            for b in range(o):
                mat[n * o + a, n * o + b] += scale * blocks[n, a, b]


@njit(cache=True)
def _predict_mean(tq, tp, alpha, h, d, deriv, analytic, delta, out):
    """out[q] = Σ_j k(tq_q, tp_j) α_j, the block-structured product k* α without forming k*."""
    for q in range(tq.shape[0]):
        for a in range(out.shape[1]):
            out[q, a] = 0.0
        for j in range(tp.shape[0]):
            k, kb, ka, kab = _kernel_terms(tq[q], tp[j], h, analytic, delta)
            for a in range(d):
                if deriv:
                    out[q, a] += k * alpha[j, a] + kb * alpha[j, d + a]
                    out[q, d + a] += ka * alpha[j, a] + kab * alpha[j, d + a]
                else:
                    out[q, a] += k * alpha[j, a]


@njit(cache=True)
def _block_quadratic(v, o, out):
    """out[q] = V_qᵀ V_q for the column blocks V_q = v[:, q·O:(q+1)·O]."""
    n = v.shape[0]
    for q in range(out.shape[0]):
        for a in range(o):
            for b in range(a + 1):
                s = 0.0
                for r in range(n):
                    s += v[r, q * o + a] * v[r, q * o + b]
                out[q, a, b] = s
                out[q, b, a] = s


class _Border:
    """Via-points as a bordered system on top of the reference factor M = K + λΣ (Cholesky).

    The active database is the reference minus the replaced entries D plus the appended via-points
    V. Deleting D is a constraint x_D = 0 with Lagrange multipliers, so the augmented matrix is
    [[M, F], [Fᵀ, H]] with F = [K(ref, V), E_D] and H = blkdiag(K(V, V) + λΣ_V, 0). Its Schur
    complement S = H − Fᵀ M⁻¹ F is small (m × m, symmetric indefinite), and G = M⁻¹F is the only
    O(n²·m) work (its columns are cached by the KMP, see ``KMP._border_columns``).
    """

    def __init__(self, f, g, kernel_vv, sigma_v, lam, deleted_rows):
        mv = kernel_vv.shape[0]
        self.n_via_rows = mv
        self.deleted_rows = deleted_rows
        self.f, self.g = f, g
        h = np.zeros((f.shape[1], f.shape[1]))
        h[:mv, :mv] = kernel_vv
        _add_blocks(h, sigma_v, lam)
        s = h - f.T @ g
        self.s_lu = sla.lu_factor(0.5 * (s + s.T), check_finite=False)

    def solve(self, minv_y, y_via):
        """Solution of the active system given M⁻¹y (reference part) and the via-point targets."""
        rhs = -(self.f.T @ minv_y)
        rhs[:self.n_via_rows] += y_via
        u = sla.lu_solve(self.s_lu, rhs, check_finite=False)
        x = minv_y - self.g @ u
        x[self.deleted_rows] = 0.0
        return x, u[:self.n_via_rows]

    def quadratic_correction(self, k_ref, k_via):
        """r_qᵀ S⁻¹ r_q with r = Gᵀ k_refᵀ − [k_viaᵀ; 0] for all query blocks (columns)."""
        r = self.g.T @ k_ref.T
        r[:self.n_via_rows] -= k_via.T
        return r, sla.lu_solve(self.s_lu, r, check_finite=False)


class _Restore:
    """Snapshot of an object's attributes, put back if the ``with`` block raises."""

    def __init__(self, obj):
        self.obj = obj

    def __enter__(self):
        self.saved = dict(self.obj.__dict__)
        return self.obj

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.obj.__dict__.clear()
            self.obj.__dict__.update(self.saved)
        return False


class KMP:
    """Time-driven KMP over a reference database, with via-point insertion/replacement.

    Parameters: ``h`` kernel width (k = exp(−h Δt²)), ``lam`` λ for the mean, ``lam_c`` λ_c for the
    covariance, ``kernel`` ``"fd"`` (original code, δ = ``fd_step``) or ``"analytic"``,
    ``derivatives`` whether every point is [x; ẋ] (O = 2d) or position only (O = d), and
    ``replace_tol`` the time distance under which a via-point replaces an entry (5e-4 s; finite
    and >= 0, 0 = always append).

    Every method that raises leaves the model exactly as it was (``fit``, ``add_via_point``,
    ``set_via_points`` are atomic).
    """

    def __init__(self, *, h: float = 6.0, lam: float = 1.0, lam_c: float = 60.0, kernel: str = "fd",
                 fd_step: float = 1e-3, derivatives: bool = True, replace_tol: float = 5e-4):
        self.h = checks.positive(h, "h")
        self.lam = checks.positive(lam, "lam")
        self.lam_c = checks.positive(lam_c, "lam_c")
        if kernel not in KERNELS:
            raise ValueError(f"kernel: expected one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.fd_step = checks.positive(fd_step, "fd_step")
        self.derivatives = bool(derivatives)
        self.replace_tol = checks.non_negative(replace_tol, "replace_tol", what="a time distance in s")
        self._t = None

    # ------------------------------------------------------------------ reference database
    def fit(self, t, mu, sigma) -> "KMP":
        """Fit to the reference ``t (N,)``, ``mu (N, O)``, ``sigma (N, O, O)``; clears via-points.

        Atomic: if it raises (bad input, K + λΣ not positive definite) the model keeps its previous
        reference and via-points.
        """
        with self._atomic():
            return self._fit(t, mu, sigma)

    def _atomic(self):
        """Context manager restoring every attribute if the block raises.

        All state changes rebind attributes (arrays are replaced, never written in place), so a
        shallow copy of ``__dict__`` is an exact snapshot.
        """
        return _Restore(self)

    def _fit(self, t, mu, sigma) -> "KMP":
        t = checks.finite_array(t, "t", ndim=1, what="(N,) reference times")
        if t.size < 2:
            raise ValueError(f"t: a reference needs at least 2 points, got {t.size}")
        mu = checks.finite_array(mu, "mu", shape=(t.size, None), what=f"({t.size}, O) reference means")
        o = mu.shape[1]
        if self.derivatives and o % 2:
            raise ValueError(f"mu: with derivatives=True every point is [x; ẋ], so O must be even, got O={o}")
        sigma = checks.covariance_stack(sigma, "sigma", o, t.size)
        self._t, self._mu, self._sigma = t, mu, sigma
        self.n_out = o
        self.d = o // 2 if self.derivatives else o
        self._factor = self._factorize(self.lam)
        self._w = sla.cho_solve(self._factor, mu.reshape(-1), check_finite=False)
        self._factor_c = self._factor if self.lam_c == self.lam else None
        self._columns = {}
        self.clear_via_points()
        return self

    def _kernel(self, ta, tb, lower_only=False):
        out = np.empty((ta.size * self.n_out, tb.size * self.n_out))
        _assemble(ta, tb, self.h, self.d, self.derivatives, self.kernel == "analytic", self.fd_step,
                  lower_only, out)
        return out

    def _factorize(self, lam):
        m = self._kernel(self._t, self._t, lower_only=True)  # the factorization reads the lower triangle
        _add_blocks(m, self._sigma, lam)
        try:
            return sla.cho_factor(m, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            raise ValueError(f"sigma: K + {lam:g}·Σ is not positive definite; the reference covariances "
                             "are too small for this kernel — raise lam/lam_c or regularise sigma") from None

    @property
    def fitted(self) -> bool:
        return self._t is not None

    def _require_fit(self):
        if self._t is None:
            raise ValueError("KMP: call fit(t, mu, sigma) before adding via-points or predicting")

    # ------------------------------------------------------------------ via-points
    def clear_via_points(self) -> "KMP":
        self._require_fit()
        o = self.n_out
        self._via_t = np.empty(0)
        self._via_mu = np.empty((0, o))
        self._via_sigma = np.empty((0, o, o))
        self._via_replaces = np.empty(0, dtype=np.int64)
        self._border = {}
        return self

    @property
    def via_time_range(self) -> tuple[float, float]:
        """Times a via-point may take: the reference range widened by one kernel length ℓ = 1/√(2h).

        Within ℓ of the nearest reference time the kernel is ≥ e^{−1/2}, so the via-point stays
        coupled to the reference (the original code has no bound; a via-point many lengths away
        would be an island with the zero-mean prior in between).
        """
        self._require_fit()
        reach = 1.0 / math.sqrt(2.0 * self.h) + self.replace_tol
        return float(self._t.min()) - reach, float(self._t.max()) + reach

    def _check_via_time(self, t, name="t", bounds=None):
        lo, hi = self.via_time_range if bounds is None else bounds
        if not lo <= t <= hi:
            t_lo, t_hi = float(self._t.min()), float(self._t.max())
            raise ValueError(f"{name}: via-point time {t:g} is outside the reference time range "
                             f"[{t_lo:g}, {t_hi:g}] widened by one kernel length 1/sqrt(2h) = "
                             f"{1.0 / math.sqrt(2.0 * self.h):.3g} s, i.e. [{lo:g}, {hi:g}]; "
                             "rescale the time or extend the reference")

    def add_via_point(self, t: float, mu, sigma) -> "KMP":
        """Insert one desired point (t, μ̄, Σ̄): replace the entry within ``replace_tol``, else append.

        ``t`` must be finite and within :attr:`via_time_range` (the reference's time range widened
        by one kernel length 1/√(2h)); on any error the model is unchanged.
        """
        self._require_fit()
        o = self.n_out
        t = float(checks.finite_array(t, "t", ndim=0, what="a scalar time"))
        self._check_via_time(t)
        mu = checks.finite_array(mu, "mu", shape=(o,), what=f"({o},) via-point mean")
        sigma = checks.finite_array(sigma, "sigma", shape=(o, o), what=f"({o}, {o}) via-point covariance")
        sigma = checks.covariance_stack(sigma[None], "sigma", o, 1)[0]
        return self._insert(t, mu, sigma)

    def _insert(self, t, mu, sigma) -> "KMP":
        """add_via_point on validated input: rebinds the via-point arrays (never writes them in place)."""
        v, replaces = self._match(t)
        if v is None:
            self._via_t = np.append(self._via_t, t)
            self._via_mu = np.concatenate([self._via_mu, mu[None]])
            self._via_sigma = np.concatenate([self._via_sigma, sigma[None]])
            self._via_replaces = np.append(self._via_replaces, replaces)
        else:
            self._via_t = self._via_t.copy()
            self._via_mu = self._via_mu.copy()
            self._via_sigma = self._via_sigma.copy()
            self._via_t[v], self._via_mu[v], self._via_sigma[v] = t, mu, sigma
        return self

    def _match(self, t):
        """(index of the via-point this one overwrites or None, reference index it replaces or −1)."""
        near = np.flatnonzero(np.abs(self._t - t) < self.replace_tol)
        replaced = set(self._via_replaces.tolist())
        for i in near:  # reference entries first, in order, as kmp_insertPoint searches
            if i in replaced:
                v = int(np.flatnonzero(self._via_replaces == i)[0])
                if abs(self._via_t[v] - t) < self.replace_tol:
                    return v, int(i)
                continue
            return None, int(i)
        for v in np.flatnonzero(self._via_replaces < 0):
            if abs(self._via_t[v] - t) < self.replace_tol:
                return int(v), -1
        return None, -1

    def set_via_points(self, t, mu, sigma) -> "KMP":
        """Replace the whole via-point set (``t (V,)``, ``mu (V, O)``, ``sigma (V, O, O)`` or ``(O, O)``).

        When only the means changed since the last call (same times and covariances, the usual case
        when the bridge moves a start or goal), the cached border is reused and the update is O(n·m).
        Atomic: every time, mean and covariance is validated first, and if anything raises the
        previous via-point set (and its cached border) is kept exactly.
        """
        self._require_fit()
        o = self.n_out
        t = checks.finite_array(t, "t", what="(V,) via-point times")
        if t.ndim > 1:
            raise ValueError(f"t: expected a scalar or (V,) via-point times, got shape {t.shape}")
        t = np.atleast_1d(t)
        mu = checks.finite_array(mu, "mu", shape=(t.size, o), what=f"({t.size}, {o}) via-point means")
        sigma = checks.finite_array(sigma, "sigma", what=f"({o}, {o}) or ({t.size}, {o}, {o}) via-point covariances")
        if sigma.shape == (o, o):
            sigma = np.broadcast_to(sigma, (t.size, o, o))
        sigma = checks.covariance_stack(sigma, "sigma", o, t.size)
        bounds = self.via_time_range
        for i in range(t.size):
            self._check_via_time(float(t[i]), f"t[{i}]", bounds)
        with self._atomic():
            keep = self._border
            self.clear_via_points()
            for i in range(t.size):
                self._insert(float(t[i]), mu[i], sigma[i])
            self._border = keep
        return self

    @property
    def n_points(self) -> int:
        """Active database size N (reference − replaced + appended), the N in N/λ_c."""
        self._require_fit()
        return self._t.size + int((self._via_replaces < 0).sum())

    def _border_for(self, which):
        key = (self._via_t.tobytes(), self._via_sigma.tobytes(), self._via_replaces.tobytes())
        cached = self._border.get(which)
        if cached is not None and cached[0] == key:
            return cached[1]
        o = self.n_out
        factor, lam = (self._factor, self.lam) if which == "mean" else (self._cov_factor(), self.lam_c)
        deleted = (self._via_replaces[self._via_replaces >= 0][:, None] * o + np.arange(o)).reshape(-1)
        f, g = self._border_columns(which, factor, deleted)
        border = _Border(f, g, self._kernel(self._via_t, self._via_t), self._via_sigma, lam, deleted.astype(np.int64))
        self._border[which] = (key, border)
        return border

    def _border_columns(self, which, factor, deleted):
        """F = [K(ref, V), E_D] and G = M⁻¹F, solving only the columns not seen before.

        Columns are cached per via-point time and per deleted row, so moving one via-point in time
        solves O right-hand sides, not all of them; the cache is dropped by ``fit``.
        """
        cache = self._columns.setdefault(which, {})
        if len(cache) > 256:
            cache.clear()
        n = self._t.size * self.n_out
        keys = [("via", float(t)) for t in self._via_t] + [("row", int(r)) for r in deleted]
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            via_t = np.array([k[1] for k in missing if k[0] == "via"])
            parts = []
            if via_t.size:
                parts.append(self._kernel(self._t, via_t))
            rows = [k[1] for k in missing if k[0] == "row"]
            if rows:
                e = np.zeros((n, len(rows)))
                e[rows, np.arange(len(rows))] = 1.0
                parts.append(e)
            f_new = np.hstack(parts)
            g_new = sla.cho_solve(factor, f_new, check_finite=False)
            col = 0
            for k in [k for k in missing if k[0] == "via"]:
                cache[k] = (f_new[:, col:col + self.n_out], g_new[:, col:col + self.n_out])
                col += self.n_out
            for k in [k for k in missing if k[0] == "row"]:
                cache[k] = (f_new[:, col:col + 1], g_new[:, col:col + 1])
                col += 1
        f = np.hstack([cache[k][0] for k in keys])
        g = np.hstack([cache[k][1] for k in keys])
        return f, g

    def _cov_factor(self):
        if self._factor_c is None:
            self._factor_c = self._factorize(self.lam_c)
        return self._factor_c

    def _alpha(self):
        """Weights (reference part, via part) with mean(t) = Σ_j k(t, t_j) α_j."""
        o = self.n_out
        if self._via_t.size == 0:
            return self._w.reshape(-1, o), np.empty((0, o))
        x, z = self._border_for("mean").solve(self._w, self._via_mu.reshape(-1))
        return x.reshape(-1, o), z.reshape(-1, o)

    # ------------------------------------------------------------------ prediction
    def _times(self, t):
        t = checks.finite_array(t, "t", what="query times")
        if t.ndim > 1:
            raise ValueError(f"t: expected a scalar or (T,) query times, got shape {t.shape}")
        return np.atleast_1d(t)

    def predict(self, t):
        """Mean prediction at ``t`` (scalar or ``(T,)``), shape ``(T, O)``."""
        self._require_fit()
        tq = self._times(t)
        a_ref, a_via = self._alpha()
        tp = np.concatenate([self._t, self._via_t]) if self._via_t.size else self._t
        alpha = np.concatenate([a_ref, a_via]) if self._via_t.size else a_ref
        out = np.empty((tq.size, self.n_out))
        _predict_mean(tq, tp, alpha, self.h, self.d, self.derivatives, self.kernel == "analytic",
                      self.fd_step, out)
        return out

    def predict_cov(self, t):
        """Mean ``(T, O)`` and covariance ``(T, O, O)`` at ``t``; O(n²·T·O) for the covariance."""
        self._require_fit()
        tq = self._times(t)
        o = self.n_out
        k_ref = self._kernel(tq, self._t)                                  # (T·O, n)
        factor = self._cov_factor()
        v = sla.solve_triangular(factor[0], k_ref.T, lower=True, check_finite=False)
        quad = np.empty((tq.size, o, o))
        _block_quadratic(v, o, quad)                                        # k* M⁻¹ k*ᵀ, per query
        if self._via_t.size:
            r, s_inv_r = self._border_for("cov").quadratic_correction(k_ref, self._kernel(tq, self._via_t))
            quad += np.einsum("iqa,iqb->qab", r.reshape(-1, tq.size, o), s_inv_r.reshape(-1, tq.size, o))
        kss = np.empty((tq.size, o, o))
        blk = np.empty((o, o))
        for q in range(tq.size):
            _assemble(tq[q:q + 1], tq[q:q + 1], self.h, self.d, self.derivatives, self.kernel == "analytic",
                      self.fd_step, False, blk)
            kss[q] = blk
        cov = (self.n_points / self.lam_c) * (kss - quad)
        return self.predict(tq), 0.5 * (cov + cov.transpose(0, 2, 1))
