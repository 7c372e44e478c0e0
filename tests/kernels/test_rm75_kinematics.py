"""Tests for kinebridge.kernels.rm75: RM75 FK/Jacobian/IK against the MDH facts of
realman-protocol.md §3, the plain-NumPy reference (kinebridge.kernels.ref.rm75) and, where it is
installed, RealMan's own offline kinematics (``Robotic_Arm`` SDK 1.1.6 ``Algo``, float32 inside, so
compared at 1e-6).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numba import njit

from kinebridge.kernels import rm75 as K
from kinebridge.kernels.ref import rm75 as R

FAST = settings(max_examples=40, deadline=None)
DEG = np.pi / 180.0
VARIANTS = [("B", K.D7_B), ("6F", K.D7_6F)]


def random_q(rng, n, *, away_from_singular=False, shrink=1.0):
    """Joint vectors within limits; optionally |q4|, |q6| > 10° (elbow/wrist singularities)."""
    Q = rng.uniform(K.Q_MIN * shrink, K.Q_MAX * shrink, size=(n, 7))
    if away_from_singular:
        for j in (3, 5):
            small = np.abs(Q[:, j]) < 10 * DEG
            Q[small, j] = np.sign(Q[small, j] + 1e-12) * rng.uniform(10, 60, small.sum()) * DEG
    return Q


def rot_err(Ra, Rb):
    """Angle of Ra Rbᵀ (rad)."""
    c = (np.trace(Ra @ Rb.T) - 1.0) / 2.0
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


@pytest.fixture(scope="module")
def sdk_algo():
    """Factory variant -> SDK Algo (skips when the SDK is not installed)."""
    sdk = pytest.importorskip("Robotic_Arm.rm_robot_interface")
    force = {"B": sdk.rm_force_type_e.RM_MODEL_RM_B_E, "6F": sdk.rm_force_type_e.RM_MODEL_RM_SF_E}
    return lambda variant: sdk.Algo(sdk.rm_robot_arm_model_e.RM_MODEL_RM_75_E, force[variant])


# ------------------------------------------------------------------------------------------ constants


def test_constants_and_model():
    np.testing.assert_allclose(np.degrees(K.Q_MAX), [178, 130, 178, 135, 178, 128, 360])
    np.testing.assert_array_equal(K.Q_MIN, -K.Q_MAX)
    np.testing.assert_allclose(np.degrees(K.QD_MAX), [180, 180, 225, 225, 225, 225, 225])
    np.testing.assert_allclose(np.degrees(K.QDD_MAX), 600.0)
    assert np.all((K.Q_HOME > K.Q_MIN) & (K.Q_HOME < K.Q_MAX))
    assert abs(K.Q_HOME[3]) > 30 * DEG and abs(K.Q_HOME[5]) > 30 * DEG      # elbow/wrist bent
    assert np.linalg.svd(K.jacobian(K.Q_HOME), compute_uv=False).min() > 0.05
    assert K.RM75Model.for_variant("B").d7 == K.D7_B == 0.144
    assert K.RM75Model.for_variant("6F").d7 == K.D7_6F == 0.1725
    assert K.RM75Model.for_variant("RM75-6F") == K.RM75Model(d7=K.D7_6F)
    with pytest.raises(ValueError, match="variant"):
        K.RM75Model.for_variant("ZF")
    m6 = K.RM75Model.for_variant("6F")
    np.testing.assert_array_equal(m6.fk(K.Q_HOME), K.fk(K.Q_HOME, K.D7_6F))
    assert m6.ik(m6.fk(K.Q_HOME + 0.1), K.Q_HOME).ok
    with pytest.raises(ValueError):
        K.Q_MAX[0] = 0.0   # read-only


# ------------------------------------------------------------------------------------------------ FK


@pytest.mark.parametrize("variant,d7", VARIANTS)
def test_fk_at_zero(variant, d7):
    T = K.fk(np.zeros(7), d7)
    np.testing.assert_allclose(T[:3, :3], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(T[:3, 3], [0.0, 0.0, 0.2405 + 0.256 + 0.21 + d7], atol=1e-15)
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    if variant == "B":
        np.testing.assert_allclose(T[2, 3], 0.8505, atol=1e-15)


def test_fk_sanity_value_10deg():
    q = np.full(7, 10 * DEG)
    pose = K.fk_pose(q)
    np.testing.assert_allclose(pose[:3], [0.179762, 0.051087, 0.815140], atol=1e-6)
    np.testing.assert_allclose(pose[3:], [0.195357, 0.483061, 0.757193], atol=1e-6)
    quat = K.fk_quat(q)
    np.testing.assert_allclose(quat[:3], pose[:3])
    np.testing.assert_allclose(quat[3:], [0.906534, 0.0, 0.256191, 0.335502], atol=1e-6)
    np.testing.assert_allclose(K.rpy_to_matrix(pose[3:]), K.fk(q)[:3, :3], atol=1e-14)


@pytest.mark.parametrize("variant,d7", VARIANTS)
def test_fk_matches_numpy_reference(variant, d7):
    Q = random_q(np.random.default_rng(1), 300)
    T = K.fk_batch(Q, d7)
    for q, Tq in zip(Q, T):
        ref = R.fk(q, d7)
        np.testing.assert_allclose(Tq, ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(K.fk(q, d7), ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(K.jacobian(q, d7), R.jacobian(q, d7), rtol=0, atol=1e-12)
    # batch forms agree with the single-pose forms
    np.testing.assert_allclose(K.fk_pose(Q[:20], d7), np.stack([K.fk_pose(q, d7) for q in Q[:20]]))
    quat = K.fk_quat(Q, d7)
    assert np.all(quat[:, 3] >= 0.0)
    np.testing.assert_allclose(K.quat_to_matrix(quat[:, 3:]), T[:, :3, :3], atol=1e-12)


@pytest.mark.parametrize("variant,d7", VARIANTS)
def test_fk_matches_sdk(sdk_algo, variant, d7):
    algo = sdk_algo(variant)
    Q = random_q(np.random.default_rng(2), 250)
    pos_err = rot_mat_err = euler_err = 0.0
    for q in Q:
        qd = [float(v) for v in np.degrees(q)]
        s_rpy = np.array(algo.rm_algo_forward_kinematics(qd, flag=1))
        s_quat = np.array(algo.rm_algo_forward_kinematics(qd, flag=0))
        T = K.fk(q, d7)
        pose = K.fk_pose(q, d7)
        pos_err = max(pos_err, np.abs(s_rpy[:3] - T[:3, 3]).max(), np.abs(s_quat[:3] - T[:3, 3]).max())
        Rs = K.quat_to_matrix(s_quat[3:] / np.linalg.norm(s_quat[3:]))
        rot_mat_err = max(rot_mat_err, np.abs(Rs - T[:3, :3]).max())
        if math.cos(pose[4]) > 0.1:   # Euler angles are ill-conditioned at gimbal lock (ry = ±90°)
            d = (s_rpy[3:] - pose[3:] + np.pi) % (2 * np.pi) - np.pi
            euler_err = max(euler_err, np.abs(d).max())
    assert pos_err < 1e-6
    assert rot_mat_err < 1e-6
    assert euler_err < 1e-6


def test_fk_pose_gimbal_lock_matches_sdk(sdk_algo):
    """At ry = ±90° only rx ∓ rz is defined; like the SDK, rz = 0 is reported."""
    algo = sdk_algo("B")
    for qd in ([20, 0, 0, 0, 0, 90, 0], [20, 0, 0, 0, 0, -90, 0], [-50, 0, 10, 0, 30, 90, 0]):
        s = np.array(algo.rm_algo_forward_kinematics(qd, flag=1))
        pose = K.fk_pose(np.radians(qd))
        assert abs(abs(pose[4]) - np.pi / 2) < 1e-12 and pose[5] == 0.0
        np.testing.assert_allclose(pose, s, atol=1e-6)


def test_fk_input_validation():
    with pytest.raises(ValueError, match="q: .*7"):
        K.fk(np.zeros(6))
    with pytest.raises(ValueError, match="q: contains non-finite"):
        K.fk([0, 0, np.nan, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="d7"):
        K.fk(np.zeros(7), d7=-0.1)
    with pytest.raises(ValueError, match="q: "):
        K.fk_pose(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="Q: "):
        K.fk_batch(np.zeros(7))
    # read-only inputs (the constants) work and do not need a copy by the caller
    np.testing.assert_allclose(K.fk(K.Q_HOME), R.fk(K.Q_HOME), atol=1e-12)


# ------------------------------------------------------------------------------------------ Jacobian


def test_jacobian_matches_finite_differences():
    h = 1e-6
    for q in random_q(np.random.default_rng(3), 20):
        J = K.jacobian(q)
        T0 = K.fk(q)
        for i in range(7):
            dq = np.zeros(7)
            dq[i] = h
            Tp, Tm = K.fk(q + dq), K.fk(q - dq)
            np.testing.assert_allclose(J[:3, i], (Tp[:3, 3] - Tm[:3, 3]) / (2 * h), atol=1e-8)
            W = (Tp[:3, :3] - Tm[:3, :3]) / (2 * h) @ T0[:3, :3].T      # Ṙ Rᵀ = [ω]×
            np.testing.assert_allclose(J[3:, i], [W[2, 1], W[0, 2], W[1, 0]], atol=1e-8)


# --------------------------------------------------------------------------------------- conversions


def test_rpy_matrix_gimbal_lock():
    for ry in (np.pi / 2, -np.pi / 2):
        Rm = K.rpy_to_matrix([0.3, ry, -0.4])
        rpy = K.matrix_to_rpy(Rm)
        assert rpy[2] == 0.0 and abs(rpy[1] - ry) < 1e-7
        np.testing.assert_allclose(K.rpy_to_matrix(rpy), Rm, atol=1e-12)


def test_pose_conversions_round_trip():
    T = K.fk(K.Q_HOME)
    np.testing.assert_allclose(K.pose6_to_matrix(K.matrix_to_pose6(T)), T, atol=1e-14)
    np.testing.assert_allclose(K.pose7_to_matrix(K.matrix_to_pose7(T)), T, atol=1e-14)
    np.testing.assert_allclose(K.matrix_to_quat(K.quat_to_matrix([1.0, 0, 0, 0])), [1, 0, 0, 0])


@FAST
@given(st.floats(-np.pi, np.pi), st.floats(-np.pi / 2 + 1e-4, np.pi / 2 - 1e-4), st.floats(-np.pi, np.pi))
def test_rpy_round_trip_property(rx, ry, rz):
    Rm = K.rpy_to_matrix([rx, ry, rz])
    np.testing.assert_allclose(Rm, R.rpy_to_matrix([rx, ry, rz]), atol=1e-14)
    back = K.matrix_to_rpy(Rm)
    np.testing.assert_allclose(K.rpy_to_matrix(back), Rm, atol=1e-11)
    assert abs(back[1] - ry) < 1e-8


# ------------------------------------------------------------------------------------------------ IK


@pytest.mark.parametrize("variant,d7", VARIANTS)
def test_ik_round_trip_random_targets(variant, d7):
    rng = np.random.default_rng(4)
    Q = random_q(rng, 250, away_from_singular=True)
    fails = []
    for n, q in enumerate(Q):
        T = K.fk(q, d7)
        seed = np.clip(q + rng.normal(0.0, 0.1, 7), K.Q_MIN, K.Q_MAX)
        res = K.ik(T, seed, d7)
        Tr = K.fk(res.q, d7)
        pe = np.linalg.norm(Tr[:3, 3] - T[:3, 3])
        re = rot_err(Tr[:3, :3], T[:3, :3])
        within = np.all(res.q >= K.Q_MIN) and np.all(res.q <= K.Q_MAX)
        if not (res.ok and pe < 1e-5 and re < 1e-4 and within):
            fails.append((n, res.ok, pe, re))
        assert abs(res.pos_err - pe) < 1e-9
    assert not fails, fails


def test_ik_accepts_pose6_and_pose7_targets():
    q = K.Q_HOME + 0.2
    for target in (K.fk(q), K.fk_pose(q), K.fk_quat(q), list(K.fk_quat(q))):
        res = K.ik(target, K.Q_HOME)
        assert res.ok and res.pos_err <= 1e-7 and res.rot_err <= 1e-6
        np.testing.assert_allclose(K.fk(res.q), K.fk(q), atol=1e-6)


def test_ik_warm_start_stays_near_seed():
    """From a nearby seed the solution is the nearby one, not another IK branch."""
    q = np.array([0.3, 0.6, -0.4, 1.2, 0.5, 0.9, -0.2])
    res = K.ik(K.fk(q), q + 0.01)
    assert res.ok and np.abs(res.q - q).max() < 0.05


def test_ik_restarts_from_a_far_seed():
    rng = np.random.default_rng(5)
    Q = random_q(rng, 30, away_from_singular=True, shrink=0.8)
    ok = [K.ik(K.fk(q), -np.clip(q, K.Q_MIN, K.Q_MAX) * 0.9).ok for q in Q]   # seed on the far side
    assert all(ok)


def test_ik_joint_limits_and_margin():
    lo, hi = K.Q_MIN + 0.01 - 1e-12, K.Q_MAX - 0.01 + 1e-12
    # J2 2 mm-rad from its limit: the redundancy (elbow self-motion) moves it inside the margin
    q = np.array([0.3, K.Q_MAX[1] - 0.002, 0.5, 1.0, 0.4, 0.8, 0.2])
    for seed in (q, K.Q_HOME):
        res = K.ik(K.fk(q), seed, limit_margin=0.01)
        assert res.ok and np.all(res.q <= hi) and np.all(res.q >= lo)
    # the elbow angle q4 is fixed by the shoulder-wrist distance: no solution inside that margin,
    # so the best effort stays inside the bounds and reports failure; the default margin works
    q = np.array([0.3, 1.5, 0.5, K.Q_MAX[3] - 0.002, 0.4, 0.8, 0.2])
    res = K.ik(K.fk(q), q, limit_margin=0.01)
    assert not res.ok and np.all(res.q <= hi) and np.all(res.q >= lo)
    res = K.ik(K.fk(q), q)
    assert res.ok and res.q[3] <= K.Q_MAX[3] - 1e-3 + 1e-12


def test_ik_unreachable_target():
    T = K.fk(K.Q_HOME)
    T[:3, 3] = [2.0, 0.0, 0.5]
    res = K.ik(T, K.Q_HOME)
    assert not res.ok
    assert np.isfinite(res.q).all() and np.isfinite(res.pos_err) and np.isfinite(res.rot_err)
    assert res.pos_err > 1.0
    assert np.all(res.q >= K.Q_MIN) and np.all(res.q <= K.Q_MAX)
    assert np.linalg.norm(K.fk(res.q)[:3, 3]) < 1.0   # best effort: stretched towards it


def test_ik_bad_input():
    T = K.fk(K.Q_HOME)
    bad = T.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="target: contains non-finite"):
        K.ik(bad, K.Q_HOME)
    with pytest.raises(ValueError, match="target: expected"):
        K.ik(T[:3, :3], K.Q_HOME)
    with pytest.raises(ValueError, match=r"target\[:3, :3\]: not a rotation"):
        K.ik(T * 1.01, K.Q_HOME)
    with pytest.raises(ValueError, match="quaternion norm"):
        K.ik([0.4, 0.0, 0.4, 1.0, 0.1, 0.0, 0.0], K.Q_HOME)
    with pytest.raises(ValueError, match="q_seed: .*7"):
        K.ik(T, np.zeros(6))
    with pytest.raises(ValueError, match="q_seed: contains non-finite"):
        K.ik(T, [np.nan] * 7)
    with pytest.raises(ValueError, match=r"q_seed\[1\]: .*outside the joint limits"):
        K.ik(T, [0, 2.5, 0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="q_pref"):
        K.ik(T, K.Q_HOME, q_pref=np.zeros(3))
    with pytest.raises(ValueError, match="tol_pos"):
        K.ik(T, K.Q_HOME, tol_pos=0.0)
    with pytest.raises(ValueError, match="d7"):
        K.ik(T, K.Q_HOME, d7=float("nan"))
    # a seed on the limit up to wire rounding is accepted
    assert K.ik(T, np.minimum(K.Q_HOME, K.Q_MAX) + np.r_[0, K.Q_MAX[1] - K.Q_HOME[1] + 5e-5, 0, 0, 0, 0, 0]).ok


def test_ik_solve_into_from_compiled_code():
    @njit
    def solve(T, seed, lo, hi, d7, tol_pos, tol_rot, max_iter, gain):
        q = np.empty(7)
        W = np.zeros((K.W_ROWS, 8))
        ok, pe, re, it = K.ik_solve_into(T, seed, seed, d7, lo, hi, tol_pos, tol_rot, max_iter, gain, q, W)
        return q, ok

    # (scalars passed as arguments: literal constants would make Numba compile another specialisation)
    target = K.Q_HOME + 0.05
    q, ok = solve(K.fk(target), K.Q_HOME.copy(), K.Q_MIN.copy(), K.Q_MAX.copy(), K.D7_B, 1e-7, 1e-6, 100, 0.1)
    assert ok
    np.testing.assert_allclose(K.fk(q), K.fk(target), atol=1e-6)


def test_reference_ik_agrees():
    q = K.Q_HOME + 0.1
    qr, ok, pe, re, it = R.ik(K.fk(q), K.Q_HOME)
    assert ok
    np.testing.assert_allclose(R.fk(qr), K.fk(q), atol=1e-6)


# ------------------------------------------------------------------------------------------- ik_path


def circle_path(n=600, radius=0.08, tilt=0.25):
    """A circle in the horizontal plane through the home pose with a wobbling orientation."""
    T0 = K.fk(K.Q_HOME)
    th = np.linspace(0.0, 2 * np.pi, n)
    T = np.repeat(T0[None], n, axis=0)
    T[:, 0, 3] += radius * (np.cos(th) - 1.0)
    T[:, 1, 3] += radius * np.sin(th)
    rpy = np.stack([tilt * np.sin(th), 0.5 * tilt * np.sin(2 * th), tilt * (1 - np.cos(th))], axis=1)
    T[:, :3, :3] = K.rpy_to_matrix(rpy) @ T0[:3, :3]
    return T


def test_ik_path_circle_continuous_and_accurate():
    T = circle_path()
    Q, ok = K.ik_path(T, K.Q_HOME)
    assert ok.all()
    Tq = K.fk_batch(Q)
    assert np.linalg.norm(Tq[:, :3, 3] - T[:, :3, 3], axis=1).max() < 1e-6
    assert max(rot_err(a, b) for a, b in zip(Tq[:, :3, :3], T[:, :3, :3])) < 1e-5
    assert np.all(Q >= K.Q_MIN) and np.all(Q <= K.Q_MAX)
    # continuity: joint steps scale with the Cartesian steps (no branch jumps)
    dq = np.abs(np.diff(Q, axis=0)).max(axis=1)
    dx = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1)
    assert dq.max() < 0.02                      # rad, for ~0.8 mm / ~3 mrad Cartesian steps
    assert dq.max() < 30.0 * dx.max() + 1e-9
    np.testing.assert_allclose(Q[0], K.ik(T[0], K.Q_HOME).q, atol=1e-9)
    # accepts (N, 6) and (N, 7) poses too
    Q6, ok6 = K.ik_path(K.matrix_to_pose6(T), K.Q_HOME)
    assert ok6.all() and np.abs(Q6 - Q).max() < 1e-6


def test_ik_path_marks_unreachable_and_jumps():
    T = circle_path(200)
    T[100, :3, 3] = [2.0, 0.0, 0.5]           # unreachable point in the middle
    Q, ok = K.ik_path(T, K.Q_HOME)
    assert not ok[100] and ok[:100].all() and ok[101:].all()
    assert np.isfinite(Q).all()
    assert np.abs(Q[101] - Q[99]).max() < 0.05  # resumes from the last converged solution
    # a reachable jump larger than max_step is flagged, not silently taken
    # (every later point is measured against the last accepted solution, so it stays flagged)
    T2 = circle_path(400)[:50]
    T2[25:, 2, 3] -= 0.15
    _, ok2 = K.ik_path(T2, K.Q_HOME, max_step=0.05)
    assert ok2[:25].all() and not ok2[25:].any()
    assert K.ik_path(T2, K.Q_HOME)[1].all()


def test_ik_path_bad_input():
    T = circle_path(10)
    with pytest.raises(ValueError, match="targets: "):
        K.ik_path(T[:, :3, :], K.Q_HOME)
    bad = T.copy()
    bad[3, :3, :3] *= 2.0
    with pytest.raises(ValueError, match=r"targets\[3\]"):
        K.ik_path(bad, K.Q_HOME)
    bad = T.copy()
    bad[4, 1, 1] = np.inf
    with pytest.raises(ValueError, match="targets: contains non-finite"):
        K.ik_path(bad, K.Q_HOME)
    with pytest.raises(ValueError, match="q_seed"):
        K.ik_path(T, np.zeros(8))
    with pytest.raises(ValueError, match="max_step"):
        K.ik_path(T, K.Q_HOME, max_step=-1.0)


# -------------------------------------------------------------------------------------- properties

_angles = st.lists(st.floats(-0.85, 0.85), min_size=7, max_size=7)
_perturb = st.lists(st.floats(-0.05, 0.05), min_size=7, max_size=7)


@FAST
@given(_angles, _perturb)
def test_fk_ik_round_trip_property(frac, perturb):
    q = np.asarray(frac) * K.Q_MAX
    for j in (3, 5):   # keep |q4|, |q6| ≥ 10°
        if abs(q[j]) < 10 * DEG:
            q[j] = math.copysign(10 * DEG, q[j] if q[j] != 0 else 1.0)
    T = K.fk(q)
    res = K.ik(T, q + np.asarray(perturb))
    assert res.ok
    Tr = K.fk(res.q)
    assert np.linalg.norm(Tr[:3, 3] - T[:3, 3]) < 1e-5
    assert rot_err(Tr[:3, :3], T[:3, :3]) < 1e-4


# ------------------------------------------------------------------------------------------- bench


def test_kinematics_bench_quick(capsys):
    from kinebridge.bench import kinematics_bench as kb

    res = kb.run(n=20, quick=True)
    assert res["path"]["kinebridge"]["ok_rate"] == 1.0
    assert res["path"]["kinebridge"]["max_joint_step_rad"] < 0.1
    assert res["ik_accuracy"]["B"]["kinebridge"]["success_rate"] == 1.0
    for group in ("fk", "ik"):
        assert {"kinebridge_single", "numpy_ref"} <= set(res[group])
    kb.print_report(res)
    assert "timing" in capsys.readouterr().out
