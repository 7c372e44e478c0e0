"""What a planner reasons about: the candidate objects in view, each with words a person would use.

A :class:`Candidate` has an ``id`` (what the frame shows drawn next to it and what a decision names),
its ``class`` (mug, bowl, plate, box, drawer, cylinder, ball), its 3D semantic keypoints in the arm's
base frame (m), its colour as a name (and RGB when known), its size (width, depth, height in m), the
direction its handle points, and position words — relative to the table, to the camera and to the
other objects — computed here, deterministically, as a perception stage would.

**The viewer convention.** Every left/right/front/behind word is as seen by a person standing where
the camera is, looking at the table: *left* and *right* are along the camera's image x axis laid flat
on the table (right = +x of the image), *front* / *near* is towards the camera and *behind* / *far*
away from it, along the camera's viewing direction laid flat. With the default synthetic camera
(looking from x = 1.05 m back at the arm) the viewer faces the arm, so the viewer's left is the arm's
right (−y). ``view = (lateral, depth)``: metres to the right of the camera's axis and metres away
from the camera along the table.

Adapters: :func:`from_world` (the simulated world's ground truth: ``World.keypoints()``, the object
poses, the scene spec's colours and sizes) and :func:`from_keypoints_message` (the ``objects`` of a
``perception/keypoints`` message: fields by name; an object lacking ``id``, ``class`` or
``keypoints`` is refused naming what it lacks). Both finish with :func:`enrich`, which computes the
words; only pydantic and numpy are needed (MuJoCo only for :func:`from_world`'s world).
"""

from __future__ import annotations

import colorsys
import math
from typing import Any, Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Candidate", "CandidateError", "from_world", "from_scene_world", "from_keypoints_message", "enrich",
           "color_name", "default_camera_pose", "describe", "KEYPOINT_PHRASES", "keypoint_phrase", "CLASS_WORDS",
           "MARGIN_M", "SIZE_MARGIN"]

#: a spatial word ("leftmost", "nearest the camera") is given only when the next object is this much further (m)
MARGIN_M = 0.03
#: a size word ("tallest") only when the next object is this fraction smaller
SIZE_MARGIN = 0.03
NEXT_TO_M = 0.16          # centres closer than this (and nearest neighbours) are "next to" each other
TABLE_SIDE_M = 0.10       # lateral offset from the camera's axis beyond which an object is on the left/right
TABLE_DEPTH_M = 0.08      # depth offset from the camera's target beyond which an object is at the front/back

#: class → the nouns people use for it (the planner's grammar and the eval's generator share this list)
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "mug": ("mug", "cup", "glass", "tumbler"),
    "bowl": ("bowl",),
    "plate": ("plate", "dish"),
    "box": ("box", "block", "cube", "crate"),
    "drawer": ("drawer", "cabinet"),
    "cylinder": ("cylinder", "can", "tube"),
    "ball": ("ball", "sphere"),
}

#: keypoint name → how to say it, per class ("{d}" is the object's description)
KEYPOINT_PHRASES: dict[str, dict[str, str]] = {
    "mug": {"K_i": "rim of {d} opposite its handle", "K_p1": "mouth centre of {d}", "K_p2": "base of {d}",
            "K_b": "handle of {d}"},
    "bowl": {"K_i": "rim of {d}", "K_p1": "mouth centre of {d}", "K_p2": "base of {d}"},
    "plate": {"K_i": "rim of {d}", "K_p1": "top of {d}", "K_p2": "base of {d}"},
    "box": {"K_i": "top front edge of {d}", "K_p1": "top of {d}", "K_p2": "base of {d}"},
    "drawer": {"K_b": "handle of {d}", "K_p1": "inside of {d}", "K_i": "front edge of {d}"},
}


class CandidateError(ValueError):
    """Input a candidate cannot be made from; the text names the object and the field."""


Vec3 = tuple[float, float, float]


class Candidate(BaseModel):
    """One object a decision may name (see the module docstring for the viewer convention)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=64, description="what the frame shows drawn next to it")
    cls: str = Field(alias="class", min_length=1, max_length=40, description="mug, bowl, plate, box, …")
    keypoints: dict[str, Vec3] = Field(description="semantic keypoints, base frame (m): K_i, K_p1, K_p2, K_b")
    position: Vec3 = Field(description="centre of its footprint on the table, base frame (m)")
    color: str | None = Field(None, description="colour name (red, orange, yellow, green, cyan, blue, purple, pink, "
                                                "brown, white, grey, black)")
    rgb: Vec3 | None = Field(None, description="colour, RGB in [0, 1]")
    size: Vec3 | None = Field(None, description="width, depth, height (m)")
    handle: str | None = Field(None, description="where its handle points, seen from the camera: left, right, "
                                                 "towards the camera, away from the camera")
    view: tuple[float, float] = Field((0.0, 0.0), description="(lateral: m right of the camera's axis, depth: m "
                                                              "away from the camera along the table)")
    position_words: list[str] = Field(default_factory=list, description="relative to the table, the camera and "
                                                                        "the other objects of its class")
    size_words: list[str] = Field(default_factory=list, description="relative to the other objects of its class")
    relations: list[str] = Field(default_factory=list, description="relative to the other objects nearby")
    pixel: tuple[float, float] | None = Field(None, description="where its id is drawn in the frame (u, v px)")

    def brief(self, coordinates: bool = False) -> dict:
        """What a VLM is shown of it: the fields by name (``class``), numbers rounded to mm; keypoints by
        name only unless ``coordinates`` (the words and ``view`` carry where it is)."""
        d = self.model_dump(by_alias=True, exclude={"pixel", "rgb"})
        if coordinates:
            d["keypoints"] = {k: [round(x, 3) for x in v] for k, v in self.keypoints.items()}
            d["position"] = [round(x, 3) for x in self.position]
        else:
            d["keypoints"] = sorted(self.keypoints)
            d.pop("position")
        d["view"] = [round(x, 3) for x in self.view]
        if self.size is not None:
            d["size"] = [round(x, 3) for x in self.size]
        return {k: v for k, v in d.items() if v not in (None, [], {})}


# ---------------------------------------------------------------------------------------- colours
def color_name(rgb) -> str:
    """A colour name for RGB in [0, 1] (HSV bins; low saturation → white/grey/black)."""
    r, g, b = (float(x) for x in list(rgb)[:3])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    if v < 0.2:
        return "black"
    if s < 0.2:
        return "white" if v > 0.8 else "grey" if v > 0.3 else "black"
    deg = h * 360.0
    if deg < 15 or deg >= 345:
        return "brown" if v < 0.5 else "red"
    if deg < 40:
        return "brown" if v < 0.55 else "orange"
    if deg < 70:
        return "yellow"
    if deg < 165:
        return "green"
    if deg < 195:
        return "cyan"
    if deg < 255:
        return "blue"
    if deg < 290:
        return "purple"
    return "pink"


COLOR_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white", "grey", "black")


# ----------------------------------------------------------------------------------------- camera
def default_camera_pose() -> np.ndarray:
    """T_base_cam of the default synthetic camera (the one the simulated world is rendered from)."""
    from kinebridge.drivers.camera.configs import SyntheticCameraConfig

    return SyntheticCameraConfig().extrinsics.pose()


def _view_axes(T_base_cam) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(camera position, right, forward), right/forward unit vectors laid flat on the table."""
    T = np.asarray(T_base_cam, float)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise CandidateError("camera_pose: expected a finite 4 × 4 T_base_cam")
    eye = T[:3, 3]
    fwd = np.array([T[0, 2], T[1, 2], 0.0])
    if np.linalg.norm(fwd) < 1e-6:              # looking straight down: forward is the image's −y (up in the image)
        fwd = np.array([-T[0, 1], -T[1, 1], 0.0])
    fwd /= np.linalg.norm(fwd)
    right = np.array([fwd[1], -fwd[0], 0.0])     # forward × up (z): the viewer's right
    return eye, right, fwd


# ------------------------------------------------------------------------------------------ words
def _description(c: Candidate) -> str:
    parts = [c.color] if c.color else []
    return "the " + " ".join(parts + [c.cls])


def describe(c: Candidate, with_id: bool = True) -> str:
    """"the green mug (mug1), leftmost, handle pointing right" — for questions and prompts."""
    rel = [w for w in c.position_words if "of the table" not in w]
    words = (rel or [w for w in c.position_words if w.endswith("of the table")])[:2]
    extra = ", ".join(words + ([f"handle pointing {c.handle}"] if c.handle else []))
    return _description(c) + (f" ({c.id})" if with_id else "") + (f", {extra}" if extra else "")


def keypoint_phrase(c: Candidate, name: str) -> str:
    """The keypoint ``name`` of ``c`` in words: "rim of the green mug (mug1) opposite its handle"."""
    phrase = KEYPOINT_PHRASES.get(c.cls, {}).get(name, f"{name} of {{d}}")
    return phrase.format(d=f"{_description(c)} ({c.id})")


def _ordinal(i: int) -> str:
    return {0: "first", 1: "second", 2: "third", 3: "fourth", 4: "fifth"}.get(i, f"{i + 1}th")


def _rank_words(values: np.ndarray, i: int, low: str, high: str, margin: float, second: tuple[str, str] | None = None,
                ) -> list[str]:
    """Superlative words for element ``i`` of ``values`` (and "second from …" when ``second`` is given)."""
    n = len(values)
    if n < 2:
        return []
    order = np.argsort(values, kind="stable")
    s = values[order]
    gaps = np.diff(s)
    pos = int(np.flatnonzero(order == i)[0])
    out = []
    if pos == 0 and gaps[0] >= margin:
        out.append(low)
    if pos == n - 1 and gaps[-1] >= margin:
        out.append(high)
    if second is not None and n >= 3 and 0 < pos < n - 1 and all(g >= margin for g in gaps):
        if n == 3:
            out.append("in the middle")
        if pos == 1:
            out.append(f"{_ordinal(1)} from the {second[0]}")
        if pos == n - 2:
            out.append(f"{_ordinal(1)} from the {second[1]}")
    return out


def enrich(cands: Iterable[Candidate], camera_pose=None) -> list[Candidate]:
    """``cands`` with ``view``, ``position_words``, ``size_words``, ``relations`` and ``handle``
    computed from their positions, keypoints and sizes, as seen from ``camera_pose`` (T_base_cam;
    default: the default synthetic camera). Deterministic: the same input gives the same words."""
    cands = list(cands)
    if not cands:
        return []
    ids = [c.id for c in cands]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise CandidateError(f"candidate ids must be unique, repeated: {dup}")
    eye, right, fwd = _view_axes(default_camera_pose() if camera_pose is None else camera_pose)
    T = np.asarray(default_camera_pose() if camera_pose is None else camera_pose, float)
    # the point the camera looks at on the table: the reference for "left of the table", "at the back"
    z_axis = T[:3, 2]
    t_hit = -eye[2] / z_axis[2] if z_axis[2] < -1e-6 else 0.6
    aim = eye + t_hit * z_axis
    aim_lat, aim_depth = float((aim - eye) @ right), float((aim - eye) @ fwd)
    P = np.array([c.position for c in cands], float)
    lat = (P - eye) @ right
    depth = (P - eye) @ fwd
    base_dist = np.hypot(P[:, 0], P[:, 1])
    out = []
    for i, c in enumerate(cands):
        words: list[str] = []
        dl, dd = lat[i] - aim_lat, depth[i] - aim_depth
        side = "on the left of the table" if dl < -TABLE_SIDE_M else "on the right of the table" \
            if dl > TABLE_SIDE_M else "in the middle of the table"
        words.append(side)
        if dd < -TABLE_DEPTH_M:
            words.append("at the front of the table (near the camera)")
        elif dd > TABLE_DEPTH_M:
            words.append("at the back of the table (far from the camera)")
        same = [j for j, o in enumerate(cands) if o.cls == c.cls]
        k = same.index(i)
        if len(same) >= 2:
            words += _rank_words(lat[same], k, "leftmost", "rightmost", MARGIN_M, ("left", "right"))
            words += _rank_words(depth[same], k, "nearest the camera", "farthest from the camera", MARGIN_M)
            words += _rank_words(base_dist[same], k, "nearest the robot", "farthest from the robot", MARGIN_M)
        size_words: list[str] = []
        if c.size is not None and len(same) >= 2 and all(cands[j].size is not None for j in same):
            S = np.array([cands[j].size for j in same], float)
            for vals, low, high in ((S[:, 2], "shortest", "tallest"), (np.maximum(S[:, 0], S[:, 1]), "narrowest", "widest"),
                                    (S[:, 0] * S[:, 1] * S[:, 2], "smallest", "largest")):
                rel = np.log(np.maximum(vals, 1e-9))           # relative margins: a gap in log size
                size_words += _rank_words(rel, k, low, high, math.log1p(SIZE_MARGIN))
        relations = []
        others = sorted((j for j in range(len(cands)) if j != i), key=lambda j: float(np.hypot(*(P[j, :2] - P[i, :2]))))
        for rank, j in enumerate(others[:3]):
            d = float(np.hypot(*(P[j, :2] - P[i, :2])))
            ddl, ddd = lat[i] - lat[j], depth[i] - depth[j]
            if abs(ddl) >= abs(ddd):
                rel = "right of" if ddl > 0 else "left of"
            else:
                rel = "behind" if ddd > 0 else "in front of"
            relations.append(f"{rel} {cands[j].id}")
            if rank == 0 and d < NEXT_TO_M:
                relations.append(f"next to {cands[j].id}")
        handle = c.handle
        if handle is None and "K_b" in c.keypoints and c.cls == "mug":
            hb = np.asarray(c.keypoints["K_b"]) - np.asarray(c.keypoints.get("K_p1", c.position))
            a, b = float(hb @ right), float(hb @ fwd)
            if math.hypot(a, b) > 1e-4:
                handle = ("right" if a > 0 else "left") if abs(a) >= abs(b) else \
                    ("away from the camera" if b > 0 else "towards the camera")
        out.append(c.model_copy(update={"view": (round(float(lat[i]), 4), round(float(depth[i]), 4)),
                                        "position_words": words, "size_words": size_words, "relations": relations,
                                        "handle": handle}))
    return out


# --------------------------------------------------------------------------------------- adapters
def _class_of_spec(o) -> str:
    if o.kind == "distractor":
        return {"box": "box", "cylinder": "cylinder", "sphere": "ball"}[o.shape]
    return o.kind


def _size_of_spec(o) -> Vec3 | None:
    k = o.kind
    if k == "mug":
        return (2 * o.radius, 2 * o.radius, o.height)
    if k == "bowl":
        return (2 * o.radius, 2 * o.radius, o.height)
    if k == "plate":
        return (2 * o.radius, 2 * o.radius, o.thickness + o.rim)
    if k in ("box", "drawer", "distractor"):
        return tuple(float(x) for x in o.size)
    return None


def from_world(world, camera_pose=None, *, include: Iterable[str] | None = None) -> list[Candidate]:
    """Candidates from the simulated world's ground truth: keypoints (``World.keypoints()``) and poses
    as simulated now, colours and sizes from the scene spec; position words from ``camera_pose``
    (default: the default synthetic camera). ``include``: only these object names (default: every
    object on the table; the held mug is never a candidate)."""
    kps = world.keypoints()
    poses = world.object_poses()
    return from_scene_world(world.scene, kps, poses, camera_pose, include=include)


def from_scene_world(scene, keypoints: dict, poses: dict, camera_pose=None, *,
                     include: Iterable[str] | None = None) -> list[Candidate]:
    """:func:`from_world` on its parts: a :class:`~kinebridge.drivers.world.spec.SceneSpec`, the world's
    keypoints (name → {K: xyz}) and object poses (name → 4 × 4)."""
    want = set(include) if include is not None else None
    cands = []
    for o in scene.objects:
        if want is not None and o.name not in want:
            continue
        T = np.asarray(poses[o.name], float)
        kp = {k: tuple(float(x) for x in np.asarray(v, float)[:3]) for k, v in keypoints.get(o.name, {}).items()}
        size = _size_of_spec(o)
        cands.append(Candidate(id=o.name, cls=_class_of_spec(o), keypoints=kp,
                               position=tuple(float(x) for x in T[:3, 3]), color=color_name(o.color),
                               rgb=tuple(float(x) for x in o.color[:3]),
                               size=None if size is None else tuple(float(x) for x in size)))
    return enrich(cands, camera_pose)


def _vec3(v, where: str) -> Vec3:
    try:
        a = np.asarray(v, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise CandidateError(f"{where}: expected 3 numbers (x, y, z in m), got {v!r}") from None
    if a.size != 3 or not np.all(np.isfinite(a)):
        raise CandidateError(f"{where}: expected 3 finite numbers (x, y, z in m), got {v!r}")
    return tuple(float(x) for x in a)


_CLASS_ALIASES = {w: cls for cls, words in CLASS_WORDS.items() for w in words} | {"sphere": "ball", "distractor": "box"}


def _objects_of(msg) -> list:
    if isinstance(msg, (list, tuple)):
        return list(msg)
    body = getattr(msg, "body", None)
    if body is not None and hasattr(body, "objects"):
        return list(body.objects)
    if hasattr(msg, "objects"):
        return list(msg.objects)
    header = getattr(msg, "header", None)
    if isinstance(header, dict) and "objects" in header:
        return list(header["objects"])
    if isinstance(msg, dict) and "objects" in msg:
        return list(msg["objects"])
    raise CandidateError(f"from_keypoints_message: expected a perception/keypoints message (or its objects), got "
                         f"{type(msg).__name__}")


def from_keypoints_message(msg, camera_pose=None) -> list[Candidate]:
    """Candidates from a ``perception/keypoints`` message (its ``objects`` dicts), fields by name:

    * required: ``id`` (or ``name``), ``class`` (or ``kind``/``label``: mug, cup, bowl, plate, box, …),
      ``keypoints`` ({name: [x, y, z]}, base frame, m; at least one);
    * optional: ``position`` ([x, y, z]; default: ``K_p2``, else the keypoints' mean on the table),
      ``color`` (a name, or RGB in [0, 1]), ``size`` ([width, depth, height] m), ``handle`` (left,
      right, towards/away from the camera; default: from ``K_b``), ``pixel`` ([u, v]).

    An object lacking a required field (or with a malformed one) is refused with a
    :class:`CandidateError` naming its index, its id and the field; unknown fields are ignored
    (perception may send scores, boxes, …)."""
    objects = _objects_of(msg)
    cands = []
    for n, o in enumerate(objects):
        if not isinstance(o, dict):
            raise CandidateError(f"objects[{n}]: expected a dict of fields, got {type(o).__name__}")
        oid = o.get("id", o.get("name"))
        where = f"objects[{n}]" + (f" ({oid!r})" if oid is not None else "")
        missing = [f for f, keys in (("id", ("id", "name")), ("class", ("class", "kind", "label")),
                                     ("keypoints", ("keypoints",))) if not any(o.get(k) is not None for k in keys)]
        if missing:
            raise CandidateError(f"{where}: lacks {', '.join(missing)} (a candidate needs id, class and keypoints; "
                                 f"it has {sorted(o)})")
        if not isinstance(oid, str) or not oid:
            raise CandidateError(f"{where}: id must be a non-empty string, got {oid!r}")
        raw_cls = o.get("class", o.get("kind", o.get("label")))
        if not isinstance(raw_cls, str) or not raw_cls:
            raise CandidateError(f"{where}: class must be a non-empty string, got {raw_cls!r}")
        cls = _CLASS_ALIASES.get(raw_cls.lower(), raw_cls.lower())
        kps = o["keypoints"]
        if not isinstance(kps, dict) or not kps:
            raise CandidateError(f"{where}: keypoints must be a non-empty {{name: [x, y, z]}}, got {kps!r}")
        kp = {str(k): _vec3(v, f"{where}.keypoints.{k}") for k, v in kps.items()}
        if o.get("position") is not None:
            pos = _vec3(o["position"], f"{where}.position")
        elif "K_p2" in kp:
            pos = kp["K_p2"]
        else:
            m = np.mean(np.array(list(kp.values())), axis=0)
            pos = (float(m[0]), float(m[1]), 0.0)
        color, rgb = o.get("color", o.get("colour")), None
        if color is not None and not isinstance(color, str):
            try:
                a = np.asarray(color, float).reshape(-1)[:3]
            except (TypeError, ValueError):
                raise CandidateError(f"{where}: color must be a name or RGB in [0, 1], got {color!r}") from None
            if a.size != 3 or not np.all((a >= 0) & (a <= 1)):
                raise CandidateError(f"{where}: color must be a name or RGB in [0, 1], got {color!r}")
            rgb = tuple(float(x) for x in a)
            color = color_name(a)
        size = o.get("size")
        if size is not None:
            if isinstance(size, (int, float)):
                raise CandidateError(f"{where}: size must be [width, depth, height] (m), got a single number")
            size = _vec3(size, f"{where}.size")
        pixel = o.get("pixel", o.get("uv"))
        try:
            cands.append(Candidate(id=oid, cls=cls, keypoints=kp, position=pos,
                                   color=color.lower() if isinstance(color, str) else None, rgb=rgb, size=size,
                                   handle=o.get("handle"), pixel=None if pixel is None else tuple(pixel)[:2]))
        except ValidationError as exc:
            e = exc.errors()[0]
            raise CandidateError(f"{where}: {'.'.join(map(str, e['loc']))}: {e['msg']}") from None
    return enrich(cands, camera_pose)


def to_keypoints_objects(cands: Iterable[Candidate]) -> list[dict[str, Any]]:
    """Candidates as ``perception/keypoints`` objects (what :func:`from_keypoints_message` reads back)."""
    out = []
    for c in cands:
        d = {"id": c.id, "class": c.cls, "keypoints": {k: list(v) for k, v in c.keypoints.items()},
             "position": list(c.position)}
        if c.rgb is not None:
            d["color"] = list(c.rgb)
        elif c.color:
            d["color"] = c.color
        if c.size is not None:
            d["size"] = list(c.size)
        out.append(d)
    return out
