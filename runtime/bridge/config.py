"""The ``[bridge]`` table (pydantic only: reading a config loads no kernels)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BridgeSection"]


class BridgeSection(BaseModel):
    """How the bridge node turns ``planner/decision`` + the target's keypoints into a ``task``."""

    model_config = ConfigDict(extra="forbid")

    skills: dict[str, str] = Field(default_factory=lambda: {"pour": "pour_mug"},
                                   description="decision skill → the skill the bridge plans (a decision naming a "
                                               "skill not listed uses that skill itself)")
    keypoints: Literal["auto", "any", "perception", "world"] = Field(
        "auto", description="where the target's keypoints come from: perception/keypoints, the simulated world's "
                            "world/truth, any (whichever is newest), or auto: perception's when they pass the "
                            "bridge's checks, else the world's ground truth of the same object (same id, or the "
                            "world object of its class nearest to where perception saw it, within match_m)")
    match_m: float = Field(0.08, gt=0.0, le=1.0, description="auto: a perceived object is the world object of its "
                                                             "class whose position is nearest, within this (m)")
    subtask_timeout_s: float = Field(120.0, gt=0.0, le=3600.0,
                                     description="a sub-task whose task has not ended (trajectory/done or "
                                                 "trajectory/error) this long after it was sent fails (s)")
    max_age_s: float = Field(2.0, gt=0.0, le=3600.0, description="keypoints older than this are not used (s)")
    wait_s: float = Field(1.0, ge=0.0, le=60.0,
                          description="a decision waits this long for its target's keypoints and the arm's state (s)")
    step_deg: float = Field(2.0, gt=0.1, le=30.0, description="EndposeEstimate's azimuth step (°)")
    rotation_weight: float = Field(0.1, ge=0.0, le=10.0,
                                   description="m per rad: how rotation counts against translation in the "
                                               "distance to the start pose")
    alpha_sigmas: float = Field(1.0, ge=0.0, le=5.0, description="α candidates within this many standard "
                                                                 "deviations of the demonstrated α")
    handle_clearance: float | None = Field(None, ge=0.0, le=0.5,
                                           description="m; unset: the skill's (what its demonstrations kept)")
    calibrate: bool = Field(True, description="project the target's keypoints onto the container geometry first")
    upright_tol_deg: float = Field(15.0, ge=0.0, le=90.0,
                                   description="a target axis within this of vertical is taken as vertical (°)")
    check_phases: list[float] = Field(default_factory=lambda: [0.35, 0.5, 0.67, 0.83, 1.0],
                                      description="phases of the demonstrated motion (relative to its end) whose "
                                                  "poses must be reachable for an end pose to be feasible")
    limit_margin_deg: float = Field(10.0, ge=0.0, le=30.0,
                                    description="a checkpoint's IK joints must stay this far inside the joint limits "
                                                "(°): the IK's limit avoidance works in the 10° band inside them, and a "
                                                "plan through that band jerks the other joints (acceleration limits)")
    max_reach: float = Field(0.42, gt=0.05, le=1.5,
                             description="a target whose axis is further than this from the base (m, horizontal) "
                                         "is refused at once as out of reach")

    @field_validator("check_phases")
    @classmethod
    def _phases(cls, v):
        if not v or any(not 0.0 <= x <= 1.0 for x in v):
            raise ValueError("check_phases: expected phases in [0, 1] (at least one)")
        return sorted(v)
