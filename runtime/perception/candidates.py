"""Candidates: what a planner (the VLM) can reason about, for every tracked object of a known class.

Each candidate is a plain dict (it travels in ``perception/keypoints``, is checked there by
:class:`kinebridge.runtime.bus.messages.PerceivedObject`, and is what the planner's
``from_keypoints_message`` reads — same field names and conventions):

* ``id`` (``mug-1``: stable across frames, the name the VLM answers with), ``class``, ``score``,
  ``status`` (``ok``, ``low_confidence``, or ``predicted`` — not seen this frame) and ``reason``;
* ``keypoints``: ``{name: [x, y, z]}`` in the arm's base frame (m), only the keypoints whose 3D
  position is known; ``keypoint_detail``: per keypoint ``uv`` (pixels of the frame the message's
  stamp names), ``z`` (camera depth, m), ``conf`` (0..1), ``visible`` and ``status`` (``ok``,
  ``low_confidence``, ``no_depth``, ``rejected``, ``predicted``);
* ``color``: a colour name from the object's pixels (median of the pixels inside its box whose
  depth lies within the object's depth range — the table and the wall behind are left out) and
  ``color_rgb``;
* ``size`` [width, depth, height] (m) and ``size_detail`` (height |K_p1 − K_p2|, diameter
  2 |K_i − K_p1| horizontally, handle reach) — from the keypoints;
* ``position``: the centre of its footprint (K_p2 for a mug) in the base frame;
  ``position_words``: relative to the table as the arm sees it (on the arm's left/right, near/far)
  and to the camera (where in the image); ``distance_to_camera_m``; ``relations`` to each other
  candidate (left of / right of / behind / in front of, as seen from the camera — the planner's
  viewer convention —, next to when centres are closer than 15 cm);
* ``handle`` (mugs): where it points seen from the camera (left, right, towards/away from the
  camera) and ``handle_detail`` (degrees from the arm's x axis, words for the arm's view).

:func:`annotate` draws the frame with each candidate's box, id and keypoints — the image a VLM is
shown with the candidates' text.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

__all__ = ["colour_name", "object_colour", "build_candidates", "annotate", "without_held", "KP_LOW_CONF"]

KP_LOW_CONF = 0.15          # keypoint heatmap confidence below which a keypoint is low-confidence
OBJ_LOW_CONF = 0.45         # centre score below which an object is low-confidence
NEXT_TO_M = 0.15
MAX_RELATED = 4             # relations to the nearest few other objects only


def colour_name(rgb) -> str:
    """A basic colour word for an RGB triple in [0, 1]."""
    h, s, v = colorsys.rgb_to_hsv(*[float(np.clip(c, 0, 1)) for c in rgb])
    if v < 0.18:
        return "black"
    if s < 0.2:
        return "white" if v > 0.72 else "grey"
    deg = h * 360.0
    if deg < 15 or deg >= 345:
        name = "red"
    elif deg < 42:
        name = "orange"
    elif deg < 70:
        name = "yellow"
    elif deg < 165:
        name = "green"
    elif deg < 200:
        name = "cyan"
    elif deg < 255:
        name = "blue"
    elif deg < 290:
        name = "purple"
    else:
        name = "pink"
    if name in ("orange", "red") and v < 0.5 and s > 0.35:
        return "brown" if name == "orange" else "dark red"
    return name


def object_colour(rgb: np.ndarray, depth: np.ndarray, box, z_range) -> tuple[str | None, list | None]:
    """(name, median RGB in [0, 1]) of the object's pixels: inside ``box``, depth within ``z_range``
    (m) widened by 2 cm — the table and the wall behind are left out. None when no pixel qualifies."""
    H, W = depth.shape
    x0, y0, x1, y1 = [int(round(v)) for v in box]
    x0, x1 = max(0, x0), min(W, x1 + 1)
    y0, y1 = max(0, y0), min(H, y1 + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None, None
    px = rgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32) / 255.0
    d = depth[y0:y1, x0:x1].reshape(-1)
    if z_range is not None and np.all(np.isfinite(z_range)):
        keep = (d > z_range[0] - 0.02) & (d < z_range[1] + 0.02)
        if keep.sum() >= 12:
            px = px[keep]
    if px.shape[0] < 4:
        return None, None
    med = np.median(px, axis=0)
    return colour_name(med), [round(float(c), 3) for c in med]


def _table_words(y: float, rho: float) -> str:
    side = "left" if y > 0.08 else "right" if y < -0.08 else "middle"
    reach = "near the robot" if rho < 0.40 else "far from the robot" if rho > 0.55 else "mid-way from the robot"
    where = "in front of the arm" if side == "middle" else f"on the arm's {side}"
    return f"{where}, {reach}"


def _image_words(u: float, v: float, W: int, H: int) -> str:
    col = "left" if u < W / 3 else "right" if u > 2 * W / 3 else "centre"
    row = "top" if v < H / 3 else "bottom" if v > 2 * H / 3 else "middle"
    return "centre of the image" if (col, row) == ("centre", "middle") else f"{row} {col} of the image"


def _flat_axes(T_base_cam):
    """The camera's right and forward directions laid flat on the table (unit, base frame), or None."""
    if T_base_cam is None:
        return None
    R = np.asarray(T_base_cam, float)[:3, :3]
    right, fwd = R[:, 0].copy(), R[:, 2].copy()
    right[2] = fwd[2] = 0.0
    if np.linalg.norm(right) < 1e-6 or np.linalg.norm(fwd) < 1e-6:
        return None
    return right / np.linalg.norm(right), fwd / np.linalg.norm(fwd)


def _handle(kp: dict, axes) -> tuple[str | None, dict | None]:
    xb = kp.get("K_b")
    ax = kp.get("K_p1", kp.get("K_p2"))
    if xb is None or ax is None:
        return None, None
    vec = np.asarray(xb) - np.asarray(ax)
    if np.linalg.norm(vec[:2]) < 1e-3:
        return None, None
    deg = math.degrees(math.atan2(vec[1], vec[0]))
    robot = {0: "away from the robot", 90: "to the arm's left", 180: "towards the robot", -90: "to the arm's right"}
    near = min(robot, key=lambda w: abs((deg - w + 180) % 360 - 180))
    detail = {"direction_deg": round(deg, 1), "robot": f"handle points {robot[near]}"}
    word = None
    if axes is not None:
        a, b = float(vec @ axes[0]), float(vec @ axes[1])
        word = ("right" if a > 0 else "left") if abs(a) >= abs(b) else \
            ("away from the camera" if b > 0 else "towards the camera")
        detail["camera"] = f"handle points {word} (seen from the camera)"
    return word, detail


def _relations(me: dict, others: list[dict], axes) -> list[str]:
    """Relations to the (at most MAX_RELATED nearest) other candidates, seen from the camera (the planner's viewer convention:
    left/right along the image's x axis laid on the table, behind = further from the camera)."""
    out = []
    p = me.get("_centre")
    if p is None:
        return out
    near = sorted((o for o in others if o.get("_centre") is not None and o["id"] != me["id"]),
                  key=lambda o: float(np.linalg.norm(np.asarray(o["_centre"]) - np.asarray(p))))[:MAX_RELATED]
    for o in near:
        q = o["_centre"]
        d = np.asarray(p) - np.asarray(q)
        if axes is not None:
            a, b = float(d @ axes[0]), float(d @ axes[1])
            rel = ("right of" if a > 0 else "left of") if abs(a) >= abs(b) else ("behind" if b > 0 else "in front of")
        else:   # no calibration: the arm's view
            rel = ("left of" if d[1] > 0 else "right of") if abs(d[1]) >= abs(d[0]) else \
                ("behind" if d[0] > 0 else "in front of")
        out.append(f"{rel} {o['id']}")
        if np.linalg.norm(d[:2]) < NEXT_TO_M:
            out.append(f"next to {o['id']}")
    return out


def _r(x, n=4):
    return None if x is None else round(float(x), n)


def build_candidates(tracks, keypoint_names, frame_rgb, frame_depth, K, T_base_cam) -> list[dict]:
    """Candidates (plain dicts) for the tracks of this frame; see the module docstring."""
    H, W = frame_depth.shape
    axes = _flat_axes(T_base_cam)
    out = []
    for t in tracks:
        o = t.last
        fresh = o is not None and t.missed == 0
        conf = t.confidence()
        kp3, detail, low = {}, {}, []
        for k, name in enumerate(keypoint_names):
            xyz = t.xyz[k]
            known = bool(np.all(np.isfinite(xyz)))
            st = t.status[k] if k < len(t.status) else "ok"
            uv = o.extra["uv"][k] if fresh else None
            z = o.extra["z"][k] if fresh else None
            if st == "ok" and conf[k] < KP_LOW_CONF:
                st = "low_confidence"
            if st != "ok":
                low.append(f"{name} {st.replace('_', ' ')}")
            detail[name] = {"uv": None if uv is None else [round(float(uv[0]), 2), round(float(uv[1]), 2)],
                            "z": None if z is None or not np.isfinite(z) else round(float(z), 5),
                            "conf": round(float(conf[k]), 3),
                            "visible": bool(fresh and o.extra["visible"][k] >= 0.5), "status": st}
            if known:
                kp3[name] = np.asarray(xyz, float)
        centre = t.centre()
        box = [round(float(v), 1) for v in o.extra["box"]] if fresh else None
        cand = {"id": t.id, "class": t.cls, "score": round(float(t.score), 3),
                "keypoints": {n: [round(float(c), 5) for c in v] for n, v in kp3.items()},
                "keypoint_detail": detail, "box": box,
                "pixel": [round(float(c), 1) for c in o.extra["centre_uv"]] if fresh else None,
                "track": {"age": int(t.age), "hits": int(t.hits), "missed": int(t.missed)}}
        if t.missed:
            cand["status"], cand["reason"] = "predicted", f"not detected in the last {t.missed} frame(s); last estimate"
        elif t.score < OBJ_LOW_CONF or low:
            cand["status"] = "low_confidence"
            cand["reason"] = "; ".join(([f"object score {t.score:.2f}"] if t.score < OBJ_LOW_CONF else []) + low)
        else:
            cand["status"], cand["reason"] = "ok", None
        cname, crgb = (None, None)
        if box is not None:
            zs = [v["z"] for v in detail.values() if v["z"] is not None]
            cname, crgb = object_colour(frame_rgb, frame_depth, box, (min(zs), max(zs)) if zs else None)
        cand["color"], cand["color_rgb"] = cname, crgb
        dims = {"height_m": None, "diameter_m": None, "handle_reach_m": None}
        if "K_p1" in kp3 and "K_p2" in kp3:
            dims["height_m"] = _r(np.linalg.norm(kp3["K_p1"] - kp3["K_p2"]))
        if "K_i" in kp3 and "K_p1" in kp3:
            dims["diameter_m"] = _r(2 * np.linalg.norm((kp3["K_i"] - kp3["K_p1"])[:2]))
        ax = kp3.get("K_p1", kp3.get("K_p2"))
        if "K_b" in kp3 and ax is not None and dims["diameter_m"] is not None:
            dims["handle_reach_m"] = _r(max(0.0, np.linalg.norm((kp3["K_b"] - ax)[:2]) - 0.5 * dims["diameter_m"]))
        cand["size"] = ([dims["diameter_m"], dims["diameter_m"], dims["height_m"]]
                        if dims["diameter_m"] is not None and dims["height_m"] is not None else None)
        cand["size_detail"] = dims
        foot = kp3.get("K_p2")
        if foot is None and centre is not None:
            foot = np.array([centre[0], centre[1], 0.0])
        cand["position"] = None if foot is None else [round(float(c), 4) for c in foot]
        words = {"table": None, "camera": None}
        if centre is not None:
            words["table"] = _table_words(float(centre[1]), float(math.hypot(centre[0], centre[1])))
        if fresh:
            words["camera"] = _image_words(float(o.extra["centre_uv"][0]), float(o.extra["centre_uv"][1]), W, H)
        cand["position_words"] = words
        cand["distance_to_camera_m"] = (_r(np.linalg.norm(centre - np.asarray(T_base_cam)[:3, 3]), 3)
                                        if centre is not None and T_base_cam is not None else None)
        cand["handle"], cand["handle_detail"] = _handle(kp3, axes) if t.cls == "mug" else (None, None)
        cand["_centre"] = centre
        out.append(cand)
    for c in out:
        c["relations"] = _relations(c, out, axes)
    for c in out:
        c.pop("_centre", None)
    return out


def annotate(rgb: np.ndarray, candidates: list[dict]) -> np.ndarray:
    """The frame with every candidate's box, id and keypoints drawn (the VLM's input image)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(rgb))
    dr = ImageDraw.Draw(img)
    colours = {"K_i": (255, 60, 60), "K_p1": (60, 220, 60), "K_p2": (80, 120, 255), "K_b": (255, 210, 0)}
    for c in candidates:
        box = c.get("box")
        col = (255, 255, 255) if c.get("status") == "ok" else (255, 170, 0)
        if box:
            dr.rectangle(box, outline=col, width=2)
            x, y = box[0], max(0, box[1] - 12)
            label = c["id"]
            w = 7 * len(label) + 4
            dr.rectangle([x, y, x + w, y + 11], fill=(0, 0, 0))
            dr.text((x + 2, y), label, fill=col)
        for name, kp in c.get("keypoint_detail", {}).items():
            if kp.get("uv") is None:
                continue
            u, v = kp["uv"]
            r = 3
            dr.ellipse([u - r, v - r, u + r, v + r], outline=colours.get(name, (255, 255, 255)), width=2)
    return np.asarray(img)


def without_held(body, flange, radius_m: float, table_z_m: float = 0.0):
    """(``body`` without the objects the arm holds, how many were dropped). An object is held when its base
    (K_p2, else the mean of its keypoints) is off the table — more than 3 cm above ``table_z_m`` — and the mean of
    its keypoints lies within ``radius_m`` of the flange position ``flange`` (base frame): the mug in the
    gripper, or the gripper itself seen as one. Each is named in the message's reason; ``radius_m = 0`` keeps all."""
    if radius_m <= 0 or not body.objects:
        return body, 0
    flange = np.asarray(flange, float)
    kept, held = [], []
    for o in body.objects:
        kps = {k: v for k, v in (o.get("keypoints") or {}).items() if v is not None}
        if not kps:
            kept.append(o)
            continue
        pts = np.asarray(list(kps.values()), float)
        base = np.asarray(kps["K_p2"], float) if "K_p2" in kps else pts.mean(0)
        d = float(np.linalg.norm(pts.mean(0) - flange))
        if base[2] > table_z_m + 0.03 and d < radius_m:
            held.append(f"{o.get('id')}: held by the arm ({d * 100:.0f} cm from the flange, its base "
                        f"{(base[2] - table_z_m) * 100:.0f} cm above the table), not a candidate")
        else:
            kept.append(o)
    if not held:
        return body, 0
    reason = "; ".join(held) if not body.reason else f"{body.reason}; " + "; ".join(held)
    return body.model_copy(update={"objects": kept, "reason": reason[:1000]}), len(held)
