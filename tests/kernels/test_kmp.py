"""KMP: golden parity with the original code, NumPy reference parity, via-point updates against a
full refit, and the properties of kmp.md §8."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kinebridge.kernels.kmp import KMP
from kinebridge.kernels.ref import kmp as rkmp

T400 = np.arange(1, 401) * 0.005
VIA2_SIGMA = np.diag([1e-6, 1e-6, 1e3, 1e3])


@pytest.fixture(scope="module")
def letter_ref(golden):
    """The GMR reference of demo_KMP01/02: 400 points of [x, y, ẋ, ẏ] with covariances."""
    return T400, golden["DataOut"].T.copy(), golden["SigmaOut"].transpose(2, 0, 1).copy()


# ---------------------------------------------------------------- golden parity (FD kernel)
def test_demo_kmp01_mean_matches_original(golden, letter_ref):
    kmp = KMP(h=6, lam=1, lam_c=60, kernel="fd").fit(*letter_ref)
    for j in range(4):
        kmp.add_via_point(golden["via_time"][0, j], golden["via_point"][:, j], 1e-6 * np.eye(4))
    assert kmp.n_points == 400                       # all four via-points replace reference entries
    np.testing.assert_allclose(kmp.predict(T400), golden["kmp1"].T, atol=1e-6)


def test_demo_kmp02_mean_and_covariance_match_original(golden, letter_ref):
    kmp = KMP(h=6, lam=1, lam_c=60, kernel="fd").fit(*letter_ref)
    for j in range(3):
        kmp.add_via_point(golden["via2_time"][0, j], golden["via2_point"][:, j], VIA2_SIGMA)
    mean, cov = kmp.predict_cov(T400)
    np.testing.assert_allclose(mean, golden["kmp2"].T, atol=1e-6)
    np.testing.assert_allclose(cov, golden["kmp2S"].transpose(2, 0, 1), atol=1e-8)


def test_analytic_kernel_is_a_different_model(golden, letter_ref):
    """The analytic-derivative kernel does not reproduce the original (kmp.md §4): documented, not a bug."""
    kmp = KMP(h=6, lam=1, kernel="analytic").fit(*letter_ref)
    for j in range(4):
        kmp.add_via_point(golden["via_time"][0, j], golden["via_point"][:, j], 1e-6 * np.eye(4))
    assert np.abs(kmp.predict(T400) - golden["kmp1"].T).max() > 1e-3


# ---------------------------------------------------------------- NumPy reference parity
def _reference(seed, n=60, d=2):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.02, 1.2, n)
    pos = np.column_stack([np.sin((i + 2) * t) for i in range(d)])
    vel = np.column_stack([(i + 2) * np.cos((i + 2) * t) for i in range(d)])
    a = rng.standard_normal((n, 2 * d, 2 * d)) * 0.05
    sigma = a @ a.transpose(0, 2, 1) + 0.01 * np.eye(2 * d)
    return t, np.hstack([pos, vel]), sigma


@pytest.mark.parametrize("kernel", ["fd", "analytic"])
@pytest.mark.parametrize("derivatives", [True, False])
def test_predictions_match_the_numpy_reference(kernel, derivatives):
    t, mu, sigma = _reference(1)
    if not derivatives:
        mu, sigma = mu[:, :2], sigma[:, :2, :2]
    kmp = KMP(h=8, lam=0.5, lam_c=20, kernel=kernel, derivatives=derivatives).fit(t, mu, sigma)
    ref = rkmp.KMPReference(h=8, lam=0.5, lam_c=20, kernel=kernel, derivatives=derivatives,
                            solver="cholesky").fit(t, mu, sigma, with_cov=True)
    tq = np.linspace(0, 1.3, 37)
    m, c = kmp.predict_cov(tq)
    rm, rc = ref.predict_cov(tq)
    np.testing.assert_allclose(m, rm, atol=1e-8)
    np.testing.assert_allclose(c, rc, atol=1e-8)


def _refit(t, mu, sigma, vias, **kw):
    """The original procedure: insert every via-point (kmp_insertPoint), then a full fit."""
    for tv, mv, sv in vias:
        t, mu, sigma = rkmp.insert_point(t, mu, sigma, tv, mv, sv)
    return rkmp.KMPReference(solver="cholesky", **kw).fit(t, mu, sigma, with_cov=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_via=st.integers(1, 5), snap=st.lists(st.booleans(), min_size=5, max_size=5))
@example(seed=311, n_via=3, snap=[True, False, False, False, False])   # two ε-variance via-points 2.3 ms apart
def test_bordered_via_point_update_equals_a_full_refit(seed, n_via, snap):
    """Appended and replacing via-points (random mix) give what refitting from scratch gives."""
    rng = np.random.default_rng(seed)
    t, mu, sigma = _reference(seed)
    vias = []
    for i in range(n_via):
        tv = t[rng.integers(len(t))] + (rng.uniform(-4e-4, 4e-4) if snap[i] else rng.uniform(0.002, 0.008))
        tv = float(np.clip(tv, t[0], t[-1]))
        sv = np.diag(rng.choice([1e-6, 1e-2, 1e3], 4))
        vias.append((tv, rng.normal(0, 1, 4), sv))
    kw = dict(h=10.0, lam=0.3, lam_c=5.0, kernel="analytic")
    kmp = KMP(**kw).fit(t, mu, sigma)
    for v in vias:
        kmp.add_via_point(*v)
    ref = _refit(t, mu, sigma, vias, **kw)
    assert kmp.n_points == len(ref.t)
    tq = np.linspace(0, 1.25, 29)
    m, c = kmp.predict_cov(tq)
    rm, rc = ref.predict_cov(tq)
    # ε-variance via-points next to reference points (or to each other: seed 311 puts two 2.3 ms
    # apart) push cond(K + λΣ) to ~1e10: both solutions are then only good to the forward error that
    # conditioning allows, a few 1e-6 relative on the means
    np.testing.assert_allclose(m, rm, atol=1e-5 * np.abs(rm).max())
    np.testing.assert_allclose(c, rc, atol=1e-7 * np.abs(rc).max())


def test_moving_via_points_in_space_reuses_the_border(letter_ref):
    kmp = KMP(h=6, lam=1).fit(*letter_ref)
    kmp.set_via_points([0.005, 2.0], np.array([[8.0, 10, 0, 0], [-3, 1, 0, 0]]), VIA2_SIGMA)
    kmp.predict(0.5)
    border = kmp._border["mean"][1]
    kmp.set_via_points([0.005, 2.0], np.array([[5.0, 7, 0, 0], [-1, 2, 0, 0]]), VIA2_SIGMA)
    moved = kmp.predict([0.005, 2.0])
    assert kmp._border["mean"][1] is border                     # no new triangular solves
    np.testing.assert_allclose(moved[:, :2], [[5, 7], [-1, 2]], atol=1e-2)


# ---------------------------------------------------------------- properties (kmp.md §8)
def test_via_point_error_is_small(golden, letter_ref):
    kmp = KMP(h=6, lam=1, kernel="fd").fit(*letter_ref)
    for j in range(4):
        kmp.add_via_point(golden["via_time"][0, j], golden["via_point"][:, j], 1e-6 * np.eye(4))
    err = kmp.predict(golden["via_time"][0]) - golden["via_point"].T
    assert np.abs(err).max() <= 5e-3


@pytest.mark.parametrize("kernel", ["fd", "analytic"])
def test_covariance_is_symmetric_and_positive_semidefinite(letter_ref, kernel):
    kmp = KMP(h=6, lam=1, lam_c=60, kernel=kernel).fit(*letter_ref)
    kmp.add_via_point(1.0, np.zeros(4), VIA2_SIGMA)
    _, cov = kmp.predict_cov(np.linspace(0, 2.5, 60))
    assert np.abs(cov - cov.transpose(0, 2, 1)).max() == 0
    w = np.linalg.eigvalsh(cov)
    assert w.min() >= -1e-10 * np.abs(cov).max()


def test_lambda_moves_only_the_mean_and_lambda_c_only_the_covariance(letter_ref):
    tq = np.linspace(0.1, 1.9, 25)
    base_m, base_c = KMP(h=6, lam=1, lam_c=60).fit(*letter_ref).predict_cov(tq)
    m_c, c_c = KMP(h=6, lam=1, lam_c=5).fit(*letter_ref).predict_cov(tq)
    m_l, c_l = KMP(h=6, lam=0.1, lam_c=60).fit(*letter_ref).predict_cov(tq)
    np.testing.assert_array_equal(m_c, base_m)
    np.testing.assert_array_equal(c_l, base_c)
    assert np.abs(c_c - base_c).max() > 1e-3 and np.abs(m_l - base_m).max() > 1e-3


def test_far_field_returns_to_the_prior(letter_ref):
    kmp = KMP(h=6, lam=1, lam_c=60).fit(*letter_ref)
    mean, cov = kmp.predict_cov(np.array([T400[-1] + 1.0]))
    k_tt = 1.0                                                  # k(t, t) on the position block
    assert np.abs(mean[0, :2]).max() < 1e-3 * np.abs(letter_ref[1][:, :2]).max()
    np.testing.assert_allclose(np.diag(cov[0])[:2], 400 / 60 * k_tt, rtol=1e-3)


def test_replace_within_tolerance_else_append(letter_ref):
    kmp = KMP(h=6, lam=1).fit(*letter_ref)
    kmp.add_via_point(0.2502, np.zeros(4), np.eye(4))           # |Δt| = 2e-4 < 5e-4 from t = 0.25
    assert kmp.n_points == 400 and kmp._via_replaces.tolist() == [49]
    kmp.add_via_point(0.2512, np.zeros(4), np.eye(4))           # 1.2e-3 away from every entry
    assert kmp.n_points == 401 and kmp._via_replaces.tolist() == [49, -1]
    kmp.add_via_point(0.2510, np.ones(4), np.eye(4))            # overwrites the appended via-point
    assert kmp.n_points == 401 and kmp._via_mu[1, 0] == 1.0


def test_refit_drops_via_points_and_cached_columns(letter_ref):
    kmp = KMP(h=6, lam=1).fit(*letter_ref)
    kmp.add_via_point(0.7, np.zeros(4), np.eye(4))
    before = kmp.predict(T400)
    kmp.fit(*letter_ref)
    assert kmp.n_points == 400 and not kmp._columns
    assert np.abs(kmp.predict(T400) - before).max() > 1e-3


# ---------------------------------------------------------------- bad input
def test_bad_input_is_named(letter_ref):
    t, mu, sigma = letter_ref
    with pytest.raises(ValueError, match="call fit"):
        KMP().predict(0.5)
    with pytest.raises(ValueError, match="kernel: expected one of"):
        KMP(kernel="rbf")
    with pytest.raises(ValueError, match="h: expected a positive"):
        KMP(h=-1)
    with pytest.raises(ValueError, match="O must be even"):
        KMP().fit(t, mu[:, :3], sigma[:, :3, :3])
    bad = sigma.copy()
    bad[7] = -np.eye(4)
    with pytest.raises(ValueError, match=r"sigma\[7\]: covariance is not positive definite"):
        KMP().fit(t, mu, bad)
    with pytest.raises(ValueError, match="mu: contains non-finite"):
        KMP().fit(t, np.where(np.arange(400)[:, None] == 3, np.nan, mu), sigma)
    kmp = KMP().fit(t, mu, sigma)
    with pytest.raises(ValueError, match="outside the reference time range"):
        kmp.add_via_point(2.5, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"mu: expected \(4,\) via-point mean"):
        kmp.add_via_point(1.0, np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="t: expected a scalar or"):
        kmp.predict(np.zeros((2, 2)))
