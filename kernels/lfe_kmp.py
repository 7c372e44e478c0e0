"""Local-feature-enhanced KMP (LFE-KMP), VL-MP section III.C.

Fit (once per skill, from demonstrations with their task frames):
  1. Each demonstration is seen from every task frame p (A_p, b_p): positions Rᵀ(s − o), velocities
     Rᵀṡ, orientations q̄_p ⊗ q (kinebridge's TP-GMM projection, :mod:`tpgmm`).
  2. A TP-GMM on [t, s, ṡ] (and one on [t, ζ, ζ̇] for orientation, ζ = log(q ⊗ q̄_a) in Huang's
     auxiliary-quaternion chart) gives, by GMR in each frame, the frame's reference 𝒩(μ̂⁽ᵖ⁾, Σ̂⁽ᵖ⁾).
  3. One KMP per frame re-fits its reference (kernel hyper-parameters by held-out RMSE).
  4. Local feature enhancement (eq. 5): each frame resamples the reference where its task parameter
     acts — the start frame near the start, the end frame near the end — moved onto the
     demonstrated anchor by an offset that fades out over the window, and adds those points with
     covariance εI; the KMP is refitted on the extended reference (a bordered update, no refactor).
  5. Every frame's KMP mean and covariance are predicted on the skill's time grid and cached: they
     do not depend on the new task parameters.
Generalise (every time the bridge sends new task parameters {Â_p, b̂_p}):
  6. Gaussian linear transform of each frame's local result into the global frame and the product
     over frames (eq. 6): positions in closed form, orientations by the Riemannian product of
     Gaussians on S³ with parallel transport. The argmax is the trajectory; ``sample`` draws from the
     resulting distribution.
  7. Exact conditioning on the ends (``exact_ends``): inside the product the enhanced frame's εI is
     only a large precision, so at its anchor the product still moves towards the other frames by
     (Λ_a + Λ_o)⁻¹Λ_o(μ_o − μ_a) — a miss proportional to how far the new task parameters make the
     frames disagree (0.02–0.025 mm for 0.5 m moves of the pour). Each end that exactly one frame
     governs is therefore conditioned on that frame's pinned point, mapped by the new frame: the
     residual at the end is added with the raised cosine of the enhancement window (value 1 and
     slope 0 at the anchor, 0 with slope 0 at the window's edge), for orientations in the body chart
     (q ← q ⊗ exp(w r)). The end is then met to rounding whatever the move; the path outside the
     windows and every covariance are unchanged.

Which end a frame enhances: the paper says "for each task parameter, the algorithm locally
resamples the start and end points". Pinning *both* ends in *every* frame with εI makes all frames
near-certain at both ends, so the product averages the start frame's idea of the end with the end
frame's and the endpoint lands between them. kinebridge therefore resamples, for each task
parameter, the end of the trajectory that parameter governs (``anchors``, default start, end), and
documents the "both" reading as an ablation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinebridge.kernels import checks
from kinebridge.kernels import quaternion as quat
from kinebridge.kernels.gaussian import gaussian_product
from kinebridge.kernels.gmr import reference
from kinebridge.kernels.kmp import KERNELS, KMP
from kinebridge.kernels.kmp_tuning import data_scale, tune_kmp
from kinebridge.kernels.tpgmm import TPGMM, fit_tpgmm

ANCHORS = ("start", "end", "both", "none")


@dataclass(frozen=True)
class Demonstration:
    """One demonstrated motion: times ``t (T,)``, ``position (T, d)``, optional unit ``orientation``
    ``(T, 4)`` (w, x, y, z) and optional ``velocity (T, d)`` (finite differences when omitted)."""

    t: np.ndarray
    position: np.ndarray
    orientation: np.ndarray | None = None
    velocity: np.ndarray | None = None


@dataclass(frozen=True)
class TaskFrame:
    """A task parameter: ``origin (d,)`` and ``rotation (d, d)`` (a proper rotation matrix)."""

    origin: np.ndarray
    rotation: np.ndarray

    @property
    def quaternion(self) -> np.ndarray:
        return quat.from_matrix(self.rotation)


@dataclass
class Trajectory:
    """A generalised trajectory on the time grid ``t``: the product's mean and covariance."""

    t: np.ndarray
    position: np.ndarray                   # (N, d)
    velocity: np.ndarray                   # (N, d)
    covariance: np.ndarray                 # (N, 2d, 2d) over [position, velocity]
    orientation: np.ndarray | None = None  # (N, 4)
    orientation_cov: np.ndarray | None = None  # (N, 3, 3), body chart at the mean


@dataclass
class LFEKMPConfig:
    """Settings of an LFE-KMP skill (defaults in brackets).

    ``n_components`` [8] GMM components; ``n_ref`` [200] reference points; ``kernel`` ["analytic"]
    or "fd"; ``h``/``lam`` kernel width and mean regulariser (None = tune by held-out RMSE);
    ``lam_c`` [None = λ] covariance regulariser; ``eps`` [1e-6] enhancement covariance ε, relative to
    the reference's median position variance (so it means the same in mm and in m);
    ``enhance_fraction`` [0.1] share of the duration resampled at an anchor; ``n_enhance`` [10]
    resampled points per anchor; ``enhance_source`` ["anchored"]: the GMR reference moved onto the
    demonstrated anchor by a fading offset ("anchored"), or the GMR reference as is ("gmr", the
    paper's wording, which inherits GMR's bias at the ends of the time range); ``enhance_velocity``
    [False] whether the resampled velocities get εI too (else the reference's covariance);
    ``consistent_velocity`` [True] reference velocities = d/dt of the GMR position mean;
    ``anchors`` per frame, "start" | "end" | "both" | "none" [("start", "end")]; ``exact_ends``
    [True] condition the product exactly on every end that one frame enhances (False: the εI
    enhancement alone, whose endpoint miss grows linearly with the move); ``reg`` [1e-4] EM
    regulariser; ``orientation_h``/``orientation_lam`` likewise for the orientation KMPs;
    ``tuning`` extra arguments for :func:`~kinebridge.kernels.kmp_tuning.tune_kmp`.
    See docs/kernels.md for why each default is what it is.
    """

    n_components: int = 8
    n_ref: int = 200
    kernel: str = "analytic"
    h: float | None = None
    lam: float | None = None
    lam_c: float | None = None
    eps: float = 1e-6
    enhance_fraction: float = 0.1
    n_enhance: int = 10
    anchors: tuple = ("start", "end")
    enhance_source: str = "anchored"
    enhance_velocity: bool = False
    consistent_velocity: bool = True
    exact_ends: bool = True
    reg: float = 1e-4
    orientation_h: float | None = None
    orientation_lam: float | None = None
    tuning: dict = field(default_factory=dict)


def _frame_arrays(frames, name, d):
    if len(frames) == 0:
        raise ValueError(f"{name}: expected at least one task frame")
    origins, rots = [], []
    for p, f in enumerate(frames):
        o = checks.finite_array(f.origin, f"{name}[{p}].origin", shape=(d,), what=f"({d},) frame origin")
        R = checks.finite_array(f.rotation, f"{name}[{p}].rotation", shape=(d, d), what=f"({d}, {d}) rotation")
        if np.abs(R.T @ R - np.eye(d)).max() > 1e-6 or np.linalg.det(R) < 0:
            raise ValueError(f"{name}[{p}].rotation: expected a proper rotation matrix (RᵀR = I, det = +1), "
                             f"got det {np.linalg.det(R):.4g}, |RᵀR − I| = {np.abs(R.T @ R - np.eye(d)).max():.3g}")
        origins.append(o)
        rots.append(R)
    return np.array(origins), np.array(rots)


def _local_mean(local_demos, t):
    """Time-aligned mean of the demonstrations' local [x, ẋ] at times ``t`` (linear interpolation)."""
    acc = np.zeros((t.size, local_demos[0][1].shape[1]))
    for td, values in local_demos:
        acc += np.column_stack([np.interp(t, td, values[:, j]) for j in range(values.shape[1])])
    return acc / len(local_demos)


def _windows(t_ref, anchor, fraction):
    """(anchor time, signed window length) for every end this frame governs."""
    span = fraction * (t_ref[-1] - t_ref[0])
    out = []
    if anchor in ("start", "both"):
        out.append((t_ref[0], span))
    if anchor in ("end", "both"):
        out.append((t_ref[-1], -span))
    return out


def _raised_cosine(t, t_a, span):
    """w(t) = ½(1 + cos(π (t − t_a)/|span|)) on the window, and dw/dt; w(t_a) = 1, w = w' = 0 at its edge."""
    u = np.clip((t - t_a) / span, 0.0, 1.0)
    inside = (u > 0.0) & (u < 1.0)   # sin(π) is 1.2e-16, not 0: keep the slope exactly 0 outside
    return 0.5 * (1.0 + np.cos(np.pi * u)), np.where(inside, -0.5 * np.pi / span * np.sin(np.pi * u), 0.0)


class _FrameKMPs:
    """One modality (position or orientation tangent) of one frame: reference, KMP, cached result.

    ``local_demos``: the demonstrations seen from this frame, a list of (t, [x, ẋ]) arrays.
    """

    def __init__(self, model: TPGMM, p: int, t_ref, cfg: LFEKMPConfig, anchor: str, h, lam, local_demos):
        frame_gmm = model.frame_model(p)
        self.mu_ref, self.sigma_ref = reference(frame_gmm, t_ref, consistent=cfg.consistent_velocity)
        o = self.mu_ref.shape[1]
        d = o // 2
        if h is None or lam is None:
            tuned = tune_kmp(t_ref, self.mu_ref, self.sigma_ref, kernel=cfg.kernel, **cfg.tuning)
            h = tuned.h if h is None else h
            lam = tuned.lam if lam is None else lam
        self.h, self.lam = float(h), float(lam)
        self.lam_c = self.lam if cfg.lam_c is None else float(cfg.lam_c)
        self.kmp = KMP(h=self.h, lam=self.lam, lam_c=self.lam_c, kernel=cfg.kernel).fit(t_ref, self.mu_ref, self.sigma_ref)
        t_e, mu_e, sig_e = [], [], []
        self.pins = []   # (which end, anchor time, signed window length, pinned local value (O,))
        for t_a, span in _windows(t_ref, anchor, cfg.enhance_fraction):
            # eq. (5): resample the reference where this task parameter acts ...
            times = np.linspace(t_a, t_a + span, cfg.n_enhance)
            mu, sig = reference(frame_gmm, times, consistent=cfg.consistent_velocity)
            if cfg.enhance_source == "anchored":
                # ... moved onto the demonstrated anchor by an offset that fades out over the window
                delta = _local_mean(local_demos, np.array([t_a]))[0, :d] - mu[0, :d]
                w, w_dot = _raised_cosine(times, t_a, span)
                mu[:, :d] += w[:, None] * delta
                mu[:, d:] += w_dot[:, None] * delta
            t_e.append(times)
            mu_e.append(mu)
            sig_e.append(sig)
            self.pins.append(("start" if span > 0 else "end", float(t_a), float(span), mu[0].copy()))
        if t_e:  # ... as desired points with covariance εI, refitted on the extended reference
            sig_e = np.concatenate(sig_e)
            eps = cfg.eps * data_scale(self.sigma_ref)  # ε relative to the reference's variance
            cov_e = np.broadcast_to(eps * np.eye(o), sig_e.shape).copy()
            if not cfg.enhance_velocity:  # velocities keep the reference's uncertainty
                cov_e[:, d:, d:] = sig_e[:, d:, d:]
            self.kmp.set_via_points(np.concatenate(t_e), np.concatenate(mu_e), cov_e)
        self.enhanced_times = np.concatenate(t_e) if t_e else np.empty(0)
        self.mean, self.cov = self.kmp.predict_cov(t_ref)


class LFEKMP:
    """Local-feature-enhanced KMP over P task frames; see the module docstring."""

    def __init__(self, config: LFEKMPConfig | None = None, **overrides):
        cfg = config or LFEKMPConfig()
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise ValueError(f"{k}: not an LFE-KMP setting; expected one of {sorted(vars(cfg))}")
            setattr(cfg, k, v)
        checks.count(cfg.n_components, "n_components")
        checks.count(cfg.n_ref, "n_ref", minimum=4)
        checks.count(cfg.n_enhance, "n_enhance")
        checks.positive(cfg.eps, "eps")
        for name in ("h", "lam", "lam_c", "orientation_h", "orientation_lam"):
            checks.optional_positive(getattr(cfg, name), name)   # None = tune / default
        checks.non_negative(cfg.reg, "reg", what="a non-negative EM regulariser")
        if cfg.kernel not in KERNELS:
            raise ValueError(f"kernel: expected one of {KERNELS}, got {cfg.kernel!r}")
        if not isinstance(cfg.tuning, dict):
            raise ValueError(f"tuning: expected a dict of tune_kmp arguments, got {type(cfg.tuning).__name__}")
        if not 0 < cfg.enhance_fraction < 0.5:
            raise ValueError(f"enhance_fraction: expected a share of the duration in (0, 0.5), got {cfg.enhance_fraction}")
        if cfg.enhance_source not in ("anchored", "gmr"):
            raise ValueError(f"enhance_source: expected 'anchored' or 'gmr', got {cfg.enhance_source!r}")
        for a in cfg.anchors:
            if a not in ANCHORS:
                raise ValueError(f"anchors: expected each of {ANCHORS}, got {a!r}")
        self.config = cfg
        self._fitted = False

    # ------------------------------------------------------------------ fit
    def fit(self, demos, frames) -> "LFEKMP":
        """Learn from ``demos`` (list of :class:`Demonstration`) and their task frames
        (``frames[i][p]``: :class:`TaskFrame` p of demo i)."""
        cfg = self.config
        if len(demos) == 0:
            raise ValueError("demos: expected at least one demonstration")
        if len(frames) != len(demos):
            raise ValueError(f"frames: expected one list of task frames per demonstration "
                             f"({len(demos)}), got {len(frames)}")
        d = np.asarray(demos[0].position).shape[-1] if np.ndim(demos[0].position) == 2 else -1
        if d < 1:
            raise ValueError(f"demos[0].position: expected (T, d) positions, got shape {np.shape(demos[0].position)}")
        n_frames = len(frames[0])
        if len(cfg.anchors) != n_frames:
            raise ValueError(f"anchors: {len(cfg.anchors)} anchors given for {n_frames} task frames; "
                             "give one of 'start' | 'end' | 'both' | 'none' per frame")
        has_q = demos[0].orientation is not None
        pos_rows, ori_rows, t_all = [], [], []
        for i, demo in enumerate(demos):
            t = checks.finite_array(demo.t, f"demos[{i}].t", ndim=1, what="(T,) times")
            if t.size < 3 or np.any(np.diff(t) <= 0):
                raise ValueError(f"demos[{i}].t: expected at least 3 strictly increasing times")
            s = checks.finite_array(demo.position, f"demos[{i}].position", shape=(t.size, d), what=f"({t.size}, {d}) positions")
            v = (np.gradient(s, t, axis=0) if demo.velocity is None else
                 checks.finite_array(demo.velocity, f"demos[{i}].velocity", shape=(t.size, d)))
            if len(frames[i]) != n_frames:
                raise ValueError(f"frames[{i}]: expected {n_frames} task frames like frames[0], got {len(frames[i])}")
            origins, rots = _frame_arrays(frames[i], f"frames[{i}]", d)
            local_s = np.einsum("pji,tpj->pti", rots, s[:, None, :] - origins[None])   # Rᵀ(s − o)
            local_v = np.einsum("pji,tj->pti", rots, v)                                 # Rᵀ ṡ
            pos_rows.append(np.concatenate([np.broadcast_to(t[None, :, None], (n_frames, t.size, 1)),
                                            local_s, local_v], axis=2))
            t_all.append(t)
            if has_q:
                if d != 3:
                    raise ValueError(f"demos[{i}].orientation: orientations need 3-D positions, got d={d}")
                if demo.orientation is None:
                    raise ValueError(f"demos[{i}].orientation: demos[0] has orientations, so every demo needs them")
                q = checks.continuous_quaternions(demo.orientation, f"demos[{i}].orientation")
                if q.shape[0] != t.size:
                    raise ValueError(f"demos[{i}].orientation: expected ({t.size}, 4), got {q.shape}")
                qf = quat.from_matrix(rots)                                              # (P, 4)
                ori_rows.append(np.stack([quat.mul(quat.conj(qf[p])[None], q) for p in range(n_frames)]))
        pos = np.concatenate(pos_rows, axis=1)
        self.d, self.n_frames = d, n_frames
        t_lo = min(t[0] for t in t_all)
        t_hi = max(t[-1] for t in t_all)
        self.t_ref = np.linspace(t_lo, t_hi, cfg.n_ref)
        self.position_model, self.position_em = fit_tpgmm(pos, cfg.n_components, reg=cfg.reg)
        self._pos = [_FrameKMPs(self.position_model, p, self.t_ref, cfg, cfg.anchors[p], cfg.h, cfg.lam,
                                [(r[p, :, 0], r[p, :, 1:]) for r in pos_rows]) for p in range(n_frames)]
        self._ori = None
        self._pos_pins = self._conditioning(self._pos) if cfg.exact_ends else {}
        self._ori_pins = {}
        if has_q:
            self._fit_orientation(ori_rows, t_all)
        if has_q and cfg.exact_ends:
            self._ori_pins = {end: (p, i, win, w, w_dot, quat.unproject(pin[:3], self.aux[p]))
                              for end, (p, i, win, w, w_dot, pin) in self._conditioning(self._ori).items()}
        self._fitted = True
        return self

    def _conditioning(self, frame_kmps):
        """Ends to condition exactly after the product: {end: (frame, index of the end on the time grid,
        indices of the window, w and ẇ there, pinned local value)}.

        An end is conditioned when exactly one frame enhances it (the frame that governs it); with
        ``anchors="both"`` in several frames the frames disagree about that end and it is left to the
        product (the ablation). w is the raised cosine over the end's enhancement window.
        """
        owners = {}
        for p, fk in enumerate(frame_kmps):
            for end, t_a, span, pin in fk.pins:
                owners.setdefault(end, []).append((p, t_a, span, pin))
        out = {}
        for end, claims in owners.items():
            if len(claims) == 1:
                p, t_a, span, pin = claims[0]
                w, w_dot = _raised_cosine(self.t_ref, t_a, span)
                win = np.flatnonzero(w > 0.0)
                out[end] = (p, 0 if end == "start" else self.t_ref.size - 1, win, w[win], w_dot[win], pin)
        return out

    def _fit_orientation(self, ori_rows, t_all):
        cfg = self.config
        self.aux = []
        rows = []
        for p in range(self.n_frames):
            local = np.concatenate([r[p] for r in ori_rows])
            qa = quat.riemannian_mean(local)
            self.aux.append(qa)
            per_demo = []
            for r, t in zip(ori_rows, t_all):
                zeta = quat.project_continuous(r[p], qa)                # Huang: log(q ⊗ q̄_a), continuous
                per_demo.append(np.concatenate([t[:, None], zeta, np.gradient(zeta, t, axis=0)], axis=1))
            rows.append(per_demo)
        self.aux = np.array(self.aux)
        self.orientation_model, self.orientation_em = fit_tpgmm(np.stack([np.concatenate(r) for r in rows]),
                                                                cfg.n_components, reg=cfg.reg)
        self._ori = [_FrameKMPs(self.orientation_model, p, self.t_ref, cfg, cfg.anchors[p], cfg.orientation_h,
                                cfg.orientation_lam, [(r[:, 0], r[:, 1:]) for r in rows[p]])
                     for p in range(self.n_frames)]
        # local orientation Gaussians: mean exp(ζ̂) ⊗ q_a, body-chart covariance R_aᵀ J Σ_ζ Jᵀ R_a
        self._q_local, self._q_cov_local = [], []
        for p, fk in enumerate(self._ori):
            zeta = fk.mean[:, :3]
            jac = quat.right_jacobian(zeta)
            Ra = quat.to_matrix(self.aux[p])
            T = np.einsum("ji,tjk->tik", Ra, jac)                                    # R_aᵀ J
            self._q_local.append(quat.unproject(zeta, self.aux[p]))
            self._q_cov_local.append(np.einsum("tij,tjk,tlk->til", T, fk.cov[:, :3, :3], T))

    # ------------------------------------------------------------------ generalise
    def _require_fit(self):
        if not self._fitted:
            raise ValueError("LFEKMP: call fit(demos, frames) before generalize()")

    @property
    def kernel_parameters(self) -> dict:
        """The (h, λ) each frame's KMP uses, per modality: {"position": [(h, λ), ...], ...}."""
        self._require_fit()
        out = {"position": [(fk.h, fk.lam) for fk in self._pos]}
        if self._ori is not None:
            out["orientation"] = [(fk.h, fk.lam) for fk in self._ori]
        return out

    def local_references(self, p: int):
        """Frame p's GMR reference (mean, cov) and its enhanced KMP prediction (mean, cov)."""
        self._require_fit()
        fk = self._pos[p]
        return fk.mu_ref, fk.sigma_ref, fk.mean, fk.cov

    def generalize(self, frames) -> Trajectory:
        """The trajectory for new task parameters ``frames`` (one :class:`TaskFrame` per frame)."""
        self._require_fit()
        if len(frames) != self.n_frames:
            raise ValueError(f"frames: the skill was learnt with {self.n_frames} task frames, got {len(frames)}")
        origins, rots = _frame_arrays(frames, "frames", self.d)
        d = self.d
        means = np.empty((self.t_ref.size, self.n_frames, 2 * d))
        covs = np.empty((self.t_ref.size, self.n_frames, 2 * d, 2 * d))
        for p, fk in enumerate(self._pos):   # Gaussian linear transform: A μ + b, A Σ Aᵀ
            A = np.zeros((2 * d, 2 * d))
            A[:d, :d] = A[d:, d:] = rots[p]
            means[:, p] = fk.mean @ A.T
            means[:, p, :d] += origins[p]
            covs[:, p] = A @ fk.cov @ A.T
        mu, cov = gaussian_product(means, covs)                                       # eq. (6), position
        for p, i, win, w, w_dot, pin in self._pos_pins.values():  # exact conditioning on the governed ends
            r = rots[p] @ pin[:d] + origins[p] - mu[i, :d]
            mu[win, :d] += w[:, None] * r
            mu[win, d:] += w_dot[:, None] * r
        traj = Trajectory(self.t_ref.copy(), mu[:, :d], mu[:, d:], cov)
        if self._ori is not None:
            qf = quat.from_matrix(rots)
            q_means = np.stack([quat.mul(qf[p][None], self._q_local[p]) for p in range(self.n_frames)], axis=1)
            q_covs = np.stack(self._q_cov_local, axis=1)  # left translation keeps body-chart covariances
            q, q_cov = quat.product_batch(q_means, q_covs)                            # eq. (6), orientation
            for p, i, win, w, _, pin in self._ori_pins.values():
                # body-chart residual at the end, r = Log_{q(t_a)}(q_p ⊗ q̄), faded in: q ← q ⊗ exp(w r)
                # (the compiled kernels directly: every operand is already a unit quaternion)
                target = quat._mul(qf[p][None], pin[None])
                r = quat._log_at(q[i][None], target)
                q[win] = quat._exp_at(np.ascontiguousarray(q[win]), w[:, None] * r)
            traj.orientation, traj.orientation_cov = q, q_cov
        return traj

    def sample(self, traj: Trajectory, n: int = 1, rng=None):
        """Draw ``n`` trajectories from the generalised distribution.

        The product gives a Gaussian per time step, not a joint one over time, so kinebridge draws one
        standard-normal vector per sample and maps it through every step's Cholesky factor: each
        sample is a smooth curve whose marginals are exactly the per-step Gaussians.
        Returns positions ``(n, N, d)`` and, with orientation, quaternions ``(n, N, 4)``.
        """
        checks.count(n, "n")
        rng = np.random.default_rng(rng)
        d = self.d
        L = np.linalg.cholesky(traj.covariance[:, :d, :d])
        z = rng.standard_normal((n, d))
        pos = traj.position[None] + np.einsum("tij,nj->nti", L, z)
        if traj.orientation is None:
            return pos
        Lq = np.linalg.cholesky(traj.orientation_cov)
        u = np.einsum("tij,nj->nti", Lq, rng.standard_normal((n, 3)))
        qs = np.stack([quat.exp_at(traj.orientation, u[i]) for i in range(n)])
        return pos, qs
