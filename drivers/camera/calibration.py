"""Camera extrinsics: eye-to-hand calibration with a checkerboard on the flange.

The setup a user has on the real arm, and the simulated world reproduces: the camera is fixed in
the workcell, a checkerboard is fixed to the flange (``ToolSpec(marker=True)`` in simulation).
For each of N arm poses q_i the flange pose comes from forward kinematics,
B_i = T_base_flange(q_i) = :func:`kinebridge.kernels.rm75.fk`, and the camera sees the board at
C_i = T_cam_board, from the detected corners with OpenCV's ``solvePnP`` (iterative
Levenberg–Marquardt on the reprojection error, Zhang's planar initialisation). The two unknown
constant transforms X = T_cam_base (where the camera is) and Y = T_flange_board (how the board
is mounted) satisfy

    C_i = X · B_i · Y        for every pose i

— the robot–world/hand–eye problem AX = ZB (Shah 2013, Li et al. 2010), solved in closed form by
``cv2.calibrateRobotWorldHandEye`` with the roles renamed (its "gripper→base" input is B_i, its
"world" the board). The closed form is then refined by least squares on what was actually
measured, the corner pixels (scipy ``least_squares``, rotation vectors, Huber loss over

    r_ij = π(K, X · B_i · Y · P_j) − u_ij ,

P_j the board's corners, u_ij their detections), which weighs each view by its image evidence.
Residuals reported: reprojection RMS and max (px), and per view the disagreement between the
board pose seen by the camera, X⁻¹·C_i, and the one predicted by kinematics, B_i·Y (mm, deg).

Use :func:`plan_poses` for a spread of reachable poses that face the camera, then
:func:`run_hand_eye` (move, wait for a fresh frame, detect, repeat, solve). Corner order: a
checkerboard with one even and one odd count of inner corners is found with its corners
in one of four orders, and the corner positions alone fit all four (a 180° turn, or a mirror
with the board seen from behind); each view's order is the one that puts the board's face
towards the camera and its colour in the first square.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from kinebridge.drivers.camera import geometry

__all__ = ["Board", "View", "HandEyeResult", "HandEyeCalibration", "plan_poses", "run_hand_eye"]


@dataclass(frozen=True)
class Board:
    """A checkerboard of ``cols`` × ``rows`` inner corners, ``square`` m apart; corners (N, 3) in
    its own frame, row-major along x (OpenCV's pattern order)."""

    cols: int
    rows: int
    square: float
    corners: np.ndarray
    first_square_dark: bool = True       # the square between corners 0, 1, cols, cols + 1

    @classmethod
    def from_tool(cls, layout) -> "Board":
        """The board the world's tool carries (:class:`~kinebridge.drivers.world.tool.ToolLayout`)."""
        cols, rows = layout.board_pattern
        c = layout.board_corners
        return cls(cols=cols, rows=rows, square=float(np.linalg.norm(c[1] - c[0])), corners=c.copy())

    @classmethod
    def grid(cls, cols: int, rows: int, square: float) -> "Board":
        xs = (np.arange(cols) - 0.5 * (cols - 1)) * square
        ys = (np.arange(rows) - 0.5 * (rows - 1)) * square
        return cls(cols, rows, square, np.array([[x, y, 0.0] for y in ys for x in xs]))


@dataclass
class View:
    q: np.ndarray
    T_base_flange: np.ndarray
    corners_px: np.ndarray                  # (N, 2), in the board's corner order
    T_cam_board: np.ndarray                 # from solvePnP
    pnp_rms_px: float


@dataclass
class HandEyeResult:
    T_base_cam: np.ndarray
    T_flange_board: np.ndarray
    views: int
    reprojection_rms_px: float
    reprojection_max_px: float
    position_residual_mm: float             # RMS over views of |X⁻¹ C_i − B_i Y| translation
    rotation_residual_deg: float            # RMS over views of the rotation angle between them
    per_view: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"T_base_cam": self.T_base_cam.tolist(), "T_flange_board": self.T_flange_board.tolist(),
                "views": self.views, "reprojection_rms_px": self.reprojection_rms_px,
                "reprojection_max_px": self.reprojection_max_px, "position_residual_mm": self.position_residual_mm,
                "rotation_residual_deg": self.rotation_residual_deg, "per_view": self.per_view}

    def save(self, path) -> Path:
        """JSON that :class:`~kinebridge.drivers.camera.configs.ExtrinsicsConfig` ``file=`` reads."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def _T(rvec, tvec) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(np.asarray(rvec, float).reshape(3)).as_matrix()
    T[:3, 3] = np.asarray(tvec, float).reshape(3)
    return T


def _angle(R) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(R) - 1.0) / 2.0))))


class HandEyeCalibration:
    """Collects views (arm joints + image) and solves for the camera pose in the base frame."""

    def __init__(self, intrinsics: geometry.Intrinsics, board: Board, d7: float):
        import cv2

        self.cv2 = cv2
        self.intrinsics = intrinsics
        self.board = board
        self.d7 = float(d7)
        self.views: list[View] = []
        self.rejected: list[str] = []

    # ------------------------------------------------------------------------- detection

    def detect(self, rgb: np.ndarray) -> np.ndarray | None:
        """Checkerboard corners (N, 2) in pixels, sub-pixel refined, or None if not found."""
        cv2 = self.cv2
        gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        size = (self.board.cols, self.board.rows)
        ok, corners = cv2.findChessboardCorners(gray, size, cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
        if not ok:
            return None
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
        corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), crit)
        return corners.reshape(-1, 2).astype(float)

    def _pnp(self, px: np.ndarray, gray: np.ndarray):
        """(px in the board's corner order, T_cam_board, rms): corner positions alone fit four
        orders (a 180° turn and two mirrors, the board then seen from behind); the right one has
        the board's face towards the camera and the board's colour in its first square."""
        cv2 = self.cv2
        K, dist = self.intrinsics.K, self.intrinsics.dist_coeffs
        c = self.board.cols
        grid = px.reshape(self.board.rows, c, 2)

        def shade(u, k):       # grey level at the centre of the square whose first corner is k
            m = u[[k, k + 1, k + c, k + c + 1]].mean(axis=0)
            return float(gray[int(round(m[1])), int(round(m[0]))])

        best = None
        for order in (grid, grid[::-1, ::-1], grid[::-1, :], grid[:, ::-1]):
            u = np.ascontiguousarray(order.reshape(-1, 2))
            if (shade(u, 0) < shade(u, 1)) != self.board.first_square_dark:
                continue
            ok, rvec, tvec = cv2.solvePnP(self.board.corners, u, K, dist, flags=cv2.SOLVEPNP_ITERATIVE)
            if not ok:
                continue
            proj, _ = cv2.projectPoints(self.board.corners, rvec, tvec, K, dist)
            rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - u) ** 2, axis=1))))
            T = _T(rvec, tvec)
            # in front of the camera, and its face (board z) towards it: a mirrored order fits the
            # symmetric grid as well, as the board seen from behind
            if tvec[2, 0] > 0 and T[2, 2] < 0 and (best is None or rms < best[2]):
                best = (u, T, rms)
        return best

    def add(self, q, rgb: np.ndarray, *, max_pnp_rms_px: float = 2.0) -> View | None:
        """Detect the board in ``rgb`` taken with the arm at ``q``; keep the view if it is clean."""
        from kinebridge.kernels import rm75

        q = np.asarray(q, float)
        gray = self.cv2.cvtColor(np.ascontiguousarray(rgb), self.cv2.COLOR_RGB2GRAY)
        px = self.detect(gray)
        if px is None:
            self.rejected.append("board not found")
            return None
        best = self._pnp(px, gray)
        if best is None or best[2] > max_pnp_rms_px:
            self.rejected.append(f"PnP error {best[2] if best else float('nan'):.2f} px")
            return None
        view = View(q=q, T_base_flange=rm75.fk(q, self.d7), corners_px=best[0], T_cam_board=best[1], pnp_rms_px=best[2])
        self.views.append(view)
        return view

    # ---------------------------------------------------------------------------- solve

    def _closed_form(self):
        cv2 = self.cv2
        R_w2c = [v.T_cam_board[:3, :3] for v in self.views]
        t_w2c = [v.T_cam_board[:3, 3].reshape(3, 1) for v in self.views]
        R_b2g = [v.T_base_flange[:3, :3] for v in self.views]
        t_b2g = [v.T_base_flange[:3, 3].reshape(3, 1) for v in self.views]
        # C_i = X·B_i·Y ≡ OpenCV's cTw = cTg·gTb·bTw with "gripper" = robot base, "base" = flange, "world" = board
        R_bw, t_bw, R_gc, t_gc = cv2.calibrateRobotWorldHandEye(R_w2c, t_w2c, R_b2g, t_b2g,
                                                                method=cv2.CALIB_ROBOT_WORLD_HAND_EYE_SHAH)
        X = np.eye(4)
        X[:3, :3], X[:3, 3] = R_gc, t_gc.reshape(3)          # T_cam_base
        Yinv = np.eye(4)
        Yinv[:3, :3], Yinv[:3, 3] = R_bw, t_bw.reshape(3)    # T_board_flange
        return X, geometry.invert(Yinv)

    def solve(self) -> HandEyeResult:
        """X and Y from every kept view; needs at least 3 views with distinct rotations."""
        if len(self.views) < 3:
            raise ValueError(f"hand-eye calibration needs at least 3 views with the board detected, has "
                             f"{len(self.views)} (rejected: {self.rejected}); add poses where the camera sees the board")
        X0, Y0 = self._closed_form()
        K = self.intrinsics
        P = np.c_[self.board.corners, np.ones(len(self.board.corners))]
        B = np.stack([v.T_base_flange for v in self.views])
        U = np.stack([v.corners_px for v in self.views])

        def unpack(x):
            return _T(x[0:3], x[3:6]), _T(x[6:9], x[9:12])

        def residuals(x):
            X, Y = unpack(x)
            M = X @ B @ Y                                     # (n, 4, 4) camera ← board per view
            Pc = np.einsum("nij,kj->nki", M, P)[..., :3]
            u = K.fx * Pc[..., 0] / Pc[..., 2] + K.cx
            v = K.fy * Pc[..., 1] / Pc[..., 2] + K.cy
            return np.stack([u - U[..., 0], v - U[..., 1]], -1).ravel()

        def pack(X, Y):
            return np.r_[Rotation.from_matrix(X[:3, :3]).as_rotvec(), X[:3, 3],
                         Rotation.from_matrix(Y[:3, :3]).as_rotvec(), Y[:3, 3]]

        sol = least_squares(residuals, pack(X0, Y0), loss="huber", f_scale=1.0, x_scale="jac")
        X, Y = unpack(sol.x)
        r = residuals(sol.x).reshape(len(self.views), -1, 2)
        err = np.linalg.norm(r, axis=2)
        T_base_cam = geometry.invert(X)
        per_view, dp, da = [], [], []
        for k, v in enumerate(self.views):
            seen = T_base_cam @ v.T_cam_board
            kin = v.T_base_flange @ Y
            p = float(np.linalg.norm(seen[:3, 3] - kin[:3, 3]) * 1e3)
            a = _angle(seen[:3, :3].T @ kin[:3, :3])
            dp.append(p)
            da.append(a)
            per_view.append({"reprojection_rms_px": float(np.sqrt(np.mean(err[k] ** 2))), "position_mm": p,
                             "rotation_deg": a})
        return HandEyeResult(T_base_cam=T_base_cam, T_flange_board=Y, views=len(self.views),
                             reprojection_rms_px=float(np.sqrt(np.mean(err ** 2))),
                             reprojection_max_px=float(err.max()),
                             position_residual_mm=float(np.sqrt(np.mean(np.square(dp)))),
                             rotation_residual_deg=float(np.sqrt(np.mean(np.square(da)))), per_view=per_view)


def plan_poses(n: int, center, camera_position, d7: float, *, seed: int = 0, spread: float = 0.06,
               tilt_deg: float = 25.0, q_seed=None) -> list[np.ndarray]:
    """``n`` reachable arm poses with the flange ``spread`` m around ``center`` and its z axis (the
    board's normal) pointing at ``camera_position`` within ±``tilt_deg``, turned about it
    randomly — the variety of rotations the hand-eye solve needs."""
    from kinebridge.kernels import rm75

    rng = np.random.default_rng(seed)
    center, cam = np.asarray(center, float), np.asarray(camera_position, float)
    q = rm75.Q_HOME.copy() if q_seed is None else np.asarray(q_seed, float)
    out: list[np.ndarray] = []
    for _ in range(40 * n):
        if len(out) == n:
            break
        p = center + rng.uniform(-spread, spread, 3)
        z = cam - p
        z /= np.linalg.norm(z)
        tilt = Rotation.from_rotvec(np.r_[rng.uniform(-1, 1, 2), 0.0] * math.radians(tilt_deg))
        helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        x = np.cross(helper, z)
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z], axis=1)
        R = R @ tilt.as_matrix() @ Rotation.from_rotvec([0, 0, rng.uniform(-0.6, 0.6)]).as_matrix()
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, p
        res = rm75.ik(T, q, d7)
        if res.ok or (res.pos_err < 1e-5 and res.rot_err < 1e-4):
            out.append(res.q)
            q = res.q
    if len(out) < n:
        raise ValueError(f"plan_poses: only {len(out)} of {n} poses reachable around {center.tolist()}; "
                         "move the centre closer to the arm or reduce spread/tilt")
    return out


def run_hand_eye(camera, move_arm, poses, d7: float, board: Board, *, settle_s: float = 0.3,
                 timeout_s: float = 5.0) -> HandEyeResult:
    """The routine as run on the real arm: for each joint pose, ``move_arm(q)`` (returns when the
    arm is there), wait ``settle_s``, take the first frame captured after that, detect, then solve.

    ``camera`` is an open :class:`~kinebridge.drivers.camera.base.Camera`; its intrinsics are
    the frames'.
    """
    cal = None
    for q in poses:
        move_arm(np.asarray(q, float))
        time.sleep(settle_s)
        t_ready = time.monotonic_ns()
        deadline = time.monotonic() + timeout_s
        frame = camera.read(timeout=timeout_s)
        while frame.host_stamp_ns < t_ready:
            frame = camera.read(timeout=max(0.01, deadline - time.monotonic()))
        if cal is None:
            cal = HandEyeCalibration(frame.intrinsics, board, d7)
        cal.add(q, frame.rgb)
    if cal is None:
        raise ValueError("run_hand_eye: no poses given")
    return cal.solve()
