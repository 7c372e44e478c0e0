"""Settings of the control loop: the ``[control]`` table of the runtime config.

Kept apart from :mod:`kinebridge.runtime.control.loop` (Numba kernels) so that reading a config costs
no more than pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kinebridge.drivers.arm.limits import check_rate_hz     # the arm's streaming range, one place

__all__ = ["ControlConfig"]


class ControlConfig(BaseModel):
    """Settings of the control loop (the ``[control]`` table of the runtime config)."""

    model_config = ConfigDict(extra="forbid")

    rate_hz: float = Field(200.0, description="control rate, 10..500 Hz (the RealMan controller's fastest "
                                               "pass-through period is 2 ms)")
    blend_s: float = Field(0.1, gt=0.0, le=2.0, description="time over which a replacing chunk takes over")
    watchdog_s: float = Field(1.5, gt=0.0, le=60.0,
                              description="hold and decelerate when no chunk arrived for this long while moving "
                                          "(producers re-publish more often than this; a chunk longer than this "
                                          "is cut short unless followed by another)")
    reconnect_timeout_s: float = Field(0.5, gt=0.0, le=10.0,
                                       description="each reconnect attempt after a lost link waits this long "
                                                   "(one attempt a second; the loop holds meanwhile)")
    workspace_min: tuple[float, float, float] = Field((-0.7, -0.7, -0.05), description="flange box, m, base frame")
    workspace_max: tuple[float, float, float] = Field((0.7, 0.7, 1.0), description="flange box, m, base frame")

    @field_validator("rate_hz")
    @classmethod
    def _rate(cls, v):
        return check_rate_hz(v, "rate_hz")

    @field_validator("workspace_max")
    @classmethod
    def _box(cls, v, info):
        lo = info.data.get("workspace_min")
        if lo is not None and any(a >= b for a, b in zip(lo, v)):
            raise ValueError(f"workspace_max {v} must exceed workspace_min {lo} on every axis")
        return v
