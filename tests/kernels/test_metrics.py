"""Tests for kinebridge.kernels.metrics (Numba) against its NumPy reference, hand cases and properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kinebridge.kernels import metrics as M
from kinebridge.kernels.ref import metrics as R

try:
    import similaritymeasures
except ImportError:  # pragma: no cover - listed in the `test` extra
    similaritymeasures = None

needs_sm = pytest.mark.skipif(similaritymeasures is None,
                              reason="similaritymeasures is not installed (pip install similaritymeasures)")

PROPS = settings(max_examples=40, deadline=None)

RTOL = 1e-12


def _walk(rng, T, d, scale=1.0):
    """A random walk with O(1) steps, offset from the origin."""
    return rng.normal(size=d) * 5.0 + scale * np.cumsum(rng.normal(size=(T, d)), axis=0)


def _close(a, b, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# Parity with the NumPy reference
# --------------------------------------------------------------------------------------------

SEEDS = [0, 1, 2, 3]
DIMS = [1, 2, 3, 7]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", DIMS)
def test_parity_equal_length_metrics(seed, d):
    rng = np.random.default_rng(1000 * d + seed)
    T = int(rng.integers(3, 60))
    x, y = _walk(rng, T, d), _walk(rng, T, d)
    # c_s is a mean of O(1) cosines that can cancel to ~0 (for d = 1 every cosine is ±1), so its
    # rounding is relative to the terms, not to the result: 1e-12 relative plus 1e-14 absolute.
    _close(M.topological_similarity(x, y), R.topological_similarity(x, y), atol=1e-14)
    for name in ["rmse", "sse", "mean_error"]:
        _close(getattr(M, name)(x, y), getattr(R, name)(x, y))
    for name in ["smoothness", "turning_angle"]:
        _close(getattr(M, name)(x), getattr(R, name)(x))
    if d == 2:
        _close(M.swept_error_area(x, y), R.swept_error_area(x, y))
    start, end = rng.normal(size=d), rng.normal(size=d)
    _close(M.endpoint_errors(x, start, end), R.endpoint_errors(x, start, end))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", DIMS)
def test_parity_alignment_metrics_different_lengths(seed, d):
    rng = np.random.default_rng(7000 + 100 * d + seed)
    Tx, Ty = (int(v) for v in rng.integers(1, 50, size=2))
    x, y = _walk(rng, Tx, d), _walk(rng, Ty, d)
    for name in ["dtw_distance", "frechet_distance", "hausdorff_distance"]:
        _close(getattr(M, name)(x, y), getattr(R, name)(x, y))


@pytest.mark.parametrize("d", [2, 3])
def test_parity_shape_report(d):
    rng = np.random.default_rng(42 + d)
    x, ref = _walk(rng, 40, d), _walk(rng, 40, d)
    start, end = rng.normal(size=d), rng.normal(size=d)
    got, want = M.shape_report(x, ref, start, end), R.shape_report(x, ref, start, end)
    assert got.keys() == want.keys()
    for k in want:
        if want[k] is None:
            assert got[k] is None
        else:
            _close(got[k], want[k])


def test_parity_degenerate_steps():
    """Repeated samples (zero-length steps) go through the 1e-12 / atan2(0, 0) / resting conventions."""
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    y = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [2.0, 1.0], [2.0, 1.0]])
    for name in ["topological_similarity", "swept_error_area", "dtw_distance", "frechet_distance"]:
        _close(getattr(M, name)(x, y), getattr(R, name)(x, y))
    for name in ["smoothness", "turning_angle"]:
        _close(getattr(M, name)(x), getattr(R, name)(x))
    still = np.ones((5, 3))
    assert M.smoothness(still) == R.smoothness(still) == 0.0
    assert M.turning_angle(still) == R.turning_angle(still) == 0.0


# --------------------------------------------------------------------------------------------
# Cross-check with similaritymeasures
# --------------------------------------------------------------------------------------------

@needs_sm
@pytest.mark.parametrize("seed", range(6))
def test_dtw_matches_similaritymeasures(seed):
    rng = np.random.default_rng(300 + seed)
    d = [1, 2, 3][seed % 3]
    Tx, Ty = (int(v) for v in rng.integers(2, 120, size=2))
    x, y = _walk(rng, Tx, d), _walk(rng, Ty, d)
    _close(M.dtw_distance(x, y), similaritymeasures.dtw(x, y)[0])


@needs_sm
@pytest.mark.parametrize("seed", range(6))
def test_frechet_matches_similaritymeasures(seed):
    rng = np.random.default_rng(400 + seed)
    d = [1, 2, 3][seed % 3]
    Tx, Ty = (int(v) for v in rng.integers(2, 120, size=2))
    x, y = _walk(rng, Tx, d), _walk(rng, Ty, d)
    _close(M.frechet_distance(x, y), similaritymeasures.frechet_dist(x, y))


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------

def _line(T, d=2, step=None, origin=None):
    step = np.arange(1.0, d + 1.0) if step is None else np.asarray(step, dtype=float)
    origin = np.zeros(d) if origin is None else np.asarray(origin, dtype=float)
    return origin + np.arange(T)[:, None] * step


def _circle(n_per_rev, revolutions=2.5, radius=3.7, center=(1.5, -2.0)):
    k = np.arange(int(n_per_rev * revolutions) + 1)
    th = 2.0 * np.pi * k / n_per_rev + 0.3
    return np.asarray(center) + radius * np.stack([np.cos(th), np.sin(th)], axis=1)


def test_cs_of_a_curve_with_itself_is_one():
    x = _walk(np.random.default_rng(5), 30, 3)
    assert M.topological_similarity(x, x) == pytest.approx(1.0, abs=1e-9)
    # T = 3: the paper's 1/N normalisation would give 2/3 here, the true mean gives 1
    assert M.topological_similarity(x[:3], x[:3]) == pytest.approx(1.0, abs=1e-9)


def test_cs_of_reversed_straight_line_is_minus_one():
    x = _line(20, 3, step=[0.5, -1.0, 2.0], origin=[1.0, 2.0, 3.0])
    assert M.topological_similarity(x, -x) == pytest.approx(-1.0, abs=1e-9)
    assert M.topological_similarity(x, x[::-1]) == pytest.approx(-1.0, abs=1e-9)


def test_cs_half_aligned_steps():
    """x steps along +e0; y alternates between +e0 (cos 1) and +e1 (cos 0): c_s = 1/2."""
    x = _line(9, 2, step=[1.0, 0.0])
    y = np.cumsum(np.vstack([[0.0, 0.0]] + [[1.0, 0.0], [0.0, 1.0]] * 4), axis=0)
    assert M.topological_similarity(x, y) == pytest.approx(0.5, abs=1e-9)


def test_cs_invariant_to_translation_and_positive_scaling_of_y():
    rng = np.random.default_rng(11)
    x, y = _walk(rng, 50, 2), _walk(rng, 50, 2)
    base = M.topological_similarity(x, y)
    assert M.topological_similarity(x, y + [100.0, -40.0]) == pytest.approx(base, abs=1e-9)
    assert M.topological_similarity(x, 3.5 * y) == pytest.approx(base, abs=1e-9)
    assert M.topological_similarity(x, 0.25 * y - 7.0) == pytest.approx(base, abs=1e-9)
    # negative scaling flips every cosine
    assert M.topological_similarity(x, -2.0 * y) == pytest.approx(-base, abs=1e-9)


def test_smoothness_and_turning_angle_of_straight_line_are_zero():
    x = _line(25, 3, step=[0.3, 0.1, -0.2], origin=[4.0, 5.0, 6.0])
    assert M.smoothness(x) == pytest.approx(0.0, abs=1e-12)
    assert M.turning_angle(x) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("n", [6, 12, 100])
def test_smoothness_of_sampled_circle(n):
    """n samples per revolution, θ = 2π/n: |Δx| = 2r sin(π/n) and
    |Δ²x| = |r e^{iθt}(2cos θ - 2)| = 4r sin²(π/n), so κ₂ = 2 sin(π/n) for any radius, centre and
    number of revolutions; each turn is θ = 2π/n."""
    x = _circle(n)
    assert M.smoothness(x) == pytest.approx(2.0 * math.sin(math.pi / n), rel=1e-10)
    assert M.turning_angle(x) == pytest.approx(2.0 * math.pi / n, rel=1e-10)


def test_smoothness_and_turning_angle_of_right_angle():
    """(0,0) → (1,0) → (1,1): Δ² = (-1, 1), |Δ²| = √2, mean step 1; one turn of π/2."""
    x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    assert M.smoothness(x) == pytest.approx(math.sqrt(2.0), rel=1e-14)
    assert M.turning_angle(x) == pytest.approx(math.pi / 2, rel=1e-14)
    # a U-turn is π
    assert M.turning_angle(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])) == pytest.approx(math.pi)


@pytest.mark.parametrize("L", [1.0, 5.0, 12.5])
def test_swept_error_area_of_parallel_segments(L):
    s = np.linspace(0.0, L, 17)
    x = np.stack([s, np.zeros_like(s)], axis=1) + [1e3, -2e3]     # far from the origin on purpose
    y = np.stack([s, np.ones_like(s)], axis=1) + [1e3, -2e3]
    assert M.swept_error_area(x, y) == pytest.approx(L, rel=1e-10)
    assert M.swept_error_area(y, x) == pytest.approx(L, rel=1e-10)


def test_swept_error_area_triangle():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    y = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert M.swept_error_area(x, y) == pytest.approx(0.5, rel=1e-14)


def test_dtw_of_curve_with_itself_is_zero():
    x = _walk(np.random.default_rng(8), 40, 3)
    assert M.dtw_distance(x, x) == 0.0


def test_dtw_and_frechet_small_hand_case():
    """x = [0, 1, 2], y = [0, 2]: cost matrix [[0,2],[1,1],[2,0]] → DTW 1, Fréchet 1."""
    x, y = np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [2.0]])
    assert M.dtw_distance(x, y) == pytest.approx(1.0)
    assert M.frechet_distance(x, y) == pytest.approx(1.0)
    # a single point against a curve: DTW sums, Fréchet takes the max
    assert M.dtw_distance(x[:1], x) == pytest.approx(3.0)
    assert M.frechet_distance(x[:1], x) == pytest.approx(2.0)


def test_frechet_of_translate_is_translation_norm():
    x = _walk(np.random.default_rng(9), 35, 3)
    v = np.array([0.3, -1.2, 2.0])
    assert M.frechet_distance(x, x + v) == pytest.approx(np.linalg.norm(v), rel=1e-12)
    assert M.frechet_distance(x + v, x) == pytest.approx(np.linalg.norm(v), rel=1e-12)


def test_pointwise_errors_of_constant_offset():
    x = _walk(np.random.default_rng(10), 30, 3)
    v = np.array([3.0, 0.0, -4.0])
    assert M.rmse(x, x + v) == pytest.approx(5.0, rel=1e-12)
    assert M.mean_error(x, x + v) == pytest.approx(5.0, rel=1e-12)
    assert M.sse(x, x + v) == pytest.approx(30 * 25.0, rel=1e-12)


def test_hausdorff_hand_case():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    y = np.array([[0.0, 0.0], [3.0, 0.0]])
    assert M.hausdorff_distance(x, y) == pytest.approx(2.0)   # from y's (3,0) to x's (1,0)
    assert M.hausdorff_distance(y, x) == pytest.approx(2.0)


def test_endpoint_errors_hand_case():
    x = np.array([[1.0, 1.0], [2.0, 2.0], [4.0, 6.0]])
    assert M.endpoint_errors(x, [1.0, 1.0], [1.0, 2.0]) == pytest.approx((0.0, 5.0))
    e = M.endpoint_errors(x, [1.0, 1.0], [1.0, 2.0])
    assert isinstance(e, tuple) and all(type(v) is float for v in e)


def test_shape_report_contents():
    rng = np.random.default_rng(12)
    x, ref = _walk(rng, 30, 2), _walk(rng, 30, 2)
    r = M.shape_report(x, ref)
    assert set(r) == {"c_s", "kappa_s", "kappa_theta", "rmse", "mean_error", "dtw", "frechet",
                      "hausdorff", "sea"}
    assert all(type(v) is float for v in r.values())
    json.dumps(r)
    assert r["c_s"] == M.topological_similarity(x, ref)
    assert r["kappa_s"] == M.smoothness(x)
    assert r["kappa_theta"] == M.turning_angle(x)
    assert r["rmse"] == M.rmse(x, ref)
    assert r["mean_error"] == M.mean_error(x, ref)
    assert r["dtw"] == M.dtw_distance(x, ref)
    assert r["frechet"] == M.frechet_distance(x, ref)
    assert r["hausdorff"] == M.hausdorff_distance(x, ref)
    assert r["sea"] == M.swept_error_area(x, ref)

    x3 = _walk(rng, 30, 3)
    r3 = M.shape_report(x3, _walk(rng, 30, 3), start=np.zeros(3), end=[1, 2, 3])
    assert r3["sea"] is None
    assert type(r3["start_error"]) is float and type(r3["end_error"]) is float
    json.dumps(r3)
    assert (r3["start_error"], r3["end_error"]) == M.endpoint_errors(x3, np.zeros(3), [1, 2, 3])

    r_end = M.shape_report(x, ref, end=ref[-1])
    assert "start_error" not in r_end and r_end["end_error"] == M.endpoint_errors(x, x[0], ref[-1])[1]


# --------------------------------------------------------------------------------------------
# Hypothesis properties
# --------------------------------------------------------------------------------------------

MIN_STEP = 0.1


@st.composite
def walks(draw, d, T=None, min_T=3, max_T=30):
    """Trajectories whose steps are all at least MIN_STEP long (so cosines are well conditioned)."""
    if T is None:
        T = draw(st.integers(min_T, max_T))
    raw = draw(hnp.arrays(np.float64, (T - 1, d), elements=st.floats(-2.0, 2.0)))
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    e0 = np.zeros(d)
    e0[0] = 1.0
    unit = np.where(norms > 1e-6, raw / np.maximum(norms, 1e-300), e0)
    steps = unit * (MIN_STEP + norms)
    x0 = draw(hnp.arrays(np.float64, (d,), elements=st.floats(-10.0, 10.0)))
    return x0 + np.vstack([np.zeros((1, d)), np.cumsum(steps, axis=0)])


@st.composite
def rotations(draw, d):
    if d == 2:
        a = draw(st.floats(-math.pi, math.pi))
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    q = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


@st.composite
def walk_pair_and_motion(draw, d):
    T = draw(st.integers(3, 30))
    x, y = draw(walks(d, T=T)), draw(walks(d, T=T))
    Rm = draw(rotations(d))
    t = draw(hnp.arrays(np.float64, (d,), elements=st.floats(-100.0, 100.0)))
    s = draw(st.floats(0.1, 10.0))
    return x, y, Rm, t, s


@pytest.mark.parametrize("d", [2, 3])
@PROPS
@given(data=st.data())
def test_shape_metrics_invariant_to_rigid_motion_and_scaling(d, data):
    x, y, Rm, t, s = data.draw(walk_pair_and_motion(d))
    assert abs(np.linalg.det(Rm) - 1.0) < 1e-12

    def move(z):
        return s * z @ Rm.T + t

    # c_s's 1e-12 guard is ≤ 1e-12 / (s² MIN_STEP²) = 1e-8 relative here
    assert M.topological_similarity(move(x), move(y)) == pytest.approx(
        M.topological_similarity(x, y), abs=1e-7)
    assert M.smoothness(move(x)) == pytest.approx(M.smoothness(x), rel=1e-9, abs=1e-9)
    assert M.turning_angle(move(x)) == pytest.approx(M.turning_angle(x), abs=1e-9)


finite = st.floats(-1e3, 1e3)


@st.composite
def curve_pair(draw, equal=False):
    d = draw(st.integers(1, 4))
    Tx = draw(st.integers(1, 25))
    Ty = Tx if equal else draw(st.integers(1, 25))
    x = draw(hnp.arrays(np.float64, (Tx, d), elements=finite))
    y = draw(hnp.arrays(np.float64, (Ty, d), elements=finite))
    return x, y


@PROPS
@given(curve_pair())
def test_dtw_nonnegative_and_symmetric(xy):
    x, y = xy
    a, b = M.dtw_distance(x, y), M.dtw_distance(y, x)
    assert a >= 0.0
    assert a == pytest.approx(b, rel=1e-12, abs=1e-12)


@PROPS
@given(curve_pair())
def test_frechet_at_least_hausdorff(xy):
    x, y = xy
    assert M.frechet_distance(x, y) >= M.hausdorff_distance(x, y) * (1 - 1e-12)
    assert M.frechet_distance(x, y) == pytest.approx(M.frechet_distance(y, x), rel=1e-12)


@PROPS
@given(curve_pair(equal=True))
def test_frechet_at_most_max_pointwise_distance(xy):
    x, y = xy
    assert M.frechet_distance(x, y) <= np.linalg.norm(x - y, axis=1).max() * (1 + 1e-12)


@PROPS
@given(curve_pair(equal=True))
def test_sse_is_T_times_rmse_squared(xy):
    x, y = xy
    assert M.sse(x, y) == pytest.approx(len(x) * M.rmse(x, y) ** 2, rel=1e-12, abs=1e-300)
    assert M.mean_error(x, y) <= M.rmse(x, y) * (1 + 1e-12)      # Jensen / power-mean inequality


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

GOOD = np.cumsum(np.random.default_rng(99).normal(size=(10, 2)), axis=0)

PAIR_FUNCS = [M.topological_similarity, M.rmse, M.sse, M.mean_error, M.dtw_distance,
              M.frechet_distance, M.swept_error_area, M.hausdorff_distance]
EQUAL_LENGTH_FUNCS = [M.topological_similarity, M.rmse, M.sse, M.mean_error, M.swept_error_area]
SINGLE_FUNCS = [M.smoothness, M.turning_angle]


def _with_nan(a, where=(3, 1), value=np.nan):
    b = a.copy()
    b[where] = value
    return b


@pytest.mark.parametrize("fn", PAIR_FUNCS, ids=lambda f: f.__name__)
def test_pair_functions_reject_bad_input(fn):
    with pytest.raises(ValueError, match=r"^x: .*non-finite"):
        fn(_with_nan(GOOD), GOOD)
    with pytest.raises(ValueError, match=r"^y: .*non-finite"):
        fn(GOOD, _with_nan(GOOD, value=np.inf))
    with pytest.raises(ValueError, match=r"^x: "):
        fn(GOOD[:, 0], GOOD)                       # 1-D
    with pytest.raises(ValueError, match=r"^y: "):
        fn(GOOD, GOOD[None])                       # 3-D
    with pytest.raises(ValueError, match=r"^y: .*dimension"):
        fn(GOOD, np.hstack([GOOD, GOOD]))          # d mismatch
    with pytest.raises(ValueError, match=r"^x: .*d >= 1"):
        fn(np.zeros((10, 0)), np.zeros((10, 0)))
    with pytest.raises(ValueError, match=r"^x: .*at least"):
        fn(GOOD[:0], GOOD[:0])                     # no samples
    with pytest.raises(ValueError, match=r"^x: "):
        fn("not a trajectory", GOOD)


@pytest.mark.parametrize("fn", EQUAL_LENGTH_FUNCS, ids=lambda f: f.__name__)
def test_equal_length_functions_reject_length_mismatch(fn):
    with pytest.raises(ValueError, match=r"^y: expected T=10"):
        fn(GOOD, GOOD[:7])


@pytest.mark.parametrize("fn", [M.dtw_distance, M.frechet_distance, M.hausdorff_distance],
                         ids=lambda f: f.__name__)
def test_alignment_functions_accept_different_lengths(fn):
    assert fn(GOOD, GOOD[:7]) >= 0.0


@pytest.mark.parametrize("fn", SINGLE_FUNCS, ids=lambda f: f.__name__)
def test_single_trajectory_functions_reject_bad_input(fn):
    with pytest.raises(ValueError, match=r"^x: .*non-finite"):
        fn(_with_nan(GOOD))
    with pytest.raises(ValueError, match=r"^x: "):
        fn(GOOD.ravel())
    with pytest.raises(ValueError, match=r"^x: .*at least 3 points"):
        fn(GOOD[:2])
    assert np.isfinite(fn(GOOD[:3]))


def test_too_few_points_for_differences():
    with pytest.raises(ValueError, match=r"^x: .*at least 2 points"):
        M.topological_similarity(GOOD[:1], GOOD[:1])
    with pytest.raises(ValueError, match=r"^x: .*at least 2 points"):
        M.swept_error_area(GOOD[:1], GOOD[:1])
    assert M.topological_similarity(GOOD[:2], GOOD[:2]) == pytest.approx(1.0)


def test_swept_error_area_rejects_non_planar():
    x3 = np.hstack([GOOD, GOOD[:, :1]])
    with pytest.raises(ValueError, match=r"^x: .*2-D"):
        M.swept_error_area(x3, x3)
    with pytest.raises(ValueError, match=r"^x: .*2-D"):
        M.swept_error_area(GOOD[:, :1], GOOD[:, :1])


def test_endpoint_errors_reject_bad_points():
    with pytest.raises(ValueError, match=r"^start: "):
        M.endpoint_errors(GOOD, [0.0, 0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"^end: .*non-finite"):
        M.endpoint_errors(GOOD, [0.0, 0.0], [np.nan, 0.0])
    with pytest.raises(ValueError, match=r"^x: "):
        M.endpoint_errors(GOOD[:0], [0.0, 0.0], [0.0, 0.0])


def test_shape_report_rejects_bad_input():
    with pytest.raises(ValueError, match=r"^ref: .*non-finite"):
        M.shape_report(GOOD, _with_nan(GOOD))
    with pytest.raises(ValueError, match=r"^ref: expected T=10"):
        M.shape_report(GOOD, GOOD[:9])
    with pytest.raises(ValueError, match=r"^x: .*at least 3 points"):
        M.shape_report(GOOD[:2], GOOD[:2])
    with pytest.raises(ValueError, match=r"^start: "):
        M.shape_report(GOOD, GOOD, start=[0.0])
    with pytest.raises(ValueError, match=r"^end: .*non-finite"):
        M.shape_report(GOOD, GOOD, end=[np.inf, 0.0])
