"""Scene specifications: reproducible from a seed, JSON round trip, clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from kinebridge.drivers.world.spec import (ArmSpec, BoxSpec, DrawerSpec, MugSpec, Placement, SceneSpec,
                                           ToolSpec)


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = SceneSpec.random(7), SceneSpec.random(7), SceneSpec.random(8)
    assert a.model_dump_json() == b.model_dump_json()
    assert a.model_dump_json() != c.model_dump_json()


def test_json_round_trip_is_exact():
    s = SceneSpec.random(11, n_mugs=2, n_distractors=3, bowls=1, plates=1, drawer=True)
    again = SceneSpec.model_validate_json(s.model_dump_json())
    assert again == s
    assert json.loads(s.model_dump_json())["target"] == "mug0"


def test_random_scene_varies_what_the_issue_lists():
    scenes = [SceneSpec.random(k) for k in range(12)]
    mugs = [o for s in scenes for o in s.objects if o.kind == "mug"]
    assert len({round(m.radius, 4) for m in mugs}) > 10
    assert {m.handle.shape for m in mugs} == {"round", "square", "ear"}
    sides = {np.sign(np.sin(np.radians(m.pose.yaw_deg))) for m in mugs}
    assert sides == {-1.0, 1.0}                                       # handles left and right
    assert len({s.table.color for s in scenes}) == 12
    assert any(s.table.checker is not None for s in scenes) and any(s.table.checker is None for s in scenes)
    assert len({s.lighting.lights[0].pos for s in scenes}) == 12


def test_placements_do_not_overlap_and_are_within_reach():
    for seed in range(20):
        s = SceneSpec.random(seed, n_mugs=4, n_distractors=3, bowls=1)
        pts = [(o.pose.x, o.pose.y) for o in s.objects]
        for i, p in enumerate(pts):
            assert 0.25 < np.hypot(*p) < 0.66
            for q in pts[i + 1:]:
                assert np.hypot(p[0] - q[0], p[1] - q[1]) > 0.05


def test_ambiguous_scene_has_similar_mugs_and_distractor_boxes():
    s = SceneSpec.random(3, n_mugs=1, n_distractors=0, ambiguous=True)
    mugs = [o for o in s.objects if o.kind == "mug"]
    boxes = [o for o in s.objects if o.kind == "distractor" and o.shape == "box"]
    assert len(mugs) >= 3 and len(boxes) >= 2
    radii = np.array([m.radius for m in mugs])
    assert radii.max() / radii.min() < 1.1                          # similar: within a few per cent
    assert len({m.handle.shape for m in mugs}) == 1
    hues = np.array([m.color[:3] for m in mugs])
    assert np.abs(hues - hues.mean(axis=0)).max() < 0.15
    box_colors = {b.color for b in boxes}
    assert len(box_colors) == len(boxes)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, "3", True])
def test_invalid_seed_is_named(seed):
    with pytest.raises(ValueError, match="seed"):
        SceneSpec.random(seed)


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError, match="extra"):
        MugSpec(name="m", pose=Placement(x=0.4, y=0.0), colour=(1, 0, 0, 1))


def test_impossible_mug_names_the_fix():
    with pytest.raises(ValidationError, match="wall .* below 0.3 × the radius"):
        MugSpec(name="m", pose=Placement(x=0.4, y=0.0), radius=0.03, wall=0.012)


def test_scene_errors_name_the_field():
    m = MugSpec(name="a", pose=Placement(x=0.4, y=0.0))
    with pytest.raises(ValidationError, match="names must be unique"):
        SceneSpec(objects=(m, m))
    with pytest.raises(ValidationError, match="target = 'b' is not an object"):
        SceneSpec(objects=(m,), target="b")
    with pytest.raises(ValidationError, match="reserved label"):
        BoxSpec(name="table", pose=Placement(x=0.4, y=0.0))
    with pytest.raises(ValidationError, match="travel"):
        DrawerSpec(name="d", pose=Placement(x=0.5, y=0.0), travel=0.3, size=(0.2, 0.3, 0.15))
    with pytest.raises(ValidationError, match="q0 lies outside"):
        ArmSpec.from_model(q0=(0, 0, 0, 0, 0, 3.0, 0))


def test_arm_spec_takes_the_runtime_arm_model():
    from kinebridge.kernels import rm75

    a = ArmSpec.from_model(rm75.RM75Model.for_variant("6F"))
    assert a.d7 == rm75.D7_6F and a.q_max == tuple(rm75.Q_MAX)


def test_too_much_water_for_the_held_mug_is_explained():
    from kinebridge.drivers.world.builder import build

    tool = ToolSpec(particles={"count": 2000, "radius": 0.006})
    with pytest.raises(ValueError, match="does not fit in the held mug"):
        build(SceneSpec(tool=tool))
