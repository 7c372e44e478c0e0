"""Kinematic predicates: does a trajectory realise the kinematic attributes an instruction names?

KineVLA's kinematics-rich instructions keep the goal fixed and vary *how* it is reached: which part
of the object is taken, the path's shape and direction, the order of the motions, the final pose or
facing, the extent of a pull, where on the target something lands, how far a pour tilts. Each
attribute here is a function of a trajectory and its context that says whether it holds. The same
functions label the data set (an episode keeps the attributes its executed trajectory satisfies),
score tokenizers (the predicates of decoded trajectories against the originals) and, later, the VLA.

A trajectory is a dict of arrays sampled on one time grid:

* ``tcp`` (T, 3) — the tool centre point, m, arm base frame;
* ``yaw`` (T,) — the tool's rotation about the vertical, rad (continuous, unwrapped);
* ``tilt`` (T,) — optional, the angle between the tool axis and straight down, rad;
* ``grip`` (T,) — bool, the gripper holds (or the pusher is in contact with) the object.

The context (``ctx``) holds what the scene fixes: the object's part positions at the start, its
centre and facing vector, the target's centre and radius, the drawer's pull axis and travel, the
reference object of a relation. Directions are words of the scene camera's view — the data sets
define them in one third-person frame aligned with a human observer (KineVLA §4.1): the default
camera looks from +x back at the arm, so **front** (towards the viewer) is +x, **back** −x, **left**
−y and **right** +y (:data:`DIRECTIONS`; another camera yaw rotates them, :func:`directions_for`).

Every function is numpy only and raises ``ValueError`` naming the argument for malformed input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DIRECTIONS", "directions_for", "direction_word", "PathShape", "classify_path", "transport_path",
           "path_holds", "grasped_part", "object_final", "facing_final", "facing_holds", "extent_fraction",
           "extent_holds", "placement_holds", "distance_along", "distance_holds", "order_lift_then_move",
           "max_tilt", "tilt_holds", "approach_side", "PREDICATES", "evaluate", "EXTENTS", "TILTS",
           "PATH_SHAPES"]

# base-frame unit vectors (x, y) of the camera words for the default scene camera (looking along −x)
_BASE_WORDS = {"front": (1.0, 0.0), "back": (-1.0, 0.0), "left": (0.0, -1.0), "right": (0.0, 1.0)}


def directions_for(camera_yaw: float = math.pi) -> dict[str, np.ndarray]:
    """Direction words → base-frame unit vectors (x, y) for a camera whose optical axis has yaw
    ``camera_yaw`` (rad; π: looking along −x, the default scene camera). Compound words
    (``front-left``, ``back-right``, …) are the normalised sums."""
    if not math.isfinite(camera_yaw):
        raise ValueError(f"camera_yaw: expected a finite angle in rad, got {camera_yaw!r}")
    a = camera_yaw - math.pi
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, -s], [s, c]])
    out = {k: rot @ np.array(v) for k, v in _BASE_WORDS.items()}
    for a_, b_ in (("front", "left"), ("front", "right"), ("back", "left"), ("back", "right")):
        v = out[a_] + out[b_]
        out[f"{a_}-{b_}"] = v / np.linalg.norm(v)
    return out


DIRECTIONS = directions_for()
#: drawer extents (share of the travel) and their words
EXTENTS = {"slightly": 0.25, "halfway": 0.5, "completely": 0.9}
#: pour tilts (rad, largest tilt of the tool from straight down)
TILTS = {"gently": math.radians(90.0), "fully": math.radians(115.0)}
PATH_SHAPES = ("straight", "diagonal", "arc", "s_curve", "l_shape")


def _xy(a, name: str, min_rows: int = 1) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] < min_rows or not np.all(np.isfinite(a[:, :2])):
        raise ValueError(f"{name}: expected ≥ {min_rows} finite points of shape (N, 2 or 3), got {a.shape}")
    return a[:, :2]


def _vec2(v, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=float).reshape(-1)
    if v.size < 2 or not np.all(np.isfinite(v[:2])):
        raise ValueError(f"{name}: expected a finite (x, y) vector, got {v!r}")
    return v[:2]


def _word(w: str, dirs=None) -> np.ndarray:
    dirs = DIRECTIONS if dirs is None else dirs
    if w not in dirs:
        raise ValueError(f"direction {w!r}: expected one of {sorted(dirs)}")
    return dirs[w]


def direction_word(v, dirs=None, compound: bool = True) -> str:
    """The camera word closest to the direction of ``v`` (x, y): one of the 8 (or, ``compound=False``,
    4) words of :data:`DIRECTIONS`."""
    v = _vec2(v, "v")
    n = np.linalg.norm(v)
    if n < 1e-12:
        raise ValueError("v: a zero vector has no direction")
    dirs = DIRECTIONS if dirs is None else dirs
    names = [k for k in dirs if compound or "-" not in k]
    return max(names, key=lambda k: float(dirs[k] @ v) / n)


def _angle(u, v) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < 1e-12 or nv < 1e-12:
        return math.pi
    return math.acos(max(-1.0, min(1.0, float(u @ v) / (nu * nv))))


# ------------------------------------------------------------------------------------------ paths
@dataclass(frozen=True)
class PathShape:
    """A planar path's shape: ``shape`` one of straight | diagonal | arc | s_curve | l_shape;
    ``side`` of an arc's bulge (a direction word, or None); ``legs`` the direction words of an
    L's two legs in order; ``direction`` the chord's word; ``deviation`` the largest distance from
    the chord over the chord length."""

    shape: str
    direction: str
    deviation: float
    side: str | None = None
    legs: tuple[str, str] | None = None


def classify_path(xy, dirs=None, min_length: float = 0.03) -> PathShape:
    """Classify the planar path ``xy`` (N, 2|3), start to end.

    With chord c = end − start and d(s) the signed distance of each point from it (over |c|):

    * **l_shape** — the point farthest from the chord (≥ 0.2 off it) splits the path into two legs that
      are each straight (≤ 5 % of the leg off its own chord) and meet at 70–110°; ``legs`` name their
      directions in order;
    * **straight** — max |d| ≤ 0.08; **diagonal** if, in addition, the chord is more than 25° off
      every main direction word (front, back, left, right);
    * **arc** — one-signed bulge with max |d| ≥ 0.10 and no opposite lobe beyond 0.04;
    * **s_curve** — two opposite lobes, each ≥ 0.06.

    Paths shorter than ``min_length`` (m) raise ValueError (no shape to speak of)."""
    p = _xy(xy, "xy", min_rows=3)
    dirs = DIRECTIONS if dirs is None else dirs
    c = p[-1] - p[0]
    L = float(np.linalg.norm(c))
    if L < min_length:
        raise ValueError(f"xy: the path moves {L * 1e3:.1f} mm end to end, less than min_length "
                         f"{min_length * 1e3:.0f} mm — too short to have a shape")
    u = c / L
    rel = p - p[0]
    d = (u[0] * rel[:, 1] - u[1] * rel[:, 0]) / L            # signed (left of travel = +) over the length
    dmax, dmin = float(d.max()), float(d.min())
    word = direction_word(c, dirs)
    # an L: split at the farthest point, both legs straight and roughly perpendicular
    k = int(np.argmax(np.abs(d)))
    if 1 <= k <= len(p) - 2 and abs(d[k]) > 0.2:
        legs_ok, leg_dirs = True, []
        for a, b in ((0, k), (k, len(p) - 1)):
            seg = p[a:b + 1]
            cl = seg[-1] - seg[0]
            ll = float(np.linalg.norm(cl))
            if ll < 0.2 * L:
                legs_ok = False
                break
            ul = cl / ll
            dl = np.abs(ul[0] * (seg[:, 1] - seg[0, 1]) - ul[1] * (seg[:, 0] - seg[0, 0])) / ll
            legs_ok &= bool(dl.max() <= 0.05)
            leg_dirs.append(cl)
        if legs_ok and math.radians(70) <= _angle(leg_dirs[0], leg_dirs[1]) <= math.radians(110):
            return PathShape("l_shape", word, float(abs(d[k])), None,
                             (direction_word(leg_dirs[0], dirs, compound=False),
                              direction_word(leg_dirs[1], dirs, compound=False)))
    big = max(dmax, -dmin)
    if big <= 0.08:
        main = min(_angle(c, _word(w, dirs)) for w in ("front", "back", "left", "right"))
        return PathShape("diagonal" if main > math.radians(25) else "straight", word, big)
    if min(dmax, -dmin) >= 0.06:
        return PathShape("s_curve", word, big)
    if big >= 0.10 and min(dmax, -dmin) <= 0.04:
        k = int(np.argmax(np.abs(d)))
        bulge = (p[k] - p[0]) - u * float((p[k] - p[0]) @ u)
        return PathShape("arc", word, big, direction_word(bulge, dirs, compound=False))
    return PathShape("irregular", word, big)


def transport_path(traj: dict, lifted_only: bool = True, lift: float = 0.03) -> np.ndarray:
    """The tool's xy path while it holds the object (``grip``): from the moment it has lifted the
    object ``lift`` (m) above the grasp height to the last moment it is that high (``lifted_only``;
    else the whole grip interval). (N, 2)."""
    tcp, grip = _traj(traj, "tcp"), _grip(traj)
    on = np.flatnonzero(grip)
    if on.size < 3:
        raise ValueError("traj: the gripper holds for fewer than 3 samples — no transport to shape")
    a, b = int(on[0]), int(on[-1])
    if lifted_only:
        z0 = tcp[a, 2]
        up = np.flatnonzero(tcp[a:b + 1, 2] > z0 + lift)
        if up.size >= 3:
            a, b = a + int(up[0]), a + int(up[-1])
    return tcp[a:b + 1, :2]


def path_holds(xy, shape: str, *, side: str | None = None, legs=None, direction: str | None = None,
               dirs=None) -> bool:
    """Does the path ``xy`` have ``shape`` (and the ``side`` of its bulge, the ``legs`` of an L in
    order, the chord ``direction`` — each checked when given)? ``straight`` accepts a diagonal chord
    too (a straight path is straight whatever its direction)."""
    if shape not in PATH_SHAPES:
        raise ValueError(f"shape: expected one of {PATH_SHAPES}, got {shape!r}")
    try:
        got = classify_path(xy, dirs)
    except ValueError:
        return False
    if shape == "straight":
        ok = got.shape in ("straight", "diagonal")
    else:
        ok = got.shape == shape
    if ok and side is not None:
        ok = got.side == side
    if ok and legs is not None:
        ok = got.legs == tuple(legs)
    if ok and direction is not None:
        ok = _angle(_vec2(np.asarray(xy)[-1], "xy") - _vec2(np.asarray(xy)[0], "xy"),
                    _word(direction, dirs)) <= math.radians(30)
    return bool(ok)


# ----------------------------------------------------------------------------------- grasp, place
def _traj(traj: dict, key: str) -> np.ndarray:
    if not isinstance(traj, dict) or key not in traj:
        raise ValueError(f"traj: expected a dict with {key!r}")
    a = np.asarray(traj[key], dtype=float)
    if key == "tcp" and (a.ndim != 2 or a.shape[1] != 3):
        raise ValueError(f"traj['tcp']: expected (T, 3) positions, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"traj[{key!r}]: non-finite values")
    return a


def _grip(traj: dict) -> np.ndarray:
    g = np.asarray(traj.get("grip"), dtype=bool) if isinstance(traj, dict) and "grip" in traj else None
    if g is None or g.ndim != 1 or g.shape[0] != _traj(traj, "tcp").shape[0]:
        raise ValueError("traj['grip']: expected a (T,) bool array matching traj['tcp']")
    return g


def _grasp_release(traj: dict) -> tuple[int, int]:
    on = np.flatnonzero(_grip(traj))
    if on.size == 0:
        raise ValueError("traj: the gripper never holds")
    return int(on[0]), int(on[-1])


def grasped_part(traj: dict, parts: dict, tol: float = 0.02) -> str | None:
    """The part (``parts``: name → (x, y, z) at the start) nearest the tool when it first grips,
    if within ``tol`` (m); None otherwise (nothing was taken)."""
    if not parts:
        raise ValueError("parts: expected at least one named part position")
    try:
        a, _ = _grasp_release(traj)
    except ValueError:
        return None
    p = _traj(traj, "tcp")[a]
    best, dist = None, math.inf
    for name, xyz in parts.items():
        v = np.asarray(xyz, dtype=float).reshape(-1)
        if v.size != 3 or not np.all(np.isfinite(v)):
            raise ValueError(f"parts[{name!r}]: expected a finite (x, y, z), got {xyz!r}")
        d = float(np.linalg.norm(p - v))
        if d < dist:
            best, dist = name, d
    return best if dist <= tol else None


def _rot2(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def object_final(traj: dict, obj_xy) -> np.ndarray:
    """Where an object that moved rigidly with the tool while gripped ends (x, y): the grasp offset
    turned by the tool's yaw change, added to the tool's release position."""
    a, b = _grasp_release(traj)
    tcp, yaw = _traj(traj, "tcp"), _traj(traj, "yaw")
    off = _vec2(obj_xy, "obj_xy") - tcp[a, :2]
    return tcp[b, :2] + _rot2(float(yaw[b] - yaw[a])) @ off


def facing_final(traj: dict, facing_xy) -> np.ndarray:
    """The object's facing vector (x, y) at release: its start facing turned by the tool's yaw
    change while gripped (unit)."""
    a, b = _grasp_release(traj)
    yaw = _traj(traj, "yaw")
    f = _rot2(float(yaw[b] - yaw[a])) @ _vec2(facing_xy, "facing_xy")
    return f / max(np.linalg.norm(f), 1e-12)


def facing_holds(traj: dict, facing_xy, word: str, tol_deg: float = 30.0, dirs=None) -> bool:
    """The object ends facing the camera word ``word`` within ``tol_deg``."""
    try:
        f = facing_final(traj, facing_xy)
    except ValueError:
        return False
    return _angle(f, _word(word, dirs)) <= math.radians(tol_deg)


def placement_holds(obj_xy, target_xy, radius: float, relation: str, dirs=None) -> bool:
    """Is the object's footprint centre ``obj_xy`` where ``relation`` puts it on a round target
    (centre ``target_xy``, ``radius`` m)? ``center``: within 0.3·r of the centre; a direction word
    (``left``, ``front``, …): on the target (within 0.85·r), displaced towards that side by
    0.25–0.8·r and by less than 0.35·r across it."""
    o, t = _vec2(obj_xy, "obj_xy"), _vec2(target_xy, "target_xy")
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"radius: expected a positive radius in m, got {radius!r}")
    off = o - t
    if relation == "center":
        return bool(np.linalg.norm(off) <= 0.3 * radius)
    u = _word(relation, dirs)
    along = float(off @ u)
    across = abs(float(off[0] * u[1] - off[1] * u[0]))
    return bool(np.linalg.norm(off) <= 0.85 * radius and 0.25 * radius <= along <= 0.8 * radius
                and across <= 0.35 * radius)


def distance_along(obj_xy, ref_xy, word: str, dirs=None) -> float:
    """How far ``obj_xy`` is from ``ref_xy`` towards the camera word ``word`` (m, signed)."""
    return float((_vec2(obj_xy, "obj_xy") - _vec2(ref_xy, "ref_xy")) @ _word(word, dirs))


def distance_holds(obj_xy, ref_xy, word: str, distance: float, tol: float = 0.04, max_across: float = 0.06,
                   dirs=None) -> bool:
    """``obj_xy`` lies ``distance`` ± ``tol`` m from ``ref_xy`` towards ``word``, within ``max_across``
    m of that line."""
    u = _word(word, dirs)
    off = _vec2(obj_xy, "obj_xy") - _vec2(ref_xy, "ref_xy")
    across = abs(float(off[0] * u[1] - off[1] * u[0]))
    return bool(abs(float(off @ u) - distance) <= tol and across <= max_across)


def extent_fraction(traj: dict, axis, travel: float) -> float:
    """How far the tool pulled along ``axis`` (x, y[, z]) while gripping, as a share of ``travel`` (m)."""
    if not (travel > 0 and math.isfinite(travel)):
        raise ValueError(f"travel: expected a positive length in m, got {travel!r}")
    ax = np.asarray(axis, dtype=float).reshape(-1)
    if ax.size not in (2, 3) or not np.all(np.isfinite(ax)) or np.linalg.norm(ax) < 1e-12:
        raise ValueError(f"axis: expected a non-zero (x, y) or (x, y, z) direction, got {axis!r}")
    ax = ax / np.linalg.norm(ax)
    a, b = _grasp_release(traj)
    tcp = _traj(traj, "tcp")[:, :ax.size]
    return float(np.max((tcp[a:b + 1] - tcp[a]) @ ax)) / travel if b > a else 0.0


def extent_holds(traj: dict, axis, travel: float, target: float, tol: float = 0.1) -> bool:
    """The pull reached ``target`` (share of the travel) within ``tol``."""
    try:
        return abs(extent_fraction(traj, axis, travel) - target) <= tol
    except ValueError:
        return False


def order_lift_then_move(traj: dict, lift: float = 0.03, slack: float = 0.015) -> bool:
    """After the grasp the tool rises ``lift`` m before it has moved more than ``slack`` m sideways
    ("lift first, then move")."""
    try:
        a, b = _grasp_release(traj)
    except ValueError:
        return False
    tcp = _traj(traj, "tcp")
    seg = tcp[a:b + 1]
    up = np.flatnonzero(seg[:, 2] > seg[0, 2] + lift)
    if up.size == 0:
        return False
    k = int(up[0])
    return bool(np.max(np.linalg.norm(seg[:k + 1, :2] - seg[0, :2], axis=1)) <= slack)


def max_tilt(traj: dict) -> float:
    """The largest tilt of the tool from straight down (rad)."""
    return float(np.max(_traj(traj, "tilt")))


def tilt_holds(traj: dict, target: float, tol: float = math.radians(10.0)) -> bool:
    try:
        return abs(max_tilt(traj) - target) <= tol
    except ValueError:
        return False


def approach_side(traj: dict, target_xy, tilt_from: float = math.radians(30.0), dirs=None) -> str | None:
    """From which side of the target the tool pours: the camera word of (tool − target) when the
    tilt first exceeds ``tilt_from`` (None if it never does)."""
    tilt = _traj(traj, "tilt")
    k = np.flatnonzero(tilt > tilt_from)
    if k.size == 0:
        return None
    v = _traj(traj, "tcp")[int(k[0]), :2] - _vec2(target_xy, "target_xy")
    return direction_word(v, dirs, compound=False) if np.linalg.norm(v) > 1e-9 else None


# ------------------------------------------------------------------------------------- registry
def _p_path(traj, ctx, value):
    xy = transport_path(traj, lifted_only=ctx.get("lifted_path", True))
    if isinstance(value, dict):
        return path_holds(xy, value["shape"], side=value.get("side"), legs=value.get("legs"),
                          direction=value.get("direction"))
    return path_holds(xy, value)


def _p_part(traj, ctx, value):
    return grasped_part(traj, ctx["parts"], ctx.get("part_tol", 0.02)) == value


def _p_facing(traj, ctx, value):
    return facing_holds(traj, ctx["facing_xy"], value, ctx.get("facing_tol_deg", 30.0))


def _p_placement(traj, ctx, value):
    return placement_holds(object_final(traj, ctx["object_xy"]), ctx["target_xy"], ctx["target_radius"], value)


def _p_distance(traj, ctx, value):
    word, dist = ctx["distance_word"], ctx["distances"][value]
    return distance_holds(object_final(traj, ctx["object_xy"]), ctx["reference_xy"], word, dist,
                          ctx.get("distance_tol", 0.04), ctx.get("distance_across", 0.06))


def _p_extent(traj, ctx, value):
    return extent_holds(traj, ctx["pull_axis"], ctx["travel"], EXTENTS[value], ctx.get("extent_tol", 0.1))


def _p_order(traj, ctx, value):
    if value == "lift_then_move":
        return order_lift_then_move(traj)
    if value == "grasp_then_pull":
        try:
            a, b = _grasp_release(traj)
        except ValueError:
            return False
        return extent_fraction(traj, ctx["pull_axis"], ctx["travel"]) > 0.05 and b > a
    raise ValueError(f"order: unknown ordering {value!r}")


def _p_tilt(traj, ctx, value):
    return tilt_holds(traj, TILTS[value], ctx.get("tilt_tol", math.radians(10.0)))


def _p_side(traj, ctx, value):
    return approach_side(traj, ctx["target_xy"]) == value


def _p_grasp_pose(traj, ctx, value):
    """``vertical`` / ``horizontal``: the tool axis at the grasp points down (tilt < 30°) or
    sideways (60–120°)."""
    a, _ = _grasp_release(traj)
    t = float(_traj(traj, "tilt")[a])
    return t < math.radians(30) if value == "vertical" else math.radians(60) <= t <= math.radians(120)


#: attribute name → predicate(traj, ctx, value) -> bool
PREDICATES = {"path": _p_path, "part": _p_part, "facing": _p_facing, "placement": _p_placement,
              "distance": _p_distance, "extent": _p_extent, "order": _p_order, "tilt": _p_tilt,
              "side": _p_side, "grasp_pose": _p_grasp_pose}


def evaluate(attributes: dict, traj: dict, ctx: dict) -> dict[str, bool]:
    """Each attribute of ``attributes`` (name → requested value) decided on ``traj``; an attribute
    whose context is missing or whose trajectory cannot show it (no grasp, too short a path)
    counts as not holding. Unknown attribute names raise ValueError."""
    out = {}
    for name, value in attributes.items():
        fn = PREDICATES.get(name)
        if fn is None:
            raise ValueError(f"attribute {name!r}: no predicate; known: {sorted(PREDICATES)}")
        try:
            out[name] = bool(fn(traj, ctx, value))
        except (KeyError, ValueError):
            out[name] = False
    return out
