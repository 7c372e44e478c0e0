"""The trajectory node's planner: bundled skill, LFE-KMP → IK plans, re-planning, chunk tiling."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kinebridge.drivers.arm.limits import JointLimits
from kinebridge.kernels import quaternion as quat
from kinebridge.kernels import rm75
from kinebridge.kernels.chunk_blend import validate_chunk
from kinebridge.runtime.skills.format import Skill, pose7_from_task_frame, task_frame_from_pose7
from kinebridge.runtime.skills.pour import ARM_POUR_OFFSET, pouring_skill
from kinebridge.runtime.skills.pour import arm_cup_frame as cup_frame
from kinebridge.runtime.skills.registry import bundled_skill
from kinebridge.runtime.trajectory.planner import JointPlan, PlanError, PlannerConfig, SkillPlanner, chunks, phase_profile

READY = np.radians([-38.36, 54.94, 34.24, 63.56, -29.45, 69.5, -185.82])


@pytest.fixture(scope="module")
def planner():
    return SkillPlanner(bundled_skill("pour"))


def test_plan_starts_at_the_arm_and_reaches_the_generalised_goal(planner):
    goal = cup_frame(0.42, 0.15, 0.10, np.radians(15))
    plan = planner.plan(goal, q_start=READY, t_start=100.0)
    assert plan.t0 == 100.0 and plan.q.shape[1] == 7
    np.testing.assert_allclose(plan.q[0], READY, atol=1e-9)
    T = rm75.fk_batch(plan.q, planner.arm.d7)
    np.testing.assert_allclose(T[:, :3, 3], plan.pose[:, :3], atol=1e-4)
    assert plan.max_pos_err <= 1e-4 and plan.max_rot_err <= 1e-3
    pour_point = goal.origin + goal.rotation @ ARM_POUR_OFFSET     # where the demonstrations poured
    assert np.linalg.norm(plan.pose[-1, :3] - pour_point) < 0.01
    v = np.diff(plan.q, axis=0) / plan.dt
    a = np.diff(v, axis=0) / plan.dt
    assert np.all(np.abs(v) <= rm75.QD_MAX + 1e-9) and np.all(np.abs(a) <= rm75.QDD_MAX + 1e-6)
    assert np.abs(v[0]).max() < 0.01 and np.abs(v[-1]).max() < 0.01     # starts and ends at rest


def test_a_different_cup_gives_a_different_end(planner):
    a = planner.plan(cup_frame(0.42, 0.15, 0.10, 0.0), q_start=READY, t_start=0.0)
    b = planner.plan(cup_frame(0.34, 0.05, 0.10, 0.0), q_start=READY, t_start=0.0)
    assert np.linalg.norm(a.pose[-1, :3] - b.pose[-1, :3]) > 0.05


def test_replan_continues_from_where_the_plan_is(planner):
    plan = planner.plan(cup_frame(0.42, 0.15, 0.10, 0.0), q_start=READY, t_start=0.0)
    t_now = 0.4 * plan.t_end
    new = planner.replan(plan, cup_frame(0.36, 0.08, 0.10, np.radians(-10)), t_now)
    assert new.t0 == t_now
    np.testing.assert_allclose(new.q[0], plan.q_at(t_now), atol=1e-6)
    assert new.phase[0] == pytest.approx(plan.phase[plan.index_at(t_now)], abs=1e-9)
    assert len(new.q) < len(plan.q)                               # it continues, not restarts
    q_now = plan.q_at(t_now) + 1e-3
    np.testing.assert_allclose(planner.replan(plan, cup_frame(0.36, 0.08, 0.1, 0.0), t_now, q_now).q[0], q_now,
                               atol=1e-6)


def test_unreachable_goal_raises_plan_error(planner):
    with pytest.raises(PlanError, match="out of the arm's reach"):
        planner.plan(cup_frame(1.5, 0.0, 0.1, 0.0), q_start=READY, t_start=0.0)


def test_chunks_tile_the_plan(planner):
    plan = planner.plan(cup_frame(0.42, 0.15, 0.10, 0.0), q_start=READY, t_start=10.0)
    t, covered = plan.t0, []
    while (c := chunks(plan, t, 50)) is not None:
        t0, dt, q = c
        k = int(round((t0 - plan.t0) / dt))
        assert t0 <= t + 1e-9 and q.shape[0] <= 50
        np.testing.assert_array_equal(q, plan.q[k:k + q.shape[0]])
        validate_chunk(t0, dt, q, 7)
        covered.append((k, k + q.shape[0]))
        t = t0 + (q.shape[0] - 1) * dt
        if k + q.shape[0] == len(plan.q):
            break
    assert covered[0][0] == 0 and covered[-1][1] == len(plan.q)
    assert all(b[0] <= a[1] for a, b in zip(covered, covered[1:]))      # no gaps
    assert chunks(plan, plan.t_end + 0.1, 50) is None


def test_phase_profile_eases_in_and_out():
    u = phase_profile(401, 0.12)
    assert u[0] == 0 and u[-1] == pytest.approx(1.0) and np.all(np.diff(u) >= 0)
    du = np.diff(u)
    assert du[0] < 1e-3 * du[200] and du[-1] < 1e-3 * du[200]


@pytest.mark.parametrize("field,value", [("dt", 0.0), ("speed", -1.0), ("chunk_len", 1), ("n_ref", 2),
                                         ("bogus", 1)])
def test_bad_planner_config_names_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        PlannerConfig(**{field: value})


def test_joint_plan_sampling():
    q = np.arange(12.0).reshape(6, 2)
    p = JointPlan(1.0, 0.5, q, np.zeros((6, 7)), np.linspace(0, 1, 6), [])
    np.testing.assert_allclose(p.q_at(1.25), [1.0, 2.0])
    np.testing.assert_allclose(p.q_at(0.0), q[0])
    np.testing.assert_allclose(p.q_at(9.0), q[-1])
    assert p.t_end == 3.5


def test_plan_tracks_the_lfe_kmp_trajectory_pose_by_pose(planner):
    plan = planner.plan(cup_frame(0.38, 0.12, 0.09, np.radians(-20)), q_start=READY, t_start=0.0)
    T = rm75.fk_batch(plan.q, planner.arm.d7)
    R_target = quat.to_matrix(plan.pose[:, 3:])
    cos = (np.einsum("nij,nij->n", T[:, :3, :3], R_target) - 1) / 2
    assert np.arccos(np.clip(cos, -1, 1)).max() <= 1e-3
    assert np.linalg.norm(T[:, :3, 3] - plan.pose[:, :3], axis=1).max() <= 1e-4
    _, pos, ori = planner.generalize(plan.frames)                 # eq. (6) for the same task frames
    assert np.linalg.norm(T[-1, :3, 3] - pos[-1]) <= 1e-4          # the plan ends where LFE-KMP ends
    assert abs(abs(np.dot(quat.from_matrix(T[-1, :3, :3]), ori[-1])) - 1) < 1e-6
    assert np.all(np.abs(np.diff(plan.q, axis=0)) <= rm75.QD_MAX * plan.dt + 1e-12)
    assert plan.ik_ok and set(plan.plan_ms) == {"generalise", "resample", "ik", "total"}


def test_speed_scales_the_duration(planner):
    slow = copy.copy(planner)
    slow.cfg = planner.cfg.model_copy(update={"speed": 0.5})
    goal = cup_frame(0.42, 0.15, 0.10, 0.0)
    a = planner.plan(goal, q_start=READY, t_start=0.0)
    b = slow.plan(goal, q_start=READY, t_start=0.0)
    assert b.speed == 0.5 and (b.t_end - b.t0) == pytest.approx(2 * (a.t_end - a.t0), abs=0.02)


def test_joint_speed_beyond_the_limit_names_the_joint_and_the_speed(planner):
    lim = planner.arm.limits
    planner.set_limits(JointLimits(lim.q_min, lim.q_max, lim.qd_max / 50, lim.qdd_max))   # a path 50× too fast
    try:
        with pytest.raises(PlanError, match=r"joint J\d.*lower trajectory\.speed"):
            planner.plan(cup_frame(0.42, 0.15, 0.10, 0.0), q_start=READY, t_start=0.0)
    finally:
        planner.set_limits(lim)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 300), chunk_len=st.integers(2, 80), t0=st.floats(-1e3, 1e3),
       dt=st.sampled_from([0.002, 0.01, 0.02]), frac=st.floats(-0.2, 1.2))
def test_chunks_are_grid_aligned_and_hold_the_final_sample(n, chunk_len, t0, dt, frac):
    q = np.cumsum(np.full((n, 7), 1e-3), axis=0)
    plan = JointPlan(t0, dt, q, np.zeros((n, 7)), np.linspace(0, 1, n), [])
    t_from = plan.t0 + frac * (plan.t_end - plan.t0)
    c = chunks(plan, t_from, chunk_len)
    if t_from > plan.t_end + 1e-9:
        assert c is None
        return
    c0, cdt, cq = c
    k = int(round((c0 - plan.t0) / dt))
    assert c0 == pytest.approx(plan.t0 + k * dt, abs=1e-9) and cdt == dt
    assert k == min(max(0, int(np.floor((t_from - plan.t0) / dt + 1e-9))), n - 2)
    assert 2 <= len(cq) <= chunk_len or len(cq) == n - k
    np.testing.assert_array_equal(cq, q[k:k + len(cq)])
    validate_chunk(c0, cdt, cq, 7)
    if k + chunk_len >= n:
        np.testing.assert_array_equal(cq[-1], q[-1])


def test_the_gmm_size_comes_from_the_config_else_the_skill_else_six():
    from dataclasses import replace

    from kinebridge.runtime.skills.registry import bundled_skill
    from kinebridge.runtime.trajectory.config import PlannerConfig
    from kinebridge.runtime.trajectory.planner import fit_components

    mug, plain = bundled_skill("pour_mug"), bundled_skill("pour")
    assert fit_components(PlannerConfig(), mug) == 10          # the pour_mug skill's own choice
    assert fit_components(PlannerConfig(), plain) == 6
    assert fit_components(PlannerConfig(n_components=4), mug) == 4
    bad = replace(plain, metadata={"fit": {"n_components": "many"}})
    assert fit_components(PlannerConfig(), bad) == 6
