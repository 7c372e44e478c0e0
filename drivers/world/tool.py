"""What the flange carries: a parallel gripper, a held mug with its "water", a calibration board.

Frames (all relative to the flange, the frame of :func:`kinebridge.kernels.rm75.fk`):

- held mug: held by its handle, the way a person pours — the flange z axis points at the
  table (the pouring skill's tool-down grasp) and passes through the handle's grip, ``gap``
  above the mug's rim plane; the mug hangs beside it, upright. The mug frame's x axis (towards
  the handle) is the flange's −y, so the rim point opposite the handle, K_i, is on the flange's
  +y side: rolling the flange about its x axis by a positive angle — the bundled skill's tilt —
  lowers that lip and pours over it, with the gripper and wrist on the high side, out of the
  stream. The gripper's fingers pinch the handle from the flange's ±x sides.
- calibration board: a white plate in the flange's x-y plane ``gap`` in front of the flange,
  facing along +z, with black squares (thin visual boxes, exact corners) on it.

Water: ``count`` frictionless spheres filled into the held mug on a cubic lattice (a small
seeded jitter breaks its symmetry), three slide joints each (see :class:`ParticleSpec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kinebridge.drivers.world import collision
from kinebridge.drivers.world.objects import _Body, mug_geometry

__all__ = ["ToolLayout", "add_tool", "held_mug_frame", "particle_lattice", "add_particles", "carry_posture"]

#: The flange pose of the carry posture: above (0.30, −0.18), 0.26 m high, flange z down (well inside
#: the reach of both variants: the wrist centre is 0.39–0.40 m from the shoulder, the arm reaches 0.466 m).
CARRY_FLANGE = np.array([[1.0, 0.0, 0.0, 0.30], [0.0, -1.0, 0.0, -0.18], [0.0, 0.0, -1.0, 0.26], [0, 0, 0, 1.0]])

# water contact: frictionless, stiff enough that 120 spheres press < 0.3 mm into a wall, soft
# enough (time constant ≥ 2 timesteps) for the implicit solver to stay stable
WATER_SOLREF = (0.01, 1.0)
WATER_SOLIMP = (0.95, 0.99, 0.001, 0.5, 2.0)


@dataclass
class ToolLayout:
    kind: str
    T_flange_mug: np.ndarray | None = None          # held mug frame in the flange frame
    T_flange_board: np.ndarray | None = None        # calibration board frame in the flange frame
    board_corners: np.ndarray | None = None         # (N, 3) inner corners in the board frame, row-major
    board_pattern: tuple[int, int] | None = None    # inner corners per row, per column (OpenCV order)
    keypoints: dict[str, np.ndarray] = field(default_factory=dict)


def held_mug_frame(tool) -> np.ndarray:
    """The held mug's frame in the flange frame, (4, 4)."""
    T = np.eye(4)
    # columns: mug x → flange −y, mug y → flange −x, mug z → flange −z (a right-handed rotation)
    T[:3, :3] = [[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
    # the handle's outer grip (R + reach, 0, ·) lies on the flange axis; the rim is gap below the flange
    m = tool.mug
    T[:3, 3] = [0.0, m.radius + m.handle.reach, tool.gap + m.height]
    return T


def _quat(R: np.ndarray) -> list[float]:
    import mujoco

    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, float).reshape(-1))
    return q.tolist()


def add_tool(flange, tool) -> ToolLayout:
    """Add ``tool`` (a :class:`~kinebridge.drivers.world.spec.ToolSpec`) to the flange body."""
    layout = ToolLayout(kind=tool.kind)
    if tool.marker and tool.kind == "mug":
        raise ValueError("tool.marker: the calibration board takes the held mug's place; "
                         "use tool.kind = 'none' or 'gripper' for calibration")
    grey = [0.3, 0.3, 0.32, 1.0]
    if tool.kind == "gripper" or (tool.kind == "mug" and tool.gripper):
        holding = tool.kind == "mug"
        # fingers: pinching the handle grip (its capsule radius + 1 mm clearance), or open 4 cm
        opening = tool.mug.handle.thickness + 0.001 if holding else 0.04
        body = flange.add_body(name="tool/gripper", pos=[0, 0, 0])
        b = _Body(body, "tool", grey, collision.TOOL)
        b.geom("palm", "mjGEOM_BOX", [opening + 0.014, 0.016, 0.01], pos=[0, 0, 0.01])
        length = tool.gap + 0.02 if holding else 0.07
        for sgn, nm in ((1, "finger_a"), (-1, "finger_b")):
            # tool geometry that the water does not touch (it is outside the mug)
            b.geom(nm, "mjGEOM_BOX", [0.004, 0.008, 0.5 * length], pos=[sgn * (opening + 0.004), 0, 0.02 + 0.5 * length - 0.01],
                   contype=collision.TOOL, conaffinity=collision.STATIC | collision.OBJECT)
        layout.keypoints["tcp"] = np.array([0.0, 0.0, 0.01 + length])
        body.add_site(name="tool/tcp", pos=layout.keypoints["tcp"].tolist(), size=[0.004, 0, 0], group=5)
    if tool.kind == "mug":
        T = held_mug_frame(tool)
        body = flange.add_body(name="tool/mug", pos=T[:3, 3].tolist(), quat=_quat(T[:3, :3]))
        b = _Body(body, "tool", tool.mug.color, collision.TOOL)
        mug_geometry(b, tool.mug)
        b.set_mass(tool.mug.mass)
        layout.T_flange_mug = T
        layout.keypoints.update({k: (T @ np.r_[v, 1.0])[:3] for k, v in b.keypoints.items()})
    if tool.marker:
        _board(flange, tool, layout)
    return layout


def _board(flange, tool, layout: ToolLayout):
    nx, ny = tool.marker_squares
    s = tool.marker_square
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, tool.gap + 0.004]
    body = flange.add_body(name="tool/board", pos=T[:3, 3].tolist())
    b = _Body(body, "tool", [0.97, 0.97, 0.97, 1.0], collision.TOOL)
    th = 0.004
    # white plate with a one-square border; its front face is the board frame's z = 0
    b.geom("board", "mjGEOM_BOX", [0.5 * (nx + 2) * s, 0.5 * (ny + 2) * s, 0.5 * th], pos=[0, 0, -0.5 * th])
    lift = 1e-4
    for i in range(nx):
        for j in range(ny):
            if (i + j) % 2 == 0:
                cx, cy = (i - 0.5 * (nx - 1)) * s, (j - 0.5 * (ny - 1)) * s
                b.geom(f"square{i}_{j}", "mjGEOM_BOX", [0.5 * s, 0.5 * s, 0.5 * lift], pos=[cx, cy, 0.5 * lift],
                       rgba=[0.02, 0.02, 0.02, 1.0], **collision.VISUAL)
    # inner corners, row-major along x first (OpenCV's order for a (nx−1, ny−1) pattern)
    xs = (np.arange(1, nx) - 0.5 * nx) * s
    ys = (np.arange(1, ny) - 0.5 * ny) * s
    layout.board_corners = np.array([[x, y, lift] for y in ys for x in xs])
    layout.board_pattern = (nx - 1, ny - 1)
    layout.T_flange_board = T


def particle_lattice(tool, rng: np.random.Generator) -> np.ndarray:
    """``count`` sphere centres inside the held mug (mug frame), a jittered cubic lattice from the
    bottom up; raises if they do not fit below the rim."""
    p, m = tool.particles, tool.mug
    n = p.count
    s = 2.0 * p.radius * 1.06
    r_max = m.inner_radius - p.radius - 0.0008
    if r_max <= 0:
        raise ValueError(f"tool.particles.radius = {p.radius} m does not fit in the held mug "
                         f"(inner radius {m.inner_radius:.4f} m); use smaller particles")
    k = int(math.floor(r_max / s))
    grid = np.array([(i * s, j * s) for i in range(-k, k + 1) for j in range(-k, k + 1)
                     if math.hypot(i * s, j * s) <= r_max])
    per_layer = len(grid)
    layers = math.ceil(n / per_layer)
    top = m.bottom + p.radius + 0.0005 + (layers - 1) * s
    if top + p.radius > m.height - 0.002:
        cap = per_layer * max(0, int((m.height - 0.002 - p.radius - m.bottom - p.radius - 0.0005) // s) + 1)
        raise ValueError(f"tool.particles.count = {n} does not fit in the held mug (at most {cap} spheres "
                         f"of radius {p.radius} m); reduce count or radius, or use a taller mug")
    pts = []
    for layer in range(layers):
        z = m.bottom + p.radius + 0.0005 + layer * s
        for x, y in grid:
            pts.append((x, y, z))
    pts = np.array(pts[:n])
    pts[:, :2] += rng.uniform(-0.01, 0.01, size=(n, 2)) * s
    return pts


def add_particles(worldbody, tool, positions_world: np.ndarray) -> list[str]:
    """One body per sphere at its start position, three slide joints (x, y, z)."""
    import mujoco

    p = tool.particles
    names = []
    mass = p.density * 4.0 / 3.0 * math.pi * p.radius ** 3
    for k, pos in enumerate(positions_world):
        name = f"water/p{k:04d}"
        body = worldbody.add_body(name=name, pos=list(map(float, pos)))
        # a sphere asleep in the held mug would hang in the air when the mug moves off
        body.sleep = mujoco.mjtSleepPolicy.mjSLEEP_NEVER
        for a, axis in enumerate(((1, 0, 0), (0, 1, 0), (0, 0, 1))):
            body.add_joint(name=f"{name}/{'xyz'[a]}", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=list(axis))
        body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[p.radius, 0, 0], rgba=list(p.color),
                      mass=mass, condim=1, friction=[0.0, 0.0, 0.0], solref=list(WATER_SOLREF),
                      solimp=list(WATER_SOLIMP), priority=1, **collision.bits(collision.WATER))
        names.append(name)
    return names


def carry_posture(arm) -> np.ndarray:
    """Joints (rad) of :data:`CARRY_FLANGE` for this arm variant (IK from ``Q_HOME``)."""
    from kinebridge.kernels import rm75

    res = rm75.ik(CARRY_FLANGE, rm75.Q_HOME, float(arm.d7))
    if not res.ok:   # pragma: no cover - the pose is well inside the workspace of both variants
        raise RuntimeError(f"carry posture unreachable for d7 = {arm.d7} m (IK error {res.pos_err:.3g} m)")
    return np.clip(res.q, arm.q_min, arm.q_max)
