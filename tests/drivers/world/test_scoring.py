"""Pour scoring from the physics: a clean pour succeeds, a spill and a collision are counted."""

from __future__ import annotations

import numpy as np
import pytest

from kinebridge.drivers.world.scoring import PourMonitor
from kinebridge.drivers.world.scripted import pour_path
from kinebridge.drivers.world.spec import BoxSpec, MugSpec, Placement, SceneSpec, ToolSpec
from kinebridge.drivers.world.world import World

RATE = 200.0


def _scene(**kw):
    target = MugSpec(name="target", pose=Placement(x=0.33, y=-0.02, yaw_deg=90), radius=0.045, height=0.09,
                     color=(0.8, 0.3, 0.3, 1.0))
    return SceneSpec(objects=(target,) + tuple(kw.pop("extra", ())), target="target", **kw)


def _drive(world, path, t0=100.0):
    t = t0
    for q in path:
        t += 1 / RATE
        world.follow(q, t)
        world.advance_to(t)


def test_a_pour_into_the_target_succeeds():
    w = World(_scene())
    with PourMonitor(w) as mon:
        _drive(w, pour_path(w))
        s = mon.score()
    assert s.success, s.to_dict()
    assert s.in_target >= 0.9 * s.total and s.spilt == 0 and s.collisions == 0
    assert s.target_moved_m < 0.01
    assert s.to_dict()["success"] is True


def test_pouring_beside_the_target_spills():
    w = World(_scene())
    with PourMonitor(w) as mon:
        _drive(w, pour_path(w, offset=(-0.10, 0.0)))         # the lip 10 cm off the mouth: onto the table
        s = mon.score()
    assert not s.success
    assert s.spilt >= 0.5 * s.total and s.in_target < 0.5 * s.total
    assert s.in_target + s.in_source + s.in_other + s.spilt + s.in_flight == s.total


def test_hitting_an_object_is_a_collision():
    box = BoxSpec(name="obstacle", pose=Placement(x=0.30, y=-0.12), size=(0.05, 0.05, 0.16), color=(0.2, 0.6, 0.2, 1))
    w = World(_scene(extra=(box,)))
    with PourMonitor(w) as mon:
        path = pour_path(w)
        _drive(w, path[: int(1.5 * RATE)])                  # the approach sweeps the held mug through the box
        s = mon.score()
    assert s.collisions > 0 and "obstacle" in s.collided_with
    assert not s.success
    assert mon.collision_log and mon.collision_log[0][1].startswith("tool/")


def test_monitor_needs_a_container_target():
    w = World(_scene(extra=(BoxSpec(name="crate", pose=Placement(x=0.4, y=0.2)),), tool=ToolSpec()))
    with pytest.raises(ValueError, match="not a container"):
        PourMonitor(w, target="crate")
    with pytest.raises(ValueError, match="no object 'nope'"):
        PourMonitor(w, target="nope")


def test_goal_pose_errors():
    w = World(_scene())
    with PourMonitor(w) as mon:
        held = w.held_pose()
        goal = held.copy()
        goal[:3, 3] += [0.003, -0.004, 0.0]
        s = mon.score(goal=goal)
    assert s.position_error_m == pytest.approx(0.005, abs=1e-9)
    assert s.angle_error_rad == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_equal(s.in_source, s.total)


def _throw(w, j, pos, vel):
    """Put water sphere ``j`` at ``pos`` (base frame) moving at ``vel``."""
    b = w.built
    body = b.particle_bodies[j]
    qa, da = w.model.jnt_qposadr[w.model.body_jntadr[body]], w.model.body_dofadr[body]
    w.data.qpos[qa:qa + 3] = np.asarray(pos) - w.model.body_pos[body]
    w.data.qvel[da:da + 3] = vel


@pytest.mark.parametrize("speed", [2.0, 4.0])
def test_a_fast_sphere_does_not_tunnel_through_a_thin_floor_and_is_not_a_spill(speed):
    # a 3 mm floor is thinner than the 3-7 mm a 1-4 m/s sphere sinks into a soft contact
    target = MugSpec(name="target", pose=Placement(x=0.33, y=-0.02), radius=0.045, height=0.09, bottom=0.003)
    w = World(SceneSpec(objects=(target,), target="target"))
    with PourMonitor(w) as mon:
        c = w.object_poses()["target"][:3, 3]
        for k, j in enumerate(range(8)):
            _throw(w, j, c + [0.012 * (k % 3 - 1), 0.012 * (k // 3 - 1), 0.02 + 0.012 * k], [0.0, 0.0, -speed])
        w.step(int(0.4 / w.timestep))
        P = w.particles()[:8]
        loc = P - w.object_poses()["target"][:3, 3]
        assert np.all(loc[:, 2] > 0.003), loc            # every sphere above the floor, none under it
        assert np.all(np.hypot(loc[:, 0], loc[:, 1]) < 0.041)
        assert not mon.spilt[:8].any()
        # the slab is massless (at the floor's density it would add ~0.2 kg; the capsule ends add ~8 g)
        assert abs(w.model.body_mass[w.model.body("target").id] - target.mass) < 0.01


def test_the_water_touches_a_floor_only_through_its_slab_and_the_slab_is_invisible():
    from kinebridge.drivers.world import collision
    w = World(_scene())
    m = w.model
    floor, slab = m.geom("target/bottom").id, m.geom("target/water_floor").id
    water = w.built.particle_geoms[0]

    def touch(a, b):
        return bool((m.geom_contype[a] & m.geom_conaffinity[b]) | (m.geom_contype[b] & m.geom_conaffinity[a]))
    table = m.geom("table/top").id
    assert touch(water, slab) and not touch(water, floor)
    assert m.geom_contype[slab] == collision.WATER_FLOOR and m.geom_group[slab] == 3 and m.geom_rgba[slab][3] == 0
    assert touch(floor, table) and not touch(slab, table) and not touch(slab, m.geom("target/wall00").id)
    # the held mug's own floor still holds its water
    held = [g for g in range(m.ngeom) if m.geom(g).name.startswith("tool/") and "bottom" in m.geom(g).name]
    assert held and all(touch(water, g) for g in held)
