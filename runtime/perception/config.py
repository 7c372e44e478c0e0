"""Settings of the perception node: the ``[perception]`` table of the runtime config (pydantic only).

    [perception]
    source = "ring"            # ring: frames a camera/world node announces on camera/frame; camera: open one here
    camera = ""                # source = "ring": whose frames ("" = the first camera heard)
    device = { kind = "synthetic", width = 640, height = 480, fps = 30 }   # the camera (source = "camera")
    scene_seed = 0             # a synthetic camera renders SceneSpec.random(scene_seed) (no world node needed)
    model = ""                 # the ONNX keypoint model; "" = the shipped one (export/keypoints/models/)
    providers = "auto"         # TensorRT > CUDA > CPU, or "cpu", "cuda", "tensorrt"
    threads = 2                # ONNX Runtime intra-op threads
    rate_hz = 0.0              # at most this many frames/s (0: every new frame the camera delivers)

Reading a config loads no model and no MuJoCo: the node checks the model and opens the camera in
its set-up, and fails there with the reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PerceptionSection", "OpenVocabSection"]


class OpenVocabSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="a user's open-vocabulary detector in ONNX (local path; see "
                                   "runtime/perception/detector.py for its signature)")
    queries: list[str] | None = Field(None, description="text queries (their token ids in the model's sidecar "
                                                        "JSON); default: the sidecar's")
    threshold: float | None = Field(None, gt=0.0, lt=1.0)


class PerceptionSection(BaseModel):
    """The ``[perception]`` table (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["ring", "camera"] = Field("ring", description="ring: read the frames a camera or world node "
                                                                 "writes into its shared-memory ring and announces "
                                                                 "on camera/frame; camera: open [perception] device "
                                                                 "in this node")
    device: dict | None = Field(None, description="the camera (source = camera): a drivers/camera config; default "
                                                  "the synthetic camera at 640x480")
    camera: str = Field("", description="source = ring: the camera whose frames to read ('' = the first one heard)")
    scene_seed: int = Field(0, ge=0, description="a synthetic camera's world: SceneSpec.random(scene_seed)")
    model: str = Field("", description="the ONNX keypoint model ('' = the shipped model)")
    providers: str = Field("auto", description="auto (TensorRT > CUDA > CPU), tensorrt, cuda or cpu")
    threads: int = Field(2, ge=1, le=64, description="ONNX Runtime intra-op threads")
    spin: bool = Field(False, description="let ONNX Runtime's threads spin between runs (burns the shared cores)")
    rate_hz: float = Field(0.0, ge=0.0, le=1000.0, description="at most this many frames/s (0: every new frame)")
    frame_timeout_s: float = Field(2.0, gt=0.0, le=60.0, description="no frame for this long: report the camera "
                                                                      "as stalled")
    reopen_s: float = Field(2.0, gt=0.0, le=60.0, description="after a camera error, try to open it again this often")
    held_exclusion_m: float = Field(0.25, ge=0.0, le=2.0,
                                    description="an object whose base is off the table (above table_z_m + 3 cm) within "
                                                "this distance of the flange is held by the arm (its tool, the gripper "
                                                "itself): reported, never a candidate; 0 = off (needs control/state)")
    table_z_m: float = Field(0.0, ge=-2.0, le=2.0, description="the table top's height in the arm's base frame (m)")
    table_support: bool = Field(True, description="place the 3D keypoints of objects standing on the table from the "
                                                  "table top and their upright axis (kinebridge.export.keypoints.lift); "
                                                  "false: the depth head alone (VL-MP eq. 2)")
    open_vocab: OpenVocabSection | None = None

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v is None:
            return None
        from kinebridge.drivers.camera.configs import parse_camera_config
        if not isinstance(v, dict):
            raise ValueError(f"perception.device: expected a table with a 'kind', got {v!r}")
        try:
            parse_camera_config(v)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"perception.device: {exc}") from None
        return v

    @field_validator("providers")
    @classmethod
    def _providers(cls, v):
        if v.lower() not in ("auto", "tensorrt", "trt", "cuda", "cpu"):
            raise ValueError(f"perception.providers: expected auto, tensorrt, cuda or cpu, got {v!r}")
        return v.lower()
