"""VL-MP's bridge layer (III.B, Fig. 5, eqs. 1–3, Algorithm 1): 3D semantic keypoints → the end pose.

The target object (the *master*, e.g. the cup poured into) is seen as four keypoints: the interaction
keypoint K_i on its rim (opposite the handle), the positional keypoints K_p1 (mouth centre) and K_p2
(base centre), the boundary keypoint K_b (handle). The manipulated object (the *slave*, the held mug)
has the same keypoints, fixed in the flange frame while it is held. The skill's demonstrations say, at
their final frames, where the slave's interaction keypoint was relative to the master and how the
slave stood — the *interaction state*. For a new master:

1. **Calibration** (Fig. 5b, :func:`calibrate`): the keypoints of one class obey the class's
   geometry — K_p1 and K_p2 lie on the container's axis, K_i on the rim circle at the mouth's height,
   and a container on a table stands upright. Noisy keypoints are projected onto that geometry:
   the axis is the table normal when the measured K_p2→K_p1 direction is within ``upright_tol`` of
   it (else the measured direction: a tipped container), its horizontal position the mean of the
   axis points' projections, the rim height the mean of K_p1's and K_i's heights along it. With
   2 mm of noise per keypoint this halves the noise of the origin and removes the axis tilt
   (2√2 mm over a 0.1 m mug would tilt the end pose by 1.6°).
2. **Master frame and normalisation** (Fig. 5c–e, eqs. 1, 3): origin O = K_p1, z the axis, x towards
   K_i (A), scales r = |OA_xy| (rim radius) and h = |K_p1 − K_p2|. A point C is stored relative to
   an *interaction frame* — the master frame turned about its axis by the pour's azimuth φ (the
   direction the slave's axis leans towards, seen from above) — as D = (C_x / r, C_y / r, C_z):
   eq. (1)'s topological relation (the in-plane part scaled with the rim, |OD_xy| = |OC_xy| / |OA_xy|
   · |OA'_xy| for a new rim A'; the height above the mouth kept in metres, eqs. 1 and 3 act on the
   x-y projection). The angle θ between OA and the pour direction (eq. 3) is kept too: for an
   axisymmetric master like a mug it varies freely across demonstrations (the skill pours from any
   side clear of the handle), so it is recorded, not imposed.
3. **Interaction state** (:func:`learn_interaction`, from the demonstrations' final frames): mean
   and variance of ``pos`` (D) and of α, the angle between the master's axis Z_master and the slave's
   Z_slave (Fig. 5e); the mean slave orientation in the interaction frame (its final *local object
   frame*, chordal mean); θ's circular mean and spread; the handle clearance the demonstrations kept.
4. **EndposeEstimate** (Algorithm 1, :func:`endpose_estimate`): u^target = the de-normalised ``pos``
   in each candidate interaction frame; candidate slave orientations with Z_slave at α from Z_master
   (α_mean, then α_mean ± k·2° within ``alpha_sigmas`` standard deviations) at 2° steps of azimuth
   about Z_master; a candidate whose slave would stand over the master's handle K_b (K_b behind the
   slave's interaction keypoint, within ``handle_clearance`` of the vertical plane of the pour) or
   that the ``feasible`` test refuses (IK reach, say) is dropped; of the rest, the flange pose
   closest to the start pose (translation + ``rotation_weight`` m/rad × rotation angle) is P_target,
   its azimuth refined between the 2° samples by a parabola through the costs (so the choice does not
   jump by a sample with the keypoints' noise). Candidates are built and costed as arrays and
   tested for feasibility in order of cost, so the first feasible one ends the search.

Pure numpy, no I/O; EndposeEstimate is the ≤ 2 ms step the decision layer calls per decision.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MasterFrame", "calibrate", "master_frame", "slave_frame", "keypoint_frame", "interaction_rotation",
           "pour_azimuth", "normalize", "denormalize", "InteractionState", "learn_interaction", "EndposeResult",
           "endpose_estimate", "slave_axis_angle", "rotation_angle", "rotation_mean", "REQUIRED"]

REQUIRED = ("K_i", "K_p1", "K_p2")       # a master needs these; K_b (handle) is used when present
_Z = np.array([0.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------------ frames
@dataclass(frozen=True)
class MasterFrame:
    origin: np.ndarray      # K_p1, base frame (m)
    R: np.ndarray           # columns x, y, z of the master frame in the base frame
    radius: float           # mouth radius r = |OA_xy| (m)
    height: float           # K_p2 → K_p1 (m)

    @property
    def axis(self) -> np.ndarray:
        return self.R[:, 2]

    def to_local(self, p) -> np.ndarray:
        return self.R.T @ (np.asarray(p, float) - self.origin)

    def to_base(self, p_local) -> np.ndarray:
        return self.origin + self.R @ np.asarray(p_local, float)


def _vec3(kp: dict, k: str, where: str) -> np.ndarray:
    v = np.asarray(kp[k], float)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{where}: keypoint {k} must be 3 finite numbers (m), got {kp[k]!r}")
    return v


def _check(kp: dict, where: str) -> None:
    if not isinstance(kp, dict):
        raise ValueError(f"{where}: keypoints must be a dict {{name: [x, y, z]}}, got {type(kp).__name__}")
    missing = [k for k in REQUIRED if k not in kp or kp[k] is None]
    if missing:
        raise ValueError(f"{where}: keypoints {missing} are missing (have {sorted(kp)}); the bridge needs "
                         f"{list(REQUIRED)} of the target")
    for k in REQUIRED:
        _vec3(kp, k, where)
    if kp.get("K_b") is not None:
        _vec3(kp, "K_b", where)


def _unit(v) -> np.ndarray:
    return v / np.linalg.norm(v)


def calibrate(kp: dict, where: str = "target", *, upright_tol_deg: float = 15.0, up=_Z) -> dict:
    """The keypoints projected onto a container's geometry (step 1 of the module docstring).

    Returns a new dict (K_p1, K_p2, K_i and K_b when given, base frame): K_p1 and K_p2 on one axis —
    ``up`` (the table normal) when the measured K_p2→K_p1 direction is within ``upright_tol_deg`` of it,
    else the measured direction —, K_i moved along the axis to the rim height (the mean of K_p1's and
    K_i's heights), K_b unchanged (it is only a boundary). ``upright_tol_deg = 0`` keeps the measured
    axis."""
    _check(kp, where)
    p1, p2, ki = (_vec3(kp, k, where) for k in ("K_p1", "K_p2", "K_i"))
    d = p1 - p2
    h = float(np.linalg.norm(d))
    if h < 1e-4:
        raise ValueError(f"{where}: K_p1 and K_p2 coincide ({h * 1e3:.2f} mm apart): no axis")
    z = d / h
    up = _unit(np.asarray(up, float))
    if upright_tol_deg > 0 and math.degrees(math.acos(max(-1.0, min(1.0, float(z @ up))))) <= upright_tol_deg:
        z = up
    # the axis line: through the mean of the axis points, along z; heights along z
    c = 0.5 * (p1 + p2)
    c = c - z * (c @ z)                                 # the axis' offset, perpendicular to z
    z1 = 0.5 * ((p1 @ z) + (ki @ z))                    # rim height: K_p1 and K_i are both on the mouth plane
    z2 = float(p2 @ z)
    out = dict(kp)
    out["K_p1"] = c + z * z1
    out["K_p2"] = c + z * z2
    out["K_i"] = ki + z * (z1 - ki @ z)
    return out


def master_frame(kp: dict, where: str = "target", *, calibrated: bool = True, upright_tol_deg: float = 15.0
                 ) -> MasterFrame:
    """The master's frame and scales from its keypoints (K_p1 origin, K_p2→K_p1 axis, x towards K_i),
    after :func:`calibrate` unless ``calibrated`` is False."""
    _check(kp, where)
    if calibrated:
        kp = calibrate(kp, where, upright_tol_deg=upright_tol_deg)
    p1, p2, ki = (np.asarray(kp[k], float) for k in ("K_p1", "K_p2", "K_i"))
    z = p1 - p2
    h = float(np.linalg.norm(z))
    if h < 1e-4:
        raise ValueError(f"{where}: K_p1 and K_p2 coincide ({h * 1e3:.2f} mm apart): no axis")
    z /= h
    a = ki - p1
    a_xy = a - z * (a @ z)
    r = float(np.linalg.norm(a_xy))
    if r < 1e-4:
        raise ValueError(f"{where}: the rim keypoint K_i lies on the axis ({r * 1e3:.2f} mm off): no radius")
    x = a_xy / r
    y = np.cross(z, x)
    return MasterFrame(p1, np.column_stack([x, y, z]), r, h)


def keypoint_frame(kp: dict, where: str = "held object") -> np.ndarray:
    """(4, 4) frame of an object from its keypoints: origin K_p1, z from K_p2 to K_p1, x towards K_i
    (no calibration: for the held object, whose keypoints are known in the flange frame)."""
    f = master_frame(kp, where, calibrated=False)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = f.R, f.origin
    return T


slave_frame = keypoint_frame


def _rz(a) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(a) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def interaction_rotation(frame: MasterFrame, azimuth: float) -> np.ndarray:
    """The interaction frame's rotation: the master frame turned by ``azimuth`` (rad) about its axis."""
    return frame.R @ _rz(azimuth)


def pour_azimuth(frame: MasterFrame, slave_axis) -> float:
    """φ: the azimuth (rad, from the master's x = towards K_i) of the direction the slave's axis leans
    towards, projected on the master's mouth plane."""
    v = frame.R.T @ np.asarray(slave_axis, float)
    if math.hypot(v[0], v[1]) < 1e-6:
        raise ValueError("pour_azimuth: the slave's axis is parallel to the master's: no pouring direction")
    return math.atan2(v[1], v[0])


def normalize(p, frame: MasterFrame, azimuth: float = 0.0) -> np.ndarray:
    """eqs. (1), (3): a point in the interaction frame of ``azimuth``, its in-plane part in rim radii,
    its height above the mouth in metres."""
    local = interaction_rotation(frame, azimuth).T @ (np.asarray(p, float) - frame.origin)
    return np.array([local[0] / frame.radius, local[1] / frame.radius, local[2]])


def denormalize(d, frame: MasterFrame, azimuth: float = 0.0) -> np.ndarray:
    d = np.asarray(d, float)
    return frame.origin + interaction_rotation(frame, azimuth) @ np.array([d[0] * frame.radius, d[1] * frame.radius,
                                                                           d[2]])


def rotation_angle(Ra, Rb) -> float:
    """Angle (rad) of the rotation from ``Ra`` to ``Rb``."""
    c = (np.trace(np.asarray(Ra).T @ np.asarray(Rb)) - 1.0) / 2.0
    return float(math.acos(max(-1.0, min(1.0, c))))


def slave_axis_angle(z_master, z_slave) -> float:
    """α: the angle between the master's axis and the slave's (rad)."""
    a, b = np.asarray(z_master, float), np.asarray(z_slave, float)
    c = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(math.acos(max(-1.0, min(1.0, c))))


def rotation_mean(Rs) -> np.ndarray:
    """Chordal L2 mean of rotation matrices: the rotation nearest their arithmetic mean (SVD)."""
    M = np.mean(np.asarray(Rs, float), axis=0)
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


# ----------------------------------------------------------------------------- interaction state
@dataclass(frozen=True)
class InteractionState:
    """The demonstrations' final frames (module docstring, step 3).

    ``pos_mean``/``pos_var``: D of the slave's interaction keypoint (x, y in rim radii, z in m) in the
    interaction frame; ``alpha_mean``/``alpha_var``: α (rad, rad²); ``R_local``: the slave's mean
    orientation in the interaction frame (3 × 3); ``theta_mean``/``theta_spread``: the pour's azimuth
    from K_i (eq. 3's θ; circular mean, rad, and 1 − mean resultant length, 0 = always the same side,
    1 = all sides); ``handle_clearance``: the smallest distance (m) of the handle K_b from the vertical
    plane of the pour among the demonstrations whose K_b stood behind the pour point (``inf`` if none
    did); ``n`` demonstrations."""

    pos_mean: np.ndarray
    pos_var: np.ndarray
    alpha_mean: float
    alpha_var: float
    R_local: np.ndarray = field(default_factory=lambda: np.eye(3))
    theta_mean: float = 0.0
    theta_spread: float = 1.0
    handle_clearance: float = math.inf
    n: int = 1

    def to_dict(self) -> dict:
        return {"pos_mean": self.pos_mean.tolist(), "pos_var": self.pos_var.tolist(),
                "alpha_mean": self.alpha_mean, "alpha_var": self.alpha_var, "R_local": self.R_local.tolist(),
                "theta_mean": self.theta_mean, "theta_spread": self.theta_spread,
                "handle_clearance": None if not math.isfinite(self.handle_clearance) else self.handle_clearance,
                "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> "InteractionState":
        try:
            hc = d.get("handle_clearance")
            s = cls(np.asarray(d["pos_mean"], float), np.asarray(d["pos_var"], float), float(d["alpha_mean"]),
                    float(d["alpha_var"]), np.asarray(d.get("R_local", np.eye(3)), float),
                    float(d.get("theta_mean", 0.0)), float(d.get("theta_spread", 1.0)),
                    math.inf if hc is None else float(hc), int(d["n"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"interaction state: {exc}; expected pos_mean (3), pos_var (3), alpha_mean, alpha_var, "
                             f"R_local (3×3), theta_mean, theta_spread, handle_clearance, n") from None
        R = s.R_local
        if (s.pos_mean.shape != (3,) or s.pos_var.shape != (3,) or R.shape != (3, 3)
                or not (np.all(np.isfinite(s.pos_mean)) and np.all(np.isfinite(s.pos_var)) and np.all(np.isfinite(R))
                        and math.isfinite(s.alpha_mean) and math.isfinite(s.alpha_var) and s.alpha_var >= 0
                        and np.all(s.pos_var >= 0) and s.n >= 1)):
            raise ValueError("interaction state: non-finite, negative-variance or mis-shaped values")
        if np.abs(R.T @ R - np.eye(3)).max() > 1e-6 or np.linalg.det(R) < 0:
            raise ValueError("interaction state: R_local is not a proper rotation matrix")
        return s


def learn_interaction(final_slave_keypoints, master_keypoints, *, calibrated: bool = True) -> InteractionState:
    """Interaction state from each demonstration's final frame: the slave's keypoints (K_i, K_p1, K_p2;
    base frame) and the master's (K_i, K_p1, K_p2, optionally K_b)."""
    pts, alphas, rots, thetas, clear = [], [], [], [], []
    for i, (skp, mkp) in enumerate(zip(final_slave_keypoints, master_keypoints)):
        f = master_frame(mkp, f"demonstration {i} target", calibrated=calibrated)
        S = keypoint_frame(skp, f"demonstration {i} held object")
        phi = pour_azimuth(f, S[:3, 2])
        u = np.asarray(skp["K_i"], float)
        pts.append(normalize(u, f, phi))
        alphas.append(slave_axis_angle(f.axis, S[:3, 2]))
        RI = interaction_rotation(f, phi)
        rots.append(RI.T @ S[:3, :3])
        thetas.append(phi)
        if mkp.get("K_b") is not None:
            b = RI.T @ (np.asarray(mkp["K_b"], float) - u)
            if b[0] < 0:                                    # behind the pour point, where the slave stands
                clear.append(abs(b[1]))
    if not pts:
        raise ValueError("learn_interaction: no demonstrations")
    P, A = np.array(pts), np.array(alphas)
    c, s = float(np.mean(np.cos(thetas))), float(np.mean(np.sin(thetas)))
    return InteractionState(P.mean(axis=0), P.var(axis=0), float(A.mean()), float(A.var()), rotation_mean(rots),
                            math.atan2(s, c), 1.0 - math.hypot(c, s), min(clear) if clear else math.inf, len(pts))


# ------------------------------------------------------------------------------- EndposeEstimate
@dataclass
class EndposeResult:
    """P_target (``T``: the flange's 4 × 4 end pose), the slave's interaction keypoint there
    (``u_target``), the chosen azimuth φ (from the master's x, rad) and α, and the search's counts."""

    T: np.ndarray
    u_target: np.ndarray
    azimuth: float
    alpha: float
    cost: float
    tried: int
    refused_handle: int
    refused_feasible: int
    frame: MasterFrame
    ms: float = 0.0


def _tilt_rotations(R_local: np.ndarray, alpha_mean: float, alphas: np.ndarray) -> np.ndarray:
    """R_local re-tilted to each α: a rotation about the interaction frame's y axis by α − α(R_local)."""
    a0 = slave_axis_angle(_Z, R_local[:, 2])
    return np.stack([_ry(a - a0) @ R_local for a in alphas])


def endpose_estimate(master_kp: dict, state: InteractionState, slave_kp_flange: dict, start_pose, *,
                     step_deg: float = 2.0, feasible=None, handle_clearance: float | None = None,
                     rotation_weight: float = 0.1, alpha_sigmas: float = 1.0, refine: bool = True,
                     calibrated: bool = True, upright_tol_deg: float = 15.0, max_feasibility_checks: int = 200
                     ) -> EndposeResult:
    """Algorithm 1: the flange end pose (4 × 4, base frame) for the master keypoints ``master_kp``.

    ``slave_kp_flange``: the held object's keypoints (K_i, K_p1, K_p2) in the flange frame;
    ``start_pose``: the flange's start pose (4 × 4); ``feasible(T) -> bool``: e.g. IK reach (called in
    order of cost, at most ``max_feasibility_checks`` times); ``handle_clearance`` (m, default the
    state's, else none): a candidate whose K_b stands behind the slave's interaction keypoint within this
    distance of the pour's vertical plane is refused. ValueError naming why if no candidate is left."""
    t0 = time.perf_counter()
    f = master_frame(master_kp, calibrated=calibrated, upright_tol_deg=upright_tol_deg)
    S_f = keypoint_frame(slave_kp_flange)                       # the slave's frame in the flange frame
    ki_f = np.asarray(slave_kp_flange["K_i"], float)
    start_pose = np.asarray(start_pose, float)
    if start_pose.shape != (4, 4) or not np.all(np.isfinite(start_pose)):
        raise ValueError("start_pose: expected a finite (4, 4) flange pose")
    clearance = state.handle_clearance if handle_clearance is None else float(handle_clearance)
    k_b = master_kp.get("K_b")
    k_b = None if k_b is None or not (math.isfinite(clearance) and clearance > 0) else np.asarray(k_b, float)
    # the azimuth grid is anchored to the base frame's x (projected on the mouth plane), not to K_i, so the
    # candidates do not turn with K_i's noise; azimuths are reported from the master's x (K_i) as θ
    z = f.axis
    xb = np.array([1.0, 0.0, 0.0]) - z * z[0]
    if np.linalg.norm(xb) < 1e-6:
        xb = np.array([0.0, 1.0, 0.0]) - z * z[1]
    xb /= np.linalg.norm(xb)
    Rb = np.column_stack([xb, np.cross(z, xb), z])
    delta = math.atan2(float(f.R[:, 0] @ Rb[:, 1]), float(f.R[:, 0] @ Rb[:, 0]))   # K_i's azimuth in Rb
    step = math.radians(step_deg)
    az = np.arange(0.0, 2 * math.pi - 1e-9, step)
    sd = math.sqrt(state.alpha_var)
    k_max = int(math.floor(alpha_sigmas * sd / step + 1e-9))
    offs = sorted(range(-k_max, k_max + 1), key=abs)
    alphas = np.array([state.alpha_mean + k * step for k in offs])
    R_tilt = _tilt_rotations(state.R_local, state.alpha_mean, alphas)          # (A, 3, 3) in the interaction frame
    d = state.pos_mean
    local_u = np.array([d[0] * f.radius, d[1] * f.radius, d[2]])
    R_sf_t = S_f[:3, :3].T

    def frames_at(phis):
        c, s = np.cos(phis), np.sin(phis)
        Rz = np.zeros((len(phis), 3, 3))
        Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1.0
        RI = Rb @ Rz                                                             # interaction frames
        return RI, f.origin + RI @ local_u                                      # and u^target

    def handle_ok(RI, u):
        if k_b is None:
            return np.ones(len(u), bool)
        b = np.einsum("nji,nj->ni", RI, k_b - u)
        return ~((b[:, 0] < 0.0) & (np.abs(b[:, 1]) < clearance))

    def flange(RI, u, a):
        R = RI @ R_tilt[a] @ R_sf_t
        return R, u - R @ ki_f

    def cost_of(R, p):
        tr = np.einsum("ij,...ij->...", start_pose[:3, :3], R)
        return (np.linalg.norm(p - start_pose[:3, 3], axis=-1)
                + rotation_weight * np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))

    RI, u = frames_at(az)
    ok_handle = handle_ok(RI, u)
    R_F = np.einsum("nij,ajk->anik", RI, R_tilt @ R_sf_t)                        # (A, N, 3, 3)
    p_F = u[None] - np.einsum("anij,j->ani", R_F, ki_f)
    cost = cost_of(R_F, p_F) + np.abs(alphas - state.alpha_mean)[:, None] * 1e3  # α_mean first, then the others
    cost[:, ~ok_handle] = np.inf
    order = np.argsort(cost, axis=None)
    tried = int(np.isfinite(cost).sum())
    refused_feasible = 0

    def pose(R, p):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, p
        return T

    best = None
    for flat in order[:max_feasibility_checks]:
        a, n = divmod(int(flat), len(az))
        if not math.isfinite(cost[a, n]):
            break
        T = pose(R_F[a, n], p_F[a, n])
        if feasible is not None and not feasible(T):
            refused_feasible += 1
            continue
        best = (a, n, T)
        break
    if best is None:
        parts = ([f"{refused_feasible} out of reach"] if feasible is not None else []) + \
                ([f"{int((~ok_handle).sum()) * len(alphas)} over the handle"] if (~ok_handle).any() else [])
        raise ValueError(f"EndposeEstimate: none of the {len(az) * len(alphas)} candidate end poses around the "
                         f"target at {np.round(f.origin, 3).tolist()} m is feasible ({', '.join(parts)}); "
                         f"move the target closer to the arm or turn its handle away")
    a, n, T = best
    phi = float(az[n])
    if refine:
        phi_r = None
        c0 = cost[a, n]
        nb = {s: cost[a, (n + s) % len(az)] for s in (-1, 1)}
        if all(math.isfinite(v) for v in nb.values()):
            den = nb[-1] - 2.0 * c0 + nb[1]
            if den > 1e-12:
                dlt = 0.5 * (nb[-1] - nb[1]) / den
                if abs(dlt) < 1.0:
                    phi_r = phi + dlt * step
        else:
            # a neighbour over the handle: the optimum may be the constraint's edge — bisect towards it
            side = next((s for s, v in nb.items() if not math.isfinite(v) and not ok_handle[(n + s) % len(az)]), None)
            if side is not None:
                lo, hi = 0.0, 1.0
                kb_o = Rb.T @ (k_b - f.origin)                     # K_b and u in the base-anchored frame
                lu = local_u
                for _ in range(10):
                    mid = 0.5 * (lo + hi)
                    ang = phi + side * mid * step
                    c, s_ = math.cos(ang), math.sin(ang)
                    # K_b − u in the interaction frame: Rz(φ)ᵀ·kb_o − local_u
                    bx = c * kb_o[0] + s_ * kb_o[1] - lu[0]
                    by = -s_ * kb_o[0] + c * kb_o[1] - lu[1]
                    inside = bx < 0.0 and abs(by) < clearance
                    lo, hi = (lo, mid) if inside else (mid, hi)
                phi_r = phi + side * lo * step
        if phi_r is not None:
            RIr, ur = frames_at(np.array([phi_r]))
            Rr, pr = flange(RIr[0], ur[0], a)
            if handle_ok(RIr, ur)[0] and cost_of(Rr, pr) < cost_of(T[:3, :3], T[:3, 3]):
                Tr = pose(Rr, pr)
                if feasible is None or feasible(Tr):
                    T, phi = Tr, phi_r
    u_t = T[:3, :3] @ ki_f + T[:3, 3]
    c_best = float(cost_of(T[:3, :3], T[:3, 3]))
    return EndposeResult(T, u_t, float(math.remainder(phi - delta, 2 * math.pi)), float(alphas[a]), c_best, tried,
                         int((~ok_handle).sum()) * len(alphas), refused_feasible, f,
                         (time.perf_counter() - t0) * 1e3)
