"""Procedural objects as MuJoCo bodies: mugs, bowls, plates, boxes, a drawer, distractors.

Everything is primitive geometry built by code. A round wall (mug, bowl) is a ring of
``segments`` boxes: box k is centred at angle θ_k = 2πk/N on the mid-wall radius, its tangential
half-width is R_out·tan(π/N), so neighbouring boxes meet on the outer surface and overlap on the
inner one — the ring has no gap a sphere could pass through, and sphere–box contacts are
analytic (cheaper and tighter than a mesh's convex hull, which could not be hollow anyway).

Each object is one body (free joint unless ``fixed``; the drawer is a fixed cabinet with a
drawer body on a slide joint). Semantic keypoints are sites named ``<object>/<keypoint>`` on the
body that carries them, so MuJoCo moves them with the object and ``data.site_xpos`` gives them
in the base frame (MuJoCo's world frame is the arm's base frame). Geom names start with
``<label>/`` — the segmentation label is read back from that prefix.
"""

from __future__ import annotations

import math

import numpy as np

from kinebridge.drivers.world import collision

__all__ = ["add_object", "mug_geometry", "KEYPOINT_SITE_GROUP", "container_interior"]

KEYPOINT_SITE_GROUP = 5     # not drawn by default (MuJoCo draws site groups 0–2)
WATER_FLOOR_GROUP = 3       # a geom group MuJoCo does not draw (nor segment) by default
WATER_FLOOR_DEPTH = 0.03    # m: how thick a container's floor is to the water (see :func:`water_floor`)


def _quat_z(theta: float) -> list[float]:
    return [math.cos(theta / 2), 0.0, 0.0, math.sin(theta / 2)]


def _quat_zy(theta: float, beta: float) -> list[float]:
    """Rz(θ)·Ry(β) as a (w, x, y, z) quaternion."""
    cz, sz, cy, sy = math.cos(theta / 2), math.sin(theta / 2), math.cos(beta / 2), math.sin(beta / 2)
    # q = qz ⊗ qy with qz = (cz, 0, 0, sz), qy = (cy, 0, sy, 0)
    return [cz * cy, -sz * sy, cz * sy, sz * cy]


class _Body:
    """Adds named geoms and keypoint sites to one MuJoCo body and tracks volume for the mass."""

    def __init__(self, body, label: str, rgba, kind: int):
        self.body, self.label, self.rgba, self.kind = body, label, list(rgba), kind
        self.geoms: list = []
        self.volume = 0.0
        self.keypoints: dict[str, np.ndarray] = {}

    def geom(self, part: str, gtype, size, pos=(0, 0, 0), quat=(1, 0, 0, 0), fromto=None, volume=0.0,
             rgba=None, **kw):
        import mujoco

        args = dict(name=f"{self.label}/{part}", type=getattr(mujoco.mjtGeom, gtype), size=list(size) + [0] * (3 - len(size)),
                    pos=list(pos), quat=list(quat), rgba=list(rgba) if rgba is not None else self.rgba)
        if fromto is not None:
            args["fromto"] = list(fromto)
        args.update(collision.bits(self.kind))
        args.update(kw)
        g = self.body.add_geom(**args)
        self.geoms.append(g)
        self.volume += volume
        return g

    def keypoint(self, name: str, pos):
        self.keypoints[name] = np.asarray(pos, float)
        self.body.add_site(name=f"{self.label}/{name}", pos=list(map(float, pos)), size=[0.004, 0, 0],
                           group=KEYPOINT_SITE_GROUP, rgba=[1, 0, 0, 1])

    def set_mass(self, mass: float):
        """Give every solid geom the density that makes the body weigh ``mass`` kg."""
        rho = mass / max(self.volume, 1e-9)
        for g in self.geoms:
            if g.contype and g.contype != collision.WATER_FLOOR:
                g.density = rho


def _ring(b: _Body, part: str, n: int, r_out: float, wall: float, z0: float, z1: float,
          r_top: float | None = None):
    """A wall of ``n`` boxes between heights z0 and z1; flared to outer radius ``r_top`` at z1."""
    r_top = r_out if r_top is None else r_top
    height = z1 - z0
    beta = math.atan2(r_top - r_out, height)          # outward tilt from vertical
    length = math.hypot(r_top - r_out, height)
    r_mid = 0.5 * (r_out + r_top) - 0.5 * wall * math.cos(beta)
    half_t = max(r_out, r_top) * math.tan(math.pi / n)
    for k in range(n):
        th = 2 * math.pi * k / n
        c, s = math.cos(th), math.sin(th)
        b.geom(f"{part}{k:02d}", "mjGEOM_BOX", [0.5 * wall, half_t, 0.5 * length],
               pos=[r_mid * c, r_mid * s, 0.5 * (z0 + z1)], quat=_quat_zy(th, beta),
               volume=wall * 2 * half_t * length)


def mug_geometry(b: _Body, m, handle_kind: int | None = None):
    """Wall, bottom and handle of a mug (spec ``m``) in its frame: base centre at the origin, z up."""
    R, h, w = m.radius, m.height, m.wall
    _ring(b, "wall", m.segments, R, w, 0.0, h)
    rin = R - w
    b.geom("bottom", "mjGEOM_CYLINDER", [rin + 0.5 * w, 0.5 * m.bottom], pos=[0, 0, 0.5 * m.bottom],
           volume=math.pi * rin ** 2 * m.bottom)
    # handle on +x: a polyline of capsules in the x-z plane
    H = m.handle
    zc, a = 0.5 * h, 0.5 * H.span * h
    x0 = R - 0.5 * w
    if H.shape == "round":
        pts = [(x0 + (H.reach + 0.5 * w) * math.sin(p), zc - a * math.cos(p)) for p in np.linspace(0, math.pi, 7)]
    elif H.shape == "square":
        pts = [(x0, zc - a), (R + H.reach, zc - a), (R + H.reach, zc + a), (x0, zc + a)]
    else:   # ear: a D whose lower strut slopes up
        pts = [(x0, zc - a), (R + 0.7 * H.reach, zc - 0.8 * a), (R + H.reach, zc - 0.2 * a),
               (R + H.reach, zc + 0.5 * a), (R + 0.6 * H.reach, zc + a), (x0, zc + a)]
    extra = {} if handle_kind is None else collision.bits(handle_kind)
    for k, (p, q) in enumerate(zip(pts[:-1], pts[1:])):
        b.geom(f"handle{k}", "mjGEOM_CAPSULE", [H.thickness], fromto=[p[0], 0, p[1], q[0], 0, q[1]],
               volume=math.pi * H.thickness ** 2 * math.hypot(q[0] - p[0], q[1] - p[1]), **extra)
    b.keypoint("K_i", [-(R - 0.5 * w), 0.0, h])
    b.keypoint("K_p1", [0.0, 0.0, h])
    b.keypoint("K_p2", [0.0, 0.0, 0.0])
    b.keypoint("K_b", [R + H.reach, 0.0, zc])


def water_floor(b: _Body, floor_part: str, radius: float, top: float, depth: float = WATER_FLOOR_DEPTH):
    """A slab that only the water touches, its top flush with a standing container's floor and
    ``depth`` thick, reaching down into the table under the container.

    ``floor_part`` names the container's floor geom (it becomes ``FLOOR``). A real floor holds water
    whatever its thickness; MuJoCo's sphere–cylinder contact does not: a
    sphere that gets past the mid-plane of a 5 mm floor within one 2.5 ms step is pushed out below
    it (pours into thin-bottomed mugs lost single spheres that way). To the water the floor is
    therefore ``depth`` thick; nothing else touches the slab and the water does not touch the real
    floor (:mod:`~kinebridge.drivers.world.collision`: one surface, not two coincident contacts that
    together shot a sphere out of the mug); it has no mass and it is not drawn, so the table contact,
    the mass, the images and the segmentation are those of the real floor."""
    floor = next((g for g in b.geoms if g.name == f"{b.label}/{floor_part}"), None)
    if floor is None:
        raise ValueError(f"water_floor: {b.label} has no {floor_part!r} geom")
    floor.contype, floor.conaffinity = collision.bits(collision.FLOOR).values()
    b.geom("water_floor", "mjGEOM_CYLINDER", [radius, 0.5 * depth], pos=[0, 0, top - 0.5 * depth],
           rgba=[0, 0, 0, 0], group=WATER_FLOOR_GROUP, density=0.0, **collision.bits(collision.WATER_FLOOR))


def container_interior(o) -> tuple[float, float, float] | None:
    """(inner radius at the rim, inner floor height, rim height) of a container, object frame."""
    if o.kind == "mug":
        return (o.radius - o.wall, o.bottom, o.height)
    if o.kind == "bowl":
        return (o.radius - o.wall, o.wall, o.height)
    return None


def add_object(worldbody, o) -> dict:
    """Add object spec ``o`` to the world; returns its bodies, keypoints and joints."""
    import mujoco

    kind = collision.STATIC if o.fixed else collision.OBJECT
    T = o.pose.matrix()
    body = worldbody.add_body(name=o.name, pos=T[:3, 3].tolist(), quat=_quat_z(math.radians(o.pose.yaw_deg)))
    if not o.fixed:
        body.add_freejoint(name=f"{o.name}/free")
    b = _Body(body, o.name, o.color, kind)
    out = {"body": o.name, "joints": [], "keypoint_bodies": {}}
    if o.kind == "mug":
        mug_geometry(b, o)
        water_floor(b, "bottom", o.radius - 0.5 * o.wall, o.bottom)
    elif o.kind == "bowl":
        b.geom("base", "mjGEOM_CYLINDER", [o.base_radius, 0.5 * o.wall], pos=[0, 0, 0.5 * o.wall],
               volume=math.pi * o.base_radius ** 2 * o.wall)
        water_floor(b, "base", o.base_radius, o.wall)
        _ring(b, "wall", o.segments, o.base_radius, o.wall, 0.0, o.height, r_top=o.radius)
        b.keypoint("K_i", [-(o.radius - 0.5 * o.wall), 0.0, o.height])
        b.keypoint("K_p1", [0.0, 0.0, o.height])
        b.keypoint("K_p2", [0.0, 0.0, 0.0])
    elif o.kind == "plate":
        b.geom("disc", "mjGEOM_CYLINDER", [o.radius, 0.5 * o.thickness], pos=[0, 0, 0.5 * o.thickness],
               volume=math.pi * o.radius ** 2 * o.thickness)
        if o.rim > 0:
            w = 0.004
            _ring(b, "rim", o.segments, o.radius, w, o.thickness, o.thickness + o.rim, r_top=o.radius + 0.6 * o.rim)
        b.keypoint("K_i", [-o.radius, 0.0, o.thickness + o.rim])
        b.keypoint("K_p1", [0.0, 0.0, o.thickness])
        b.keypoint("K_p2", [0.0, 0.0, 0.0])
    elif o.kind == "box":
        sx, sy, sz = o.size
        b.geom("body", "mjGEOM_BOX", [sx / 2, sy / 2, sz / 2], pos=[0, 0, sz / 2], volume=sx * sy * sz)
        b.keypoint("K_i", [-sx / 2, 0.0, sz])
        b.keypoint("K_p1", [0.0, 0.0, sz])
        b.keypoint("K_p2", [0.0, 0.0, 0.0])
    elif o.kind == "distractor":
        sx, sy, sz = o.size
        if o.shape == "box":
            b.geom("body", "mjGEOM_BOX", [sx / 2, sy / 2, sz / 2], pos=[0, 0, sz / 2], volume=sx * sy * sz)
            top = sz
        elif o.shape == "cylinder":
            b.geom("body", "mjGEOM_CYLINDER", [sx / 2, sz / 2], pos=[0, 0, sz / 2], volume=math.pi * sx ** 2 / 4 * sz)
            top = sz
        else:
            b.geom("body", "mjGEOM_SPHERE", [sx / 2], pos=[0, 0, sx / 2], volume=math.pi / 6 * sx ** 3)
            top = sx
        b.keypoint("K_p1", [0.0, 0.0, top])
    elif o.kind == "drawer":
        out.update(_drawer(b, o, mujoco))
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise ValueError(f"unknown object kind {o.kind!r}")
    if o.kind != "drawer":
        b.set_mass(o.mass)
    out["keypoints"] = dict(b.keypoints)
    out["keypoint_bodies"].update({k: o.name for k in b.keypoints})
    return out


def _drawer(b: _Body, o, mujoco) -> dict:
    """Cabinet walls on the fixed body ``b``; the drawer a child body on a slide joint (opens to −x)."""
    X, Y, Z = o.size
    t = 0.012                       # wall thickness
    box = "mjGEOM_BOX"
    b.geom("top", box, [X / 2, Y / 2, t / 2], pos=[0, 0, Z - t / 2])
    b.geom("floor", box, [X / 2, Y / 2, t / 2], pos=[0, 0, t / 2])
    b.geom("left", box, [X / 2, t / 2, Z / 2], pos=[0, Y / 2 - t / 2, Z / 2])
    b.geom("right", box, [X / 2, t / 2, Z / 2], pos=[0, -Y / 2 + t / 2, Z / 2])
    b.geom("back", box, [t / 2, Y / 2, Z / 2], pos=[X / 2 - t / 2, 0, Z / 2])
    # the drawer: its frame at the cabinet's front face (closed), slides along −x; the front panel
    # stands just in front of the face, the box behind it
    gap = 0.003
    dx, dy, dz = X - 2 * t - gap, Y - 2 * t - 2 * gap, Z - 2 * t - 2 * gap
    body = b.body.add_body(name=f"{o.name}/drawer", pos=[-X / 2, 0, t + gap])
    body.add_joint(name=f"{o.name}/slide", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[-1, 0, 0],
                   range=[0.0, float(o.travel)], limited=mujoco.mjtLimited.mjLIMITED_TRUE, damping=3.0,
                   frictionloss=0.2, ref=0.0)
    d = _Body(body, o.name, [min(1.0, c * 1.15) for c in o.color[:3]] + [1.0], collision.OBJECT)
    dt = 0.008
    d.geom("drawer_bottom", box, [dx / 2, dy / 2, dt / 2], pos=[dx / 2, 0, dt / 2], volume=dx * dy * dt)
    d.geom("drawer_front", box, [dt / 2, (Y - 2 * gap) / 2, dz / 2], pos=[-dt / 2, 0, dz / 2], volume=Y * dz * dt)
    d.geom("drawer_back", box, [dt / 2, dy / 2, 0.6 * dz / 2], pos=[dx - dt / 2, 0, 0.3 * dz], volume=dy * dz * dt)
    d.geom("drawer_left", box, [dx / 2, dt / 2, 0.6 * dz / 2], pos=[dx / 2, dy / 2 - dt / 2, 0.3 * dz],
           volume=dx * dz * dt)
    d.geom("drawer_right", box, [dx / 2, dt / 2, 0.6 * dz / 2], pos=[dx / 2, -dy / 2 + dt / 2, 0.3 * dz],
           volume=dx * dz * dt)
    hr = 0.007
    d.geom("drawer_handle", "mjGEOM_CAPSULE", [hr], fromto=[-dt - 0.025, -0.05, 0.55 * dz, -dt - 0.025, 0.05, 0.55 * dz],
           volume=math.pi * hr ** 2 * 0.1, rgba=[0.2, 0.2, 0.2, 1.0])
    for k, y in enumerate((-0.05, 0.05)):
        d.geom(f"drawer_post{k}", "mjGEOM_CAPSULE", [0.5 * hr], fromto=[-dt, y, 0.55 * dz, -dt - 0.025, y, 0.55 * dz],
               volume=0.0, rgba=[0.2, 0.2, 0.2, 1.0])
    d.set_mass(o.mass)
    d.keypoint("K_b", [-dt - 0.025, 0.0, 0.55 * dz])
    d.keypoint("K_p1", [dx / 2, 0.0, dt])
    d.keypoint("K_i", [-dt / 2, 0.0, dz])
    b.keypoints.update(d.keypoints)
    return {"joints": [f"{o.name}/slide"], "keypoint_bodies": {k: f"{o.name}/drawer" for k in d.keypoints},
            "opening": float(o.opening)}
