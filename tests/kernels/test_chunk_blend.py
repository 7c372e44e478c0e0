"""Chunk sampling, seam blending and the limiter: limits hold for adversarial chunk sequences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinebridge.kernels import chunk_blend as cb
from kinebridge.kernels import rm75
from kinebridge.kernels.ref import chunk_blend as ref

DOF = 7
QMIN, QMAX, VMAX, AMAX = rm75.Q_MIN.copy(), rm75.Q_MAX.copy(), rm75.QD_MAX.copy(), rm75.QDD_MAX.copy()
TOL = 1e-12


def follower(h, blend_s=0.1):
    return cb.ChunkFollower(DOF, QMIN, QMAX, VMAX, AMAX, h, blend_s)


def check_bounds(traj, h):
    traj = np.asarray(traj)
    assert np.all(np.isfinite(traj))
    assert np.all(traj >= QMIN - TOL) and np.all(traj <= QMAX + TOL)
    d1 = np.diff(traj, axis=0)
    assert np.all(np.abs(d1) <= VMAX * h * (1 + 1e-9) + TOL), np.max(np.abs(d1) / (VMAX * h))
    d2 = np.diff(traj, 2, axis=0)
    assert np.all(np.abs(d2) <= AMAX * h * h * (1 + 1e-9) + TOL), np.max(np.abs(d2) / (AMAX * h * h))


chunk_events = st.lists(
    st.tuples(
        st.floats(0.0, 0.4),                    # arrival gap (s); large gaps starve the follower
        st.floats(-0.1, 0.1),                   # t0 offset from arrival
        st.sampled_from([0.005, 0.01, 0.02, 0.05]),
        st.integers(1, 40),                     # horizon
        st.lists(st.floats(-1.0, 1.0), min_size=DOF, max_size=DOF),   # jump of the chunk from home
        st.lists(st.floats(-3.0, 3.0), min_size=DOF, max_size=DOF),   # velocity inside the chunk (rad/s)
        st.booleans(),                          # push the chunk beyond the joint limits
    ), min_size=1, max_size=8)


@pytest.mark.parametrize("h", [0.005, 0.002])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=chunk_events)
def test_adversarial_chunk_sequences_never_break_the_limits(h, events):
    f = follower(h)
    home = rm75.Q_HOME.copy()
    f.reset(home)
    t, out = 0.0, [home.copy()]
    for gap, off, cdt, H, jump, vel, beyond in events:
        t_arr = t + gap
        while t < t_arr:
            t += h
            out.append(f.step(t).copy())
        t0 = t + off
        k = np.arange(H)[:, None] * cdt
        Q = home + np.asarray(jump) + np.asarray(vel) * k
        if beyond:
            Q = Q + np.sign(np.asarray(jump) + 1e-9) * 4.0
        f.submit(t0, cdt, Q, t)
    for _ in range(int(0.5 / h)):
        t += h
        out.append(f.step(t).copy())
    check_bounds(out, h)


def test_feasible_chunk_is_tracked_without_lag_and_ends_exactly():
    h = 0.005
    f = follower(h)
    q0 = rm75.Q_HOME.copy()
    q1 = q0 + np.radians([20, -15, 25, 10, -20, 15, 30])
    T, dt = 2.0, 0.02
    s = np.linspace(0, 1, int(T / dt) + 1)[:, None]
    Q = q0 + (q1 - q0) * (10 * s**3 - 15 * s**4 + 6 * s**5)
    f.reset(q0)
    f.submit(0.0, dt, Q, 0.0)
    errs = []
    for k in range(1, int(2.5 / h)):
        t = k * h
        q = f.step(t)
        qr, _ = ref.sample_chunk(t, 0.0, dt, Q)
        errs.append(np.max(np.abs(q - qr)))
    assert max(errs) < 1e-6                      # the reference is feasible: followed exactly
    assert np.allclose(f.q, q1, atol=1e-12) and f.at_rest and f.starved_ticks == 0


def test_consistent_replacement_is_invisible_and_a_jump_is_bounded():
    h = 0.005
    q0 = rm75.Q_HOME.copy()
    v = np.radians([10, -8, 12, 6, -10, 8, 15])
    dt = 0.01

    def chunk(t0, H=50):
        return q0 + v * (t0 + np.arange(H)[:, None] * dt)

    f = follower(h)
    f.reset(q0)
    f.submit(0.0, dt, chunk(0.0), 0.0)
    out = [q0.copy()]
    for k in range(1, 200):
        t = k * h
        if k % 40 == 0:                        # re-plan of the same motion every 0.2 s
            f.submit(t, dt, chunk(t), t)
        out.append(f.step(t).copy())
    ts = np.arange(200) * h
    dev = np.abs(np.asarray(out)[20:180] - (q0 + v * ts[20:180, None]))
    assert dev.max() < 1e-5 and f.blends == 4
    # now a chunk 0.5 rad away: reached along the braking curve, limits respected
    f.submit(1.0, dt, chunk(1.0) + 0.5, 1.0)
    for k in range(200, 600):
        out.append(f.step(k * h).copy())
    check_bounds(out, h)


def test_starvation_decelerates_and_holds():
    h = 0.005
    f = follower(h)
    q0 = rm75.Q_HOME.copy()
    v = np.radians([30, 30, 30, 30, 30, 30, 30])
    f.reset(q0)
    f.submit(0.0, 0.01, q0 + v * np.arange(20)[:, None] * 0.01, 0.0)  # ends at 0.19 s still moving
    out = [q0.copy()]
    for k in range(1, 200):
        out.append(f.step(k * h).copy())
    check_bounds(out, h)
    assert f.starved_ticks > 0 and f.at_rest
    stop_ticks = int(np.ceil(np.max(v / AMAX) / h)) + 2
    moving = np.flatnonzero(np.any(np.abs(np.diff(np.asarray(out), axis=0)) > 0, axis=1))
    assert moving[-1] * h <= 0.19 + stop_ticks * h + h


def test_numpy_reference_matches_the_kernels():
    rng = np.random.default_rng(3)
    qr_, vr_, qt, vt = (np.zeros(DOF) for _ in range(4))
    for _ in range(50):
        H = int(rng.integers(1, 12))
        Q = rng.normal(size=(H, DOF))
        t0, dt = rng.uniform(-1, 1), rng.uniform(0.005, 0.05)
        t = rng.uniform(t0 - 0.1, t0 + H * dt + 0.1)
        cb.sample_chunk(t, t0, dt, Q, qr_, vr_)
        q, v = ref.sample_chunk(t, t0, dt, Q)
        assert np.allclose(qr_, q, atol=1e-12) and np.allclose(vr_, v, atol=1e-10)
        Qo = rng.normal(size=(H, DOF))
        t_s = t - rng.uniform(0, 0.1)
        cb.reference_at(t, t0, dt, Q, True, t0, dt, Qo, t_s, 0.1, qr_, vr_, qt, vt)
        q, v = ref.reference_at(t, (t0, dt, Q), (t0, dt, Qo), t_s, 0.1)
        assert np.allclose(qr_, q, atol=1e-12) and np.allclose(vr_, v, atol=1e-9)
        qs = rng.uniform(QMIN, QMAX)
        vs = rng.uniform(-0.5, 0.5, DOF) * VMAX
        a, b = qs.copy(), vs.copy()
        cb.limit_step(a, b, qr_, vr_, True, 0.005, QMIN, QMAX, VMAX, AMAX)
        q2, v2 = ref.limit_step(qs, vs, qr_, vr_, True, 0.005, QMIN, QMAX, VMAX, AMAX)
        assert np.allclose(a, q2, atol=1e-12) and np.allclose(b, v2, atol=1e-12)


@pytest.mark.parametrize("t0, dt, Q, match", [
    (0.0, 0.01, np.full((5, DOF), np.nan), "non-finite"),
    (0.0, 0.01, np.zeros((5, 6)), "shape"),
    (0.0, 0.0, np.zeros((5, DOF)), "dt"),
    (float("nan"), 0.01, np.zeros((5, DOF)), "t0"),
    (-5.0, 0.01, np.zeros((5, DOF)), "stale"),
    (100.0, 0.01, np.zeros((5, DOF)), "from now"),
])
def test_bad_chunks_are_rejected_with_a_reason(t0, dt, Q, match):
    with pytest.raises(ValueError, match=match):
        cb.validate_chunk(t0, dt, Q, DOF, t_now=0.0)
    f = follower(0.005)
    f.reset(rm75.Q_HOME)
    assert not f.submit(t0, dt, Q, 0.0)
    assert f.rejected_chunks == 1 and match in f.last_reject_reason


def test_step_allocates_nothing():
    import tracemalloc

    f = follower(0.005)
    f.reset(rm75.Q_HOME)
    Q = rm75.Q_HOME + np.linspace(0, 0.2, 50)[:, None]
    f.submit(0.0, 0.01, Q, 0.0)
    f.step(0.005)
    f.submit(0.01, 0.01, Q, 0.01)
    f.step(0.015)
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    for k in range(4, 200):
        f.step(k * 0.005)
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename") if s.size_diff > 0)
    assert grown < 4096  # tracemalloc's own bookkeeping only; no per-tick arrays
