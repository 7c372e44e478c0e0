"""GMM (time-based init, EM) and GMR against the original code's outputs, the NumPy reference and
their invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinebridge.kernels.gmm import GMM, fit_em, fit_gmm, init_time_based
from kinebridge.kernels.gmr import gmr, gmr_mean_derivative, reference
from kinebridge.kernels.ref import gmm as rgmm, gmr as rgmr


def _golden_model(g, prefix=""):
    return GMM(g[f"Priors{prefix}"][0], g[f"Mu{prefix}"].T, g[f"Sigma{prefix}"].transpose(2, 0, 1))


# ---------------------------------------------------------------- golden parity with robInfLib
def test_time_based_init_matches_original(golden):
    init = init_time_based(golden["Data"].T, 8)
    ref = _golden_model(golden, "0")
    np.testing.assert_allclose(init.priors, ref.priors, atol=1e-15)
    np.testing.assert_allclose(init.means, ref.means, atol=1e-12)
    np.testing.assert_allclose(init.covariances, ref.covariances, atol=1e-10)


def test_em_matches_original_iterations_and_parameters(golden):
    model, report = fit_em(golden["Data"].T, _golden_model(golden, "0"), reg=1e-4, tol=1e-4)
    ref = _golden_model(golden)
    assert report.converged and report.n_iter == 37          # EM_GMM.m stops after 37 iterations
    np.testing.assert_allclose(model.priors, ref.priors, atol=1e-12)
    np.testing.assert_allclose(model.means, ref.means, atol=1e-9)
    np.testing.assert_allclose(model.covariances, ref.covariances, atol=1e-9)


def test_gmr_matches_original(golden):
    mu, cov = gmr(_golden_model(golden), np.arange(1, 401) * 0.005)
    np.testing.assert_allclose(mu, golden["DataOut"].T, atol=1e-10)
    np.testing.assert_allclose(cov, golden["SigmaOut"].transpose(2, 0, 1), atol=1e-9)


# ---------------------------------------------------------------- NumPy reference parity
def _random_data(rng, m=300, d=4):
    t = np.sort(rng.uniform(0, 2, m))
    x = np.column_stack([t] + [np.sin((i + 1) * t) + 0.05 * rng.standard_normal(m) for i in range(d - 1)])
    return x


def test_em_matches_numpy_reference_on_a_frame_tensor():
    rng = np.random.default_rng(3)
    x = _random_data(rng)
    init = init_time_based(x, 5)
    model, report = fit_em(x, init)
    pri, mu, cov, n_iter, hist = rgmm.em(x, init.priors, init.means, init.covariances)
    assert n_iter == report.n_iter
    np.testing.assert_allclose(report.log_likelihood, hist, rtol=1e-10)
    np.testing.assert_allclose(model.means, mu, atol=1e-9)
    np.testing.assert_allclose(model.covariances, cov, atol=1e-9)


def test_gmr_matches_numpy_reference_with_two_inputs():
    rng = np.random.default_rng(4)
    x = _random_data(rng, d=5)
    model, _ = fit_gmm(x, 4)
    q = rng.uniform(0, 2, (50, 2))
    mu, cov = gmr(model, q, in_idx=[0, 2], out_idx=[1, 3, 4])
    rmu, rcov = rgmr.gmr(model.priors, model.means, model.covariances, q, [0, 2], [1, 3, 4])
    np.testing.assert_allclose(mu, rmu, atol=1e-10)
    np.testing.assert_allclose(cov, rcov, atol=1e-10)


# ---------------------------------------------------------------- invariants
@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_em_log_likelihood_never_decreases(seed, k):
    # EM's monotonicity holds for the plain likelihood; the εI regulariser bends it slightly, so reg = 0
    x = _random_data(np.random.default_rng(seed))
    _, report = fit_em(x, init_time_based(x, k), reg=0.0, tol=-np.inf, max_iter=30)
    assert np.all(np.diff(report.log_likelihood) > -1e-10)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_gmr_covariances_are_symmetric_positive_definite(seed):
    rng = np.random.default_rng(seed)
    model, _ = fit_gmm(_random_data(rng), 4)
    _, cov = gmr(model, rng.uniform(-1, 3, 40))   # includes queries outside the data
    assert np.allclose(cov, cov.transpose(0, 2, 1))
    assert np.linalg.eigvalsh(cov).min() > 0


def test_gmr_far_from_data_follows_the_nearest_component_instead_of_nan():
    model, _ = fit_gmm(_random_data(np.random.default_rng(0)), 3)
    mu, cov = gmr(model, np.array([1e4]))
    assert np.isfinite(mu).all() and np.isfinite(cov).all()


def test_mean_derivative_is_the_derivative_of_the_gmr_mean(golden):
    model = _golden_model(golden)
    t = np.linspace(0.02, 1.98, 97)
    e = 1e-6
    fd = (gmr(model, t + e, return_cov=False) - gmr(model, t - e, return_cov=False)) / (2 * e)
    np.testing.assert_allclose(gmr_mean_derivative(model, t), fd, atol=1e-5 * np.abs(fd).max())


def test_consistent_reference_keeps_positions_and_replaces_velocities(golden):
    model = _golden_model(golden)
    t = np.arange(1, 401) * 0.005
    raw, _ = reference(model, t, consistent=False)
    con, _ = reference(model, t)
    np.testing.assert_array_equal(con[:, :2], raw[:, :2])
    np.testing.assert_allclose(con[:, 2:], gmr_mean_derivative(model, t, 0, [1, 2]))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("data, k, match", [
    (np.full((50, 3), np.nan), 2, "data: contains non-finite"),
    (np.zeros(10), 2, "data: expected"),
    (np.column_stack([np.linspace(0, 1, 5), np.zeros(5)]), 4, "too few samples for 4 components"),
])
def test_bad_training_data_is_named(data, k, match):
    with pytest.raises(ValueError, match=match):
        fit_gmm(data, k)


def test_bad_mixture_parameters_are_named():
    with pytest.raises(ValueError, match="priors: expected non-negative weights summing to 1"):
        GMM(np.array([0.7, 0.7]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(ValueError, match=r"covariances\[1\]: covariance is not positive definite"):
        GMM(np.array([0.5, 0.5]), np.zeros((2, 2)), np.stack([np.eye(2), -np.eye(2)]))
    model = GMM(np.array([1.0]), np.zeros((1, 3)), np.eye(3)[None])
    with pytest.raises(ValueError, match="in_idx/out_idx: input and output dimensions overlap"):
        gmr(model, np.zeros(3), in_idx=[0], out_idx=[0, 1])
    with pytest.raises(ValueError, match="inputs: contains non-finite"):
        gmr(model, np.array([0.0, np.inf]))
