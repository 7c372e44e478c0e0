"""Kernel contracts found broken by probing, one group per contract:

1. ``KMP.set_via_points`` (and ``fit``) are atomic: a call that raises leaves the model as it was.
2. Via-points outside the reference time range are accepted up to one kernel length; non-finite
   times are refused.
3. LFE-KMP meets the new start and end exactly whatever the task-parameter move (exact conditioning
   on the ends after the product), on the pour skill and on LASA, and still wins mean c_s on GShape.
4. ``quaternion.exp`` (and the right Jacobian) of huge vectors: unit quaternions, never NaN.
5. ``quaternion.project_continuous``: a rotation sweeping past 180° from the auxiliary quaternion
   keeps a continuous chart sequence.
6. Tolerances, regularisers and kernel lengths: NaN / negative / infinite values are refused with a
   ``ValueError`` naming the argument and the allowed range.
7. No kernel is compiled with fast-math flags that assume no inf/NaN, and the −inf marker paths
   (empty components, log-sum-exp maxima) give the reference's results.
"""

from __future__ import annotations

import inspect
import math

import numba
import numpy as np
import pytest

from kinebridge.bench import lasa_protocol as proto
from kinebridge.kernels import chunk_blend, gaussian, gmm, gmr, kmp, kmp_tuning, lfe_kmp, metrics, quaternion
from kinebridge.kernels import rm75, tpgmm
from kinebridge.kernels import quaternion as Q
from kinebridge.kernels.gmm import GMM, em_tensor, fit_em, fit_gmm, init_time_based
from kinebridge.kernels.gmr import gmr as gmr_fn
from kinebridge.kernels.gmr import reference
from kinebridge.kernels.kmp import KMP
from kinebridge.kernels.kmp_tuning import holdout_rmse, tune_kmp
from kinebridge.kernels.lfe_kmp import LFEKMP, TaskFrame
from kinebridge.kernels.ref import gmm as rgmm
from kinebridge.kernels.ref import gmr as rgmr
from kinebridge.kernels.ref import lfe_kmp as rlfe
from kinebridge.kernels.ref import quaternion as RQ
from kinebridge.kernels.tpgmm import fit_tpgmm, time_frame, tpgmr

try:
    from kinebridge.runtime.skills.pour import arm_pouring_demos
except ImportError:
    from kinebridge.bench.synthetic_skills import arm_pouring_demos


def _reference(n=80, d=2, seed=0):
    """A smooth [x, ẋ] reference on t ∈ [0.02, 1.6] with random SPD covariances."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.02, 1.6, n)
    x = np.column_stack([np.sin((k + 1) * t + k) for k in range(d)])
    v = np.column_stack([(k + 1) * np.cos((k + 1) * t + k) for k in range(d)])
    a = rng.normal(size=(n, 2 * d, 2 * d)) * 0.05
    sigma = np.einsum("nij,nkj->nik", a, a) + 1e-3 * np.eye(2 * d)
    return t, np.hstack([x, v]), sigma


def _snapshot(model, tq):
    mean, cov = model.predict_cov(tq)
    return (model.predict(tq), mean, cov, model.n_points, model._via_t.copy(), model._via_mu.copy(),
            model._via_sigma.copy(), model._via_replaces.copy())


def _assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ================================================================ 1. atomic via-point updates
@pytest.mark.parametrize("bad", ["sigma_not_pd", "t_nan", "t_out_of_range", "mu_shape", "sigma_shape",
                                 "sigma_nan", "t_2d"])
def test_set_via_points_that_raises_leaves_the_model_exactly_as_before(bad):
    t, mu, sigma = _reference()
    model = KMP(h=20.0, lam=1e-2, lam_c=1.0, kernel="analytic").fit(t, mu, sigma)
    eye = 1e-6 * np.eye(4)
    model.set_via_points([0.5, 1.2], [[1.0, 2.0, 0, 0], [-3.0, 4.0, 0, 0]], eye)
    tq = np.linspace(0.0, 1.6, 57)
    before = _snapshot(model, tq)
    new_t = np.array([0.3, 0.9])
    new_mu = np.array([[10.0, -5.0, 0, 0], [7.0, 8.0, 0, 0]])
    new_sigma = np.stack([eye, eye])
    if bad == "sigma_not_pd":      # the case: the first new via-point is valid, the second not
        new_sigma[1] = -eye
        match = r"sigma\[1\]: covariance is not positive definite"
    elif bad == "t_nan":
        new_t[1] = np.nan
        match = "t: contains non-finite"
    elif bad == "t_out_of_range":
        new_t[1] = 5.0
        match = r"t\[1\]: via-point time 5 is outside the reference time range"
    elif bad == "mu_shape":
        new_mu = new_mu[:, :3]
        match = r"mu: expected \(2, 4\) via-point means"
    elif bad == "sigma_shape":
        new_sigma = np.eye(3)
        match = "sigma: expected"
    elif bad == "sigma_nan":
        new_sigma[1, 0, 0] = np.nan
        match = "sigma: contains non-finite"
    else:
        new_t = new_t[None]
        new_mu = new_mu
        match = r"t: expected a scalar or \(V,\) via-point times"
    with pytest.raises(ValueError, match=match):
        model.set_via_points(new_t, new_mu, new_sigma)
    _assert_same(_snapshot(model, tq), before)
    # and it still works afterwards, with the cached border (means only) and at new times
    model.set_via_points([0.5, 1.2], [[0.0, 1.0, 0, 0], [1.0, 0.0, 0, 0]], eye)
    fresh = KMP(h=20.0, lam=1e-2, lam_c=1.0, kernel="analytic").fit(t, mu, sigma)
    fresh.set_via_points([0.5, 1.2], [[0.0, 1.0, 0, 0], [1.0, 0.0, 0, 0]], eye)
    np.testing.assert_allclose(model.predict(tq), fresh.predict(tq), rtol=0, atol=1e-9)


def test_add_via_point_and_fit_that_raise_leave_the_model_unchanged():
    t, mu, sigma = _reference()
    model = KMP(h=20.0, lam=1e-2, kernel="analytic").fit(t, mu, sigma)
    model.add_via_point(0.7, [1.0, 1.0, 0.0, 0.0], 1e-6 * np.eye(4))
    tq = np.linspace(0.0, 1.6, 41)
    before = _snapshot(model, tq)
    with pytest.raises(ValueError, match=r"sigma\[0\]: covariance is not positive definite"):
        model.add_via_point(0.9, np.zeros(4), -np.eye(4))
    with pytest.raises(ValueError, match=r"sigma: expected \(4, 4\) via-point covariance"):
        model.add_via_point(0.9, np.zeros(4), np.eye(3))
    _assert_same(_snapshot(model, tq), before)
    # a reference whose K + λΣ is not positive definite (duplicate times, negligible noise) fails in
    # the factorization, after validation: the old reference and via-points must survive it
    t_dup = np.concatenate([t, t[:1]])
    mu_dup = np.vstack([mu, mu[:1] + 1.0])
    sig_dup = np.broadcast_to(1e-300 * np.eye(4), (t_dup.size, 4, 4)).copy()
    with pytest.raises(ValueError, match="not positive definite"):
        model.fit(t_dup, mu_dup, sig_dup)
    _assert_same(_snapshot(model, tq), before)


# ================================================================ 2. via-points beyond the range
def test_via_points_slightly_outside_the_reference_range_are_accepted():
    t, mu, sigma = _reference()
    model = KMP(h=20.0, lam=1e-2, kernel="analytic").fit(t, mu, sigma)
    ell = 1.0 / math.sqrt(2.0 * 20.0)
    lo, hi = model.via_time_range
    assert lo == pytest.approx(t[0] - ell - 5e-4) and hi == pytest.approx(t[-1] + ell + 5e-4)
    target = np.concatenate([mu[0, :2] + [0.05, -0.05], [0.0, 0.0]])   # a small move of the start
    free_velocity = np.diag([1e-8, 1e-8, 1e3, 1e3])                    # as in the original demos
    model.add_via_point(t[0] - 0.01, target, free_velocity)             # the case
    end = np.concatenate([mu[-1, :2] - [0.05, 0.02], [0.0, 0.0]])
    model.add_via_point(t[-1] + 0.9 * ell, end, free_velocity)
    assert model.n_points == t.size + 2
    np.testing.assert_allclose(model.predict(t[0] - 0.01)[0, :2], target[:2], atol=1e-4)
    np.testing.assert_allclose(model.predict(t[-1] + 0.9 * ell)[0, :2], end[:2], atol=1e-4)
    # Huang's orientation demo: a via-point at t = 0 before a reference that starts later
    model.set_via_points([0.0], [target], free_velocity)
    np.testing.assert_allclose(model.predict(0.0)[0, :2], target[:2], atol=1e-4)
    assert np.isfinite(model.predict_cov(np.linspace(-0.1, 1.7, 30))[1]).all()


def test_via_points_beyond_one_kernel_length_and_non_finite_times_are_refused():
    t, mu, sigma = _reference()
    model = KMP(h=20.0, lam=1e-2, kernel="analytic").fit(t, mu, sigma)
    ell = 1.0 / math.sqrt(2.0 * 20.0)
    with pytest.raises(ValueError, match=r"t: via-point time .* is outside the reference time range .* "
                                         r"widened by one kernel length"):
        model.add_via_point(t[-1] + 1.2 * ell, np.zeros(4), np.eye(4))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="t: contains non-finite"):
            model.add_via_point(bad, np.zeros(4), np.eye(4))
        with pytest.raises(ValueError, match="t: contains non-finite"):
            model.set_via_points([0.5, bad], np.zeros((2, 4)), np.eye(4))
    assert model.n_points == t.size and model._via_t.size == 0


# ================================================================ 3. LFE-KMP endpoints, any move
@pytest.fixture(scope="module")
def gshape_lfe():
    """LFE-KMP on GShape exactly as `kinebridge eval lasa` builds it (tuned kernels)."""
    demos = proto.load_demos("GShape")
    frames = [proto.frames_for(d.position[0], d.position[-1]) for d in demos]
    return demos, LFEKMP(n_components=8, n_ref=200).fit(demos, frames)


@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0, 8.0])
def test_lfe_kmp_meets_new_start_and_end_on_lasa_whatever_the_move(gshape_lfe, scale):
    # every protocol case (translations, start-only and end-only moves, the seeded random ones),
    # with the moves scaled: ×4 of the protocol's ±10 mm is ±40 mm, ×8 is ±80 mm (4 × a ±20 mm move)
    demos, model = gshape_lfe
    ps, pe = demos[0].position[0], demos[0].position[-1]
    worst = 0.0
    for case in proto.cases(10, 0):
        start = ps + scale * np.asarray(case.delta_start)
        end = pe + scale * np.asarray(case.delta_end)
        traj = model.generalize(proto.frames_for(start, end))
        worst = max(worst, np.linalg.norm(traj.position[0] - start), np.linalg.norm(traj.position[-1] - end))
        assert np.isfinite(traj.position).all() and np.isfinite(traj.covariance).all()
    assert worst <= 1e-2 * 1e-3                                     # ≤ 0.01 µm; the contract is 0.01 mm


def test_soft_enhancement_alone_misses_in_proportion_to_the_move(gshape):
    # documents why the conditioning exists: without it the miss grows linearly with the move
    frames = [proto.frames_for(d.position[0], d.position[-1]) for d in gshape]
    soft = LFEKMP(n_components=8, n_ref=200, exact_ends=False).fit(gshape, frames)
    exact = LFEKMP(n_components=8, n_ref=200).fit(gshape, frames)
    ps, pe = gshape[0].position[0], gshape[0].position[-1]
    misses = []
    for scale in (1.0, 8.0):
        start, end = ps + scale * np.array([10.0, -10.0]), pe + scale * np.array([-10.0, 10.0])
        misses.append(np.linalg.norm(soft.generalize(proto.frames_for(start, end)).position[-1] - end))
        assert np.linalg.norm(exact.generalize(proto.frames_for(start, end)).position[-1] - end) < 1e-9
    assert misses[1] > 4 * misses[0] and misses[1] > 1e-2          # > 0.01 mm at ±80 mm


@pytest.fixture(scope="module")
def arm_pour():
    """The bundled RM75 pour skill and the trajectory node's LFE-KMP settings."""
    demos, frames = arm_pouring_demos(n_demos=6, n_points=200, seed=0, duration=4.0)
    return demos, frames, LFEKMP(n_components=6, n_ref=100).fit(demos, frames)


def _yaw(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _local_anchors(demos, frames):
    """Where every demonstration starts in its start frame and ends in its cup frame (pose)."""
    pos_s = [f[0].rotation.T @ (d.position[0] - f[0].origin) for d, f in zip(demos, frames)]
    pos_e = [f[1].rotation.T @ (d.position[-1] - f[1].origin) for d, f in zip(demos, frames)]
    q_s = [Q.mul(Q.conj(f[0].quaternion), d.orientation[0]) for d, f in zip(demos, frames)]
    q_e = [Q.mul(Q.conj(f[1].quaternion), d.orientation[-1]) for d, f in zip(demos, frames)]
    for group in (pos_s, pos_e):                 # the skill is defined by fixed local anchors
        assert np.ptp(np.array(group), axis=0).max() < 1e-12
    for group in (q_s, q_e):
        assert max(np.linalg.norm(Q.log_at(group[0], g)) for g in group) < 1e-12
    return pos_s[0], pos_e[0], q_s[0], q_e[0]


def _moved_pour_frames(frames, move, angle, rng):
    """The first demonstration's start pose and cup, each moved by ``move`` m and turned by ±``angle``."""
    start0, cup0 = frames[0]
    d_start, d_cup = rng.normal(size=3), rng.normal(size=3)
    d_start *= move / np.linalg.norm(d_start)
    d_cup *= move / np.linalg.norm(d_cup)
    start = TaskFrame(start0.origin + d_start, _yaw(angle) @ start0.rotation)
    cup = TaskFrame(cup0.origin + d_cup, _yaw(-angle) @ cup0.rotation)
    return start, cup


@pytest.mark.parametrize("move, angle_deg", [(0.05, 10.0), (0.2, 45.0), (0.5, 90.0), (0.5, -90.0)])
def test_lfe_kmp_meets_the_pour_start_and_end_poses_for_large_moves(arm_pour, move, angle_deg):
    demos, frames, model = arm_pour
    pos_s, pos_e, q_s, q_e = _local_anchors(demos, frames)
    rng = np.random.default_rng(int(100 * move + angle_deg + 1000))
    for _ in range(3):
        start, cup = _moved_pour_frames(frames, move, np.radians(angle_deg), rng)
        traj = model.generalize([start, cup])
        # the new start pose and the new pour pose: the local anchors seen from the moved frames
        assert np.linalg.norm(traj.position[0] - (start.origin + start.rotation @ pos_s)) <= 1e-5   # ≤ 0.01 mm
        assert np.linalg.norm(traj.position[-1] - (cup.origin + cup.rotation @ pos_e)) <= 1e-5
        start_err = 2 * np.linalg.norm(Q.log_at(Q.mul(start.quaternion, q_s), traj.orientation[0]))
        end_err = 2 * np.linalg.norm(Q.log_at(Q.mul(cup.quaternion, q_e), traj.orientation[-1]))
        assert start_err <= 1e-8 and end_err <= 1e-8                                          # rad
        assert (np.einsum("ti,ti->t", traj.orientation[1:], traj.orientation[:-1]) > 0).all()
        np.testing.assert_allclose(np.linalg.norm(traj.orientation, axis=1), 1.0, atol=1e-12)


def test_end_conditioning_only_touches_the_enhancement_windows(arm_pour):
    demos, frames, model = arm_pour
    start, cup = _moved_pour_frames(frames, 0.5, np.radians(90.0), np.random.default_rng(5))
    _, pos_e, _, _ = _local_anchors(demos, frames)
    exact = model.generalize([start, cup])
    soft = LFEKMP(n_components=6, n_ref=100, exact_ends=False).fit(demos, frames).generalize([start, cup])
    n_win = int(np.ceil(0.1 * (model.t_ref.size - 1)))
    inner = slice(n_win + 1, model.t_ref.size - n_win - 1)
    np.testing.assert_array_equal(exact.position[inner], soft.position[inner])
    np.testing.assert_array_equal(exact.velocity[inner], soft.velocity[inner])
    np.testing.assert_array_equal(exact.orientation[inner], soft.orientation[inner])
    np.testing.assert_array_equal(exact.covariance, soft.covariance)
    np.testing.assert_array_equal(exact.orientation_cov, soft.orientation_cov)
    # the correction is the soft product's miss (tens of µm here), faded out: no kink at the window
    assert 1e-9 < np.abs(exact.position - soft.position).max() < 1e-4
    assert np.linalg.norm(soft.position[-1] - (cup.origin + cup.rotation @ pos_e)) > 1e-5
    # the NumPy reference implements the same conditioning
    ref = rlfe.generalize(model, [start, cup])
    np.testing.assert_allclose(exact.position, ref["position"], atol=1e-10)
    np.testing.assert_allclose(exact.velocity, ref["velocity"], atol=1e-9)
    np.testing.assert_allclose(np.abs(np.einsum("ti,ti->t", exact.orientation, ref["orientation"])), 1, atol=1e-10)


def test_lfe_kmp_still_wins_mean_cs_over_kmp_and_tpgmm_on_gshape():
    # VL-MP Table II's ranking on its shape, the full protocol (16 perturbed cases)
    from kinebridge.bench.lasa_eval import EvalConfig, evaluate_shape
    record, _ = evaluate_shape("GShape", EvalConfig(methods=("kmp", "tp-gmm", "lfe-kmp")))
    cs = {m: r["perturbed"]["c_s"] for m, r in record["methods"].items()}
    assert cs["lfe-kmp"] > cs["tp-gmm"] > cs["kmp"], cs
    lfe = record["methods"]["lfe-kmp"]["perturbed"]
    assert lfe["start_error_max"] < 1e-6 and lfe["end_error_max"] < 1e-6        # mm


# ================================================================ 4. exp of huge vectors
@pytest.mark.parametrize("u", [[1e200, 0.0, 0.0], [1e200, -3e199, 2e200], [0.0, -1e300, 0.0],
                               [1e308, 1e308, -1e308], [1e154, 1e154, 1e154], [3e150, 0.0, 1.0]])
def test_exp_of_huge_vectors_is_a_unit_quaternion_about_the_same_axis(u):
    u = np.array(u)
    q = Q.exp(u)
    assert np.isfinite(q).all()
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-15)
    axis = u / np.abs(u).max()
    axis /= np.linalg.norm(axis)
    v = q[1:]
    np.testing.assert_allclose(np.cross(v, axis), 0.0, atol=1e-15)          # v ∥ u
    np.testing.assert_allclose(q, RQ.exp(u), atol=1e-15)
    assert np.isfinite(Q.exp_at(np.array([1.0, 0, 0, 0]), u)).all()
    assert np.isfinite(Q.unproject(u, np.array([0.0, 1.0, 0, 0]))).all()
    J = Q.right_jacobian(u)
    assert np.isfinite(J).all()
    np.testing.assert_allclose(J, RQ.right_jacobian(u), atol=1e-12)


def test_exp_is_periodic_in_the_angle():
    a = 1e200
    np.testing.assert_array_equal(Q.exp(np.array([a, 0.0, 0.0])), [math.cos(a), math.sin(a), 0.0, 0.0])
    axis = np.array([2.0, -1.0, 0.5]) / np.linalg.norm([2.0, -1.0, 0.5])
    base = 0.3 * axis
    for k in (1, 1000, 10**6):
        np.testing.assert_allclose(Q.exp((0.3 + 2 * np.pi * k) * axis), Q.exp(base), atol=1e-15 * k + 1e-12)
    # the right Jacobian of a huge angle tends to the projector on the axis: e eᵀ + O(1/t)
    J = Q.right_jacobian(1e200 * axis)
    np.testing.assert_allclose(J, np.outer(axis, axis), atol=1e-12)


# ================================================================ 5. continuous chart past 180°
def test_project_continuous_keeps_a_rotation_sweeping_past_180_degrees_continuous():
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    qa = Q.exp(np.array([0.2, 0.1, -0.3]))
    theta = np.linspace(0.0, np.radians(320), 161)                 # relative rotation 0 → 320°
    rel = np.column_stack([np.cos(theta / 2), np.sin(theta / 2)[:, None] * axis])
    q = Q.make_continuous(Q.mul(rel, qa))
    step = np.radians(2.0) / 2                                     # |Δζ| per sample (half angle)
    zeta = Q.project_continuous(q, qa)
    np.testing.assert_allclose(np.linalg.norm(np.diff(zeta, axis=0), axis=1), step, rtol=1e-9)
    np.testing.assert_allclose(zeta, (theta / 2)[:, None] * axis, atol=1e-12)  # passes |ζ| = π/2
    assert_rot = np.minimum(np.abs(Q.unproject(zeta, qa) - q).max(1), np.abs(Q.unproject(zeta, qa) + q).max(1))
    assert assert_rot.max() < 1e-12
    # the pointwise chart folds: it jumps by ~π where the sweep passes 180° (ζ 1.5 → −1.54)
    jumps = np.linalg.norm(np.diff(Q.project(q, qa), axis=0), axis=1)
    assert jumps.max() > 3.0 and np.linalg.norm(Q.project(q, qa), axis=1).max() <= np.pi / 2 + 1e-12
    # sign flips in the input do not matter; the reference agrees; a per-sample q_aux works too
    flipped = q * np.where(np.arange(q.shape[0]) % 3 == 0, -1.0, 1.0)[:, None]
    np.testing.assert_allclose(Q.project_continuous(flipped, qa), zeta, atol=1e-15)
    np.testing.assert_allclose(RQ.project_continuous(q, qa), zeta, atol=1e-12)
    np.testing.assert_allclose(Q.project_continuous(q, np.broadcast_to(qa, q.shape)), zeta, atol=1e-15)
    np.testing.assert_allclose(zeta[0], Q.project(q[0], qa), atol=1e-15)
    with pytest.raises(ValueError, match=r"q: expected a \(T, 4\) quaternion sequence"):
        Q.project_continuous(q[0], qa)
    with pytest.raises(ValueError, match=r"q_aux: expected one \(4,\) auxiliary quaternion"):
        Q.project_continuous(q, q[:3])


# ================================================================ 6. tolerances and regularisers
_X = np.column_stack([np.linspace(0, 1, 120), np.sin(np.linspace(0, 3, 120)), np.cos(np.linspace(0, 3, 120))])


def _gmm():
    return fit_gmm(_X, 3)[0]


_T, _MU, _SIG = _reference(n=40)
_CF = chunk_blend.ChunkFollower
_RANGE = r"\[0, inf\)"
_POS = r"positive finite number \(in \(0, inf\)\)"


@pytest.mark.parametrize("call, match", [
    (lambda: KMP(replace_tol=-1), rf"^replace_tol: expected a time distance in s in {_RANGE}"),
    (lambda: KMP(replace_tol=np.nan), rf"^replace_tol: .*{_RANGE}"),
    (lambda: KMP(replace_tol=np.inf), rf"^replace_tol: .*{_RANGE}"),
    (lambda: KMP(replace_tol="x"), r"^replace_tol: expected"),
    (lambda: KMP(h=np.nan), rf"^h: expected a {_POS}"),
    (lambda: KMP(lam=0.0), rf"^lam: expected a {_POS}"),
    (lambda: KMP(lam_c=np.inf), rf"^lam_c: expected a {_POS}"),
    (lambda: KMP(fd_step=-1e-3), rf"^fd_step: expected a {_POS}"),
    (lambda: fit_gmm(_X, 3, tol=np.nan), r"^tol: expected a log-likelihood tolerance in \[0, inf\), or -inf"),
    (lambda: fit_gmm(_X, 3, tol=-1e-4), r"^tol: .*\[0, inf\), or -inf"),
    (lambda: fit_gmm(_X, 3, tol=np.inf), r"^tol: .*\[0, inf\), or -inf"),
    (lambda: fit_gmm(_X, 3, reg=np.nan), rf"^reg: expected a non-negative regulariser in {_RANGE}"),
    (lambda: fit_gmm(_X, 3, reg=-1e-4), rf"^reg: .*{_RANGE}"),
    (lambda: fit_em(_X, init_time_based(_X, 3), tol=np.nan), r"^tol: "),
    (lambda: em_tensor(_X[None], *_tensor_init(), tol=np.nan), r"^tol: "),
    (lambda: init_time_based(_X, 3, reg=np.nan), rf"^reg: expected a covariance regulariser in {_RANGE}"),
    (lambda: init_time_based(_X, 3, reg=-1.0), rf"^reg: .*{_RANGE}"),
    (lambda: fit_tpgmm(np.stack([_X, _X + 1]), 3, tol=np.nan), r"^tol: "),
    (lambda: fit_tpgmm(np.stack([_X, _X + 1]), 3, reg=-1.0), rf"^reg: .*{_RANGE}"),
    (lambda: gmr_fn(_gmm(), np.array([0.5]), reg=np.nan), rf"^reg: expected a covariance regulariser in {_RANGE}"),
    (lambda: gmr_fn(_gmm(), np.array([0.5]), reg=-1e-8), rf"^reg: .*{_RANGE}"),
    (lambda: reference(_gmm(), np.array([0.5]), reg=np.inf), rf"^reg: .*{_RANGE}"),
    (lambda: holdout_rmse(_T, _MU, _SIG, h=np.nan, lam=1.0), rf"^h: expected a {_POS}"),
    (lambda: holdout_rmse(_T, _MU, _SIG, h=10.0, lam=-1.0), rf"^lam: expected a {_POS}"),
    (lambda: holdout_rmse(_T, _MU, _SIG, h=10.0, lam=1.0, kernel="rbf"), r"^kernel: expected one of"),
    (lambda: holdout_rmse(_T, _MU, _SIG, h=10.0, lam=1.0, holdout=0), r"^holdout: expected an integer >= 2"),
    (lambda: tune_kmp(_T, _MU, _SIG, rel_tol=np.nan), rf"^rel_tol: expected a relative RMSE tolerance in {_RANGE}"),
    (lambda: tune_kmp(_T, _MU, _SIG, rel_tol=-0.1), rf"^rel_tol: .*{_RANGE}"),
    (lambda: tune_kmp(_T, _MU, _SIG, h_bounds=(1.0, np.inf)),
     r"^h_bounds: expected \(low, high\) with 0 < low < high < inf"),
    (lambda: tune_kmp(_T, _MU, _SIG, lam_bounds=(np.nan, 1.0)), r"^lam_bounds: expected \(low, high\)"),
    (lambda: tune_kmp(_T, _MU, _SIG, n_h=0), r"^n_h: expected an integer >= 1"),
    (lambda: LFEKMP(h=-1.0), rf"^h: expected a {_POS}"),
    (lambda: LFEKMP(lam=np.nan), rf"^lam: expected a {_POS}"),
    (lambda: LFEKMP(lam_c=0.0), rf"^lam_c: expected a {_POS}"),
    (lambda: LFEKMP(orientation_h=np.inf), rf"^orientation_h: expected a {_POS}"),
    (lambda: LFEKMP(orientation_lam=-2.0), rf"^orientation_lam: expected a {_POS}"),
    (lambda: LFEKMP(eps=np.nan), rf"^eps: expected a {_POS}"),
    (lambda: LFEKMP(reg=np.nan), rf"^reg: expected a non-negative EM regulariser in {_RANGE}"),
    (lambda: LFEKMP(kernel="rbf"), r"^kernel: expected one of"),
    (lambda: LFEKMP(enhance_fraction=np.nan), r"^enhance_fraction: expected a share"),
    (lambda: Q.product(np.array([[1.0, 0, 0, 0]]), np.eye(3)[None], tol=np.nan), rf"^tol: expected a {_POS}"),
    (lambda: Q.riemannian_mean(np.array([[1.0, 0, 0, 0]]), tol=np.inf), rf"^tol: expected a {_POS}"),
    (lambda: _CF(2, [-1, -1], [1, 1], [1, 1], [1, 1], np.inf), r"^dt: .*positive finite"),
    (lambda: _CF(2, [-1, -1], [1, 1], [1, 1], [1, 1], 0.005, np.nan), r"^blend_s: "),
    (lambda: _CF(2, [-1, -1], [1, 1], [1, -1], [1, 1], 0.005), r"^v_max: limits must be positive"),
    (lambda: _CF(2, [-1, -1], [1, 1], [1, 1], [1, np.nan], 0.005), r"^a_max: limits must be finite"),
    (lambda: _CF(2, [-1, 1], [1, 1], [1, 1], [1, 1], 0.005), r"^q_min/q_max: expected q_min < q_max"),
])
def test_nan_negative_and_infinite_settings_are_refused_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _tensor_init():
    g = init_time_based(_X, 3)
    return g.priors, g.means[None], g.covariances[None]


def test_boundary_settings_that_mean_something_are_accepted():
    t, mu, sigma = _reference(n=40)
    always_append = KMP(h=20.0, lam=1e-2, replace_tol=0.0).fit(t, mu, sigma)
    always_append.add_via_point(float(t[5]), mu[5], 1e-6 * np.eye(4))
    assert always_append.n_points == t.size + 1
    model, report = fit_gmm(_X, 3, tol=0.0, reg=0.0)
    assert report.n_iter >= 1
    _, report = fit_em(_X, init_time_based(_X, 3), tol=-np.inf, max_iter=7)   # run every iteration
    assert report.n_iter == 7 and not report.converged
    assert gmr_fn(model, np.array([0.5]), reg=0.0)[0].shape == (1, 2)


# ================================================================ 7. fast-math and −inf markers
_MODULES = (chunk_blend, gaussian, gmm, gmr, kmp, kmp_tuning, lfe_kmp, metrics, quaternion, rm75, tpgmm)


def test_no_kernel_assumes_no_infs_or_nans():
    compiled = [(m.__name__, name, obj) for m in _MODULES for name, obj in inspect.getmembers(m)
                if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == m.__name__]
    assert len(compiled) > 40
    fast = []
    for mod, name, disp in compiled:
        flags = disp.targetoptions.get("fastmath", False)
        assert flags is not True, f"{mod}.{name}: fastmath=True implies ninf/nnan"
        if flags:
            flags = set(flags) if not isinstance(flags, dict) else {k for k, v in flags.items() if v}
            assert not flags & {"ninf", "nnan", "fast"}, f"{mod}.{name}: fastmath {flags}"
            fast.append(f"{mod}.{name}")
    assert {"kinebridge.kernels.gmm._e_step", "kinebridge.kernels.gmm._m_step",
            "kinebridge.kernels.gmr._gmr_batch"} <= set(fast)


def test_gmr_with_empty_components_and_far_queries_matches_the_reference():
    # π_k = 0 makes log π_k = −inf (the marker) inside the fast-math GMR loop; far queries make the
    # log-sum-exp maximum start from −inf and every weight underflow but one
    model = _gmm()
    dead = GMM(np.array([0.6, 0.0, 0.4]), model.means, model.covariances)
    x = np.array([-50.0, -1.0, 0.0, 0.31, 0.5, 0.93, 1.0, 2.0, 80.0, 1e3])
    mean, cov = gmr_fn(dead, x)
    with np.errstate(divide="ignore"):
        rmean, rcov = rgmr.gmr(dead.priors, dead.means, dead.covariances, x, [0], [1, 2])
    assert np.isfinite(mean).all() and np.isfinite(cov).all()
    np.testing.assert_allclose(mean, rmean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(cov, rcov, rtol=1e-8, atol=1e-12)
    # the component with weight 0 has no influence: same as the mixture without it
    live = GMM(np.array([0.6, 0.4]), model.means[[0, 2]], model.covariances[[0, 2]])
    np.testing.assert_allclose(mean, gmr_fn(live, x)[0], rtol=1e-12, atol=1e-12)


def test_em_with_an_empty_component_keeps_it_empty_and_fits_the_rest():
    init = init_time_based(_X, 3)
    pri = np.array([0.5, 0.0, 0.5])
    fitted, report = fit_em(_X, GMM(pri, init.means, init.covariances), max_iter=40)
    assert fitted.priors[1] == 0.0 and np.isfinite(report.log_likelihood).all()
    np.testing.assert_array_equal(fitted.means[1], init.means[1])
    alone, _ = fit_em(_X, GMM(np.array([0.5, 0.5]), init.means[[0, 2]], init.covariances[[0, 2]]), max_iter=40)
    np.testing.assert_allclose(fitted.means[[0, 2]], alone.means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fitted.covariances[[0, 2]], alone.covariances, rtol=1e-10, atol=1e-12)
    # and the reference EM agrees on the live components
    rp, rm, rc, _, _ = rgmm.em(_X, np.array([0.5, 0.5]), init.means[[0, 2]], init.covariances[[0, 2]], max_iter=40)
    np.testing.assert_allclose(alone.means, rm, rtol=1e-9, atol=1e-10)


def test_tpgmr_equals_itself_through_the_product_with_unit_frames():
    # smoke test that the fast-math product path stays finite for far queries too
    local = np.stack([_X, _X])
    model, _ = fit_tpgmm(local, 3)
    A, b = zip(*[time_frame(np.eye(2), np.zeros(2), velocity=False)] * 2)
    mu, cov = tpgmr(model, np.stack(A), np.stack(b), np.array([-5.0, 0.5, 7.0]))
    assert np.isfinite(mu).all() and np.isfinite(cov).all()
