"""One source of arm facts across the runtime: what the planner plans within is what the control loop
enforces, speed knob and controller report included; the flange length follows the arm model."""

from __future__ import annotations

import numpy as np
import pytest

from kinebridge.drivers.arm.limits import JointLimits
from kinebridge.drivers.arm.model import ARM_MODELS, arm_model, model_limits
from kinebridge.drivers.realman.sim.options import READY_DEG
from kinebridge.kernels.chunk_blend import ChunkFollower, sample_chunk
from kinebridge.runtime.skills.pour import arm_cup_frame
from kinebridge.runtime.skills.registry import bundled_skill
from kinebridge.runtime.trajectory.config import PlannerConfig
from kinebridge.runtime.trajectory.planner import SkillPlanner

READY = np.radians(READY_DEG)
CUP = arm_cup_frame(0.45, 0.18, 0.08, np.radians(20))
TICK = 0.005


# The limiter integrates its feed-forward velocity tick by tick, so even a reference it never has to clip
# is followed to ~1e-5 rad (its discretisation floor, measured); a plan beyond the enforced limits lags by
# 1e-3 rad and more.
NO_LAG_RAD = 5e-5


def limiter_lag(plan, lim: JointLimits) -> float:
    """Largest |setpoint − chunk reference| (rad) when the control loop's limiter, at ``lim``, streams
    ``plan`` as one chunk at 200 Hz: at the floor when the plan is within what the loop enforces."""
    f = ChunkFollower(7, lim.q_min, lim.q_max, lim.qd_max, lim.qdd_max, TICK, blend_s=0.1)
    f.reset(plan.q[0])
    assert f.submit(plan.t0, plan.dt, plan.q, plan.t0)
    q_ref, qd_ref = np.zeros(7), np.zeros(7)
    worst = 0.0
    for t in np.arange(plan.t0, plan.t_end + 0.2, TICK):
        q = f.step(t)
        sample_chunk(t, plan.t0, plan.dt, plan.q, q_ref, qd_ref)
        worst = max(worst, float(np.abs(q - q_ref).max()))
    return worst


@pytest.fixture(scope="module")
def skill():
    return bundled_skill("pour")


def test_plans_fit_what_the_loop_enforces_with_half_speed_and_a_slower_controller(skill):
    base = model_limits(ARM_MODELS["RM75-B"])
    reported = JointLimits(base.q_min, base.q_max, base.qd_max * 0.6, base.qdd_max * 0.8)   # a slower controller
    arm = arm_model("RM75-B", 0.5).with_reported(reported)          # and the speed knob at 0.5
    plan = SkillPlanner(skill, PlannerConfig(), arm).plan(CUP, q_start=READY, t_start=0.0)
    v = np.abs(np.diff(plan.q, axis=0)) / plan.dt
    assert np.all(v <= arm.limits.qd_max)
    assert plan.speed < 1.0                                         # it had to slow down to fit
    assert limiter_lag(plan, arm.limits) < NO_LAG_RAD               # the limiter never acted
    # the planner's old source of limits — the model's own, unscaled — plans too fast for this loop
    naive = SkillPlanner(skill, PlannerConfig(), arm_model("RM75-B")).plan(CUP, q_start=READY, t_start=0.0)
    assert limiter_lag(naive, arm.limits) > 20 * NO_LAG_RAD


def test_announced_limits_replace_the_planners(skill):
    planner = SkillPlanner(skill, PlannerConfig(), arm_model("RM75-B"))
    fast = planner.plan(CUP, q_start=READY, t_start=0.0)
    lim = arm_model("RM75-B", 0.3).limits
    planner.set_limits(lim)                           # what a control node announces on control/limits
    slow = planner.plan(CUP, q_start=READY, t_start=0.0)
    assert slow.speed < fast.speed and slow.t_end - slow.t0 > fast.t_end - fast.t0
    assert limiter_lag(fast, lim) > 20 * NO_LAG_RAD      # the plan made before would overrun these limits
    assert limiter_lag(slow, lim) < NO_LAG_RAD           # the one made after fits them


def test_the_6f_flange_moves_the_plan(skill):
    """The same cup, planned for the RM75-6F: its flange is 28.5 mm longer, so the joints differ while the
    flange targets are the same — the planner's kinematics follow the model."""
    from kinebridge.kernels import rm75
    b = SkillPlanner(skill, PlannerConfig(), arm_model("RM75-B")).plan(CUP, q_start=READY, t_start=0.0)
    q0_6f = rm75.ik(rm75.matrix_to_pose7(rm75.fk(READY, rm75.D7_B)), READY, rm75.D7_6F).q
    f6 = SkillPlanner(skill, PlannerConfig(), arm_model("RM75-6F")).plan(CUP, q_start=q0_6f, t_start=0.0)
    np.testing.assert_allclose(rm75.fk_batch(f6.q, rm75.D7_6F)[:, :3, 3], f6.pose[:, :3], atol=1e-4)
    np.testing.assert_allclose(f6.pose[-1, :3], b.pose[-1, :3], atol=1e-3)
    assert np.abs(f6.q[-1] - b.q[-1]).max() > 1e-2
