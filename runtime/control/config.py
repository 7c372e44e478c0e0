"""Settings of the control loop: the ``[control]`` table of the runtime config.

Kept apart from :mod:`kinebridge.runtime.control_loop` (Numba kernels) so that reading a config costs
no more than pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ControlConfig", "D7_B_M"]

D7_B_M = 0.144   # flange length d_7 of the RM75-B (kernels.rm75.D7_B; a test keeps the two equal)


class ControlConfig(BaseModel):
    """Settings of the control loop (the ``[control]`` table of the runtime config)."""

    model_config = ConfigDict(extra="forbid")

    rate_hz: float = Field(200.0, ge=10.0, le=500.0, description="control rate; the RealMan limit is 500 Hz")
    blend_s: float = Field(0.1, gt=0.0, le=2.0, description="time over which a replacing chunk takes over")
    watchdog_s: float = Field(1.5, gt=0.0, le=60.0,
                              description="hold and decelerate when no chunk arrived for this long while moving "
                                          "(producers re-publish more often than this; a chunk longer than this "
                                          "is cut short unless followed by another)")
    speed_fraction: float = Field(1.0, gt=0.0, le=1.0, description="scale on the arm's velocity/acceleration limits")
    workspace_min: tuple[float, float, float] = Field((-0.7, -0.7, -0.05), description="flange box, m, base frame")
    workspace_max: tuple[float, float, float] = Field((0.7, 0.7, 1.0), description="flange box, m, base frame")
    d7: float = Field(D7_B_M, description="flange length of the RM75 variant (m)")

    @field_validator("workspace_max")
    @classmethod
    def _box(cls, v, info):
        lo = info.data.get("workspace_min")
        if lo is not None and any(a >= b for a, b in zip(lo, v)):
            raise ValueError(f"workspace_max {v} must exceed workspace_min {lo} on every axis")
        return v
