"""Settings of camera nodes: the ``[camera]`` table of the runtime config (pydantic only).

    [camera]
    device = { kind = "realsense", width = 640, height = 480, fps = 30 }   # a node of kind "camera"
    slots = 8            # the shared-memory ring's slots (a reader has slots − 1 frame periods to copy one)
    publish_hz = 30.0    # frames/s into the ring and onto camera/frame (0: every frame the camera delivers)
    record_hz = 2.0      # frames/s recorded as camera/color + camera/depth (0: none)

``device`` is a camera config of :mod:`kinebridge.drivers.camera` (``kind`` = one of its registered
kinds — ``realsense``, ``synthetic``, ``replay`` — and that kind's fields); ``devices.NAME`` gives the
camera node named NAME its own. The ring, rate and recording settings apply to every camera — the
world node's synthetic cameras included.
"""

from __future__ import annotations

import hashlib
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CameraSection", "check_camera_config", "ring_name"]


def check_camera_config(cfg: dict, where: str, kinds: tuple[str, ...] | None = None) -> dict:
    """``cfg`` validated as a camera config of :mod:`kinebridge.drivers.camera` (ValueError naming ``where``)."""
    from kinebridge.drivers.camera.configs import parse_camera_config

    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: expected a table with a 'kind', got {cfg!r}")
    if kinds is not None and cfg.get("kind") not in kinds:
        raise ValueError(f"{where}.kind: expected {' or '.join(repr(k) for k in kinds)}, got {cfg.get('kind')!r}")
    try:
        parse_camera_config(cfg)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    return cfg


class CameraSection(BaseModel):
    """The ``[camera]`` table: which camera a camera node opens, and how frames travel and are recorded."""

    model_config = ConfigDict(extra="forbid")

    device: dict | None = Field(None, description="the camera of a node of kind camera: a drivers/camera config "
                                                  "(kind = realsense | synthetic | replay, and that kind's fields)")
    devices: dict[str, dict] = Field(default_factory=dict,
                                     description="per camera node (by node name): its own camera config")
    slots: int = Field(8, ge=2, le=256, description="slots of each camera's shared-memory ring")
    ring_dir: str = Field("/dev/shm", description="where the rings live (a tmpfs: RAM)")
    publish_hz: float = Field(30.0, ge=0.0, le=1000.0,
                              description="frames/s written into the ring and announced on camera/frame (0: every "
                                          "frame the camera delivers)")
    record_hz: float = Field(2.0, ge=0.0, le=60.0,
                             description="frames/s recorded as camera/color (foxglove.CompressedImage) and "
                                         "camera/depth (foxglove.RawImage 16UC1, mm); 0: none")
    record_format: Literal["jpeg", "png"] = Field("jpeg", description="colour encoding of recorded frames (png: "
                                                                     "lossless, ~10x larger)")
    jpeg_quality: int = Field(90, ge=10, le=100)

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        return None if v is None else check_camera_config(v, "camera.device")

    @field_validator("devices")
    @classmethod
    def _devices(cls, v):
        for name, c in v.items():
            check_camera_config(c, f"camera.devices.{name}")
        return v

    def device_for(self, node: str) -> dict | None:
        """The camera config of the camera node ``node``."""
        return self.devices.get(node, self.device)


def ring_name(ipc_dir: str, camera: str) -> str:
    """The ring of ``camera`` in the runtime on bus directory ``ipc_dir`` (two runtimes on one machine,
    each with its own bus directory, never share a ring)."""
    tag = hashlib.sha1(os.path.abspath(ipc_dir).encode()).hexdigest()[:8]
    return f"{tag}-{camera}"
