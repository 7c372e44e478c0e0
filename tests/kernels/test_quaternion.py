"""Tests for kinebridge.kernels.quaternion (compiled) against kinebridge.kernels.ref.quaternion (NumPy).

Conventions under test: w-first, half-angle log/exp (|log q| = theta/2), shortest-path charts,
Huang's auxiliary chart log(q conj(qa)), body chart log(conj(base) x), S^3 parallel transport and
the Riemannian product of Gaussians (VL-MP eq. 6).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.spatial.transform import Rotation

from kinebridge.kernels import quaternion as Q
from kinebridge.kernels.ref import quaternion as R

FAST = settings(max_examples=40, deadline=None)
HALF_PI = np.pi / 2

# ----------------------------------------------------------------------------------------------
# Strategies and helpers
# ----------------------------------------------------------------------------------------------

_coord = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)
unit_quats = (st.tuples(_coord, _coord, _coord, _coord)
              .map(np.array)
              .filter(lambda v: np.linalg.norm(v) > 0.1)
              .map(lambda v: v / np.linalg.norm(v)))
tangents = st.tuples(*(st.floats(-1.5, 1.5, allow_nan=False),) * 3).map(np.array)
unit_axes = (st.tuples(_coord, _coord, _coord).map(np.array)
             .filter(lambda v: np.linalg.norm(v) > 0.1).map(lambda v: v / np.linalg.norm(v)))
seeds = st.integers(0, 2**32 - 1)


def rand_quats(rng, n):
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def special_quats():
    """Edge cases: identity, -identity, 180 degree turns, tiny and near-pi angles, w < 0."""
    s = np.sqrt(0.5)
    out = [[1, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0], [0, s, s, 0], [s, 0, 0, s],
           [-s, s, 0, 0], [np.cos(1e-13), np.sin(1e-13), 0, 0], [np.cos(1e-9), 0, np.sin(1e-9), 0],
           [np.cos(1e-5), 0, 0, -np.sin(1e-5)], [1e-9, np.sqrt(1 - 1e-18), 0, 0],
           [-np.cos(0.3), 0, np.sin(0.3), 0]]
    out = np.array(out, dtype=float)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def rand_spd(rng, n, lo=1e-2, hi=1.0):
    """n random SPD 3x3 matrices with eigenvalues in [lo, hi] (log-uniform), random orientation."""
    rot = Rotation.random(n, random_state=rng).as_matrix()
    eig = np.exp(rng.uniform(np.log(lo), np.log(hi), size=(n, 3)))
    return np.einsum("nij,nj,nkj->nik", rot, eig, rot)


def assert_same_rotation(p, q, atol=1e-12):
    """p == +q or p == -q row by row."""
    p = np.asarray(p).reshape(-1, 4)
    q = np.asarray(q).reshape(-1, 4)
    err = np.minimum(np.abs(p - q).max(-1), np.abs(p + q).max(-1))
    assert err.max() <= atol, f"max distance to ±q is {err.max():.3g}"


def rodrigues_quat(axis, angle):
    """w-first quaternion of a rotation by ``angle`` about unit ``axis`` (independent of the module)."""
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * np.asarray(axis)])


# ----------------------------------------------------------------------------------------------
# Parity with the NumPy reference
# ----------------------------------------------------------------------------------------------


def _parity_cases():
    rng = np.random.default_rng(20240611)
    n = 400
    a = np.vstack([rand_quats(rng, n), special_quats()])
    b = np.vstack([rand_quats(rng, n), special_quats()[::-1]])
    m = a.shape[0]
    u = np.vstack([rng.normal(size=(n, 3)), np.zeros((1, 3)), [[1e-13, 0, 0]], [[0, 1e-7, 0]],
                   [[HALF_PI, 0, 0]], [[0, 0, -3.0]], rng.normal(size=(m - n - 5, 3)) * 1e-4])
    traj = Q.make_continuous(Q.exp(np.cumsum(rng.normal(size=(300, 3)) * 0.05, axis=0)))
    return {
        "mul": (a, b),
        "mul_broadcast": (a, b[0]),
        "conj": (a,),
        "log": (a,),
        "exp": (u,),
        "to_matrix": (a,),
        "from_matrix": (R.to_matrix(a),),
        "from_xyzw": (a,),
        "to_xyzw": (a,),
        "project": (a, b),
        "project_single_aux": (a, b[3]),
        "unproject": (u, b),
        "log_at": (a, b),
        "exp_at": (a, u),
        "parallel_transport": (a, b),
        "parallel_transport_self": (a, a),
        "right_jacobian": (u,),
        "make_continuous": (a,),
        "angular_velocity": (traj, 0.01),
        "riemannian_mean": (Q.exp_at(a[1], 0.5 * rng.normal(size=(40, 3))) * rng.choice([-1.0, 1.0], (40, 1)),),
        "riemannian_mean_weighted": (Q.exp_at(a[0], 0.4 * rng.normal(size=(30, 3))), rng.uniform(0, 1, 30)),
    }


_PARITY = _parity_cases()


@pytest.mark.parametrize("case", sorted(_PARITY))
def test_parity_with_reference(case):
    name = case.split("_broadcast")[0].split("_single")[0].split("_self")[0].split("_weighted")[0]
    args = _PARITY[case]
    fast = getattr(Q, name)(*args)
    ref = getattr(R, name)(*args)
    assert fast.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12 * scale)
    assert np.isfinite(fast).all()


@given(seed=seeds, P=st.integers(1, 4))
@settings(max_examples=25, deadline=None)
def test_product_parity_with_reference(seed, P):
    rng = np.random.default_rng(seed)
    means = Q.exp_at(rand_quats(rng, 1)[0], rng.normal(size=(P, 3)) * 0.6)
    means *= rng.choice([-1.0, 1.0], size=(P, 1))  # hemisphere handling
    covs = rand_spd(rng, P)
    mu, cov = Q.product(means, covs)
    mu_r, cov_r = R.product(means, covs)
    np.testing.assert_allclose(mu, mu_r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, cov_r, rtol=0, atol=1e-12 * np.abs(cov_r).max())


def test_product_batch_parity_with_reference():
    rng = np.random.default_rng(7)
    T, P = 30, 3
    means = rand_quats(rng, T * P).reshape(T, P, 4)
    covs = rand_spd(rng, T * P).reshape(T, P, 3, 3)
    mu, cov = Q.product_batch(means, covs)
    mu_r, cov_r = R.product_batch(means, covs)
    np.testing.assert_allclose(mu, mu_r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, cov_r, rtol=0, atol=1e-12)


def test_shapes_and_broadcasting():
    rng = np.random.default_rng(3)
    q = rand_quats(rng, 24).reshape(2, 3, 4, 4)
    assert Q.log(q).shape == (2, 3, 4, 3)
    assert Q.to_matrix(q).shape == (2, 3, 4, 3, 3)
    assert Q.from_matrix(Q.to_matrix(q)).shape == (2, 3, 4, 4)
    assert Q.mul(q, q[0, 0, 0]).shape == (2, 3, 4, 4)
    assert Q.parallel_transport(q[:, :1], q[0]).shape == (2, 3, 4, 3, 3)
    assert Q.exp(np.zeros(3)).shape == (4,)
    assert Q.log_at(q[0, 0, 0], q[0, 0, 1]).shape == (3,)
    assert Q.log(np.empty((0, 4))).shape == (0, 3)
    np.testing.assert_array_equal(Q.mul(q, q[0, 0, 0]), Q.mul(q, np.broadcast_to(q[0, 0, 0], q.shape)))


# ----------------------------------------------------------------------------------------------
# Maps, charts, round trips
# ----------------------------------------------------------------------------------------------


@given(q=unit_quats)
@FAST
def test_exp_log_round_trip_and_half_angle_convention(q):
    assert_same_rotation(Q.exp(Q.log(q)), q)
    # half-angle: 2 log(q) is a rotation vector of q (|2 log q| = theta on the w >= 0 branch)
    rot = Rotation.from_quat(Q.to_xyzw(q))
    z = Q.log(q if q[0] >= 0 else -q)
    assert abs(2.0 * np.linalg.norm(z) - rot.magnitude()) < 1e-9
    np.testing.assert_allclose(Rotation.from_rotvec(2.0 * Q.log(q)).as_matrix(), rot.as_matrix(), atol=1e-12)
    assert np.linalg.norm(Q.log(q)) <= np.pi + 1e-12


@given(q=unit_quats, qa=unit_quats)
@FAST
def test_project_unproject_round_trip_and_sign_invariance(q, qa):
    zeta = Q.project(q, qa)
    assert_same_rotation(Q.unproject(zeta, qa), q, atol=1e-12)
    np.testing.assert_array_equal(Q.project(-q, qa), zeta)
    np.testing.assert_array_equal(Q.project(q, -qa), zeta)
    assert np.linalg.norm(zeta) <= HALF_PI + 1e-12
    # right/global difference: right-multiplying both by r leaves zeta unchanged (away from the
    # cut locus |zeta| = pi/2, where rounding may pick the other, equally short, branch)
    if np.linalg.norm(zeta) < HALF_PI - 1e-6:
        r = Q.exp(np.array([0.3, -0.2, 0.5]))
        np.testing.assert_allclose(Q.project(Q.mul(q, r), Q.mul(qa, r)), zeta, atol=1e-12)


@given(b=unit_quats, x=unit_quats)
@FAST
def test_log_at_exp_at_round_trip_and_hemisphere(b, x):
    u = Q.log_at(b, x)
    assert np.linalg.norm(u) <= HALF_PI + 1e-12
    assert_same_rotation(Q.exp_at(b, u), x, atol=1e-12)
    np.testing.assert_array_equal(Q.log_at(b, -x), u)
    np.testing.assert_array_equal(Q.log_at(-b, x), u)
    # left/body difference: left-multiplying both by r leaves the tangent vector unchanged
    if np.linalg.norm(u) < HALF_PI - 1e-6:  # (away from the cut locus, see above)
        r = Q.exp(np.array([0.3, -0.2, 0.5]))
        np.testing.assert_allclose(Q.log_at(Q.mul(r, b), Q.mul(r, x)), u, atol=1e-12)
    # exp_at lands in base's hemisphere
    assert np.dot(Q.exp_at(b, u), b) >= -1e-12


@given(b=unit_quats, u=tangents)
@FAST
def test_log_at_inverts_exp_at_in_the_chart(b, u):
    u = u * min(1.0, 1.5 / max(np.linalg.norm(u), 1e-300))  # |u| < pi/2
    np.testing.assert_allclose(Q.log_at(b, Q.exp_at(b, u)), u, atol=1e-12)


def test_charts_at_the_cut_locus_are_sign_invariant():
    """Relative rotation of exactly pi: both branches are equally short; the choice is canonical."""
    for q, qa in [([0.0, 1, 0, 0], [1.0, 0, 0, 0]), ([0.0, 0, -1, 0], [1.0, 0, 0, 0]),
                  ([0.0, 0, 0, 1], [-1.0, 0, 0, 0])]:
        q, qa = np.array(q), np.array(qa)
        z = Q.project(q, qa)
        assert abs(np.linalg.norm(z) - HALF_PI) < 1e-15
        np.testing.assert_array_equal(Q.project(-q, qa), z)
        np.testing.assert_array_equal(Q.project(q, -qa), z)
        np.testing.assert_array_equal(Q.log_at(qa, -q), Q.log_at(qa, q))
        np.testing.assert_array_equal(Q.parallel_transport(qa, -q), Q.parallel_transport(qa, q))
        A = Q.parallel_transport(qa, q)
        np.testing.assert_allclose(A.T @ A, np.eye(3), atol=1e-15)
        np.testing.assert_allclose(A @ Q.log_at(qa, q), Q.log_at(qa, q), atol=1e-15)
        # here conj(r) == -r, so sign invariance forces log_at(q, qa) == +log_at(qa, q), not minus
        np.testing.assert_array_equal(Q.log_at(q, qa), Q.log_at(qa, q))
        assert_same_rotation(Q.unproject(z, qa), q, atol=1e-15)


def test_log_exp_edge_values():
    np.testing.assert_array_equal(Q.log(np.array([1.0, 0, 0, 0])), np.zeros(3))
    np.testing.assert_array_equal(Q.log(np.array([-1.0, 0, 0, 0])), np.zeros(3))  # |v| < 1e-12
    np.testing.assert_allclose(Q.log(np.array([0.0, 0, 1, 0])), [0, HALF_PI, 0], atol=1e-15)
    q = np.array([-1 / np.sqrt(2), 0, 1 / np.sqrt(2), 0])
    np.testing.assert_allclose(Q.log(q), [0, 3 * np.pi / 4, 0], atol=1e-15)  # plain log: no folding
    np.testing.assert_array_equal(Q.exp(np.zeros(3)), [1.0, 0, 0, 0])
    # atan2 form is accurate at tiny angles where arccos(w) loses everything
    th = 1e-10
    np.testing.assert_allclose(Q.log(np.array([np.cos(th), np.sin(th), 0, 0])), [th, 0, 0], rtol=1e-12)
    big = Q.exp(np.array([1e6, -2e6, 3e5]))
    assert np.isfinite(big).all() and abs(np.linalg.norm(big) - 1) < 1e-12


def test_inputs_are_renormalised_within_tolerance():
    q = np.array([1.0 + 5e-7, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(Q.to_matrix(q), np.eye(3), atol=1e-15)
    np.testing.assert_array_equal(Q.conj(q), [1.0 + 5e-7, 0, 0, 0])


# ----------------------------------------------------------------------------------------------
# Matrices and scipy
# ----------------------------------------------------------------------------------------------


@given(q=unit_quats, p=unit_quats)
@FAST
def test_matrix_round_trip_and_scipy_agreement(q, p):
    M = Q.to_matrix(q)
    np.testing.assert_allclose(M, Rotation.from_quat(Q.to_xyzw(q)).as_matrix(), atol=1e-12)
    back = Q.from_matrix(M)
    assert back[0] >= 0.0
    assert_same_rotation(back, q, atol=1e-12)
    assert_same_rotation(back, Q.from_xyzw(Rotation.from_matrix(M).as_quat()), atol=1e-12)
    np.testing.assert_allclose(Q.to_matrix(Q.mul(q, p)), M @ Q.to_matrix(p), atol=1e-12)
    np.testing.assert_array_equal(Q.from_xyzw(Q.to_xyzw(q)), q)
    np.testing.assert_allclose(M.T @ M, np.eye(3), atol=1e-12)


def test_from_matrix_at_180_degrees_and_identity():
    for axis in np.eye(3):
        q = np.concatenate([[0.0], axis])
        assert_same_rotation(Q.from_matrix(Q.to_matrix(q)), q, atol=1e-15)
    np.testing.assert_array_equal(Q.from_matrix(np.eye(3)), [1.0, 0, 0, 0])
    rng = np.random.default_rng(5)
    # rotations by pi - eps about random axes: the trace pivot would lose accuracy here
    axes = rng.normal(size=(50, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    qs = np.hstack([np.full((50, 1), np.cos((np.pi - 1e-9) / 2)), np.sin((np.pi - 1e-9) / 2) * axes])
    assert_same_rotation(Q.from_matrix(Q.to_matrix(qs)), qs, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Parallel transport and right Jacobian
# ----------------------------------------------------------------------------------------------


@given(g=unit_quats, h=unit_quats)
@FAST
def test_parallel_transport_properties(g, h):
    A = Q.parallel_transport(g, h)
    np.testing.assert_allclose(A.T @ A, np.eye(3), atol=1e-12)
    assert np.linalg.det(A) > 0
    np.testing.assert_allclose(Q.parallel_transport(g, g), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(A @ Q.log_at(g, h), Q.log_at(g, h), atol=1e-12)  # velocity is transported
    if np.dot(g, h) != 0.0:  # exactly on the cut locus the geodesic is not unique (see next test)
        np.testing.assert_allclose(A @ Q.log_at(g, h), -Q.log_at(h, g), atol=1e-12)
        np.testing.assert_allclose(Q.parallel_transport(h, g) @ A, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(Q.parallel_transport(g, -h), A, atol=1e-12)
    np.testing.assert_allclose(Q.parallel_transport(-g, h), A, atol=1e-12)


@given(g=unit_quats, u=tangents, w=tangents)
@FAST
def test_parallel_transport_is_along_the_geodesic(g, u, w):
    """Transporting in two halves equals transporting at once (g -> mid -> h along one geodesic)."""
    u = u * min(1.0, 1.4 / max(np.linalg.norm(u), 1e-300))
    h = Q.exp_at(g, u)
    mid = Q.exp_at(g, 0.5 * u)
    A = Q.parallel_transport(g, h)
    np.testing.assert_allclose(Q.parallel_transport(mid, h) @ Q.parallel_transport(g, mid), A, atol=1e-12)
    # and it is not the trivial chart identification (which would leave w unchanged)
    if np.linalg.norm(u) > 0.1 and np.linalg.norm(np.cross(u, w)) > 0.1:
        assert np.linalg.norm(A @ w - w) > 1e-3


def test_parallel_transport_near_identical_points():
    g = Q.exp(np.array([0.2, -0.4, 0.1]))
    for eps in [0.0, 1e-15, 1e-12, 1e-8]:
        h = Q.exp_at(g, np.array([eps, 0.0, -eps]))
        A = Q.parallel_transport(g, h)
        assert np.isfinite(A).all()
        np.testing.assert_allclose(A, np.eye(3), atol=2 * eps + 1e-15)


@given(z=tangents)
@FAST
def test_right_jacobian_finite_differences(z):
    J = Q.right_jacobian(z)
    h = 1e-5
    cols = []
    e0 = Q.exp(z)
    for i in range(3):
        d = np.zeros(3)
        d[i] = h
        cols.append((Q.log_at(e0, Q.exp(z + d)) - Q.log_at(e0, Q.exp(z - d))) / (2 * h))
    np.testing.assert_allclose(J, np.stack(cols, axis=1), atol=1e-8)
    # first-order statement from the spec: exp(z + d) ~ exp(z) exp(J d), error O(|d|^2)
    d = np.array([0.6, -0.3, 0.74]) * 1e-6
    assert np.linalg.norm(Q.log_at(Q.mul(e0, Q.exp(J @ d)), Q.exp(z + d))) < 1e-11


def test_right_jacobian_small_angle_limit():
    np.testing.assert_array_equal(Q.right_jacobian(np.zeros(3)), np.eye(3))
    z = np.array([1e-7, -2e-7, 3e-7])
    skew = np.array([[0, -z[2], z[1]], [z[2], 0, -z[0]], [-z[1], z[0], 0]])
    np.testing.assert_allclose(Q.right_jacobian(z), np.eye(3) - skew, atol=1e-13)  # J ~ I - [2z]x / 2


# ----------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------


@given(seed=seeds, T=st.integers(1, 60), flip_p=st.floats(0.0, 1.0))
@FAST
def test_make_continuous(seed, T, flip_p):
    rng = np.random.default_rng(seed)
    q = Q.exp(np.cumsum(rng.normal(size=(T, 3)) * 0.3, axis=0))
    q *= np.where(rng.uniform(size=(T, 1)) < flip_p, -1.0, 1.0)
    out = Q.make_continuous(q)
    np.testing.assert_array_equal(out[0], q[0])
    assert (np.einsum("ij,ij->i", out[1:], out[:-1]) >= 0.0).all()
    np.testing.assert_array_equal(np.abs(out), np.abs(q))  # only signs change ...
    np.testing.assert_allclose(Q.to_matrix(out), Q.to_matrix(q), atol=1e-14)  # ... rotations kept
    np.testing.assert_array_equal(Q.make_continuous(out), out)  # idempotent


@given(axis=unit_axes, q0=unit_quats, rate=st.floats(-4.0, 4.0).filter(lambda r: abs(r) > 1e-3))
@FAST
def test_angular_velocity_constant_rate(axis, q0, rate):
    dt = 1e-3
    t = np.arange(80) * dt
    omega = rate * axis
    q = Q.mul(Q.exp(0.5 * t[:, None] * omega), q0)  # world-frame rotation at constant omega
    w = Q.angular_velocity(q, dt)
    assert w.shape == (80, 3)
    # finite differences of exp(omega t/2) shrink omega by exactly sin(a dt)/(a dt), a = |omega|/2
    a = abs(rate) / 2
    np.testing.assert_allclose(w, np.broadcast_to(omega * np.sin(a * dt) / (a * dt), w.shape), atol=1e-9)
    np.testing.assert_allclose(w, np.broadcast_to(omega, w.shape), atol=1e-6 * max(1.0, abs(rate)))


def test_angular_velocity_rejects_sign_flips_and_short_input():
    q = Q.exp(np.outer(np.arange(5) * 0.1, [0, 0, 1.0]))
    q[2] *= -1
    with pytest.raises(ValueError, match=r"q\[2\].*make_continuous"):
        Q.angular_velocity(q, 0.01)
    with pytest.raises(ValueError, match="q"):
        Q.angular_velocity(q[:1], 0.01)


# ----------------------------------------------------------------------------------------------
# Riemannian mean
# ----------------------------------------------------------------------------------------------


@given(axis=unit_axes, q0=unit_quats, seed=seeds, n=st.integers(1, 12), weighted=st.booleans())
@FAST
def test_riemannian_mean_single_axis(axis, q0, seed, n, weighted):
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-1.4, 1.4, size=n)
    w = rng.uniform(0.05, 1.0, size=n) if weighted else None
    q = np.array([Q.mul(q0, rodrigues_quat(axis, a)) for a in angles])
    q *= rng.choice([-1.0, 1.0], size=(n, 1))  # q and -q are the same rotation
    mu = Q.riemannian_mean(q, w)
    mean_angle = np.average(angles, weights=w)
    assert_same_rotation(mu, Q.mul(q0, rodrigues_quat(axis, mean_angle)), atol=1e-12)


def test_riemannian_mean_is_a_fixed_point_off_axis():
    rng = np.random.default_rng(11)
    q = Q.exp_at(rand_quats(rng, 1)[0], 0.5 * rng.normal(size=(25, 3)))
    w = rng.uniform(0, 1, 25)
    mu = Q.riemannian_mean(q, w)
    np.testing.assert_allclose(w @ Q.log_at(mu, q), np.zeros(3), atol=1e-12)
    # the chordal mean (normalised average) is a different, wrong answer here
    chordal = (w @ q) / np.linalg.norm(w @ q)
    assert np.linalg.norm(Q.log_at(mu, chordal)) > 1e-6


# ----------------------------------------------------------------------------------------------
# Product of Gaussians on S^3
# ----------------------------------------------------------------------------------------------


@given(mu=unit_quats, seed=seeds)
@FAST
def test_product_single_gaussian_is_identity(mu, seed):
    cov = rand_spd(np.random.default_rng(seed), 1)
    m, c = Q.product(mu[None], cov)
    assert_same_rotation(m, mu, atol=1e-15)
    np.testing.assert_allclose(c, cov[0], rtol=1e-12, atol=1e-12 * np.abs(cov).max())


@given(mu=unit_quats, seed=seeds, P=st.integers(2, 5))
@FAST
def test_product_identical_means(mu, seed, P):
    rng = np.random.default_rng(seed)
    covs = rand_spd(rng, P)
    means = np.repeat(mu[None], P, axis=0) * rng.choice([-1.0, 1.0], size=(P, 1))
    m, c = Q.product(means, covs)
    assert_same_rotation(m, mu, atol=1e-12)
    expected = np.linalg.inv(np.linalg.inv(covs).sum(0))
    np.testing.assert_allclose(c, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


@given(mu1=unit_quats, u=tangents, seed=seeds)
@FAST
def test_product_dominated_by_the_confident_gaussian(mu1, u, seed):
    rng = np.random.default_rng(seed)
    mu2 = Q.exp_at(mu1, u * min(1.0, 1.2 / max(np.linalg.norm(u), 1e-300)))
    covs = np.stack([1e-10 * np.eye(3), rand_spd(rng, 1, 1e-2, 1.0)[0]])
    m, c = Q.product(np.stack([mu1, mu2]), covs)
    assert np.linalg.norm(Q.log_at(mu1, m)) < 1e-6
    assert np.linalg.eigvalsh(c).max() <= 1e-10 * (1 + 1e-6)


@given(mu0=unit_quats, seed=seeds, P=st.integers(2, 4))
@FAST
def test_product_small_angles_matches_euclidean_product(mu0, seed, P):
    rng = np.random.default_rng(seed)
    eps = 1e-4 * rng.normal(size=(P, 3))
    covs = rand_spd(rng, P, 0.05, 1.0)
    m, c = Q.product(Q.exp_at(mu0, eps), covs)
    prec = np.linalg.inv(covs)
    cov_e = np.linalg.inv(prec.sum(0))
    mean_e = cov_e @ np.einsum("pij,pj->i", prec, eps)
    np.testing.assert_allclose(Q.log_at(mu0, m), mean_e, atol=1e-6)
    # transport rotates covariances by O(|eps|), so they agree to that order only
    np.testing.assert_allclose(c, cov_e, rtol=0, atol=1e-3 * np.abs(cov_e).max())


@given(seed=seeds, P=st.integers(2, 5), spread=st.floats(0.01, 1.2))
@FAST
def test_product_result_symmetric_pd_and_stationary(seed, P, spread):
    rng = np.random.default_rng(seed)
    means = Q.exp_at(rand_quats(rng, 1)[0], spread * rng.normal(size=(P, 3)))
    covs = rand_spd(rng, P, 1e-3, 1.0)
    # the fixed-point iteration is only linearly convergent: widely spread means with anisotropic
    # covariances (about 1 % of these cases) need more than the default 50 steps to reach 1e-12
    m, c = Q.product(means, covs, max_iter=2000)
    assert abs(np.linalg.norm(m) - 1) < 1e-12
    np.testing.assert_array_equal(c, c.T)
    assert np.linalg.eigvalsh(c).min() > 0
    # stationarity: sum_p A_p S_p^-1 A_p^T Log_m(mu_p) = 0 at the returned mean
    A = Q.parallel_transport(means, m)
    lam = np.linalg.inv(A @ covs @ A.transpose(0, 2, 1))
    grad = np.einsum("pij,pj->i", lam, Q.log_at(m, means))
    assert np.linalg.norm(c @ grad) < 1e-10
    np.testing.assert_allclose(np.linalg.inv(lam.sum(0)), c, atol=1e-10 * np.abs(c).max())


@given(r=unit_quats, seed=seeds, P=st.integers(1, 4))
@FAST
def test_product_left_invariance_and_order(r, seed, P):
    """Body-chart covariances make the product invariant to a common world rotation."""
    rng = np.random.default_rng(seed)
    means = Q.exp_at(rand_quats(rng, 1)[0], 0.7 * rng.normal(size=(P, 3)))
    covs = rand_spd(rng, P)
    m, c = Q.product(means, covs)
    m2, c2 = Q.product(Q.mul(r, means), covs)
    assert_same_rotation(m2, Q.mul(r, m), atol=1e-11)
    np.testing.assert_allclose(c2, c, atol=1e-11 * np.abs(c).max())
    perm = rng.permutation(P)
    m3, c3 = Q.product(means[perm], covs[perm])
    assert_same_rotation(m3, m, atol=1e-11)
    np.testing.assert_allclose(c3, c, atol=1e-11 * np.abs(c).max())


@given(g=unit_quats, axis=unit_axes, angle=st.floats(0.1, 3.0), s=st.floats(1e-3, 1.0))
@FAST
def test_product_equal_isotropic_is_geodesic_midpoint(g, axis, angle, s):
    h = Q.mul(g, rodrigues_quat(axis, angle))
    m, c = Q.product(np.stack([g, -h]), np.stack([s * np.eye(3)] * 2))
    assert_same_rotation(m, Q.mul(g, rodrigues_quat(axis, angle / 2)), atol=1e-12)
    np.testing.assert_allclose(c, 0.5 * s * np.eye(3), atol=1e-12 * s)


@given(seed=seeds)
@settings(max_examples=20, deadline=None)
def test_product_extreme_scales_stay_finite(seed):
    rng = np.random.default_rng(seed)
    means = rand_quats(rng, 3)
    covs = rand_spd(rng, 3, 1e-10, 1e4)
    m, c = Q.product(means, covs)
    assert np.isfinite(m).all() and np.isfinite(c).all()
    assert np.linalg.eigvalsh(c).min() > 0


def test_product_batch_equals_loop_and_is_fast():
    rng = np.random.default_rng(42)
    T, P = 200, 2
    base = Q.exp(np.cumsum(rng.normal(size=(T, 3)) * 0.02, axis=0))
    means = Q.exp_at(base[:, None, :], 0.3 * rng.normal(size=(T, P, 3)))
    covs = rand_spd(rng, T * P, 1e-4, 1e-1).reshape(T, P, 3, 3)
    mu, cov = Q.product_batch(means, covs)
    assert mu.shape == (T, 4) and cov.shape == (T, 3, 3)
    for t in range(T):
        m, c = Q.product(means[t], covs[t])
        np.testing.assert_array_equal(mu[t], m)
        np.testing.assert_array_equal(cov[t], c)
    best = np.inf
    for _ in range(7):
        t0 = time.perf_counter()
        Q.product_batch(means, covs)
        best = min(best, time.perf_counter() - t0)
    assert best < 5e-3, f"product_batch T=200 P=2 took {best * 1e3:.2f} ms (target well under 1 ms)"


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

_q = np.array([1.0, 0.0, 0.0, 0.0])
_q2 = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
_eye2 = np.stack([np.eye(3)] * 2)
_nonunit = np.array([1.0, 0.0, 0.0, 0.1])
_flip = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])

BAD = [
    (lambda: Q.log(_nonunit), r"^q.*norm"),
    (lambda: Q.log(np.array([np.nan, 0, 0, 1.0])), r"^q.*non-finite"),
    (lambda: Q.log(np.ones(3)), r"^q.*shape"),
    (lambda: Q.log("abc"), r"^q"),
    (lambda: Q.exp(np.ones((2, 4))), r"^u.*\(\.\.\., 3\)"),
    (lambda: Q.exp([np.inf, 0, 0]), r"^u.*non-finite"),
    (lambda: Q.mul(_q, _nonunit), r"^b.*norm"),
    (lambda: Q.mul(_nonunit, _q), r"^a.*norm"),
    (lambda: Q.mul(np.tile(_q, (3, 1)), _q2), r"^a, b.*broadcast"),
    (lambda: Q.conj(np.zeros(4)), r"^q.*norm"),
    (lambda: Q.to_matrix(np.zeros((2, 5))), r"^q.*shape"),
    (lambda: Q.from_matrix(np.eye(4)), r"^R.*shape"),
    (lambda: Q.from_matrix(2 * np.eye(3)), r"^R.*rotation"),
    (lambda: Q.from_matrix(np.stack([np.eye(3), np.diag([1.0, 1.0, -1.0])])), r"^R\[1\].*rotation"),
    (lambda: Q.from_matrix(np.full((3, 3), np.nan)), r"^R.*non-finite"),
    (lambda: Q.from_xyzw(np.zeros(4)), r"^q.*norm"),
    (lambda: Q.to_xyzw([1.0, 0, 0]), r"^q.*shape"),
    (lambda: Q.project(_q, _nonunit), r"^q_aux"),
    (lambda: Q.project(_nonunit, _q), r"^q\b"),
    (lambda: Q.unproject([np.nan, 0, 0], _q), r"^zeta"),
    (lambda: Q.unproject(np.zeros(3), _nonunit), r"^q_aux"),
    (lambda: Q.log_at(_nonunit, _q), r"^base"),
    (lambda: Q.log_at(_q, _nonunit), r"^x\b"),
    (lambda: Q.exp_at(_q, [0, np.inf, 0]), r"^u\b"),
    (lambda: Q.exp_at(_nonunit, np.zeros(3)), r"^base"),
    (lambda: Q.parallel_transport(_q, _nonunit), r"^h\b"),
    (lambda: Q.parallel_transport(np.zeros(3), _q), r"^g\b"),
    (lambda: Q.right_jacobian(np.zeros(4)), r"^zeta"),
    (lambda: Q.make_continuous(np.ones((2, 2, 4)) / 2), r"^q.*\(T, 4\)"),
    (lambda: Q.make_continuous(np.array([_q, _nonunit])), r"^q\[[^\]]*1\)?\].*norm"),
    (lambda: Q.angular_velocity(_flip, 0.1), r"^q\[1\].*sign"),
    (lambda: Q.angular_velocity(_q2, 0.0), r"^dt"),
    (lambda: Q.angular_velocity(_q2, np.nan), r"^dt"),
    (lambda: Q.riemannian_mean(np.empty((0, 4))), r"^q"),
    (lambda: Q.riemannian_mean(_q2, [1.0, -1.0]), r"^weights\[1\]"),
    (lambda: Q.riemannian_mean(_q2, [0.0, 0.0]), r"^weights"),
    (lambda: Q.riemannian_mean(_q2, [1.0, 1.0, 1.0]), r"^weights.*shape"),
    (lambda: Q.riemannian_mean(_q2, tol=-1.0), r"^tol"),
    (lambda: Q.riemannian_mean(_q2, max_iter=0), r"^max_iter"),
    (lambda: Q.product(np.array([_q, _nonunit]), _eye2), r"^means"),
    (lambda: Q.product(_q2, np.stack([np.eye(3), -np.eye(3)])), r"^covs\[1\].*positive definite"),
    (lambda: Q.product(_q2, np.stack([np.eye(3), np.triu(np.ones((3, 3)))])), r"^covs\[1\].*symmetric"),
    (lambda: Q.product(_q2, np.stack([np.eye(3)] * 3)), r"^covs.*shape"),
    (lambda: Q.product(_q2, np.stack([np.eye(3), np.full((3, 3), np.inf)])), r"^covs.*non-finite"),
    (lambda: Q.product(np.empty((0, 4)), np.empty((0, 3, 3))), r"^means"),
    (lambda: Q.product(_q2, _eye2, max_iter=1.5), r"^max_iter"),
    (lambda: Q.product_batch(_q2, _eye2), r"^means.*\(T, P, 4\)"),
    (lambda: Q.product_batch(np.stack([_q2, _q2]), np.stack([_eye2, np.stack([np.diag([1.0, 0, 1]), np.eye(3)])])),
     r"^covs\[1\]\[0\].*positive definite"),
    (lambda: Q.product_batch(np.stack([_q2, _q2]), _eye2), r"^covs.*shape"),
]


@pytest.mark.parametrize("call, match", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
