"""The arm's facts, from one place: which RM75, its kinematics, the joint limits everyone enforces.

``[arm] model = "RM75-B"`` (or ``"RM75-6F"``) resolves here to an :class:`ArmModel`: the kinematic
model (:class:`kinebridge.kernels.rm75.RM75Model`, flange length d7), the model's joint position,
velocity and acceleration limits, and the one speed-scaling knob ``[arm] speed_fraction``. When a
driver connects, the limits the controller reports are intersected with the model's once
(:meth:`ArmModel.with_reported`) and that object is what the control loop, the setpoint checks, the
trajectory planner (through ``control/limits``), IK, the workspace check and the simulator use —
so a plan slowed "until it fits" fits exactly what the loop enforces.

Also the streaming facts of the RealMan controller: its fastest pass-through period (2 ms → 500 Hz)
and the control rates kinebridge accepts (:func:`check_rate_hz`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinebridge.drivers.arm.limits import MAX_STREAM_RATE_HZ, MIN_CONTROL_RATE_HZ, JointLimits, check_rate_hz
from kinebridge.kernels import rm75

__all__ = ["ArmModel", "ARM_MODELS", "arm_model", "model_limits", "check_rate_hz", "MAX_STREAM_RATE_HZ",
           "MIN_CONTROL_RATE_HZ"]

#: model name → kinematic variant (d7); both share the joint limits of realman-protocol.md §3.2
ARM_MODELS = {"RM75-B": rm75.RM75Model.for_variant("B"), "RM75-6F": rm75.RM75Model.for_variant("6F")}


def model_limits(kin: rm75.RM75Model) -> JointLimits:
    return JointLimits(np.asarray(kin.q_min), np.asarray(kin.q_max), np.asarray(kin.qd_max),
                       np.asarray(kin.qdd_max))


@dataclass(frozen=True)
class ArmModel:
    """One arm: ``name``, kinematics, the limits it enforces (``limits``: the model's, intersected with
    what the controller reported, velocities and accelerations × ``speed_fraction``)."""

    name: str
    kinematics: rm75.RM75Model
    limits: JointLimits
    speed_fraction: float = 1.0
    reported: JointLimits | None = None

    @property
    def d7(self) -> float:
        return self.kinematics.d7

    @property
    def dof(self) -> int:
        return self.limits.dof

    def with_reported(self, reported: JointLimits) -> "ArmModel":
        """The model with the limits a controller reported: the tighter of the two on every joint, then
        speed-scaled. Raises ValueError if they leave no position range."""
        base = model_limits(self.kinematics)
        if reported.dof != base.dof:
            raise ValueError(f"the controller reports limits for {reported.dof} joints, the {self.name} has "
                             f"{base.dof}")
        q_min = np.maximum(base.q_min, reported.q_min)
        q_max = np.minimum(base.q_max, reported.q_max)
        if np.any(q_min >= q_max):
            j = int(np.argmax(q_min >= q_max))
            raise ValueError(f"joint {j + 1}: the controller's position range [{np.degrees(reported.q_min[j]):.1f}°, "
                             f"{np.degrees(reported.q_max[j]):.1f}°] does not overlap the {self.name}'s")
        lim = JointLimits(q_min, q_max, np.minimum(base.qd_max, reported.qd_max),
                          np.minimum(base.qdd_max, reported.qdd_max)).scaled(self.speed_fraction)
        return ArmModel(self.name, self.kinematics, lim, self.speed_fraction, reported)

    def with_limits(self, limits: JointLimits) -> "ArmModel":
        """The same arm enforcing ``limits`` as they are (already intersected and scaled elsewhere:
        what a control node announced on ``control/limits``)."""
        return ArmModel(self.name, self.kinematics, limits, self.speed_fraction, self.reported)

    def summary(self) -> dict:
        return {"model": self.name, "d7": self.d7, "speed_fraction": self.speed_fraction,
                "qd_max_deg_s": np.round(np.degrees(self.limits.qd_max), 2).tolist(),
                "qdd_max_deg_s2": np.round(np.degrees(self.limits.qdd_max), 2).tolist(),
                "controller_reported": self.reported is not None}


def arm_model(name: str = "RM75-B", speed_fraction: float = 1.0) -> ArmModel:
    """The :class:`ArmModel` of ``name`` (a key of :data:`ARM_MODELS`) before any controller report."""
    try:
        kin = ARM_MODELS[name]
    except KeyError:
        raise ValueError(f"arm.model: unknown arm {name!r}; known: {sorted(ARM_MODELS)}") from None
    if not 0.0 < speed_fraction <= 1.0:
        raise ValueError(f"arm.speed_fraction must be in (0, 1], got {speed_fraction}")
    return ArmModel(name, kin, model_limits(kin).scaled(speed_fraction), float(speed_fraction))
