"""Joint limits and the arm's streaming rates: plain data (numpy only), cheap to import anywhere.

:class:`JointLimits` is what every check enforces; :class:`~kinebridge.drivers.arm.model.ArmModel` says
which limits those are for the configured arm. :func:`check_rate_hz` is the one check of a control or
streaming rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["JointLimits", "check_rate_hz", "MAX_STREAM_RATE_HZ", "MIN_CONTROL_RATE_HZ"]

MAX_STREAM_RATE_HZ = 500.0     # RealMan pass-through: one setpoint per 2 ms at the fastest
MIN_CONTROL_RATE_HZ = 10.0     # below this a fixed-rate loop is a planner, not a controller


@dataclass(frozen=True)
class JointLimits:
    """Joint position, velocity and acceleration limits (rad, rad/s, rad/s²)."""

    q_min: np.ndarray
    q_max: np.ndarray
    qd_max: np.ndarray
    qdd_max: np.ndarray

    def __post_init__(self):
        for name in ("q_min", "q_max", "qd_max", "qdd_max"):  # own float64 copies (one compiled signature)
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=np.float64).reshape(-1))
        n = len(self.q_min)
        for name in ("q_max", "qd_max", "qdd_max"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"JointLimits.{name} has {len(getattr(self, name))} entries, q_min has {n}")
        if np.any(np.asarray(self.q_min) >= np.asarray(self.q_max)):
            raise ValueError("JointLimits: every q_min must be below its q_max")
        if np.any(np.asarray(self.qd_max) <= 0) or np.any(np.asarray(self.qdd_max) <= 0):
            raise ValueError("JointLimits: qd_max and qdd_max must be positive")

    @property
    def dof(self) -> int:
        return len(self.q_min)

    def scaled(self, speed_fraction: float) -> "JointLimits":
        """The same position limits with velocity and acceleration scaled by ``speed_fraction``."""
        if not 0.0 < speed_fraction <= 1.0:
            raise ValueError(f"speed_fraction must be in (0, 1], got {speed_fraction}")
        return JointLimits(self.q_min, self.q_max, self.qd_max * speed_fraction, self.qdd_max * speed_fraction)


def check_rate_hz(rate_hz: float, where: str = "rate", lo: float = MIN_CONTROL_RATE_HZ) -> float:
    """``rate_hz`` if it is a rate the arm can be streamed at (``lo``…500 Hz); ValueError naming ``where``."""
    try:
        r = float(rate_hz)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a rate in Hz, got {rate_hz!r}") from None
    if not lo <= r <= MAX_STREAM_RATE_HZ:
        raise ValueError(f"{where}: {r:g} Hz is outside {lo:g}..{MAX_STREAM_RATE_HZ:g} Hz (the RealMan controller's "
                         f"fastest pass-through period is 2 ms)")
    return r
