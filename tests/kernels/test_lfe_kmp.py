"""LFE-KMP (VL-MP III.C): endpoint precision from the local feature enhancement, equivariance,
orientation through the S³ product, parity of generalize() with the NumPy reference, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from kinebridge.bench import lasa_protocol as proto
from kinebridge.bench.synthetic_skills import POUR_TILT, pouring_demos, random_frames
from kinebridge.kernels import quaternion as quat
from kinebridge.kernels.kmp_tuning import data_scale, tune_kmp
from kinebridge.kernels.lfe_kmp import Demonstration, LFEKMP, TaskFrame
from kinebridge.kernels.ref import lfe_kmp as rlfe

FIXED = dict(h=90.0, lam=1e-3)   # skip tuning where a test does not need it (tuning is tested below)


@pytest.fixture(scope="module")
def gshape_model(gshape):
    frames = [proto.frames_for(d.position[0], d.position[-1]) for d in gshape]
    return LFEKMP(**FIXED).fit(gshape, frames)


@pytest.fixture(scope="module")
def pour_model():
    demos, frames = pouring_demos(n_demos=5, n_points=120)
    return LFEKMP(n_ref=120, h=60.0, lam=1.0, orientation_h=60.0, orientation_lam=1.0).fit(demos, frames)




@pytest.mark.parametrize("ds, de", [((0, 0), (0, 0)), ((8, -3), (-6, 9)), ((-10, 10), (10, 10))])
def test_generalised_path_starts_and_ends_on_the_new_task_parameters(gshape_model, gshape, ds, de):
    start = gshape[0].position[0] + ds
    end = gshape[0].position[-1] + de
    traj = gshape_model.generalize(proto.frames_for(start, end))
    assert np.linalg.norm(traj.position[0] - start) < 1e-2      # mm
    assert np.linalg.norm(traj.position[-1] - end) < 1e-2
    assert np.isfinite(traj.covariance).all()


def test_enhancement_pins_only_the_end_each_frame_governs(gshape_model):
    for p, (near, far) in enumerate(((0, -1), (-1, 0))):
        _, sig_ref, _, cov = gshape_model.local_references(p)
        tr = lambda c, i: np.trace(c[i, :2, :2])  # noqa: E731
        assert tr(cov, near) < 1e-2 * tr(sig_ref, near)
        assert tr(cov, far) > 0.1 * tr(sig_ref, far)


def test_pinning_both_ends_in_every_frame_misses_the_endpoints(gshape):
    frames = [proto.frames_for(d.position[0], d.position[-1]) for d in gshape]
    both = LFEKMP(anchors=("both", "both"), **FIXED).fit(gshape, frames)
    start, end = gshape[0].position[0] + [8, 0], gshape[0].position[-1]
    traj = both.generalize(proto.frames_for(start, end))
    assert np.linalg.norm(traj.position[0] - start) > 0.5      # the frames disagree and split the difference


def test_moving_every_frame_rigidly_moves_the_path(gshape_model, gshape):
    start, end = gshape[0].position[0] + [3, 2], gshape[0].position[-1] + [-4, 1]
    a = 0.7
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    off = np.array([20.0, -5.0])
    y = gshape_model.generalize(proto.frames_for(start, end)).position
    y2 = gshape_model.generalize(proto.frames_for(R @ start + off, R @ end + off)).position
    np.testing.assert_allclose(y2, y @ R.T + off, atol=1e-8)


def test_generalize_matches_the_numpy_reference(pour_model):
    frames = random_frames(np.random.default_rng(7))
    traj = pour_model.generalize(frames)
    ref = rlfe.generalize(pour_model, frames)
    np.testing.assert_allclose(traj.position, ref["position"], atol=1e-10)
    np.testing.assert_allclose(traj.covariance, ref["covariance"], atol=1e-12)
    np.testing.assert_allclose(np.abs(np.einsum("ti,ti->t", traj.orientation, ref["orientation"])), 1, atol=1e-10)
    np.testing.assert_allclose(traj.orientation_cov, ref["orientation_cov"], atol=1e-10)


def test_pour_reaches_both_poses(pour_model):
    for seed in (11, 12):
        start, cup = random_frames(np.random.default_rng(seed))
        traj = pour_model.generalize([start, cup])
        q = traj.orientation
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-12)
        assert (np.einsum("ti,ti->t", q[1:], q[:-1]) > 0).all()   # continuous: no hemisphere jumps
        start_err = 2 * np.linalg.norm(quat.log_at(start.quaternion, q[0]))
        goal = quat.mul(cup.quaternion, np.array([np.cos(POUR_TILT / 2), 0, np.sin(POUR_TILT / 2), 0]))
        end_err = 2 * np.linalg.norm(quat.log_at(goal, q[-1]))
        assert np.degrees(start_err) < 0.05 and np.degrees(end_err) < 0.05
        assert np.linalg.norm(traj.position[0] - start.origin) < 1e-4   # m
        np.testing.assert_allclose(traj.covariance[:, :3, :3], traj.covariance[:, :3, :3].transpose(0, 2, 1))


def test_samples_are_smooth_draws_around_the_mean(pour_model):
    traj = pour_model.generalize(random_frames(np.random.default_rng(3)))
    pos, qs = pour_model.sample(traj, 400, rng=0)
    assert pos.shape == (400, 120, 3) and qs.shape == (400, 120, 4)
    mid = pos[:, 60]
    sd = np.sqrt(np.diag(traj.covariance[60, :3, :3]))
    assert np.all(np.abs(mid.mean(0) - traj.position[60]) < 4 * sd / np.sqrt(400) + 1e-12)
    np.testing.assert_allclose(mid.std(0), sd, rtol=0.2)


def test_tuning_picks_the_widest_kernel_among_the_best_and_is_unit_free(gshape_model):
    mu, sig, _, _ = gshape_model.local_references(0)
    t = gshape_model.t_ref
    res = tune_kmp(t, mu, sig, n_h=5, n_lam=3)
    assert 0.5 <= res.h <= 500 and res.evaluations == 15
    scaled = tune_kmp(t, mu * 1e-3, sig * 1e-6, n_h=5, n_lam=3)   # mm → m
    assert scaled.h == pytest.approx(res.h)
    assert scaled.lam == pytest.approx(res.lam * 1e6, rel=1e-9)
    assert data_scale(sig * 1e-6) == pytest.approx(data_scale(sig) * 1e-6)


def _demo_2d(n=50, shift=0.0):
    t = np.linspace(0.02, 1.0, n)
    return Demonstration(t, np.column_stack([t + shift, np.sin(3 * t)]))


def test_bad_input_is_named():
    frames2 = [TaskFrame(np.zeros(2), np.eye(2)), TaskFrame(np.ones(2), np.eye(2))]
    demos = [_demo_2d(), _demo_2d(shift=0.1)]
    with pytest.raises(ValueError, match="call fit"):
        LFEKMP().generalize(frames2)
    with pytest.raises(ValueError, match="anchors: 2 anchors given for 1 task frames"):
        LFEKMP(**FIXED).fit(demos, [frames2[:1]] * 2)
    with pytest.raises(ValueError, match="frames: expected one list of task frames per demonstration"):
        LFEKMP(**FIXED).fit(demos, [frames2])
    with pytest.raises(ValueError, match=r"frames\[1\]\[0\].rotation: expected a proper rotation matrix"):
        LFEKMP(**FIXED).fit(demos, [frames2, [TaskFrame(np.zeros(2), 2 * np.eye(2)), frames2[1]]])
    bad = Demonstration(demos[0].t, np.where(np.arange(50)[:, None] == 9, np.nan, demos[0].position))
    with pytest.raises(ValueError, match=r"demos\[1\].position: contains non-finite values"):
        LFEKMP(**FIXED).fit([demos[0], bad], [frames2, frames2])
    with pytest.raises(ValueError, match="enhance_source: expected"):
        LFEKMP(enhance_source="video")
    with pytest.raises(ValueError, match="not an LFE-KMP setting"):
        LFEKMP(lambda_=1.0)
    pour, frames = pouring_demos(n_demos=2, n_points=60)
    flipped = pour[1].orientation.copy()
    flipped[30:] *= -1
    with pytest.raises(ValueError, match=r"demos\[1\].orientation\[30\]: quaternion sign flips.*make_continuous"):
        LFEKMP(n_ref=60, **FIXED).fit([pour[0], Demonstration(pour[1].t, pour[1].position, flipped)], frames)
    scaled = pour[1].orientation * 1.01
    with pytest.raises(ValueError, match=r"demos\[1\].orientation\[\d+\]: quaternion norm is 1.01"):
        LFEKMP(n_ref=60, **FIXED).fit([pour[0], Demonstration(pour[1].t, pour[1].position, scaled)], frames)
    model = LFEKMP(n_ref=60, **FIXED).fit(pour, frames)
    with pytest.raises(ValueError, match="the skill was learnt with 2 task frames, got 1"):
        model.generalize(frames[0][:1])
