"""Settings of the world node: the ``[world]`` table of the runtime config (pydantic only).

    [nodes.world]                 # enables the simulated world (not in the embedded default)
    [world]
    seed = 0                      # the seeded scene (SceneSpec.random) …
    ambiguous = false
    # scene_file = "scene.json"   # … or a SceneSpec JSON, which replaces the seeded scene
    [world.cameras.scene]         # synthetic cameras the world hosts (rings and rates from [camera])
    kind = "synthetic"            # default: one 640×480 camera at 10 Hz looking at the table
    fps = 10.0

The arm in the world is the configured one (``[arm] model``: its d7 and joint limits).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kinebridge.runtime.camera.config import check_camera_config

__all__ = ["WorldSection", "DEFAULT_WORLD_CAMERAS"]

DEFAULT_WORLD_CAMERAS = {"scene": {"kind": "synthetic", "fps": 10.0, "ground_truth": False, "segmentation": False}}


class WorldSection(BaseModel):
    """The ``[world]`` table: the scene, how the world follows the arm, what it publishes."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, le=2**63 - 1, description="scene seed (SceneSpec.random)")
    ambiguous: bool = Field(False, description="≥ 3 similar mugs and distractor boxes (VL-MP's ambiguous scenes)")
    mugs: int = Field(3, ge=0, le=12, description="mugs in the seeded scene (the first is the pour target)")
    distractors: int = Field(2, ge=0, le=12)
    drawer: bool = False
    particles: int = Field(120, ge=0, le=2000, description="water spheres in the held mug")
    scene_file: str | None = Field(None, description="a SceneSpec JSON file; replaces the seeded scene")
    follow_delay_s: float = Field(0.01, ge=0.0, le=0.5,
                                  description="the world runs this far behind CLOCK_MONOTONIC, so the arm moves on "
                                              "the interpolated reported states, not on the newest held (s)")
    follow_delay_max_s: float = Field(0.1, ge=0.0, le=1.0,
                                      description="states arriving later raise the delay up to this (a jitter "
                                                  "buffer; it relaxes back to follow_delay_s)")
    physics_hz: float = Field(200.0, ge=10.0, le=1000.0, description="how often the node steps the physics to now")
    max_lag_s: float = Field(0.5, gt=0.0, le=10.0,
                             description="a world further behind than this (a stalled process) skips ahead "
                                         "instead of catching up")
    truth_hz: float = Field(2.0, ge=0.0, le=100.0, description="rate of world/truth (0: on request only)")
    cameras: dict[str, dict] = Field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_WORLD_CAMERAS.items()},
                                     description="synthetic cameras rendering the world, by camera name")

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, v):
        for name, c in v.items():
            if not name.isidentifier():
                raise ValueError(f"world.cameras: camera name {name!r} must be an identifier")
            check_camera_config(c, f"world.cameras.{name}", kinds=("synthetic",))
        return v
