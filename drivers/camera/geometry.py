"""Pinhole camera geometry shared by every camera: intrinsics, poses, projection, back-projection.

Conventions (OpenCV's): the camera frame has x right, y down, z forward (the optical axis);
pixel (u, v) = (column, row) with the centre of the top-left pixel at (0, 0), so the image
spans u ∈ [−½, W − ½]. A 3-D point X_c = (x, y, z) in the camera frame projects to

    u = f_x · x/z + c_x,    v = f_y · y/z + c_y          (undistorted; Hartley & Zisserman eq. 6.4)

and back-projects from depth z (metres along the optical axis, what RealSense and the
synthetic camera report) as X_c = (z (u − c_x)/f_x, z (v − c_y)/f_y, z). Extrinsics are the
camera pose T_base_cam (4 × 4): X_base = T_base_cam · X_c.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Intrinsics", "look_at", "project", "backproject", "pose_from_xyz_quat", "invert"]


class Intrinsics(BaseModel):
    """Pinhole intrinsics of an image of ``width`` × ``height`` pixels; ``distortion`` as
    ``model`` coefficients (OpenCV's k1, k2, p1, p2, k3 for ``"brown_conrady"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fx: float = Field(gt=0.0)
    fy: float = Field(gt=0.0)
    cx: float
    cy: float
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    model: Literal["none", "brown_conrady", "inverse_brown_conrady", "kannala_brandt4", "other"] = "none"
    distortion: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_fovy(cls, width: int, height: int, fovy_deg: float, cx: float | None = None,
                  cy: float | None = None) -> "Intrinsics":
        """Square pixels with vertical field of view ``fovy_deg``; principal point at the centre by default."""
        if not 1.0 <= fovy_deg <= 170.0:
            raise ValueError(f"fovy_deg: expected a field of view in [1, 170]°, got {fovy_deg}")
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
        return cls(fx=f, fy=f, cx=(width - 1) / 2 if cx is None else cx, cy=(height - 1) / 2 if cy is None else cy,
                   width=width, height=height)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fovy_deg(self) -> float:
        return math.degrees(2 * math.atan(0.5 * self.height / self.fy))

    @property
    def dist_coeffs(self) -> np.ndarray:
        return np.asarray(self.distortion, float)


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (4, 4)."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera pose T_base_cam looking from ``eye`` at ``target`` (base frame, m), image "up"
    as close to ``up`` as the view allows (OpenCV camera frame: z forward, y down)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = target - eye
    n = np.linalg.norm(z)
    if not n > 1e-9:
        raise ValueError("look_at: eye and target coincide; the camera needs a direction to look in")
    z /= n
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        raise ValueError("look_at: the view direction is parallel to up; pass another up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def pose_from_xyz_quat(xyz, quat_wxyz) -> np.ndarray:
    """(4, 4) from a position and a w-first unit quaternion."""
    w, x, y, z = np.asarray(quat_wxyz, float) / np.linalg.norm(quat_wxyz)
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(xyz, float)
    return T


def project(points_base, intr: Intrinsics, T_base_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) and depths z (N,) of base-frame points (N, 3) (no distortion applied)."""
    P = np.atleast_2d(np.asarray(points_base, float))
    Tc = invert(np.asarray(T_base_cam, float))
    Xc = P @ Tc[:3, :3].T + Tc[:3, 3]
    z = Xc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([intr.fx * Xc[:, 0] / z + intr.cx, intr.fy * Xc[:, 1] / z + intr.cy], axis=1)
    return uv, z


def backproject(uv, depth, intr: Intrinsics, T_base_cam: np.ndarray) -> np.ndarray:
    """Base-frame points (N, 3) of pixels ``uv`` (N, 2) at depths ``depth`` (N,) along the optical axis."""
    uv = np.atleast_2d(np.asarray(uv, float))
    z = np.asarray(depth, float).reshape(-1)
    Xc = np.stack([z * (uv[:, 0] - intr.cx) / intr.fx, z * (uv[:, 1] - intr.cy) / intr.fy, z], axis=1)
    T = np.asarray(T_base_cam, float)
    return Xc @ T[:3, :3].T + T[:3, 3]
