"""Kinematic predicates on hand-made trajectories: each attribute satisfied and violated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinebridge.kernels import kine_predicates as kp

D = kp.DIRECTIONS


def _line(a, b, n=40):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a + np.linspace(0, 1, n)[:, None] * (b - a)


def _traj(xy, z=0.1, yaw=None, grip=None, tilt=None):
    xy = np.asarray(xy, float)
    n = len(xy)
    tcp = np.column_stack([xy, np.full(n, z) if np.isscalar(z) else z])
    return {"tcp": tcp, "yaw": np.zeros(n) if yaw is None else np.asarray(yaw, float),
            "grip": np.ones(n, bool) if grip is None else np.asarray(grip, bool),
            "tilt": np.zeros(n) if tilt is None else np.asarray(tilt, float)}


def test_directions_follow_the_scene_camera():
    assert np.allclose(D["front"], [1, 0]) and np.allclose(D["left"], [0, -1])
    assert kp.direction_word([0.1, 0.1]) == "front-right"
    assert kp.direction_word([-0.1, 0.0], compound=False) == "back"
    rot = kp.directions_for(math.pi / 2)                 # a camera looking along +y: its front is −y
    assert np.allclose(rot["front"], [0, -1], atol=1e-12)
    with pytest.raises(ValueError, match="zero vector"):
        kp.direction_word([0, 0])


@pytest.mark.parametrize("shape,xy", [
    ("straight", _line([0.3, -0.1], [0.3, 0.2])),
    ("diagonal", _line([0.25, -0.1], [0.4, 0.1])),
    ("arc", np.array([[0.3, y] for y in np.linspace(-0.1, 0.2, 50)]) + np.column_stack(
        [0.09 * np.sin(np.linspace(0, np.pi, 50)), np.zeros(50)])),
    ("s_curve", np.array([[0.3, y] for y in np.linspace(-0.1, 0.2, 60)]) + np.column_stack(
        [0.06 * np.sin(np.linspace(0, 2 * np.pi, 60)), np.zeros(60)])),
    ("l_shape", np.vstack([_line([0.3, -0.1], [0.3, 0.1]), _line([0.3, 0.1], [0.42, 0.1])[1:]])),
])
def test_each_path_shape_is_recognised_and_the_others_are_not(shape, xy):
    assert kp.path_holds(xy, shape)
    others = [s for s in kp.PATH_SHAPES if s not in (shape, "straight")]
    if shape == "diagonal":
        others = [s for s in others if s != "diagonal"]
    for s in others:
        assert not kp.path_holds(xy, s), (shape, s, kp.classify_path(xy))


def test_path_details_side_legs_direction():
    arc = np.array([[0.3, y] for y in np.linspace(-0.1, 0.2, 50)]) + np.column_stack(
        [0.09 * np.sin(np.linspace(0, np.pi, 50)), np.zeros(50)])
    assert kp.path_holds(arc, "arc", side="front") and not kp.path_holds(arc, "arc", side="back")
    L = np.vstack([_line([0.3, -0.1], [0.3, 0.1]), _line([0.3, 0.1], [0.42, 0.1])[1:]])
    assert kp.path_holds(L, "l_shape", legs=("right", "front"))
    assert not kp.path_holds(L, "l_shape", legs=("front", "right"))      # the order of the legs is the attribute
    assert kp.path_holds(_line([0.3, 0.0], [0.3, 0.2]), "straight", direction="right")
    assert not kp.path_holds(_line([0.3, 0.0], [0.3, 0.2]), "straight", direction="left")
    assert not kp.path_holds(np.array([[0.3, 0.0], [0.3, 0.001], [0.3, 0.002]]), "straight")   # too short
    with pytest.raises(ValueError, match="shape"):
        kp.path_holds(L, "zigzag")


def test_part_grasped_is_the_nearest_part_within_tolerance():
    parts = {"left_edge": [0.3, -0.06, 0.05], "right_edge": [0.3, 0.06, 0.05]}
    grip = np.r_[np.zeros(10, bool), np.ones(10, bool)]
    xy = np.vstack([_line([0.25, 0.0], [0.3, -0.06], 10), np.tile([0.3, -0.06], (10, 1))])
    t = _traj(xy, z=np.r_[np.linspace(0.15, 0.05, 10), np.full(10, 0.05)], grip=grip)
    assert kp.grasped_part(t, parts) == "left_edge"
    assert kp.evaluate({"part": "left_edge"}, t, {"parts": parts}) == {"part": True}
    assert kp.evaluate({"part": "right_edge"}, t, {"parts": parts}) == {"part": False}
    far = _traj(xy + [0.0, 0.03], z=t["tcp"][:, 2], grip=grip)               # 3 cm off: nothing taken
    assert kp.grasped_part(far, parts) is None
    assert kp.grasped_part(_traj(xy, grip=np.zeros(20, bool)), parts) is None


def test_facing_follows_the_yaw_turned_while_held():
    n = 30
    grip = np.r_[np.zeros(5, bool), np.ones(20, bool), np.zeros(5, bool)]
    yaw = np.r_[np.zeros(5), np.linspace(0, math.pi / 2, 20), np.full(5, math.pi / 2)]
    t = _traj(_line([0.3, -0.1], [0.3, 0.1], n), yaw=yaw, grip=grip)
    handle = [1.0, 0.0]                                       # facing front, turned by +90° → +y = right
    assert kp.facing_holds(t, handle, "right") and not kp.facing_holds(t, handle, "left")
    assert not kp.facing_holds(t, handle, "front")
    assert kp.evaluate({"facing": "right"}, t, {"facing_xy": handle})["facing"]


def test_placement_on_a_round_target():
    tgt, r = [0.3, 0.15], 0.1
    assert kp.placement_holds([0.3, 0.15], tgt, r, "center")
    assert kp.placement_holds([0.3, 0.195], tgt, r, "right") and not kp.placement_holds([0.3, 0.195], tgt, r, "left")
    assert kp.placement_holds([0.345, 0.15], tgt, r, "front")
    assert not kp.placement_holds([0.3, 0.26], tgt, r, "right")          # off the plate
    assert not kp.placement_holds([0.33, 0.19], tgt, r, "center")
    # the object moves rigidly with the tool while held
    grip = np.r_[np.zeros(3, bool), np.ones(20, bool), np.zeros(3, bool)]
    xy = np.vstack([np.tile([0.3, -0.12], (3, 1)), _line([0.3, -0.12], [0.3, 0.135], 20), np.tile([0.3, 0.135], (3, 1))])
    t = _traj(xy, grip=grip)
    ctx = {"object_xy": [0.3, -0.06], "target_xy": tgt, "target_radius": r}        # grasped 6 cm left of its centre
    assert np.allclose(kp.object_final(t, ctx["object_xy"]), [0.3, 0.195])
    assert kp.evaluate({"placement": "right"}, t, ctx)["placement"]
    assert not kp.evaluate({"placement": "center"}, t, ctx)["placement"]
    with pytest.raises(ValueError, match="radius"):
        kp.placement_holds([0, 0], [0, 0], -1.0, "center")


def test_distance_in_front_of_a_reference():
    ref = [0.15, 0.1]
    assert kp.distance_holds([0.28, 0.1], ref, "front", 0.13)
    assert not kp.distance_holds([0.36, 0.1], ref, "front", 0.13)            # that is "far"
    assert not kp.distance_holds([0.28, 0.2], ref, "front", 0.13)            # off to the side
    assert kp.distance_along([0.28, 0.1], ref, "back") == pytest.approx(-0.13)


def test_extent_of_a_pull_and_the_order_grasp_then_pull():
    axis, travel = [-1.0, 0.0], 0.13
    grip = np.r_[np.zeros(5, bool), np.ones(20, bool), np.zeros(5, bool)]
    for frac, word in ((0.25, "slightly"), (0.5, "halfway"), (0.9, "completely")):
        xy = np.vstack([np.tile([0.35, 0.2], (5, 1)), _line([0.35, 0.2], [0.35 - frac * travel, 0.2], 20),
                        np.tile([0.35 - frac * travel, 0.2], (5, 1))])
        t = _traj(xy, grip=grip)
        assert kp.extent_fraction(t, axis, travel) == pytest.approx(frac)
        got = kp.evaluate({"extent": word, "order": "grasp_then_pull"}, t, {"pull_axis": axis, "travel": travel})
        assert got == {"extent": True, "order": True}
        others = [w for w in kp.EXTENTS if w != word]
        assert not any(kp.extent_holds(t, axis, travel, kp.EXTENTS[w]) for w in others)
    pushed = _traj(np.vstack([np.tile([0.35, 0.2], (5, 1)), _line([0.35, 0.2], [0.40, 0.2], 25)]), grip=grip)
    assert not kp.evaluate({"order": "grasp_then_pull"}, pushed, {"pull_axis": axis, "travel": travel})["order"]


def test_lift_then_move():
    grip = np.ones(30, bool)
    up_first = _traj(np.vstack([np.tile([0.3, 0.0], (10, 1)), _line([0.3, 0.0], [0.3, 0.2], 20)]),
                     z=np.r_[np.linspace(0.05, 0.12, 10), np.full(20, 0.12)], grip=grip)
    dragged = _traj(_line([0.3, 0.0], [0.3, 0.2], 30), z=np.linspace(0.05, 0.12, 30), grip=grip)
    assert kp.order_lift_then_move(up_first) and not kp.order_lift_then_move(dragged)


def test_tilt_and_pour_side():
    n = 40
    tilt = np.r_[np.zeros(10), np.linspace(0, math.radians(115), 20), np.full(10, math.radians(115))]
    t = _traj(np.tile([0.3, 0.1], (n, 1)), tilt=tilt)
    assert kp.tilt_holds(t, kp.TILTS["fully"]) and not kp.tilt_holds(t, kp.TILTS["gently"])
    assert kp.approach_side(t, [0.3, 0.0]) == "right"              # the tool is on the bowl's +y side: right
    assert kp.evaluate({"side": "right", "tilt": "fully"}, t, {"target_xy": [0.3, 0.0]}) == {"side": True, "tilt": True}
    assert kp.evaluate({"side": "left"}, t, {"target_xy": [0.3, 0.0]}) == {"side": False}
    upright = _traj(np.tile([0.3, 0.1], (n, 1)))
    assert kp.approach_side(upright, [0.3, 0.0]) is None


def test_evaluate_counts_a_missing_context_as_not_holding_and_refuses_unknown_attributes():
    t = _traj(_line([0.3, 0.0], [0.3, 0.2]))
    assert kp.evaluate({"placement": "center"}, t, {}) == {"placement": False}
    with pytest.raises(ValueError, match="no predicate"):
        kp.evaluate({"colour": "red"}, t, {})
    with pytest.raises(ValueError, match="tcp"):
        kp.transport_path({"tcp": np.zeros((5, 2)), "grip": np.ones(5, bool)})
