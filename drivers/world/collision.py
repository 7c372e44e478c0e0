"""Who collides with whom: one bit per kind of geometry, and the kinds each may touch.

MuJoCo tests a geom pair when ``(contype₁ & conaffinity₂) | (contype₂ & conaffinity₁)`` is
non-zero, so a pair is excluded only if neither side's affinity holds the other's type. Each
kind gets its own ``contype`` bit and an affinity built from a symmetric table below:

- the arm's links never touch each other (self-collision of a position-driven arm is the
  controller's business) nor the table they stand on, but do touch objects;
- the water touches everything except the arm links (a spilled sphere on a link would only
  cost contacts; spills are scored from the table and the floor);
- the tool (held mug, gripper) touches objects, table and water — its contacts with anything
  but water are what :mod:`kinebridge.drivers.world.scoring` counts as collisions;
- a standing container's floor is two geoms: the floor (``FLOOR``: an object part to everything
  but the water) and, to the water alone, a thick slab flush with its top (``WATER_FLOOR``,
  :func:`kinebridge.drivers.world.objects.water_floor`) — one contact surface for the water, and
  one it cannot tunnel through.
"""

from __future__ import annotations

STATIC, OBJECT, WATER, ARM, TOOL, FLOOR, WATER_FLOOR = 1, 2, 4, 8, 16, 32, 64
_TOUCHES = {
    STATIC: OBJECT | WATER | TOOL | FLOOR,
    OBJECT: STATIC | OBJECT | WATER | ARM | TOOL | FLOOR,
    WATER: STATIC | OBJECT | WATER | TOOL | WATER_FLOOR,
    ARM: OBJECT | FLOOR,
    TOOL: STATIC | OBJECT | WATER | FLOOR,
    FLOOR: STATIC | OBJECT | ARM | TOOL,
    WATER_FLOOR: WATER,
}
# the table must be symmetric for the bit test to mean what it says
assert all(bool(_TOUCHES[a] & b) == bool(_TOUCHES[b] & a) for a in _TOUCHES for b in _TOUCHES)


def bits(kind: int) -> dict:
    """``contype``/``conaffinity`` keyword arguments for a geom of ``kind``."""
    return {"contype": kind, "conaffinity": _TOUCHES[kind]}


VISUAL = {"contype": 0, "conaffinity": 0}
