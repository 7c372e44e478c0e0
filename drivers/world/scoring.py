"""Scoring a pour from the physics: where the water went, what the held mug hit, how far off it ended.

VL-MP scores a pour as a success when half a cup of water is transferred into the target mug
without spilling. Here the "water" is the held mug's spheres, and a :class:`PourMonitor`
attached to a :class:`~kinebridge.drivers.world.world.World` watches every physics step:

- **spilt**: a sphere that touched the table or the floor at any step, or that ends outside
  every container at rest (on a box, say) — once spilt, always spilt. A table contact *under* a
  standing container's floor (within its inner radius, below its floor's top) is not a spill: it is a
  sphere pressed into the floor by its impact (soft contacts let a 1–2 m/s sphere sink 3–7 mm, as
  deep as a mug's bottom is thick), which the floor's water slab
  (:func:`kinebridge.drivers.world.objects.water_floor`) then pushes back up; those are counted in
  ``under_floor``;
- **collisions**: contact onsets between tool geometry (held mug, gripper) and anything but the
  water — the target's rim, another object, the table — counted per geom pair (a pair in
  contact over consecutive steps is one collision), with the labels that were hit;
- at :meth:`PourMonitor.score`: spheres inside the target's interior (below its rim, within
  its inner radius, in the target's current frame), still in the held mug, in other containers,
  and in flight (outside every container, faster than 5 cm/s — the pour has not settled);
  final pose errors of the held mug against a goal pose if one is given, and how far the target
  was pushed.

``success`` is VL-MP's criterion: at least ``fraction`` (½) of all spheres in the target, none
spilt, none in flight, no collision.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from kinebridge.drivers.world.objects import container_interior

__all__ = ["PourScore", "PourMonitor"]

_IN_FLIGHT_SPEED = 0.05    # m/s


@dataclass(frozen=True)
class PourScore:
    """Counts of water spheres and collisions at the end of a pour (see the module docstring)."""

    target: str
    total: int
    in_target: int
    in_source: int
    in_other: int
    spilt: int
    in_flight: int
    collisions: int
    collided_with: tuple[str, ...]
    target_moved_m: float
    position_error_m: float | None = None
    angle_error_rad: float | None = None
    fraction: float = 0.5
    in_other_by: dict = field(default_factory=dict)
    under_floor: int = 0           # spheres that were pressed into a container's floor down to the table

    @property
    def success(self) -> bool:
        """VL-MP: ≥ ``fraction`` of the water in the target, nothing spilt or in flight, no collision."""
        return (self.total > 0 and self.in_target >= math.ceil(self.fraction * self.total)
                and self.spilt == 0 and self.in_flight == 0 and self.collisions == 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["collided_with"] = list(self.collided_with)
        d["success"] = self.success
        return d


class PourMonitor:
    """Watches a world's contacts for one pour into ``target``; ``score()`` any time.

    Create it when the pour starts (after ``World.reset``/``set_arm``); it detaches with
    :meth:`close` (or as a context manager).
    """

    def __init__(self, world, target: str | None = None, fraction: float = 0.5):
        target = target if target is not None else world.scene.target
        if target is None:
            raise ValueError("target: the scene names no pour target; pass target=<object name>")
        try:
            obj = world.scene.object(target)
        except KeyError as err:
            raise ValueError(f"target: {err.args[0]}") from None
        if container_interior(obj) is None:
            raise ValueError(f"target = {target!r} is a {obj.kind}, not a container (mug or bowl)")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction: expected a share in (0, 1], got {fraction}")
        self.world, self.target, self.fraction = world, target, float(fraction)
        b = world.built
        labels = world.labels
        self._tool = labels.index("tool")
        self._water = labels.index("water")
        self._static = np.array([labels.index("table"), labels.index("floor")])
        n = b.particle_bodies.size
        self._geom_particle = np.full(world.model.ngeom, -1, np.int64)
        self._geom_particle[b.particle_geoms] = np.arange(n)
        self.spilt = np.zeros(n, bool)
        self.under_floor = np.zeros(n, bool)
        import mujoco
        self._containers = []            # (body id, inner radius, floor top) of every standing container
        for o in world.scene.objects:
            ci = container_interior(o)
            if ci is not None:
                self._containers.append((mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_BODY, o.name), ci[0], ci[1]))
        self._pairs: set[tuple[int, int]] = set()
        self.collisions = 0
        self.collided_with: set[str] = set()
        #: the first 100 collision onsets: (world time s, tool geom, other geom)
        self.collision_log: list[tuple[float, str, str]] = []
        with world.lock:
            self._target_start = world.object_poses()[target][:3, 3].copy()
        world.add_step_hook(self._on_step)

    def _under_a_floor(self, pos: np.ndarray) -> np.ndarray:
        """(C,) whether each contact point (C, 3) lies under a standing container's floor."""
        d = self.world.data
        out = np.zeros(len(pos), bool)
        for bid, r_in, floor in self._containers:
            R = d.xmat[bid].reshape(3, 3)
            if R[2, 2] < 0.9:                      # tipped over: its floor is not over the table
                continue
            loc = (pos - d.xpos[bid]) @ R
            out |= (np.hypot(loc[:, 0], loc[:, 1]) < r_in) & (loc[:, 2] < floor)
        return out

    def close(self) -> None:
        try:
            self.world.remove_step_hook(self._on_step)
        except ValueError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --------------------------------------------------------------------------------- step

    def _on_step(self, event: str) -> None:
        if event == "reset":
            self.spilt[:] = False
            self.under_floor[:] = False
            self._pairs.clear()
            self.collisions = 0
            self.collided_with.clear()
            self.collision_log.clear()
            return
        d = self.world.data
        if d.ncon == 0:
            self._pairs.clear()
            return
        con = d.contact
        g1, g2 = np.asarray(con.geom1[:d.ncon]), np.asarray(con.geom2[:d.ncon])
        gl = self.world.built.geom_label
        l1, l2 = gl[g1], gl[g2]
        # water on the table or floor: spilt
        w1 = (l1 == self._water) & np.isin(l2, self._static)
        w2 = (l2 == self._water) & np.isin(l1, self._static)
        if w1.any() or w2.any():
            idx = np.nonzero(w1 | w2)[0]
            sph = self._geom_particle[np.where(w1[idx], g1[idx], g2[idx])]
            under = self._under_a_floor(np.asarray(con.pos[:d.ncon])[idx])
            self.under_floor[sph[under]] = True
            self.spilt[sph[~under]] = True
        # tool against anything but water: collisions (onsets per geom pair)
        t = ((l1 == self._tool) & (l2 != self._water) & (l2 != self._tool)) | \
            ((l2 == self._tool) & (l1 != self._water) & (l1 != self._tool))
        pairs = set(zip(g1[t].tolist(), g2[t].tolist()))
        new = pairs - self._pairs
        if new:
            self.collisions += len(new)
            labels = self.world.labels
            mj, m = self.world._mj, self.world.model
            for a, c in new:
                tool, other = (a, c) if gl[a] == self._tool else (c, a)
                self.collided_with.add(labels[gl[other]])
                if len(self.collision_log) < 100:
                    self.collision_log.append((float(d.time), mj.mj_id2name(m, mj.mjtObj.mjOBJ_GEOM, tool),
                                               mj.mj_id2name(m, mj.mjtObj.mjOBJ_GEOM, other)))
        self._pairs = pairs

    # -------------------------------------------------------------------------------- score

    def score(self, goal: np.ndarray | None = None) -> PourScore:
        """The counts now; ``goal`` (4, 4) is the held mug's intended final pose (base frame)."""
        w = self.world
        with w.lock:
            pts = w.particles()
            b = w.built
            vel = np.zeros(len(pts))
            if len(pts):
                dof = w.model.body_dofadr[b.particle_bodies]
                v = np.stack([w.data.qvel[dof], w.data.qvel[dof + 1], w.data.qvel[dof + 2]], axis=1)
                vel = np.linalg.norm(v, axis=1)
            poses = w.object_poses()
            in_src = w.water_in_tool()
            tgt = w.scene.object(self.target)
            r, z0, z1 = container_interior(tgt)
            in_tgt = w._inside(pts, poses[self.target], r, 0.0, z1)
            in_other = np.zeros(len(pts), bool)
            by: dict[str, int] = {}
            for o in w.scene.objects:
                inner = container_interior(o)
                if o.name == self.target or inner is None:
                    continue
                k = w._inside(pts, poses[o.name], inner[0], 0.0, inner[2])
                if k.any():
                    by[o.name] = int(k.sum())
                in_other |= k
            outside = ~(in_src | in_tgt | in_other)
            self.spilt |= outside & (vel <= _IN_FLIGHT_SPEED)
            in_flight = outside & ~self.spilt
            spilt = self.spilt
            pe = ae = None
            held = w.held_pose()
            if goal is not None and held is not None:
                goal = np.asarray(goal, float)
                if goal.shape != (4, 4):
                    raise ValueError(f"goal: expected a (4, 4) pose, got shape {goal.shape}")
                pe = float(np.linalg.norm(held[:3, 3] - goal[:3, 3]))
                c = (np.trace(goal[:3, :3].T @ held[:3, :3]) - 1.0) / 2.0
                ae = float(math.acos(max(-1.0, min(1.0, c))))
            moved = float(np.linalg.norm(poses[self.target][:3, 3] - self._target_start))
        return PourScore(target=self.target, total=len(pts), in_target=int((in_tgt & ~spilt).sum()),
                         in_source=int((in_src & ~spilt).sum()), in_other=int((in_other & ~spilt).sum()),
                         spilt=int(spilt.sum()), in_flight=int(in_flight.sum()), collisions=self.collisions,
                         collided_with=tuple(sorted(self.collided_with)), target_moved_m=moved,
                         position_error_m=pe, angle_error_rad=ae, fraction=self.fraction, in_other_by=by,
                         under_floor=int(self.under_floor.sum()))
