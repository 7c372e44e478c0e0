"""How to reach one RealMan arm and how to stream to it: the ``[arm.realman]`` table of the runtime config.

Kept apart from :mod:`kinebridge.drivers.realman.arm` (the SDK, Numba kernels) so that reading a
config costs no more than pydantic: nodes that never touch the arm (the recorder) start faster.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["RealmanConfig"]


class RealmanConfig(BaseModel):
    """How to reach one RealMan arm and how to stream to it."""

    model_config = ConfigDict(extra="forbid")

    ip: str = Field("192.168.1.18", description="controller IP address")
    port: int = Field(8080, ge=1, le=65535, description="controller JSON/TCP port")
    udp_port: int = Field(8089, ge=1, le=65535, description="local UDP port the controller pushes state to")
    push_cycle: int = Field(1, ge=1, le=100, description="state push period in units of 5 ms (1 = 200 Hz)")
    host_ip: str | None = Field(None, description="this PC's address as the controller sees it (auto when unset)")
    follow: bool = Field(True, description="high follow (drives track each point; period must be ≤ 10 ms)")
    trajectory_mode: int = Field(0, ge=0, le=2, description="high-follow mode: 0 raw, 1 curve fit, 2 filter")
    radio: int = Field(0, ge=0, le=1000, description="smoothing for trajectory_mode 1 (0-100) or 2 (0-999)")
    max_step_deg: float = Field(10.0, gt=0.0, le=10.0, description="largest joint step per setpoint (°)")
    link_timeout_periods: float = Field(4.0, ge=1.0, le=100.0,
                                        description="push periods without a new state before the state counts as "
                                                    "late (4 = 20 ms at 200 Hz): the control loop holds its last "
                                                    "safe setpoint; the link is only lost after link_lost_s")
    link_lost_s: float = Field(0.1, ge=0.02, le=10.0,
                               description="silence of the state push after which the link counts as lost: "
                                           "streaming is refused, the arm is stopped, reconnect() is needed. "
                                           "0.1 s: twice the ~50 ms scheduling hole a loaded 2-core PC shows "
                                           "(RT throttling), 20 push periods at 200 Hz; a pulled cable is "
                                           "noticed within 0.1 s")
    thread_priority: int = Field(0, ge=0, le=99,
                                 description="SCHED_FIFO priority for the SDK's receive and UDP threads and the link "
                                             "watchdog where permitted (0: leave them as they are; the control node "
                                             "raises every helper thread itself)")
    timeout_ms: int = Field(500, ge=50, le=10000, description="SDK reply timeout (global to the process)")
    connect_timeout_s: float = Field(3.0, gt=0.0, description="time allowed for the first state push")

    @model_validator(mode="after")
    def _window_longer_than_late_budget(self):
        if self.link_lost_s <= self.late_after_s:
            raise ValueError(
                f"link_lost_s ({self.link_lost_s:g} s) must be longer than the late budget link_timeout_periods × "
                f"push period ({self.link_timeout_periods:g} × {self.push_period_s * 1e3:g} ms = "
                f"{self.late_after_s * 1e3:g} ms): a state is late first, lost later")
        return self

    @property
    def push_period_s(self) -> float:
        return 0.005 * self.push_cycle

    @property
    def late_after_s(self) -> float:
        """Age of the newest state beyond which it counts as late (``link_timeout_periods`` push periods)."""
        return self.link_timeout_periods * self.push_period_s
