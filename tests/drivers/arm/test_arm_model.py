"""The arm's facts from one place: model → kinematics and limits, one speed knob, the controller's
report intersected once; the rate check; the driver factory."""

from __future__ import annotations

import numpy as np
import pytest

from kinebridge.drivers.arm.config import ArmConfig
from kinebridge.drivers.arm.factory import make_arm, model_of
from kinebridge.drivers.arm.limits import JointLimits, check_rate_hz
from kinebridge.drivers.arm.model import ARM_MODELS, arm_model, model_limits
from kinebridge.kernels import rm75


def test_models_resolve_to_their_flange_and_the_rm75_limits():
    b, f6 = arm_model("RM75-B"), arm_model("RM75-6F")
    assert b.d7 == rm75.D7_B and f6.d7 == rm75.D7_6F
    for m in (b, f6):
        np.testing.assert_array_equal(m.limits.qd_max, rm75.QD_MAX)
        np.testing.assert_array_equal(m.limits.q_max, rm75.Q_MAX)
    with pytest.raises(ValueError, match="arm.model.*RM75-B"):
        arm_model("RM65")
    with pytest.raises(ValueError, match="speed_fraction"):
        arm_model("RM75-B", 1.5)


def test_one_speed_knob_scales_velocity_and_acceleration_not_positions():
    m = arm_model("RM75-B", 0.5)
    np.testing.assert_allclose(m.limits.qd_max, rm75.QD_MAX * 0.5)
    np.testing.assert_allclose(m.limits.qdd_max, rm75.QDD_MAX * 0.5)
    np.testing.assert_array_equal(m.limits.q_min, rm75.Q_MIN)


def test_a_controller_report_is_intersected_with_the_model_then_scaled():
    base = model_limits(ARM_MODELS["RM75-B"])
    reported = JointLimits(base.q_min + 0.1, base.q_max + 0.5, base.qd_max * np.r_[0.6, np.ones(6) * 2],
                           base.qdd_max * 3)
    m = arm_model("RM75-B", 0.5).with_reported(reported)
    np.testing.assert_allclose(m.limits.q_min, base.q_min + 0.1)        # the tighter of the two …
    np.testing.assert_allclose(m.limits.q_max, base.q_max)
    np.testing.assert_allclose(m.limits.qd_max, base.qd_max * np.r_[0.6, np.ones(6)] * 0.5)   # … then × 0.5
    np.testing.assert_allclose(m.limits.qdd_max, base.qdd_max * 0.5)
    assert m.reported is reported and m.summary()["controller_reported"]
    disjoint = JointLimits(base.q_max - 0.01 + np.r_[1.0, np.zeros(6)], base.q_max + 1.0, base.qd_max, base.qdd_max)
    with pytest.raises(ValueError, match="joint 1"):
        arm_model("RM75-B").with_reported(disjoint)


def test_rate_check_is_the_streaming_range():
    assert check_rate_hz(200) == 200.0 and check_rate_hz(500) == 500.0
    for bad in (501, 5, "fast", None):
        with pytest.raises(ValueError, match="rate"):
            check_rate_hz(bad, "rate")
    assert check_rate_hz(1, "--rates", lo=1.0) == 1.0


def test_factory_builds_the_configured_driver_with_its_model():
    cfg = ArmConfig(model="RM75-6F", speed_fraction=0.25)
    arm = make_arm(cfg)
    assert type(arm).__name__ == "RealmanArm" and arm.model.name == "RM75-6F" and arm.model.d7 == rm75.D7_6F
    assert model_of(cfg).speed_fraction == 0.25 and arm.config == cfg.realman


def test_the_configured_model_must_be_the_connected_arm():
    """A 6F config against an RM75-B controller is refused naming the fix, before anything streams."""
    from kinebridge.drivers.arm.driver import ArmConnectionError
    from kinebridge.drivers.host.net import free_udp_port
    from kinebridge.drivers.realman.sim.controller import spawn_sim

    udp = free_udp_port()
    with spawn_sim(host="127.0.0.1", port=0, push_port=udp, model="RM75-B") as sim:
        cfg = ArmConfig(model="RM75-6F", realman={"ip": "127.0.0.1", "port": sim.port, "udp_port": udp})
        arm = make_arm(cfg)
        with pytest.raises(ArmConnectionError, match='model = "RM75-B"'):
            arm.connect()
        arm.close()
        ok = make_arm(ArmConfig(model="RM75-B", speed_fraction=0.5,
                                realman={"ip": "127.0.0.1", "port": sim.port, "udp_port": udp}))
        ok.connect()
        try:        # the controller's report ∩ the model, × the knob: what the driver checks setpoints against
            np.testing.assert_allclose(ok.limits.qd_max, rm75.QD_MAX * 0.5, rtol=1e-3)
            assert ok.model.reported is not None
        finally:
            ok.close()
