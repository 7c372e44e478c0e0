"""Camera configurations (pydantic, ``extra="forbid"``) and the factory that makes a camera from one.

Each kind registers its config class and the import path of its camera class
(:func:`register_camera`), so ``make_camera`` imports MuJoCo or pyrealsense2 only for the kind
it makes, and a new kind (``"replay"``) is one more registration:

    make_camera({"kind": "synthetic", "width": 640, "height": 480,
                 "extrinsics": {"look_at": {"eye": [1.0, 0, 0.6], "target": [0.4, 0, 0]}}}, world=world)
    make_camera(RealsenseCameraConfig(serial="123456789012", fps=30))
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kinebridge.drivers.camera import geometry

__all__ = ["ExtrinsicsConfig", "LookAt", "CameraConfig", "SyntheticCameraConfig", "RealsenseCameraConfig",
           "ReplayCameraConfig",
           "register_camera", "camera_kinds", "parse_camera_config", "make_camera"]


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LookAt(_Cfg):
    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


class ExtrinsicsConfig(_Cfg):
    """The camera pose T_base_cam in the arm's base frame, given exactly one way:
    ``look_at``; ``position`` + ``quaternion`` (w, x, y, z); ``matrix`` (4 × 4 rows); or
    ``file``, a JSON written by :mod:`kinebridge.drivers.camera.calibration` (key ``T_base_cam``)."""

    look_at: LookAt | None = None
    position: tuple[float, float, float] | None = None
    quaternion: tuple[float, float, float, float] | None = None
    matrix: tuple[tuple[float, float, float, float], ...] | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("look_at", "position", "matrix", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give the camera pose exactly one way: look_at, position + quaternion, matrix or file "
                             f"(got {given or 'none'})")
        if (self.position is None) != (self.quaternion is None):
            raise ValueError("position and quaternion come together (quaternion w, x, y, z)")
        if self.quaternion is not None and not np.linalg.norm(self.quaternion) > 1e-9:
            raise ValueError("quaternion: a zero quaternion is no rotation; give (w, x, y, z) of unit norm")
        if self.matrix is not None:
            T = np.asarray(self.matrix, float)
            if T.shape != (4, 4) or not np.allclose(T[3], [0, 0, 0, 1]):
                raise ValueError("matrix: expected 4 rows of 4 with the last row 0 0 0 1")
            R = T[:3, :3]
            if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
                raise ValueError("matrix: the rotation block is not a rotation (RᵀR ≠ I or det < 0)")
        return self

    def pose(self) -> np.ndarray:
        """T_base_cam (4, 4)."""
        if self.look_at is not None:
            return geometry.look_at(self.look_at.eye, self.look_at.target, self.look_at.up)
        if self.position is not None:
            return geometry.pose_from_xyz_quat(self.position, self.quaternion)
        if self.matrix is not None:
            return np.asarray(self.matrix, float)
        try:
            data = json.loads(Path(self.file).read_text())
            T = np.asarray(data["T_base_cam"], float)
        except FileNotFoundError:
            raise ValueError(f"extrinsics.file: {self.file} does not exist; run the hand-eye calibration "
                             "(kinebridge.drivers.camera.calibration) or give the pose directly") from None
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"extrinsics.file: {self.file} has no valid T_base_cam (4 × 4): {err}") from None
        if T.shape != (4, 4):
            raise ValueError(f"extrinsics.file: T_base_cam in {self.file} is {T.shape}, expected (4, 4)")
        return T


class CameraConfig(_Cfg):
    """Fields every camera has; subclasses set ``kind``."""

    kind: str
    width: int = Field(640, gt=0, le=4096)
    height: int = Field(480, gt=0, le=4096)
    fps: float = Field(30.0, gt=0.0, le=300.0)
    extrinsics: ExtrinsicsConfig | None = None


class SyntheticCameraConfig(CameraConfig):
    """The simulated world rendered from a viewpoint. Square pixels: ``fovy_deg`` (the D435i's
    colour camera has ≈ 42°) or ``fx``; principal point at the image centre unless given."""

    kind: Literal["synthetic"] = "synthetic"
    fovy_deg: float | None = Field(42.5, ge=5.0, le=150.0)
    fx: float | None = Field(None, gt=0.0)
    cx: float | None = None
    cy: float | None = None
    extrinsics: ExtrinsicsConfig = ExtrinsicsConfig(look_at=LookAt(eye=(1.05, 0.0, 0.62), target=(0.38, 0.0, 0.04)))
    ground_truth: bool = True
    segmentation: bool = Field(True, description="a second render pass for per-pixel label ids")
    backend: Literal["auto", "egl", "osmesa"] = "auto"
    near: float = Field(0.03, gt=0.0, le=1.0, description="m")
    far: float = Field(6.0, gt=0.1, le=100.0, description="m")
    realtime: bool = Field(True, description="pace frames at fps on the wall clock; false: render back to back")

    def intrinsics(self) -> geometry.Intrinsics:
        if self.fx is not None:
            return geometry.Intrinsics(fx=self.fx, fy=self.fx, cx=(self.width - 1) / 2 if self.cx is None else self.cx,
                                       cy=(self.height - 1) / 2 if self.cy is None else self.cy,
                                       width=self.width, height=self.height)
        return geometry.Intrinsics.from_fovy(self.width, self.height, float(self.fovy_deg), self.cx, self.cy)


class RealsenseCameraConfig(CameraConfig):
    """An Intel RealSense (D435i) through pyrealsense2: colour (rgb8) and depth (z16), depth
    aligned to colour. ``serial`` picks a device (default: the only one connected);
    ``depth_width``/``depth_height`` default to the colour resolution."""

    kind: Literal["realsense"] = "realsense"
    serial: str | None = Field(None, pattern=r"^[0-9A-Za-z_\-]{1,32}$")
    depth_width: int | None = Field(None, gt=0, le=4096)
    depth_height: int | None = Field(None, gt=0, le=4096)
    timeout_s: float = Field(5.0, gt=0.0, le=60.0, description="wait for the first frames at open")
    frame_timeout_ms: int = Field(2000, gt=0, le=60000, description="a stall this long stops the camera")


class ReplayCameraConfig(CameraConfig):
    """Frames played back from a kinebridge recording — the ``camera/color`` + ``camera/depth`` frames a
    camera node records (foxglove.CompressedImage + foxglove.RawImage 16UC1) and their metadata
    (stamps, intrinsics, T_base_cam) — with their recorded timing (÷ ``speed``). ``path``: an MCAP
    file or a directory of them (played in name order); ``camera``: which recorded camera (default:
    the first one found); ``width``/``height``: as recorded (given: must match); ``extrinsics``
    replaces the recorded pose; ``fps`` is only the rate consumers should expect."""

    kind: Literal["replay"] = "replay"
    path: Path
    camera: str | None = Field(None, min_length=1, max_length=100)
    width: int | None = Field(None, gt=0, le=8192)
    height: int | None = Field(None, gt=0, le=8192)
    speed: float = Field(1.0, gt=0.0, le=1000.0, description="2: twice as fast as recorded")
    loop: bool = Field(False, description="start again at the end (else the stream ends)")


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, tuple[type[CameraConfig], str]] = {}


def register_camera(kind: str, config_cls: type[CameraConfig], camera_path: str) -> None:
    """Register a camera kind: its config class and ``"module:Class"`` of its camera."""
    if ":" not in camera_path:
        raise ValueError(f"camera_path: expected 'package.module:Class', got {camera_path!r}")
    _REGISTRY[kind] = (config_cls, camera_path)


def camera_kinds() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


register_camera("synthetic", SyntheticCameraConfig, "kinebridge.drivers.camera.synthetic:SyntheticCamera")
register_camera("realsense", RealsenseCameraConfig, "kinebridge.drivers.camera.realsense:RealsenseCamera")
register_camera("replay", ReplayCameraConfig, "kinebridge.drivers.camera.replay:ReplayCamera")


def parse_camera_config(config) -> CameraConfig:
    """A registered config from a config object or a dict with a ``kind``; errors name the field."""
    if isinstance(config, CameraConfig):
        if config.kind not in _REGISTRY:
            raise ValueError(f"camera kind {config.kind!r} is not registered; known: {', '.join(camera_kinds())}")
        return config
    if not isinstance(config, dict):
        raise TypeError(f"camera config: expected a CameraConfig or a dict, got {type(config).__name__}")
    kind = config.get("kind")
    if kind not in _REGISTRY:
        raise ValueError(f"camera kind: {kind!r} is not one of {', '.join(camera_kinds())}")
    try:
        return _REGISTRY[kind][0].model_validate(config)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ValueError(f"camera ({kind}) {where}: {first['msg']}") from err


def make_camera(config, **context):
    """The camera for ``config`` (not yet open). ``context`` goes to its constructor: the
    synthetic camera needs ``world=``; RealSense accepts ``device=`` (a pyrealsense2 device,
    e.g. a ``software_device``) or ``context=`` (an ``rs.context``)."""
    cfg = parse_camera_config(config)
    module, _, cls = _REGISTRY[cfg.kind][1].partition(":")
    camera_cls = getattr(importlib.import_module(module), cls)
    return camera_cls(cfg, **context)
