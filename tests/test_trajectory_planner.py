"""The trajectory node's planner: bundled skill, LFE-KMP → IK plans, re-planning, chunk tiling."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from kinebridge.bench.synthetic_skills import ARM_POUR_OFFSET
from kinebridge.kernels import rm75
from kinebridge.kernels.chunk_blend import validate_chunk
from kinebridge.runtime.trajectory_planner import (JointPlan, PlanError, PlannerConfig, Skill, SkillPlanner,
                                                   bundled_skill, chunks, cup_frame, phase_profile, pouring_skill)

READY = np.radians([-38.36, 54.94, 34.24, 63.56, -29.45, 69.5, -185.82])


@pytest.fixture(scope="module")
def planner():
    return SkillPlanner(bundled_skill("pour"))


def test_bundled_skill_matches_its_generator_and_round_trips(tmp_path):
    shipped, fresh = bundled_skill("pour"), pouring_skill()
    assert len(shipped.demos) == len(fresh.demos) == 6
    for a, b in zip(shipped.demos, fresh.demos):
        np.testing.assert_array_equal(a.position, b.position)
        np.testing.assert_array_equal(a.orientation, b.orientation)
    p = tmp_path / "s.npz"
    shipped.save(p)
    back = Skill.load(p)
    assert back.name == "pour" and back.duration == shipped.duration
    np.testing.assert_array_equal(back.frames[3][1].rotation, shipped.frames[3][1].rotation)


def test_malformed_skill_files_are_named(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a kinebridge skill file"):
        Skill.load(bad)
    np.savez(tmp_path / "nometa.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="'meta'"):
        Skill.load(tmp_path / "nometa.npz")
    skill = bundled_skill()
    skill.save(tmp_path / "ok.npz")
    z = dict(np.load(tmp_path / "ok.npz"))
    del z["demo2_position"]
    np.savez(tmp_path / "cut.npz", **z)
    with pytest.raises(ValueError, match="demo2_position"):
        Skill.load(tmp_path / "cut.npz")
    with pytest.raises(ValueError, match="available"):
        bundled_skill("juggle")


def test_plan_starts_at_the_arm_and_reaches_the_generalised_goal(planner):
    goal = cup_frame(0.42, 0.15, 0.10, np.radians(15))
    plan = planner.plan(goal, q_start=READY, t_start=100.0)
    assert plan.t0 == 100.0 and plan.q.shape[1] == 7
    np.testing.assert_allclose(plan.q[0], READY, atol=1e-9)
    T = rm75.fk_batch(plan.q, planner.cfg.d7)
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
