"""Settings of the trajectory planner and node: the ``[trajectory]`` table (pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PlannerConfig", "TrajectorySection"]


class PlannerConfig(BaseModel):
    """How a skill is turned into a joint plan (the arm's kinematics and limits come from its
    :class:`~kinebridge.drivers.arm.model.ArmModel`, not from here)."""

    model_config = ConfigDict(extra="forbid")

    dt: float = Field(0.01, gt=0.0005, le=0.1, description="joint sample period of plans and chunks (s)")
    speed: float = Field(1.0, gt=0.0, le=4.0, description="time scaling of the demonstrated duration")
    chunk_len: int = Field(50, ge=2, le=2000, description="samples per published chunk")
    max_joint_step: float = Field(0.1, gt=0.0, le=1.0, description="largest IK joint change between samples (rad)")
    start_blend: float = Field(0.2, gt=0.0, le=1.0, description="share of the motion over which the start offset fades")
    rest_ramp: float = Field(0.12, ge=0.0, le=0.5,
                             description="share of the motion at each end over which the phase speed eases to rest")
    n_components: int | None = Field(None, ge=1, le=30,
                                     description="GMM components of the LFE-KMP fit; unset: the skill's own "
                                                 "(metadata.fit.n_components, chosen when the skill was made), else 6")
    n_ref: int = Field(100, ge=10, le=1000, description="LFE-KMP reference points")
    pos_tol: float = Field(1e-4, gt=0.0, description="largest IK position error accepted (m)")
    rot_tol: float = Field(1e-3, gt=0.0, description="largest IK rotation error accepted (rad)")
    max_slowdown: float = Field(4.0, ge=1.0, le=20.0,
                                description="how many times slower than `speed` a plan may be re-timed to fit the "
                                            "joint limits before it is rejected")
    limit_margin: float = Field(0.03, ge=0.0, le=0.5,
                                description="plans keep joint speeds and accelerations this fraction below the "
                                            "enforced limits, so the control loop's limiter never has to act")


class TrajectorySection(PlannerConfig):
    """The ``[trajectory]`` table: the planner's settings plus the node's."""

    skill: str = Field("pour", description="the default skill: a bundled name or the path of a skill .npz")
    publish_hz: float = Field(10.0, gt=0.0, le=200.0, description="rate of chunk publication while moving")
    lead_s: float = Field(0.05, ge=0.0, le=1.0, description="how far ahead of now a new plan starts")
