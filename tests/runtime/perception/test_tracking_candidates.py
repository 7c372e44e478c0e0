"""Tracking (stable ids, outlier rejection, smoothing, confidence) and what candidates say about objects."""

import numpy as np

from kinebridge.drivers.camera.geometry import look_at
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.perception.candidates import annotate, build_candidates, colour_name
from kinebridge.runtime.perception.tracking import Observation, Tracker, TrackerConfig

KP = ("K_i", "K_p1", "K_p2", "K_b")


def mug_xyz(x, y, r=0.04, h=0.1, handle_deg=90.0, reach=0.03):
    a = np.radians(handle_deg)
    hand = np.array([np.cos(a), np.sin(a), 0.0])
    return np.array([[x, y, h] - (r - 0.002) * hand, [x, y, h], [x, y, 0.0], np.array([x, y, h / 2]) + (r + reach) * hand])


def obs(xyz, conf=0.9, score=0.9):
    return Observation(cls="mug", score=score, xyz=np.asarray(xyz, float), conf=np.full(4, conf),
                       extra={"uv": np.full((4, 2), 100.0), "z": np.full(4, 0.8), "visible": np.ones(4),
                              "box": np.array([80.0, 80.0, 130.0, 140.0]), "centre_uv": np.array([105.0, 110.0])})


def test_ids_stay_with_their_objects_and_are_never_reused():
    tr = Tracker(KP)
    rng = np.random.default_rng(0)
    a, b = mug_xyz(0.4, 0.1), mug_xyz(0.5, -0.1)
    ids = None
    for _ in range(10):
        ts = tr.update([obs(b + rng.normal(0, 0.002, b.shape)), obs(a + rng.normal(0, 0.002, a.shape))])
        now = {t.id: t.centre()[1] > 0 for t in ts}
        ids = ids or now
        assert now == ids                                  # mug-1 stays the +y mug whatever the order
    raw, est = [], []
    for _ in range(60):                                    # smoothing: the estimate is steadier than the measurement
        m = a + rng.normal(0, 0.002, a.shape)
        t = next(t for t in tr.update([obs(m), obs(b)]) if t.centre()[1] > 0)
        raw.append(np.linalg.norm(m - a, axis=1))
        est.append(np.linalg.norm(t.xyz - a, axis=1))
    assert np.sqrt(np.mean(np.square(est))) < 0.8 * np.sqrt(np.mean(np.square(raw)))
    for _ in range(TrackerConfig().max_missed + 1):
        tr.update([])
    assert tr.tracks == []
    t = tr.update([obs(a)])
    assert t[0].id not in ids


def test_an_outlying_keypoint_is_rejected_then_accepted_when_it_persists():
    tr = Tracker(KP, TrackerConfig(reinit_after=3))
    a = mug_xyz(0.4, 0.1)
    tr.update([obs(a)])
    jump = a.copy()
    jump[3] += [0.0, 0.08, 0.0]                            # the handle jumps 8 cm (the neighbour's)
    t = tr.update([obs(jump)])[0]
    assert t.status == ["ok", "ok", "ok", "rejected"] and np.allclose(t.xyz[3], a[3])
    c_rejected = t.confidence()[3]
    assert c_rejected < t.confidence()[0]
    tr.update([obs(jump)])
    t = tr.update([obs(jump)])[0]
    assert t.status[3] == "ok" and np.allclose(t.xyz[3], jump[3])


def test_a_keypoint_without_depth_keeps_the_estimate_and_loses_confidence():
    tr = Tracker(KP)
    a = mug_xyz(0.4, 0.1)
    tr.update([obs(a)])
    hole = a.copy()
    hole[1] = np.nan
    for _ in range(3):
        t = tr.update([obs(hole)])[0]
    assert t.status[1] == "no_depth" and np.allclose(t.xyz[1], a[1])
    assert t.confidence()[1] < 0.6 * t.confidence()[0]
    fresh = Tracker(KP).update([obs(hole)])[0]
    assert np.isnan(fresh.xyz[1]).all() and fresh.confidence()[1] == 0.0


def test_colour_names():
    assert colour_name((0.9, 0.1, 0.1)) == "red" and colour_name((0.1, 0.7, 0.2)) == "green"
    assert colour_name((0.1, 0.2, 0.9)) == "blue" and colour_name((0.95, 0.95, 0.93)) == "white"
    assert colour_name((0.05, 0.05, 0.05)) == "black" and colour_name((0.5, 0.5, 0.52)) == "grey"
    assert colour_name((0.9, 0.8, 0.1)) == "yellow" and colour_name((0.45, 0.25, 0.1)) == "brown"


def test_candidates_describe_size_position_handle_and_relations():
    T = look_at((1.05, 0.0, 0.62), (0.38, 0.0, 0.04))           # the default camera, facing the arm
    tr = Tracker(KP)
    left_of_arm = mug_xyz(0.45, 0.15, handle_deg=90.0)           # handle towards +y (the arm's left)
    right_of_arm = mug_xyz(0.45, -0.15, handle_deg=0.0)          # handle away from the robot
    tracks = tr.update([obs(left_of_arm), obs(right_of_arm)])
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[80:141, 80:131] = (200, 30, 30)
    depth = np.full((480, 640), 0.8, np.float32)
    cands = build_candidates(tracks, KP, rgb, depth, np.eye(3), T)
    a, b = cands
    assert a["id"] == "mug-1" and a["class"] == "mug" and a["status"] == "ok" and a["color"] == "red"
    assert abs(a["size_detail"]["height_m"] - 0.1) < 1e-6 and abs(a["size_detail"]["diameter_m"] - 0.076) < 1e-3
    assert a["size"] == [a["size_detail"]["diameter_m"], a["size_detail"]["diameter_m"], a["size_detail"]["height_m"]]
    assert a["position"] == [0.45, 0.15, 0.0] and "arm's left" in a["position_words"]["table"]
    # the camera faces the arm, so the arm's left (+y) is the viewer's right
    assert a["handle"] == "right" and "arm's left" in a["handle_detail"]["robot"]
    assert b["handle"] == "towards the camera"
    assert "right of mug-2" in a["relations"] and "left of mug-1" in b["relations"]
    assert set(a["keypoints"]) == set(KP) and all(len(v) == 3 for v in a["keypoints"].values())
    M.Keypoints(objects=cands)                                   # the registry accepts them
    img = annotate(rgb, cands)
    assert img.shape == rgb.shape and (img != rgb).any()


def test_planner_reads_the_candidates():
    from kinebridge.runtime.planner.candidates import from_keypoints_message
    T = look_at((1.05, 0.0, 0.62), (0.38, 0.0, 0.04))
    tracks = Tracker(KP).update([obs(mug_xyz(0.45, 0.15)), obs(mug_xyz(0.45, -0.15))])
    cands = build_candidates(tracks, KP, np.zeros((480, 640, 3), np.uint8), np.full((480, 640), 0.8, np.float32),
                             np.eye(3), T)
    planner = from_keypoints_message(M.Keypoints(objects=cands), camera_pose=T)
    assert [c.id for c in planner] == ["mug-1", "mug-2"] and planner[0].cls == "mug"


def test_what_the_arm_holds_is_never_a_candidate():
    # the scene of `kinebridge run --instruction`'s test, as the shipped model saw it at the carry posture: the held
    # mug and the gripper (read as a mug) near the flange, the real target on the table
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.perception.candidates import without_held

    def obj(i, p2):
        p2 = np.asarray(p2)
        return {"id": i, "class": "mug", "keypoints": {"K_p2": p2.tolist(), "K_p1": (p2 + [0, 0, 0.1]).tolist()}}
    flange = [0.30, -0.18, 0.26]
    body = M.Keypoints(camera="scene", objects=[obj("mug-1", [0.296, -0.246, 0.138]), obj("mug-2", [0.326, 0.125, 0.001]),
                                                obj("mug-3", [0.303, -0.183, 0.269])], reason="low confidence: mug-3")
    kept, n = without_held(body, flange, 0.25)
    assert n == 2 and [o["id"] for o in kept.objects] == ["mug-2"]
    assert kept.reason.startswith("low confidence: mug-3") and "mug-1: held by the arm" in kept.reason
    # a mug on the table right under the flange (the arm above it, pouring) stays a candidate; 0 = off
    below = M.Keypoints(camera="scene", objects=[obj("mug-4", [0.30, -0.18, 0.0])])
    assert without_held(below, flange, 0.3)[1] == 0
    assert without_held(body, flange, 0.0) == (body, 0)
