"""A scene as data: the pydantic specification the simulated world is built from.

Every model is ``extra="forbid"`` and validated on construction, so a mistyped field or an
impossible object (a mug wall thicker than its radius, two objects with one name) fails with a
message naming the field. Lengths are metres, angles degrees (in specs only: they are typed by
people), colours RGBA in [0, 1].

Frames. MuJoCo's world frame **is the arm's base frame**: the RM75 base sits at the origin on the
table top, which is the plane z = 0; x points forward from the base, z up. An object's
``pose`` places its own frame on the table: origin at the centre of its footprint on the table
top, z up, rotated ``yaw_deg`` about z. A mug's frame has its handle on +x, so the handle side is
the yaw (``SceneSpec.random`` draws handles to the left, +y, or right, −y, as seen from the arm).

:meth:`SceneSpec.random` draws a whole scene from a seed with :class:`numpy.random.Generator`
(PCG64), so one seed gives one scene on every machine; the spec it returns can be dumped to JSON
and rebuilt exactly.
"""

from __future__ import annotations

import colorsys
import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Rgba", "Placement", "HandleSpec", "MugSpec", "BowlSpec", "PlateSpec", "BoxSpec", "DrawerSpec",
    "DistractorSpec", "ObjectSpec", "TableSpec", "LightSpec", "LightingSpec", "ArmSpec",
    "ParticleSpec", "ToolSpec", "PhysicsSpec", "SceneSpec", "RESERVED_LABELS", "MAX_SEED",
]

#: Segmentation labels that are not scene objects (ids 0..len-1, in this order).
RESERVED_LABELS = ("none", "floor", "table", "arm", "tool", "water", "marker")
MAX_SEED = 2**63 - 1

Rgba = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)],
             Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Placement(_Spec):
    """Where an object stands: footprint centre (x, y) on the table top (base frame, m), yaw about z."""

    x: float = Field(ge=-2.0, le=2.0)
    y: float = Field(ge=-2.0, le=2.0)
    yaw_deg: float = Field(0.0, ge=-360.0, le=360.0)
    z: float = Field(0.0, ge=-1.0, le=2.0, description="height of the frame origin above the table top")

    def matrix(self) -> np.ndarray:
        """The object frame in the base frame, (4, 4)."""
        c, s = math.cos(math.radians(self.yaw_deg)), math.sin(math.radians(self.yaw_deg))
        T = np.eye(4)
        T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        T[:3, 3] = [self.x, self.y, self.z]
        return T


class HandleSpec(_Spec):
    """A mug handle on the mug frame's +x side, built from capsules.

    ``round``: a half ring of capsules; ``square``: two horizontal struts and a vertical grip;
    ``ear``: a D shape, struts angled outwards. ``reach`` is how far the handle stands off the
    wall, ``span`` the vertical distance between its two attachment points (fraction of the mug
    height), ``thickness`` the capsule radius.
    """

    shape: Literal["round", "square", "ear"] = "round"
    reach: float = Field(0.03, ge=0.01, le=0.06)
    span: float = Field(0.6, ge=0.2, le=0.9)
    thickness: float = Field(0.005, ge=0.002, le=0.012)


class _Object(_Spec):
    """Fields shared by objects on the table."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,31}$")
    pose: Placement
    color: Rgba = (0.8, 0.8, 0.8, 1.0)
    mass: float = Field(0.25, gt=0.0, le=20.0, description="kg")
    fixed: bool = Field(False, description="welded to the table (no free joint)")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_LABELS:
            raise ValueError(f"{v!r} is a reserved label ({', '.join(RESERVED_LABELS)}); choose another name")
        return v


class MugSpec(_Object):
    """A mug: cylindrical wall of ``segments`` boxes, a bottom disc, a handle.

    Keypoints (VL-MP Fig. 5a), in the mug frame: K_i the interaction point on the rim, opposite
    the handle, at mid wall thickness, (−(radius − wall/2), 0, height); K_p1 the mouth centre
    (0, 0, height); K_p2 the base centre (0, 0, 0); K_b the handle's outermost point.
    """

    kind: Literal["mug"] = "mug"
    radius: float = Field(0.04, ge=0.025, le=0.07, description="outer radius, m")
    height: float = Field(0.095, ge=0.05, le=0.16)
    wall: float = Field(0.005, ge=0.002, le=0.012, description="wall thickness, m")
    bottom: float = Field(0.008, ge=0.003, le=0.02, description="bottom thickness, m")
    handle: HandleSpec = HandleSpec()
    segments: int = Field(20, ge=8, le=48, description="boxes around the wall")

    @model_validator(mode="after")
    def _geometry(self):
        if self.wall >= 0.3 * self.radius:
            raise ValueError(f"wall = {self.wall} m must be below 0.3 × the radius ({self.radius} m); "
                             "make the wall thinner or the mug wider")
        if self.bottom >= 0.5 * self.height:
            raise ValueError(f"bottom = {self.bottom} m must be below half the height ({self.height} m)")
        return self

    @property
    def inner_radius(self) -> float:
        return self.radius - self.wall


class BowlSpec(_Object):
    """A bowl: a flat base disc and a flared wall of tilted boxes. Keypoints K_i (rim, −x side),
    K_p1 (mouth centre), K_p2 (base centre)."""

    kind: Literal["bowl"] = "bowl"
    radius: float = Field(0.075, ge=0.04, le=0.15, description="rim radius, m")
    base_radius: float = Field(0.045, ge=0.02, le=0.12)
    height: float = Field(0.06, ge=0.025, le=0.12)
    wall: float = Field(0.005, ge=0.002, le=0.012)
    segments: int = Field(24, ge=8, le=48)

    @model_validator(mode="after")
    def _geometry(self):
        if self.base_radius >= self.radius:
            raise ValueError(f"base_radius = {self.base_radius} m must be below radius = {self.radius} m")
        return self


class PlateSpec(_Object):
    """A plate: a thin disc with a low ring rim. Keypoints K_i (rim, −x side), K_p1 (top centre)."""

    kind: Literal["plate"] = "plate"
    radius: float = Field(0.11, ge=0.05, le=0.16)
    thickness: float = Field(0.006, ge=0.002, le=0.02)
    rim: float = Field(0.012, ge=0.0, le=0.03, description="rim height above the plate, m")
    segments: int = Field(24, ge=8, le=48)


class BoxSpec(_Object):
    """A box (full ``size`` x, y, z in m). Keypoints K_p1 (top face centre), K_p2 (base centre),
    K_i (top edge centre on the −x face)."""

    kind: Literal["box"] = "box"
    size: tuple[Annotated[float, Field(gt=0.005, le=0.6)], Annotated[float, Field(gt=0.005, le=0.6)],
                Annotated[float, Field(gt=0.005, le=0.6)]] = (0.06, 0.06, 0.06)


class DrawerSpec(_Object):
    """A cabinet (fixed to the table) with one drawer on a slide joint along the cabinet's −x.

    ``size`` is the cabinet's outside (x, y, z); the drawer opens towards −x (towards the arm at
    yaw 0) by up to ``travel``. Keypoints: K_b the drawer handle's centre, K_p1 the centre of the
    drawer's inside bottom, K_i the top edge centre of the drawer front. The joint is
    ``<name>/slide`` (0 = closed, m).
    """

    kind: Literal["drawer"] = "drawer"
    size: tuple[Annotated[float, Field(ge=0.1, le=0.6)], Annotated[float, Field(ge=0.1, le=0.8)],
                Annotated[float, Field(ge=0.06, le=0.5)]] = (0.22, 0.28, 0.14)
    travel: float = Field(0.14, ge=0.02, le=0.4)
    opening: float = Field(0.0, ge=0.0, le=0.4, description="initial opening, m")
    fixed: bool = True
    mass: float = Field(0.5, gt=0.0, le=20.0, description="kg, of the drawer")

    @model_validator(mode="after")
    def _geometry(self):
        if self.travel > 0.9 * self.size[0]:
            raise ValueError(f"travel = {self.travel} m must be at most 0.9 × the cabinet depth {self.size[0]} m")
        if self.opening > self.travel:
            raise ValueError(f"opening = {self.opening} m is beyond travel = {self.travel} m")
        if not self.fixed:
            raise ValueError("fixed: a drawer's cabinet is always fixed to the table; leave fixed = true")
        return self


class DistractorSpec(_Object):
    """A distractor of no semantic interest (no keypoints beyond K_p1, its top centre)."""

    kind: Literal["distractor"] = "distractor"
    shape: Literal["box", "cylinder", "sphere"] = "box"
    size: tuple[Annotated[float, Field(gt=0.005, le=0.3)], Annotated[float, Field(gt=0.005, le=0.3)],
                Annotated[float, Field(gt=0.005, le=0.3)]] = (0.05, 0.05, 0.05)


ObjectSpec = Annotated[Union[MugSpec, BowlSpec, PlateSpec, BoxSpec, DrawerSpec, DistractorSpec],
                       Field(discriminator="kind")]


class TableSpec(_Spec):
    """The table top: a box whose top face is z = 0, spanning ``x_range`` × ``y_range``."""

    x_range: tuple[float, float] = (-0.25, 0.85)
    y_range: tuple[float, float] = (-0.6, 0.6)
    thickness: float = Field(0.04, gt=0.0, le=0.2)
    height: float = Field(0.74, ge=0.3, le=1.2, description="table top above the floor, m")
    color: Rgba = (0.62, 0.5, 0.38, 1.0)
    checker: Rgba | None = Field(None, description="second colour of a checker texture, or none")
    checker_size: float = Field(0.1, gt=0.005, le=1.0, description="m per checker tile")

    @model_validator(mode="after")
    def _ranges(self):
        for name, (lo, hi) in (("x_range", self.x_range), ("y_range", self.y_range)):
            if not lo < 0.0 < hi:
                raise ValueError(f"{name} = {(lo, hi)} must contain 0 (the arm's base stands on the table)")
        return self


class LightSpec(_Spec):
    """A directional or spot light (MuJoCo ``<light>``) in the base frame."""

    pos: tuple[float, float, float] = (0.3, 0.0, 1.5)
    dir: tuple[float, float, float] = (0.0, 0.0, -1.0)
    diffuse: tuple[float, float, float] = (0.6, 0.6, 0.6)
    specular: tuple[float, float, float] = (0.2, 0.2, 0.2)
    directional: bool = False
    castshadow: bool = Field(False, description="shadows cost about 4× in render time on llvmpipe")


class LightingSpec(_Spec):
    lights: tuple[LightSpec, ...] = (LightSpec(),)
    ambient: tuple[float, float, float] = (0.25, 0.25, 0.25)
    headlight: tuple[float, float, float] = (0.25, 0.25, 0.25)


class ArmSpec(_Spec):
    """The RM75 variant the world builds: its flange length ``d7`` and joint limits (rad)."""

    d7: float = Field(0.144, gt=0.05, lt=0.4)
    q_min: tuple[float, ...] = Field(min_length=7, max_length=7)
    q_max: tuple[float, ...] = Field(min_length=7, max_length=7)
    q0: tuple[float, ...] | None = Field(None, min_length=7, max_length=7,
                                         description="initial joints (rad); none: the carry posture")
    link_radius: float = Field(0.045, gt=0.01, le=0.08)
    color: Rgba = (0.85, 0.86, 0.88, 1.0)

    @classmethod
    def from_model(cls, model=None, **kw) -> "ArmSpec":
        """From a :class:`kinebridge.kernels.rm75.RM75Model` (default: the RM75-B)."""
        from kinebridge.kernels import rm75
        model = model if model is not None else rm75.RM75Model()
        return cls(d7=float(model.d7), q_min=tuple(map(float, model.q_min)),
                   q_max=tuple(map(float, model.q_max)), **kw)

    @model_validator(mode="after")
    def _limits(self):
        lo, hi = np.asarray(self.q_min), np.asarray(self.q_max)
        if not np.all(lo < hi):
            raise ValueError(f"q_min must be below q_max for every joint (joints {np.flatnonzero(lo >= hi).tolist()})")
        if self.q0 is not None and not np.all((np.asarray(self.q0) >= lo) & (np.asarray(self.q0) <= hi)):
            raise ValueError("q0 lies outside [q_min, q_max]; pass joints within the limits")
        return self


class ParticleSpec(_Spec):
    """The "water": frictionless spheres, three translational degrees of freedom each.

    Water has no shear strength, so the spheres have no friction (condim 1: normal force only)
    and no rotation (three slide joints instead of a free joint halves the degrees of freedom).
    """

    count: int = Field(120, ge=0, le=2000)
    radius: float = Field(0.0045, ge=0.002, le=0.015, description="m")
    density: float = Field(1000.0, gt=0.0, le=5000.0, description="kg/m³ of a sphere (water: 1000)")
    color: Rgba = (0.25, 0.55, 0.95, 1.0)


class ToolSpec(_Spec):
    """What the flange carries: nothing, a parallel gripper, or a held mug (gripper optional).

    The held mug hangs by its handle below the flange, upright when the flange z axis points at
    the table (the pouring skill's tool-down grasp), its rim ``gap`` below the flange; rolling the
    flange about its x axis pours over the rim point opposite the handle (see
    :mod:`kinebridge.drivers.world.tool`).
    """

    kind: Literal["none", "gripper", "mug"] = "mug"
    gripper: bool = True
    mug: MugSpec = MugSpec(name="held", pose=Placement(x=0.0, y=0.0), color=(0.9, 0.9, 0.92, 1.0),
                           radius=0.036, height=0.095, wall=0.004, bottom=0.006)
    gap: float = Field(0.03, ge=0.0, le=0.2, description="flange to rim, m")
    particles: ParticleSpec = ParticleSpec()
    marker: bool = Field(False, description="a checkerboard plate on the flange, for hand-eye calibration")
    marker_squares: tuple[int, int] = Field((7, 6), description="squares along x, y (inner corners one fewer)")
    marker_square: float = Field(0.018, ge=0.005, le=0.05, description="m per square")


class PhysicsSpec(_Spec):
    """Solver settings (see :mod:`kinebridge.drivers.world.builder` for how they were tuned)."""

    timestep: float = Field(0.0025, ge=2e-4, le=0.01, description="s")
    solver: Literal["Newton", "CG", "PGS"] = "CG"
    iterations: int = Field(20, ge=1, le=200)
    ls_iterations: int = Field(6, ge=1, le=100)
    cone: Literal["pyramidal", "elliptic"] = "pyramidal"
    sleep: bool = Field(True, description="let objects at rest sleep (MuJoCo islands)")
    sleep_tolerance: float = Field(1e-3, gt=0.0, le=0.1, description="m/s, rad/s")


class SceneSpec(_Spec):
    """A whole scene: table, lights, arm, tool, objects; ``target`` names the pour target."""

    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="the seed that drew it, if any")
    table: TableSpec = TableSpec()
    lighting: LightingSpec = LightingSpec()
    arm: ArmSpec = Field(default_factory=ArmSpec.from_model)
    tool: ToolSpec = ToolSpec()
    objects: tuple[ObjectSpec, ...] = ()
    target: str | None = None
    physics: PhysicsSpec = PhysicsSpec()
    render_size: tuple[int, int] = Field((1280, 720), description="largest camera image (w, h)")
    render_msaa: int = Field(0, ge=0, le=16, description="multisamples per pixel (4 costs 3× on llvmpipe)")
    render_slices: int = Field(16, ge=6, le=64, description="tessellation of round geoms (slices; stacks ≈ ⅝)")
    keypoint_markers: bool = Field(False, description="small visual spheres at every keypoint")

    @model_validator(mode="after")
    def _names(self):
        names = [o.name for o in self.objects]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"objects: names must be unique, repeated: {dup}")
        if self.target is not None and self.target not in names:
            raise ValueError(f"target = {self.target!r} is not an object of the scene; objects: {names}")
        return self

    def object(self, name: str):
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"no object {name!r}; objects: {[o.name for o in self.objects]}")

    # ------------------------------------------------------------------------------- random

    @classmethod
    def random(cls, seed: int, n_mugs: int = 3, n_distractors: int = 2, *, ambiguous: bool = False,
               bowls: int = 0, plates: int = 0, drawer: bool = False, arm: ArmSpec | None = None,
               tool: Literal["none", "gripper", "mug"] = "mug", particles: int = 120,
               table_texture: bool | None = None) -> "SceneSpec":
        """A scene drawn from ``seed``: ``n_mugs`` mugs (the first is the pour ``target``),
        ``n_distractors`` boxes/cylinders/spheres, optional bowls, plates and a drawer.

        ``ambiguous`` (VL-MP's ambiguous environment): at least 3 visually similar mugs (one
        shape and colour, each jittered by a few per cent) and at least 2 distractor boxes of
        different colours. Table colour/texture, lights and every object's size, colour and
        placement vary with the seed; placements avoid each other and stay within the arm's
        reach (0.28–0.64 m from the base, within ±72° of its x axis).
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
            raise ValueError(f"seed: expected an integer in [0, 2**63 − 1], got {seed!r}")
        for name, v in (("n_mugs", n_mugs), ("n_distractors", n_distractors), ("bowls", bowls), ("plates", plates)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 12:
                raise ValueError(f"{name}: expected an integer in [0, 12], got {v!r}")
        rng = np.random.default_rng(int(seed))
        if ambiguous:
            n_mugs, n_boxes = max(n_mugs, 3), max(n_distractors, 2)
        else:
            n_boxes = n_distractors
        table = _random_table(rng, table_texture)
        lighting = _random_lighting(rng)
        # draw every object's shape first (footprint radius + a factory taking its position), then
        # place the largest first; the draws do not depend on where things land
        pending: list[tuple[float, object]] = []
        fixed: list = []
        if drawer:
            y = float(rng.choice([-0.36, 0.36]))
            x = 0.52
            fixed.append(DrawerSpec(name="drawer", pose=Placement(x=x, y=y, yaw_deg=math.degrees(math.atan2(y, x))),
                                    color=_random_color(rng, sat=(0.1, 0.4), val=(0.5, 0.8)),
                                    opening=float(rng.uniform(0.0, 0.06))))
        base_mug = _random_mug_shape(rng)
        base_hue = rng.uniform(0, 1)
        for i in range(n_mugs):
            shape = base_mug if ambiguous else _random_mug_shape(rng)
            if ambiguous:
                jit = lambda v, f=0.04: float(v * (1 + rng.uniform(-f, f)))  # noqa: E731
                shape = dict(shape, radius=jit(shape["radius"]), height=jit(shape["height"]))
                color = _hsv(rng, base_hue + rng.uniform(-0.02, 0.02), (0.55, 0.65), (0.75, 0.85))
            else:
                color = _random_color(rng)
            side = 90.0 if rng.uniform() < 0.5 else -90.0        # handle to the left (+y) or right (−y)
            yaw = side + float(rng.uniform(-35, 35))
            pending.append((shape["radius"] + shape["handle"].reach, lambda x, y, i=i, shape=shape, color=color, yaw=yaw:
                            MugSpec(name=f"mug{i}", pose=Placement(x=x, y=y, yaw_deg=yaw), color=color, **shape)))
        for i in range(bowls):
            r = float(rng.uniform(0.06, 0.09))
            kw = dict(radius=r, base_radius=r * float(rng.uniform(0.5, 0.7)), height=float(rng.uniform(0.04, 0.07)),
                      color=_random_color(rng), yaw=float(rng.uniform(-180, 180)))
            pending.append((r, lambda x, y, i=i, kw=kw: BowlSpec(
                name=f"bowl{i}", pose=Placement(x=x, y=y, yaw_deg=kw["yaw"]),
                **{k: v for k, v in kw.items() if k != "yaw"})))
        for i in range(plates):
            r = float(rng.uniform(0.08, 0.11))
            kw = dict(radius=r, color=_random_color(rng, sat=(0.0, 0.2), val=(0.8, 1.0)), yaw=float(rng.uniform(-180, 180)))
            pending.append((r, lambda x, y, i=i, kw=kw: PlateSpec(
                name=f"plate{i}", pose=Placement(x=x, y=y, yaw_deg=kw["yaw"]), radius=kw["radius"], color=kw["color"])))
        hues = rng.permutation(n_boxes) / max(n_boxes, 1)
        for i in range(n_boxes):
            shape = "box" if (ambiguous or rng.uniform() < 0.6) else str(rng.choice(["cylinder", "sphere"]))
            sz = rng.uniform(0.035, 0.08, size=3)
            if shape == "sphere":
                sz[:] = sz[0] * 0.8
            elif shape == "cylinder":
                sz[1] = sz[0]
            kw = dict(name=f"box{i}" if shape == "box" else f"{shape}{i}", shape=shape, size=tuple(map(float, sz)),
                      color=_hsv(rng, hues[i] + rng.uniform(0, 0.1), (0.6, 0.9), (0.6, 0.95)))
            yaw = float(rng.uniform(-180, 180))
            pending.append((0.5 * math.hypot(sz[0], sz[1]), lambda x, y, kw=kw, yaw=yaw: DistractorSpec(
                pose=Placement(x=x, y=y, yaw_deg=yaw), **kw)))
        objects = fixed + _place(rng, pending, fixed)
        arm = arm if arm is not None else ArmSpec.from_model()
        tool_spec = ToolSpec(kind=tool, particles=ParticleSpec(count=particles if tool == "mug" else 0))
        return cls(seed=int(seed), table=table, lighting=lighting, arm=arm, tool=tool_spec,
                   objects=tuple(objects), target="mug0" if n_mugs else None)


# ----------------------------------------------------------------------------- random helpers

def _hsv(rng, h, sat, val) -> tuple:
    r, g, b = colorsys.hsv_to_rgb(float(h) % 1.0, float(rng.uniform(*sat)), float(rng.uniform(*val)))
    return (r, g, b, 1.0)


def _random_color(rng, sat=(0.35, 0.9), val=(0.45, 0.95)) -> tuple:
    return _hsv(rng, rng.uniform(0, 1), sat, val)


def _random_mug_shape(rng) -> dict:
    radius = float(rng.uniform(0.032, 0.046))
    return dict(radius=radius, height=float(rng.uniform(0.08, 0.115)), wall=float(rng.uniform(0.003, 0.006)),
                bottom=float(rng.uniform(0.005, 0.01)),
                handle=HandleSpec(shape=str(rng.choice(["round", "square", "ear"])),
                                  reach=float(rng.uniform(0.022, 0.035)), span=float(rng.uniform(0.5, 0.75)),
                                  thickness=float(rng.uniform(0.004, 0.007))))


def _random_table(rng, texture: bool | None) -> TableSpec:
    color = _hsv(rng, rng.uniform(0.05, 0.12), (0.2, 0.5), (0.45, 0.8))
    use = (rng.uniform() < 0.4) if texture is None else texture
    checker = None
    if use:
        checker = tuple(min(1.0, c * float(rng.uniform(0.75, 0.9))) for c in color[:3]) + (1.0,)
    return TableSpec(color=color, checker=checker, checker_size=float(rng.uniform(0.05, 0.15)))


def _random_lighting(rng) -> LightingSpec:
    lights = []
    for _ in range(int(rng.integers(1, 3))):
        pos = (float(rng.uniform(-0.3, 0.9)), float(rng.uniform(-0.8, 0.8)), float(rng.uniform(1.2, 2.0)))
        target = np.array([0.45, 0.0, 0.0])
        d = target - np.asarray(pos)
        d /= np.linalg.norm(d)
        k = float(rng.uniform(0.35, 0.6))
        lights.append(LightSpec(pos=pos, dir=tuple(map(float, d)), diffuse=(k, k, k * float(rng.uniform(0.9, 1.05)))))
    a = float(rng.uniform(0.15, 0.3))
    return LightingSpec(lights=tuple(lights), ambient=(a, a, a))


def _place(rng, pending, fixed) -> list:
    """Positions for ``pending`` (radius, factory) entries, largest first; objects keep their order."""
    order = sorted(range(len(pending)), key=lambda k: -pending[k][0])
    for _attempt in range(50):
        placer = _Placer(rng)
        for f in fixed:
            placer.reserve(f.pose.x, f.pose.y, 0.5 * math.hypot(*f.size[:2]) + 0.04)
        spots: dict[int, tuple[float, float]] = {}
        try:
            for k in order:
                spots[k] = placer.place(pending[k][0])
        except _NoRoom:
            continue
        return [pending[k][1](*spots[k]) for k in range(len(pending))]
    raise ValueError("SceneSpec.random: could not place every object without overlap within the arm's "
                     f"reach ({len(pending)} objects); ask for fewer or smaller objects")


class _NoRoom(Exception):
    pass


class _Placer:
    """Rejection sampling of non-overlapping footprints in the reachable part of the table."""

    R_MIN, R_MAX = 0.28, 0.64      # m from the base (the RM75-B reaches ~0.66 m with the tool down)
    MARGIN = 0.02

    def __init__(self, rng):
        self.rng = rng
        # the held mug starts around (0.30, −0.25) (flange above (0.30, −0.18)): keep objects from under it
        self.taken: list[tuple[float, float, float]] = [(0.30, -0.23, 0.08)]

    def reserve(self, x, y, r):
        self.taken.append((x, y, r))

    def place(self, r: float) -> tuple[float, float]:
        for _ in range(400):
            rho = self.rng.uniform(self.R_MIN + r, self.R_MAX - r) if self.R_MAX - r > self.R_MIN + r else self.R_MIN
            phi = self.rng.uniform(-1.25, 1.25)
            x, y = rho * math.cos(phi), rho * math.sin(phi)
            if all(math.hypot(x - a, y - b) > r + rb + self.MARGIN for a, b, rb in self.taken):
                self.taken.append((x, y, r))
                return float(x), float(y)
        raise _NoRoom
