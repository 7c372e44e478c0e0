"""TP-GMM: projection, frame-tensor EM, product and TP-GMR against the NumPy reference, and the
equivariance a frame-based model must have."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinebridge.kernels.gaussian import gaussian_product
from kinebridge.kernels.gmm import fit_gmm
from kinebridge.kernels.gmr import gmr
from kinebridge.kernels.ref import tpgmm as rtp
from kinebridge.kernels.tpgmm import fit_tpgmm, project, time_frame, tpgmr


def _rot(a):
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _demos(rng, n_demos=4, n=80):
    """Letter-like 2-D demos with random start/end; frames at both ends, rotated to start→end."""
    rows, frames = [], []
    t = np.linspace(0.01, 1.0, n)
    for _ in range(n_demos):
        start, end = rng.uniform(-5, 5, 2), rng.uniform(10, 20, 2)
        a = np.arctan2(*(end - start)[::-1])
        shape = np.column_stack([t, 0.3 * np.sin(np.pi * t)]) * np.linalg.norm(end - start)
        pos = start + shape @ _rot(a).T + 0.02 * rng.standard_normal((n, 2))
        vel = np.gradient(pos, t, axis=0)
        rows.append(np.column_stack([t, pos, vel]))
        f = [time_frame(_rot(a), start), time_frame(_rot(a), end)]
        frames.append(f)
    data = np.concatenate(rows)
    A = np.concatenate([np.broadcast_to(np.stack([a for a, _ in f]), (n, 2, 5, 5)) for f in frames])
    b = np.concatenate([np.broadcast_to(np.stack([v for _, v in f]), (n, 2, 5)) for f in frames])
    return data, A, b


@pytest.fixture(scope="module")
def model():
    data, A, b = _demos(np.random.default_rng(0))
    return fit_tpgmm(project(data, A, b), 5)[0]


def test_projection_matches_reference_and_inverts():
    data, A, b = _demos(np.random.default_rng(1))
    first = data[:80]                                  # one demo: its frames are constant
    np.testing.assert_allclose(project(first, A[0], b[0]), rtp.project(first, A[0], b[0]), atol=1e-12)
    local = project(data, A, b)                       # per-sample frames
    for p in range(2):
        back = np.einsum("nij,nj->ni", A[:, p], local[p]) + b[:, p]
        np.testing.assert_allclose(back, data, atol=1e-10)


def test_product_and_tpgmr_match_reference(model):
    A = np.stack([time_frame(_rot(0.3), [1.0, 2.0])[0], time_frame(_rot(0.3), [14.0, 9.0])[0]])
    b = np.stack([time_frame(_rot(0.3), [1.0, 2.0])[1], time_frame(_rot(0.3), [14.0, 9.0])[1]])
    g = model.product(A, b)
    rmu, rcov = rtp.product(model.priors, model.means, model.covariances, A, b)
    np.testing.assert_allclose(g.means, rmu, atol=1e-9)
    np.testing.assert_allclose(g.covariances, rcov, atol=1e-9)
    t = np.linspace(0, 1, 30)
    mu, cov = tpgmr(model, A, b, t)
    rmu, rcov = rtp.tpgmr(model.priors, model.means, model.covariances, A, b, t, [0], [1, 2, 3, 4])
    np.testing.assert_allclose(mu, rmu, atol=1e-9)
    np.testing.assert_allclose(cov, rcov, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.floats(-50, 50), st.floats(-50, 50), st.floats(-np.pi, np.pi))
def test_retrieval_is_equivariant_to_moving_every_frame(dx, dy, angle):
    """Moving all task frames by a rigid motion moves the retrieved trajectory by the same motion."""
    data, A0, b0 = _demos(np.random.default_rng(2))
    model, _ = fit_tpgmm(project(data, A0, b0), 4)
    frames = [time_frame(_rot(0.2), [0.0, 1.0]), time_frame(_rot(0.2), [15.0, 12.0])]
    A = np.stack([a for a, _ in frames])
    b = np.stack([v for _, v in frames])
    G = time_frame(_rot(angle), [dx, dy])  # the rigid motion as a time-driven frame
    A2 = np.einsum("ij,pjk->pik", G[0], A)
    b2 = np.einsum("ij,pj->pi", G[0], b) + G[1]
    t = np.linspace(0.05, 0.95, 20)
    for retrieve in (lambda A, b: gmr(model.product(A, b), t, return_cov=False),
                     lambda A, b: tpgmr(model, A, b, t)[0]):
        y, y2 = retrieve(A, b), retrieve(A2, b2)
        expected = np.column_stack([y[:, :2] @ _rot(angle).T + [dx, dy], y[:, 2:] @ _rot(angle).T])
        np.testing.assert_allclose(y2, expected, atol=1e-8)


def test_identity_frames_reduce_to_a_plain_gmm():
    data, _, _ = _demos(np.random.default_rng(3))
    I = np.broadcast_to(np.eye(5), (1, 5, 5))
    model, rep = fit_tpgmm(project(data, I, np.zeros((1, 5))), 4)
    plain, rep2 = fit_gmm(data, 4)
    assert rep.n_iter == rep2.n_iter
    np.testing.assert_allclose(model.means[0], plain.means, atol=1e-9)


def test_gaussian_product_of_identical_gaussians_halves_the_covariance():
    cov = np.array([[2.0, 0.3], [0.3, 1.0]])
    mu, c = gaussian_product(np.array([[1.0, 2.0], [1.0, 2.0]]), np.stack([cov, cov]))
    np.testing.assert_allclose(mu, [1, 2])
    np.testing.assert_allclose(c, cov / 2)


def test_bad_frames_are_named(model):
    data, A, b = _demos(np.random.default_rng(4))
    A = A.copy()
    A[10, 1] = 0.0
    with pytest.raises(ValueError, match=r"A\[10, 1\]: frame 1 of sample 10 is singular"):
        project(data, A, b)
    with pytest.raises(ValueError, match=r"A: expected \(2, 5, 5\) frame matrices"):
        model.product(np.eye(5)[None], np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"A\[0\]: frame matrix is singular"):
        model.product(np.zeros((2, 5, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="covariances.*not positive definite"):
        gaussian_product(np.zeros((2, 2)), np.stack([np.eye(2), -np.eye(2)]))
