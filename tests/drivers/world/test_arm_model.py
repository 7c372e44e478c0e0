"""The MuJoCo RM75 is the MDH chain of kinebridge.kernels.rm75: same flange pose to 1e-9."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from kinebridge.drivers.world.builder import build
from kinebridge.drivers.world.spec import ArmSpec, SceneSpec, ToolSpec
from kinebridge.kernels import rm75


@pytest.mark.parametrize("variant", ["B", "6F"])
def test_flange_site_equals_rm75_fk(variant):
    model = rm75.RM75Model.for_variant(variant)
    built = build(SceneSpec(arm=ArmSpec.from_model(model), tool=ToolSpec(kind="none")))
    m = built.model
    d = mujoco.MjData(m)
    rng = np.random.default_rng(5)
    worst_p = worst_r = 0.0
    for _ in range(50):
        q = rng.uniform(rm75.Q_MIN, rm75.Q_MAX)
        d.qpos[built.arm_qpos] = q
        mujoco.mj_kinematics(m, d)
        T = rm75.fk(q, model.d7)
        worst_p = max(worst_p, np.abs(d.site_xpos[built.flange_site] - T[:3, 3]).max())
        worst_r = max(worst_r, np.abs(d.site_xmat[built.flange_site].reshape(3, 3) - T[:3, :3]).max())
    assert worst_p < 1e-9 and worst_r < 1e-9
    # the two variants differ by d7 along the flange axis
    assert m.body_pos[built.flange_body][1] == pytest.approx(-model.d7)


def test_joint_limits_come_from_the_arm_spec():
    lim = tuple(0.5 * x for x in rm75.Q_MAX)
    built = build(SceneSpec(arm=ArmSpec(d7=0.15, q_min=tuple(-x for x in lim), q_max=lim), tool=ToolSpec(kind="none")))
    from kinebridge.drivers.world.arm_model import JOINT_NAMES

    rng = np.array([built.model.jnt_range[mujoco.mj_name2id(built.model, mujoco.mjtObj.mjOBJ_JOINT, n)]
                    for n in JOINT_NAMES])
    assert np.allclose(rng[:, 1], lim) and np.allclose(rng[:, 0], [-x for x in lim])
