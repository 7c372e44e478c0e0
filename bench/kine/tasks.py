"""The Kine data set's tasks: scenes, kinematic attributes, motion plans, language and goal checks.

Five tabletop tasks on the simulated RM75, after KineVLA's Kine-LIBERO / Kine-Realman tables (appendix
Tables 5–7). In each, the **goal** is fixed by the scene (what the coarse instruction says) while the
**kinematic attributes** vary (what only the kinematics-rich instruction says):

==========  ====================================  ======================================================
task        goal (coarse instruction)             kinematic attributes (values)
==========  ====================================  ======================================================
place       put the bowl on the plate             part (left/right/front/back edge), path (straight,
                                                  arc to either side, S-curve), placement (centre,
                                                  left/right/front/back side of the plate)
facing      put the mug on the plate              part (rim, handle), facing of the handle (left, right,
                                                  front, back), path (straight, arc)
push        push the plate to the <side> of the   path (diagonal, lateral-then-depth L, depth-then-lateral
            box                                   L, arc), distance (close, far)
drawer      open the drawer                       part (handle centre, left end, right end), grasp pose
                                                  (vertical, horizontal), extent (slightly, halfway,
                                                  completely), order (grasp then pull)
pour        pour the water into the bowl          side (left, right), tilt (gently, fully), path
                                                  (straight, arc)
==========  ====================================  ======================================================

Directions are words of the scene camera's view (:data:`kinebridge.kernels.kine_predicates.DIRECTIONS`:
front = towards the camera = +x, left = −y). The world has no actuated gripper: a grasp is a kinematic
attachment made only when the tool centre point reaches the named part (:mod:`.execute`), a push keeps the
plate under the pusher, a pull drags the drawer's slide joint; the pour is the world's water physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kinebridge.kernels import kine_predicates as kp
from kinebridge.kernels import rm75
from kinebridge.bench.kine.plan import T_FLANGE_TCP, PlanError, SegmentPlanner, tool_down

__all__ = ["TASKS", "Layout", "Segment", "EpisodePlan", "make_layout", "sample_attributes", "plan_episode",
           "language", "predicate_context", "predicate_traj", "attribute_space", "START_TCP", "start_joints"]

TASKS = ("place", "facing", "push", "drawer", "pour")
START_TCP = np.array([0.27, 0.0, 0.22])       # where every episode starts: tool down above the table's middle
D = kp.DIRECTIONS


def _polar(r, phi) -> np.ndarray:
    return np.array([r * math.cos(phi), r * math.sin(phi)])


def _yaw_of(v) -> float:
    return math.atan2(float(v[1]), float(v[0]))


def _fold(yaw: float) -> float:
    """A two-finger grasp is the same turned by π: the yaw in (−π/2, π/2]."""
    y = (yaw + math.pi / 2) % math.pi - math.pi / 2
    return y if y > -math.pi / 2 + 1e-9 else y + math.pi


def T_tcp(p, yaw: float, R: np.ndarray | None = None) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = tool_down(yaw) if R is None else R
    T[:3, 3] = p
    return T


_START_Q: dict[float, np.ndarray] = {}


def start_joints(d7: float = rm75.D7_B) -> np.ndarray:
    if d7 not in _START_Q:
        r = rm75.ik(T_tcp(START_TCP, 0.0) @ np.linalg.inv(T_FLANGE_TCP), rm75.Q_HOME, d7)
        if not r.ok:       # pragma: no cover - well inside the workspace
            raise RuntimeError("the start posture is unreachable")
        _START_Q[d7] = r.q
    return _START_Q[d7].copy()


@dataclass
class Layout:
    """A task's scene: the world spec and the geometry the plan, the language and the predicates use
    (plain JSON values in ``info``)."""

    task: str
    scene: object                # SceneSpec
    info: dict


@dataclass
class Segment:
    name: str
    q: np.ndarray                # (N, 7) at dt, first row = where the previous segment ended
    grip: bool                   # the gripper command during this segment
    event: str | None = None     # "grasp" | "release" at this segment's first sample


@dataclass
class EpisodePlan:
    segments: list
    attach: dict = field(default_factory=dict)   # how a grasp attaches (execute.py): kind, object, part point

    def joints(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """Concatenated joints (N, 7), gripper command (N,) and events [(sample, name)]."""
        qs, gs, ev, n = [], [], [], 0
        for s in self.segments:
            q = s.q if not qs else s.q[1:]
            if s.event:
                ev.append((n, s.event))
            qs.append(q)
            gs.append(np.full(len(q), s.grip))
            n += len(q)
        return np.concatenate(qs), np.concatenate(gs), ev


# ======================================================================================== scenes
def _scene(seed: int, tool: str, objects: list, image_size, particles: int = 0, target: str | None = None):
    from kinebridge.drivers.world import ArmSpec, SceneSpec
    base = SceneSpec.random(seed, n_mugs=0, n_distractors=0, tool=tool, particles=particles)
    arm = ArmSpec.from_model(q0=tuple(map(float, start_joints())))
    w, h = image_size
    return base.model_copy(update={"objects": tuple(objects), "target": target, "arm": arm,
                                   "render_size": (max(int(w), 64), max(int(h), 64))})


def _distractor(rng, taken):
    from kinebridge.drivers.world import DistractorSpec, Placement
    for _ in range(50):
        p = _polar(rng.uniform(0.52, 0.62), rng.uniform(-1.0, 1.0))
        if all(np.linalg.norm(p - np.asarray(t[:2])) > t[2] + 0.06 for t in taken):
            sz = rng.uniform(0.04, 0.06, 3)
            return DistractorSpec(name="box_far", shape="box", size=tuple(map(float, sz)),
                                  pose=Placement(x=float(p[0]), y=float(p[1]), yaw_deg=float(rng.uniform(-90, 90))),
                                  color=tuple(map(float, np.r_[rng.uniform(0.2, 0.9, 3), 1.0])))
    return None


def _color(rng, lo=0.25, hi=0.95):
    return tuple(map(float, np.r_[rng.uniform(lo, hi, 3), 1.0]))


def layout_place(rng, seed, image_size) -> Layout:
    from kinebridge.drivers.world import BowlSpec, Placement, PlateSpec
    for _ in range(100):
        rb = float(rng.uniform(0.055, 0.066))
        hb = float(rng.uniform(0.045, 0.058))
        rp = float(rng.uniform(0.10, 0.115))
        sgn = 1.0 if rng.uniform() < 0.5 else -1.0
        pb = _polar(rng.uniform(0.27, 0.33), sgn * rng.uniform(0.35, 0.7))
        pp = _polar(rng.uniform(0.29, 0.34), -sgn * rng.uniform(0.35, 0.7))
        if np.linalg.norm(pb - pp) > rb + rp + 0.06:
            break
    bowl = BowlSpec(name="bowl", pose=Placement(x=float(pb[0]), y=float(pb[1]), yaw_deg=float(rng.uniform(-180, 180))),
                    radius=rb, base_radius=rb * float(rng.uniform(0.58, 0.66)), height=hb, wall=0.005,
                    color=_color(rng), mass=0.2)
    plate = PlateSpec(name="plate", pose=Placement(x=float(pp[0]), y=float(pp[1])), radius=rp,
                      color=_color(rng, 0.7, 1.0), mass=0.4)
    objs = [bowl, plate]
    far = _distractor(rng, [(*pb, rb), (*pp, rp)])
    if far is not None:
        objs.append(far)
    parts = {f"{w}_edge": [*(pb + (rb - 0.0025) * D[w]), hb] for w in ("left", "right", "front", "back")}
    info = {"object": "bowl", "object_xy": pb.tolist(), "object_height": hb, "object_radius": rb,
            "object_base_radius": bowl.base_radius, "target": "plate", "target_xy": pp.tolist(), "target_radius": rp,
            "target_top": plate.thickness, "parts": parts}
    return Layout("place", _scene(seed, "gripper", objs, image_size), info)


def layout_facing(rng, seed, image_size) -> Layout:
    from kinebridge.drivers.world.spec import HandleSpec, MugSpec, Placement, PlateSpec
    for _ in range(100):
        rm = float(rng.uniform(0.036, 0.042))
        hm = float(rng.uniform(0.08, 0.1))
        reach = float(rng.uniform(0.024, 0.03))
        rp = float(rng.uniform(0.10, 0.115))
        sgn = 1.0 if rng.uniform() < 0.5 else -1.0
        pm = _polar(rng.uniform(0.27, 0.33), sgn * rng.uniform(0.35, 0.7))
        pp = _polar(rng.uniform(0.29, 0.34), -sgn * rng.uniform(0.35, 0.7))
        if np.linalg.norm(pm - pp) > rm + reach + rp + 0.06:
            break
    handle_yaw = float(rng.uniform(-math.pi, math.pi))
    mug = MugSpec(name="mug", pose=Placement(x=float(pm[0]), y=float(pm[1]), yaw_deg=math.degrees(handle_yaw)),
                  radius=rm, height=hm, wall=0.004, bottom=0.008, color=_color(rng), mass=0.2,
                  handle=HandleSpec(shape=str(rng.choice(["round", "square", "ear"])), reach=reach, span=0.6,
                                    thickness=0.005))
    plate = PlateSpec(name="plate", pose=Placement(x=float(pp[0]), y=float(pp[1])), radius=rp,
                      color=_color(rng, 0.7, 1.0), mass=0.4)
    objs = [mug, plate]
    far = _distractor(rng, [(*pm, rm + reach), (*pp, rp)])
    if far is not None:
        objs.append(far)
    hd = np.array([math.cos(handle_yaw), math.sin(handle_yaw)])
    parts = {"rim": [*(pm - (rm - 0.002) * hd), hm], "handle": [*(pm + (rm + reach) * hd), 0.6 * hm]}
    info = {"object": "mug", "object_xy": pm.tolist(), "object_height": hm, "object_radius": rm, "handle_reach": reach,
            "facing_xy": hd.tolist(), "target": "plate", "target_xy": pp.tolist(), "target_radius": rp,
            "target_top": plate.thickness, "parts": parts}
    return Layout("facing", _scene(seed, "gripper", objs, image_size), info)


def _reach_ok(p, lo=0.25, hi=0.40) -> bool:
    r = float(np.hypot(p[0], p[1]))
    return lo <= r <= hi and abs(math.atan2(p[1], p[0])) < 1.25


def layout_push(rng, seed, image_size) -> Layout:
    from kinebridge.drivers.world import BoxSpec, Placement, PlateSpec
    for _ in range(2000):
        word = str(rng.choice(["front", "left", "right"]))
        s = float(rng.uniform(0.05, 0.065))
        rp = float(rng.uniform(0.085, 0.095))
        pb = _polar(rng.uniform(0.16, 0.42), rng.uniform(-1.1, 1.1))
        close = rp + s / 2 + 0.035
        far = close + 0.08
        t_close, t_far = pb + close * D[word], pb + far * D[word]
        mid = 0.5 * (t_close + t_far)
        d = np.array([rng.uniform(0.08, 0.13) * rng.choice([-1, 1]), rng.uniform(0.08, 0.13) * rng.choice([-1, 1])])
        p0 = mid + d
        corners = [t_close + np.array([0, d[1]]), t_close + np.array([d[0], 0]), t_far + np.array([0, d[1]]),
                   t_far + np.array([d[0], 0])]
        pts = [p0, t_close, t_far, *corners]
        if not all(_reach_ok(p) for p in pts):
            continue
        if np.linalg.norm(p0 - pb) < rp + s + 0.05 or any(np.linalg.norm(c - pb) < rp + s / 2 + 0.03 for c in corners):
            continue
        # the straight pushes must not sweep the plate over the box
        def clear(a, b):
            for u in np.linspace(0, 1, 21):
                if np.linalg.norm(a + u * (b - a) - pb) < rp + s * 0.75 + 0.02:
                    return False
            return True
        if not (clear(p0, t_close) and clear(p0, t_far)):
            continue
        break
    else:  # pragma: no cover
        raise PlanError("push: no reachable layout")
    box = BoxSpec(name="box", pose=Placement(x=float(pb[0]), y=float(pb[1]), yaw_deg=math.degrees(_yaw_of(D[word]))),
                  size=(s, s, s), color=_color(rng), mass=0.5)
    plate = PlateSpec(name="plate", pose=Placement(x=float(p0[0]), y=float(p0[1])), radius=rp, color=_color(rng, 0.7, 1.0),
                      mass=0.3)
    objs = [plate, box]
    far_obj = _distractor(rng, [(*pb, s), (*p0, rp), (*t_far, rp)])
    if far_obj is not None:
        objs.append(far_obj)
    info = {"object": "plate", "object_xy": p0.tolist(), "object_radius": rp, "target_top": plate.thickness,
            "reference": "box", "reference_xy": pb.tolist(), "reference_size": s, "distance_word": word,
            "distances": {"close": close, "far": far}, "targets": {"close": t_close.tolist(), "far": t_far.tolist()},
            "parts": {"center": [*p0, plate.thickness]}}
    return Layout("push", _scene(seed, "gripper", objs, image_size), info)


def layout_drawer(rng, seed, image_size) -> Layout:
    from kinebridge.drivers.world import DrawerSpec, Placement
    X, Y, Z = 0.22, float(rng.uniform(0.26, 0.3)), float(rng.uniform(0.13, 0.15))
    travel = float(rng.uniform(0.12, 0.14))
    phi = float(rng.choice([-1, 1]) * rng.uniform(0.25, 0.75))
    handle_r = float(rng.uniform(0.34, 0.37))
    dt_, t, gap = 0.008, 0.012, 0.003
    rc = handle_r + X / 2 + dt_ + 0.025
    pc = _polar(rc, phi)
    drawer = DrawerSpec(name="drawer", pose=Placement(x=float(pc[0]), y=float(pc[1]), yaw_deg=math.degrees(phi)),
                        size=(X, Y, Z), travel=travel, opening=0.0, color=_color(rng, 0.35, 0.85))
    dz = Z - 2 * t - 2 * gap
    hz = t + gap + 0.55 * dz
    radial = np.array([math.cos(phi), math.sin(phi)])
    along = np.array([-math.sin(phi), math.cos(phi)])             # the handle bar's direction
    hc = pc - (X / 2 + dt_ + 0.025) * radial
    left_sign = 1.0 if float(along @ D["left"]) > 0 else -1.0
    parts = {"handle_center": [*hc, hz], "handle_left_end": [*(hc + left_sign * 0.035 * along), hz],
             "handle_right_end": [*(hc - left_sign * 0.035 * along), hz]}
    objs = [drawer]
    far = _distractor(rng, [(*pc, 0.25)])
    if far is not None:
        objs.append(far)
    info = {"object": "drawer", "pull_axis": (-radial).tolist(), "travel": travel, "parts": parts, "handle_z": hz,
            "radial": radial.tolist()}
    return Layout("drawer", _scene(seed, "gripper", objs, image_size), info)


def layout_pour(rng, seed, image_size, particles: int = 60) -> Layout:
    from kinebridge.drivers.world import BowlSpec, Placement
    rb = float(rng.uniform(0.075, 0.085))
    hb = float(rng.uniform(0.05, 0.06))
    pb = _polar(rng.uniform(0.26, 0.31), rng.uniform(-0.45, 0.45))
    bowl = BowlSpec(name="bowl", pose=Placement(x=float(pb[0]), y=float(pb[1])), radius=rb, base_radius=0.6 * rb,
                    height=hb, wall=0.005, color=_color(rng), mass=0.6)
    objs = [bowl]
    far = _distractor(rng, [(*pb, rb + 0.1)])
    if far is not None:
        objs.append(far)
    from kinebridge.drivers.world.tool import held_mug_frame
    scene = _scene(seed, "mug", objs, image_size, particles=particles, target="bowl")
    m = scene.tool.mug
    T_fm = held_mug_frame(scene.tool)
    ki = (T_fm @ np.array([-(m.radius - 0.5 * m.wall), 0.0, m.height, 1.0]))[:3]
    info = {"target": "bowl", "target_xy": pb.tolist(), "target_radius": rb, "target_height": hb,
            "tool": {"T_flange_mug": T_fm.tolist(), "K_i": ki.tolist(), "mug": {"height": m.height}}}
    return Layout("pour", scene, info)


LAYOUTS = {"place": layout_place, "facing": layout_facing, "push": layout_push, "drawer": layout_drawer,
           "pour": layout_pour}


def make_layout(task: str, rng, seed: int, image_size=(128, 96), particles: int = 60) -> Layout:
    if task not in LAYOUTS:
        raise ValueError(f"task {task!r}: expected one of {TASKS}")
    if task == "pour":
        return layout_pour(rng, seed, image_size, particles)
    return LAYOUTS[task](rng, seed, image_size)


# ==================================================================================== attributes
def attribute_space(layout: Layout) -> dict[str, list]:
    """Every value each kinematic attribute may take in this layout."""
    t, info = layout.task, layout.info
    if t == "place":
        return {"part": ["left_edge", "right_edge", "front_edge", "back_edge"],
                "path": ["straight", "arc_a", "arc_b", "s_curve"],
                "placement": ["center", "left", "right", "front", "back"]}
    if t == "facing":
        h0 = np.asarray(info["facing_xy"])
        ok = [w for w in ("left", "right", "front", "back") if kp._angle(h0, D[w]) <= math.radians(135)]
        return {"part": ["rim", "handle"], "facing": ok, "path": ["straight", "arc_a", "arc_b"]}
    if t == "push":
        return {"path": ["diagonal", "lateral_first", "depth_first", "arc_a", "arc_b"], "distance": ["close", "far"]}
    if t == "drawer":
        return {"part": ["handle_center", "handle_left_end", "handle_right_end"], "grasp_pose": ["vertical", "horizontal"],
                "extent": ["slightly", "halfway", "completely"], "order": ["grasp_then_pull"]}
    if t == "pour":
        return {"side": ["left", "right"], "tilt": ["gently", "fully"], "path": ["straight", "arc_a", "arc_b"]}
    raise ValueError(t)


#: the attribute values of the coarse split (goals only: the plainest way to reach the goal)
def default_attributes(layout: Layout, rng) -> dict:
    t, info = layout.task, layout.info
    if t == "place":
        # the edge nearest the start, a straight path, the plate's centre
        return {"part": "back_edge", "path": "straight", "placement": "center"}
    if t == "facing":
        return {"part": "rim", "facing": None, "path": "straight"}
    if t == "push":
        return {"path": "diagonal", "distance": "mid"}
    if t == "drawer":
        return {"part": "handle_center", "grasp_pose": "vertical", "extent": "completely", "order": "grasp_then_pull"}
    if t == "pour":
        side = "right" if info["target_xy"][1] >= 0 else "left"
        return {"side": side, "tilt": "fully", "path": "straight"}
    raise ValueError(t)


def sample_attributes(layout: Layout, rng, exclude=()) -> dict:
    """One combination of kinematic attributes, different from every one in ``exclude``."""
    space = attribute_space(layout)
    seen = {tuple(sorted(e.items())) for e in exclude}
    for _ in range(200):
        a = {k: str(rng.choice(v)) for k, v in space.items()}
        if tuple(sorted(a.items())) not in seen:
            return a
    return a


# =========================================================================================== plans
def _path_spec(path: str, a_xy, b_xy) -> dict:
    """arc_a / arc_b bulge to the left / right of travel; returned with the bulge's camera word."""
    if path in ("straight", "diagonal"):
        return {"shape": "straight"}
    if path.startswith("arc"):
        return {"shape": "arc", "side": "left" if path == "arc_a" else "right"}
    if path == "s_curve":
        return {"shape": "s_curve", "side": "left"}
    raise ValueError(path)


def bulge_word(path: str, a_xy, b_xy) -> str | None:
    if not path.startswith("arc"):
        return None
    c = np.asarray(b_xy, float) - np.asarray(a_xy, float)
    n = np.array([-c[1], c[0]])
    n = n if path == "arc_a" else -n
    return kp.direction_word(n, compound=False)


def _speed(rng) -> float:
    return float(rng.uniform(0.85, 1.15))


def plan_episode(layout: Layout, attrs: dict, planner: SegmentPlanner, rng) -> EpisodePlan:
    """The joint plan of one episode (PlanError if some segment is out of reach)."""
    return _PLANS[layout.task](layout, attrs, planner, rng)


def _pick_and_place(layout, attrs, planner, rng, *, part_xyz, grasp_yaw, place_obj_xy, turn: float, depth: float,
                    lift: float = 0.07):
    info = layout.info
    sp = _speed(rng)
    q = start_joints(planner.d7)
    segs = []
    p_g = np.array(part_xyz, float) - [0.0, 0.0, depth]
    above = p_g + [0.0, 0.0, lift]
    seg = planner.move(q, T_tcp(above, grasp_yaw), "carry", _path_spec("straight", None, None), speed_scale=sp)
    segs.append(Segment("approach", seg, False))
    seg = planner.move(seg[-1], T_tcp(p_g, grasp_yaw), "slide", speed_scale=sp)
    segs.append(Segment("descend", seg, False))
    segs.append(Segment("grasp", planner.hold(seg[-1], 0.3), True, "grasp"))
    seg = planner.move(segs[-1].q[-1], T_tcp(above, grasp_yaw), "slide", speed_scale=sp)
    segs.append(Segment("lift", seg, True))
    # where the tool must be for the object to land at place_obj_xy, turned by `turn`
    off = p_g[:2] - np.asarray(info["object_xy"])
    c, s = math.cos(turn), math.sin(turn)
    off_t = np.array([[c, -s], [s, c]]) @ off
    z_place = info["target_top"] + 0.003 + p_g[2]
    p_place = np.array([*(np.asarray(place_obj_xy) + off_t), z_place])
    p_above = p_place + [0.0, 0.0, lift]
    spec = _path_spec(attrs["path"], above[:2], p_above[:2])
    attrs["_path_ends"] = [above[:2].tolist(), p_above[:2].tolist()]
    seg = planner.move(segs[-1].q[-1], T_tcp(p_above, grasp_yaw + turn), "carry", spec, speed_scale=sp)
    segs.append(Segment("transport", seg, True))
    seg = planner.move(seg[-1], T_tcp(p_place, grasp_yaw + turn), "slide", speed_scale=sp)
    segs.append(Segment("lower", seg, True))
    segs.append(Segment("release", planner.hold(seg[-1], 0.3), False, "release"))
    seg = planner.move(segs[-1].q[-1], T_tcp(p_place + [0, 0, lift], grasp_yaw + turn), "slide", speed_scale=sp)
    segs.append(Segment("retreat", seg, False))
    return EpisodePlan(segs, {"kind": "rigid", "object": info["object"], "point": p_g.tolist()})


def _plan_place(layout, attrs, planner, rng):
    info = layout.info
    part = info["parts"][attrs["part"]]
    radial = np.asarray(part[:2]) - np.asarray(info["object_xy"])
    yaw = _fold(_yaw_of(radial))
    rel = attrs["placement"]
    tgt = np.asarray(info["target_xy"])
    dest = tgt if rel == "center" else tgt + 0.45 * info["target_radius"] * D[rel]
    return _pick_and_place(layout, attrs, planner, rng, part_xyz=part, grasp_yaw=yaw, place_obj_xy=dest, turn=0.0,
                           depth=0.015)


def _plan_facing(layout, attrs, planner, rng):
    info = layout.info
    part = info["parts"][attrs["part"]]
    hd = np.asarray(info["facing_xy"])
    if attrs["part"] == "rim":
        yaw, depth = _fold(_yaw_of(hd)), 0.015
    else:
        yaw, depth = _fold(_yaw_of(hd) + math.pi / 2), 0.0       # fingers across the handle's plane
    turn = 0.0
    if attrs.get("facing"):
        turn = _yaw_of(D[attrs["facing"]]) - _yaw_of(hd)
        turn = (turn + math.pi) % (2 * math.pi) - math.pi
    return _pick_and_place(layout, attrs, planner, rng, part_xyz=part, grasp_yaw=yaw,
                           place_obj_xy=np.asarray(info["target_xy"]), turn=turn, depth=depth)


def _plan_push(layout, attrs, planner, rng):
    info = layout.info
    sp = _speed(rng)
    q = start_joints(planner.d7)
    p0 = np.asarray(info["object_xy"])
    dist = attrs["distance"]
    tgt = (np.asarray(info["targets"]["close"]) + np.asarray(info["targets"]["far"])) / 2 if dist == "mid" else \
        np.asarray(info["targets"][dist])
    z = info["target_top"] + 0.004
    yaw = 0.0
    segs = []
    seg = planner.move(q, T_tcp([*p0, z + 0.08], yaw), "carry", speed_scale=sp)
    segs.append(Segment("approach", seg, False))
    seg = planner.move(seg[-1], T_tcp([*p0, z], yaw), "slide", speed_scale=sp)
    segs.append(Segment("descend", seg, False))
    segs.append(Segment("contact", planner.hold(seg[-1], 0.2), True, "grasp"))
    path = attrs["path"]
    q = segs[-1].q[-1]
    if path in ("lateral_first", "depth_first"):
        corner = np.array([p0[0], tgt[1]]) if path == "lateral_first" else np.array([tgt[0], p0[1]])
        seg = planner.move(q, T_tcp([*corner, z], yaw), "slide", speed_scale=sp)
        segs.append(Segment("push_leg1", seg, True))
        segs.append(Segment("push_turn", planner.hold(seg[-1], 0.15), True))
        seg = planner.move(segs[-1].q[-1], T_tcp([*tgt, z], yaw), "slide", speed_scale=sp)
        segs.append(Segment("push_leg2", seg, True))
    else:
        seg = planner.move(q, T_tcp([*tgt, z], yaw), "slide", _path_spec(path, p0, tgt), speed_scale=sp)
        segs.append(Segment("push", seg, True))
    segs.append(Segment("release", planner.hold(segs[-1].q[-1], 0.2), False, "release"))
    seg = planner.move(segs[-1].q[-1], T_tcp([*tgt, z + 0.08], yaw), "slide", speed_scale=sp)
    segs.append(Segment("retreat", seg, False))
    return EpisodePlan(segs, {"kind": "planar", "object": info["object"], "point": [*p0, z]})


def _drawer_R(radial, pose: str) -> np.ndarray:
    """Tool rotation at the handle: vertical — tool down, fingers along the pull axis; horizontal —
    tool pointing into the drawer (flange z = radial), fingers above and below the bar."""
    r = np.array([radial[0], radial[1], 0.0])
    if pose == "vertical":
        return tool_down(_yaw_of(radial))
    z = r
    x = np.array([0.0, 0.0, -1.0])
    y = np.cross(z, x)
    return np.column_stack([x, y, z])


def _plan_drawer(layout, attrs, planner, rng):
    info = layout.info
    sp = _speed(rng)
    q = start_joints(planner.d7)
    radial = np.asarray(info["radial"])
    pull = -np.array([*radial, 0.0])
    h = np.asarray(info["parts"][attrs["part"]], float)
    R = _drawer_R(radial, attrs["grasp_pose"])
    back = -R[:, 2] * 0.07                          # away from the handle along the tool axis
    extent = kp.EXTENTS[attrs["extent"]] * info["travel"]
    segs = []
    seg = planner.move(q, T_tcp(h + back, 0.0, R), "carry", speed_scale=sp)
    segs.append(Segment("approach", seg, False))
    seg = planner.move(seg[-1], T_tcp(h, 0.0, R), "slide", speed_scale=sp)
    segs.append(Segment("reach", seg, False))
    segs.append(Segment("grasp", planner.hold(seg[-1], 0.3), True, "grasp"))
    seg = planner.move(segs[-1].q[-1], T_tcp(h + extent * pull, 0.0, R), "slide", speed_scale=sp)
    segs.append(Segment("pull", seg, True))
    segs.append(Segment("release", planner.hold(seg[-1], 0.3), False, "release"))
    seg = planner.move(segs[-1].q[-1], T_tcp(h + extent * pull + back, 0.0, R), "slide", speed_scale=sp)
    segs.append(Segment("retreat", seg, False))
    return EpisodePlan(segs, {"kind": "slide", "object": "drawer", "point": h.tolist(), "axis": pull.tolist()})


# ------------------------------------------------------------------------------------------- pour
POUR_YAW = {"right": 0.0, "left": math.pi, "back": math.pi / 2, "front": -math.pi / 2}


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def pour_flange(layout: Layout, built_tool, mug, yaw: float, th: float, clearance: float = 0.015) -> np.ndarray:
    """The flange pose that holds the held mug's lip above the target's mouth at tilt ``th`` (the
    world's lip-pivot pour, :func:`kinebridge.drivers.world.scripted.pour_path`)."""
    info = layout.info
    mouth = np.array([*info["target_xy"], info["target_height"]])
    ki_f = np.asarray(built_tool["K_i"], float)
    c, s = math.cos(yaw), math.sin(yaw)
    R0 = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([1.0, -1.0, -1.0])
    lip_dir = R0 @ np.array([0.0, 1.0, 0.0])
    x = mug["height"] * math.cos(th) + 0.01
    lift = 0.5 * (x + math.sqrt(x * x + 0.02 ** 2))        # max(0, x), smoothed: no acceleration spike
    lip = mouth + 0.012 * lip_dir + np.array([0.0, 0.0, clearance + lift])
    T = np.eye(4)
    T[:3, :3] = R0 @ _rx(th)
    T[:3, 3] = lip - T[:3, :3] @ ki_f
    return T


def _plan_pour(layout, attrs, planner, rng):
    from kinebridge.runtime.trajectory.planner import phase_profile
    tool = layout.info["tool"]
    sp = _speed(rng)
    yaw = POUR_YAW[attrs["side"]] + float(rng.uniform(-0.15, 0.15))
    # start turned half way to the pour's yaw (a held mug is not symmetric: the approach turns the rest)
    r0 = rm75.ik(T_tcp(START_TCP, 0.5 * yaw) @ np.linalg.inv(T_FLANGE_TCP), start_joints(planner.d7), planner.d7)
    if not r0.ok:
        raise PlanError("pour: the start posture is out of reach")
    q = r0.q
    tilt = kp.TILTS[attrs["tilt"]]
    T_app = pour_flange(layout, tool, tool["mug"], yaw, 0.0)
    start_xy = (rm75.fk(q, planner.d7) @ T_FLANGE_TCP)[:2, 3]
    spec = _path_spec(attrs["path"], start_xy, T_app[:2, 3])
    attrs["_path_ends"] = [start_xy.tolist(), T_app[:2, 3].tolist()]
    segs = []
    seg = planner.move(q, T_app @ T_FLANGE_TCP, "carry", spec, speed_scale=sp)
    segs.append(Segment("approach", seg, True))
    n = int(round((0.8 + 0.7 * tilt) / sp / planner.dt))
    u = phase_profile(n, 0.3)
    poses = np.stack([pour_flange(layout, tool, tool["mug"], yaw, tilt * float(x)) for x in u])
    qt, ok = rm75.ik_path(poses, seg[-1], planner.d7, max_step=0.1)
    if not ok.all():
        raise PlanError(f"pour: the tilt from the {attrs['side']} is out of reach")
    _check_speed(qt, planner)
    segs.append(Segment("tilt", qt, True))
    segs.append(Segment("hold", planner.hold(qt[-1], 1.0), True))
    segs.append(Segment("untilt", qt[::-1].copy(), True))
    return EpisodePlan(segs, {"kind": "held", "object": "tool"})


def _check_speed(q, planner):
    lim = planner.arm.limits
    v = np.abs(np.diff(q, axis=0)) / planner.dt
    a = np.abs(np.diff(q, 2, axis=0)) / planner.dt ** 2
    if (v > 0.95 * lim.qd_max).any() or (a > 0.95 * lim.qdd_max).any():
        raise PlanError("a segment exceeds the joint speed or acceleration limits")


_PLANS = {"place": _plan_place, "facing": _plan_facing, "push": _plan_push, "drawer": _plan_drawer, "pour": _plan_pour}


# ======================================================================================= language
_PART_WORDS = {"left_edge": "left edge", "right_edge": "right edge", "front_edge": "front edge", "back_edge": "back edge",
               "rim": "rim", "handle": "handle", "handle_center": "middle of the handle",
               "handle_left_end": "left end of the handle", "handle_right_end": "right end of the handle",
               "center": "center"}
_EXTENT_WORDS = {"slightly": "slightly open", "halfway": "open halfway", "completely": "open completely"}


def _path_phrase(path: str, layout: Layout, attrs: dict) -> tuple[str, str]:
    """(phrase for the instruction, phrase for the fine reasoning)."""
    info = layout.info
    if layout.task == "push":
        p0 = np.asarray(info["object_xy"])
        dist = attrs["distance"]
        tgt = np.asarray(info["targets"][dist]) if dist in info["targets"] else \
            (np.asarray(info["targets"]["close"]) + np.asarray(info["targets"]["far"])) / 2
        d = tgt - p0
        lat = kp.direction_word([0.0, d[1]], compound=False)
        dep = kp.direction_word([d[0], 0.0], compound=False)
        adv = {"left": "leftward", "right": "rightward", "front": "forward", "back": "backward"}
        if path == "diagonal":
            w = kp.direction_word(d)
            return f"diagonally toward the {w}", f"move the end-effector diagonally toward the {w} along the table plane"
        if path == "lateral_first":
            return f"{adv[lat]} then {adv[dep]}", f"move the end-effector {adv[lat]} then {adv[dep]} along the table plane"
        if path == "depth_first":
            return f"{adv[dep]} then {adv[lat]}", f"move the end-effector {adv[dep]} then {adv[lat]} along the table plane"
        side = bulge_word(path, p0, tgt)
        return f"along an arc bulging to the {side}", f"arc bulging to the {side} along the table plane"
    a, b = attrs.get("_path_ends", (None, None))
    if path == "straight":
        return "along a straight path", "straight line"
    if path == "s_curve":
        return "along an S-shaped path", "S-curve"
    side = bulge_word(path, a, b) if a is not None else None
    return f"along an arc bulging to the {side}", f"arc bulging to the {side}"


def language(layout: Layout, attrs: dict, coarse: bool) -> dict:
    """The kinematics-rich instruction, the coarse instruction and the bi-level reasoning (KineVLA's
    appendix format: the coarse reasoning states the goal, the fine reasoning lists the robot
    action-level constraints and the object-level targeting)."""
    t, info = layout.task, layout.info
    if t == "place":
        goal = "put the bowl on the plate"
        where = "the center of the plate" if attrs["placement"] == "center" else f"the {attrs['placement']} side of the plate"
        ph, pf = _path_phrase(attrs["path"], layout, attrs)
        kine = f"grab the {_PART_WORDS[attrs['part']]} of the bowl and move it {ph} to {where}"
        fine = (f"1. Robot Action-level Constraint: Trajectory shape - {pf}; Contact timing - grasp then place; "
                f"Ordinal relations - grasp, lift, move, then place. 2. Object-level Targeting: Target part - "
                f"{_PART_WORDS[attrs['part']]} of the bowl; Final placement - {where}.")
    elif t == "facing":
        goal = "put the mug on the plate"
        ph, pf = _path_phrase(attrs["path"], layout, attrs)
        face = attrs.get("facing")
        turn = f", turning it so that its handle faces {face}" if face else ""
        kine = f"hold the mug by the {_PART_WORDS[attrs['part']]} and put it on the plate {ph}{turn}"
        fine = (f"1. Robot Action-level Constraint: State/Trajectory - {pf}; Contact timing - grip the "
                f"{_PART_WORDS[attrs['part']]} before moving; Ordinal relations - grasp, turn while moving, then place. "
                f"2. Object-level Targeting: Handle/Edge/Surface - {_PART_WORDS[attrs['part']]} of the mug (grip), plate "
                f"(placement); Pose/Facing/Angle - " + (f"handle facing {face}." if face else "as grasped."))
    elif t == "push":
        word = info["distance_word"]
        rel = "in front of" if word == "front" else f"to the {word} of"
        goal = f"push the plate {rel} the box"
        ph, pf = _path_phrase(attrs["path"], layout, attrs)
        dist = attrs["distance"]
        dist_w = {"close": "close", "far": "far", "mid": ""}[dist]
        kine = f"push the plate and move it {ph} along the table plane to reposition the plate " + \
               (f"about {dist_w} {rel} the box" if dist_w else f"{rel} the box")
        order = {"lateral_first": "first " + ph.split(" then ")[0] + ", then " + ph.split(" then ")[-1],
                 "depth_first": "first " + ph.split(" then ")[0] + ", then " + ph.split(" then ")[-1]}.get(attrs["path"], "one continuous motion")
        fine = (f"1. Robot Action-level Constraint: State/Trajectory: {pf}. Contact Timing: maintain contact with the "
                f"plate. Ordinal Relations: sequential motion: {order}. 2. Object-level Targeting: Target Part: center of "
                f"the plate (initial contact). Pose/Facing/Angle: end-effector on the plate center; movement constrained "
                f"to the table plane. Final Placement: " + (f"~{dist_w} {rel} the box." if dist_w else f"{rel} the box."))
    elif t == "drawer":
        goal = "open the drawer"
        pose = attrs["grasp_pose"]
        kine = f"{pose}ly hold the {_PART_WORDS[attrs['part']]} of the drawer and pull it {_EXTENT_WORDS[attrs['extent']]}"
        fine = (f"1. Robot Action-level Constraint: Contact Timing: initiate contact. Trajectory Shape: linear pulling. "
                f"Ordinal Relations: grasp then pull. 2. Object-level Targeting: Target Part: "
                f"{_PART_WORDS[attrs['part']]} of the drawer, held {pose}ly. Action on Target: pull "
                f"{_EXTENT_WORDS[attrs['extent']]}.")
    elif t == "pour":
        goal = "pour the water into the bowl"
        ph, pf = _path_phrase(attrs["path"], layout, attrs)
        kine = (f"bring the mug to the bowl {ph}, and pour the water into the bowl from its {attrs['side']} side, "
                f"tilting the mug {attrs['tilt']}")
        fine = (f"1. Robot Action-level Constraint: Trajectory shape - {pf} to above the bowl; Contact timing - keep "
                f"holding the mug; Ordinal relations - move, tilt, hold, then return upright. 2. Object-level Targeting: "
                f"Target - the bowl's mouth; Pose/Facing/Angle - pour from the {attrs['side']} side, tilted "
                f"{attrs['tilt']} (about {math.degrees(kp.TILTS[attrs['tilt']]):.0f}°).")
    else:
        raise ValueError(t)
    if coarse:
        return {"instruction": goal, "coarse_instruction": goal, "reasoning": {"coarse": goal, "fine": ""}}
    return {"instruction": kine, "coarse_instruction": goal, "reasoning": {"coarse": goal, "fine": fine}}


# ===================================================================================== predicates
def predicate_attributes(layout: Layout, attrs: dict) -> dict:
    """The attributes as the predicates take them (kinebridge.kernels.kine_predicates.PREDICATES)."""
    t, info = layout.task, layout.info
    out = {}
    for k, v in attrs.items():
        if k.startswith("_") or v is None or v == "mid":
            continue
        if k == "path":
            if t == "push":
                p0 = np.asarray(info["object_xy"])
                tgt = np.asarray(info["targets"][attrs["distance"]]) if attrs["distance"] in info["targets"] else \
                    (np.asarray(info["targets"]["close"]) + np.asarray(info["targets"]["far"])) / 2
                d = tgt - p0
                if v == "diagonal":
                    v = {"shape": "diagonal"}
                elif v == "lateral_first":
                    v = {"shape": "l_shape", "legs": [kp.direction_word([0, d[1]], compound=False),
                                                      kp.direction_word([d[0], 0], compound=False)]}
                elif v == "depth_first":
                    v = {"shape": "l_shape", "legs": [kp.direction_word([d[0], 0], compound=False),
                                                      kp.direction_word([0, d[1]], compound=False)]}
                else:
                    v = {"shape": "arc", "side": bulge_word(v, p0, tgt)}
            else:
                ends = attrs.get("_path_ends")
                if v.startswith("arc"):
                    v = {"shape": "arc", "side": bulge_word(v, *ends) if ends else None}
                else:
                    v = {"shape": v}
        out[k] = v
    return out


def predicate_context(layout: Layout) -> dict:
    """What the scene fixes for :func:`kinebridge.kernels.kine_predicates.evaluate`."""
    t, info = layout.task, layout.info
    ctx = {"parts": info.get("parts", {}), "part_tol": 0.02}
    if t in ("place", "facing"):
        ctx.update(object_xy=info["object_xy"], target_xy=info["target_xy"], target_radius=info["target_radius"],
                   lifted_path=True)
        if t == "facing":
            ctx["facing_xy"] = info["facing_xy"]
    elif t == "push":
        ctx.update(object_xy=info["object_xy"], reference_xy=info["reference_xy"], distance_word=info["distance_word"],
                   distances=info["distances"], lifted_path=False, distance_tol=0.03, distance_across=0.05)
    elif t == "drawer":
        ctx.update(pull_axis=info["pull_axis"], travel=info["travel"], extent_tol=0.1)
    elif t == "pour":
        ctx.update(target_xy=info["target_xy"], lifted_path=False)
    return ctx


def predicate_traj(layout: Layout, q: np.ndarray, grip: np.ndarray, d7: float) -> dict:
    """The predicates' trajectory from joints ``q`` (T, 7) and the gripper command ``grip`` (T,):
    the tool centre point (the held mug's frame for the pour), its yaw and its tilt from straight down."""
    T = rm75.fk_batch(np.ascontiguousarray(q, float), d7)
    if layout.task == "pour":
        Tm = T @ np.asarray(layout.info["tool"]["T_flange_mug"])
        pos = Tm[:, :3, 3]
        tilt = np.arccos(np.clip(-T[:, 2, 2], -1.0, 1.0))
        # the approach is what has a path: the samples before the tilt starts
        k = np.flatnonzero(tilt > math.radians(8.0))
        g = np.zeros(len(q), bool)
        g[: (int(k[0]) if k.size else len(q))] = True
        grip = g
    else:
        Tt = T @ T_FLANGE_TCP
        pos = Tt[:, :3, 3]
        tilt = np.arccos(np.clip(-Tt[:, 2, 2], -1.0, 1.0))
    yaw = np.unwrap(np.arctan2(T[:, 1, 0], T[:, 0, 0]))
    return {"tcp": pos, "yaw": yaw, "tilt": tilt, "grip": np.asarray(grip, bool)}
