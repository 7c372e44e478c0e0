"""The ``[arm]`` table of the runtime config: which arm, how fast, which driver reaches it.

pydantic only (no SDK, no Numba), so reading a config stays cheap.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kinebridge.drivers.realman.config import RealmanConfig

__all__ = ["ArmConfig", "ARM_MODEL_NAMES"]

ARM_MODEL_NAMES = ("RM75-B", "RM75-6F")   # kinebridge.drivers.arm.model.ARM_MODELS (a test keeps them equal)


class ArmConfig(BaseModel):
    """Which arm (``model``: kinematics and limits), the one speed knob, the driver that reaches it."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["RM75-B", "RM75-6F"] = Field("RM75-B", description="the arm: RM75-B (d7 144 mm) or RM75-6F "
                                                                       "(force-sensor flange, d7 172.5 mm)")
    speed_fraction: float = Field(1.0, gt=0.0, le=1.0,
                                  description="scale on the joint velocity/acceleration limits, for the planner, "
                                              "the control loop and the driver alike")
    driver: Literal["realman"] = Field("realman", description="the driver that reaches the arm (RealMan's SDK)")
    simulate: bool = Field(True, description="start kinebridge's simulated RealMan controller and connect to it")
    sim_initial_deg: list[float] | None = Field(None, description="joints the simulated arm starts at (7 values, °)")
    realman: RealmanConfig = Field(default_factory=RealmanConfig)

    @field_validator("sim_initial_deg")
    @classmethod
    def _initial(cls, q):
        if q is not None and (len(q) != 7 or any(abs(v) > 360 for v in q)):
            raise ValueError(f"expected 7 joint angles within ±360°, got {q}")
        return q
